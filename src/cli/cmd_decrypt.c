/* nbdcrypt decrypt: a LUKS2 disk back to its plaintext image. */
#include "cli/progress.h"

static const char decrypt_help[] =
    "Usage: nbdcrypt decrypt TARGET [--header FILE] [--resume] [--json] [--batch-mode]\n\n"
    "Decrypt TARGET in place back to the plaintext image, byte for byte: an image\n"
    "file shrinks by its data offset.  With --header FILE (a detached header) the\n"
    "data is decrypted in place and FILE is removed at the end.  Crash-safe: run\n"
    "the same command again (or with --resume) after a crash or Ctrl-C.  Asks\n"
    "first when stdin is a terminal (type YES), not with --resume.\n"
    "  --hotzone SIZE  bytes per header commit (16M..256M, default 64M)\n"
    "  --json          progress events as JSON lines on stdout\n" CLI_BATCH_HELP
        CLI_ALLOW_REVOKED_HELP;

int cmd_decrypt(struct cli *cli, int argc, char **argv)
{
  return cli_reenc_command(cli, argc, argv, REENC_DECRYPT, decrypt_help);
}

/* nbdcrypt encrypt: a plaintext image becomes a LUKS2 disk in place. */
#include "cli/progress.h"

static const char encrypt_help[] =
    "Usage: nbdcrypt encrypt TARGET [--provider NAME] [--kek ID] [--kms-wrapped]\n"
    "                        [--header FILE] [--resume] [--json]\n\n"
    "Encrypt the plaintext image TARGET in place with a new random volume key bound\n"
    "to a KEK (created when --kek is absent).  An image file grows by 16 MiB: the\n"
    "LUKS2 header goes first and the data moves after it.  With --header FILE the\n"
    "header is kept in FILE (created, 16 MiB) and the data stays in place, as a\n"
    "fixed-size NBD export needs.  Crash-safe: run the same command again (or with\n"
    "--resume) after a crash or Ctrl-C.\n"
    "  --hotzone SIZE  bytes per header commit (16M..256M, default 64M)\n"
    "  --json          progress events as JSON lines on stdout\n";

int cmd_encrypt(struct cli *cli, int argc, char **argv)
{
  return cli_reenc_command(cli, argc, argv, REENC_ENCRYPT, encrypt_help);
}

/* nbdcrypt recrypt: deep re-encryption with a new DEK. */
#include "cli/progress.h"

static const char recrypt_help[] =
    "Usage: nbdcrypt recrypt TARGET [--provider NAME] [--kek ID] [--drop-passphrase-keyslots]\n"
    "                        [--resume] [--json]\n\n"
    "Replace the volume key (DEK) of TARGET by a new random one and re-encrypt every\n"
    "data sector in place.  The new key is bound to the same KEK (or --kek ID of\n"
    "--provider NAME); keyslots of the old key are removed at the end.  Crash-safe:\n"
    "after a crash or Ctrl-C run the same command again (or with --resume).\n"
    "Keyslots bound to no KEK (passphrases) cannot follow the new key: recrypt\n"
    "refuses such a disk unless --drop-passphrase-keyslots accepts their removal.\n"
    "Exit status: 0 done, 1 failed or stopped (Ctrl-C) at a resumable point.\n"
    "  --hotzone SIZE  bytes re-encrypted per header commit (16M..256M, default 64M)\n"
    "  --resume        only resume an operation in progress\n"
    "  --json          progress events as JSON lines on stdout\n";

int cmd_recrypt(struct cli *cli, int argc, char **argv)
{
  return cli_reenc_command(cli, argc, argv, REENC_RECRYPT, recrypt_help);
}

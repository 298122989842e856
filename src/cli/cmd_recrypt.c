/* nbdcrypt recrypt: deep re-encryption with a new DEK. */
#include "cli/progress.h"

static const char recrypt_help[] =
    "Usage: nbdcrypt recrypt TARGET [--provider NAME] [--kek ID] [--passphrase-file FILE]...\n"
    "                        [--drop-passphrase-keyslots] [--header FILE] [--resume] [--json]\n\n"
    "Replace the volume key (DEK) of TARGET by a new random one and re-encrypt every\n"
    "data sector in place.  The new key is bound to every KEK the old one was bound\n"
    "to (or only to --kek ID, or a new KEK of --provider NAME); keyslots of the old\n"
    "key are removed at the end.  Crash-safe: after a crash or Ctrl-C run the same\n"
    "command again (or with --resume).\n"
    "Keyslots bound to no KEK (passphrases, key files) follow the new key when\n"
    "--passphrase-file gives their secret (a file's exact bytes, as cryptsetup\n"
    "--key-file; repeat it for several keyslots): same secret, KDF and costs.\n"
    "recrypt refuses a disk with other such keyslots unless --drop-passphrase-keyslots\n"
    "accepts their removal.\n"
    "Exit status: 0 done, 1 failed or stopped (Ctrl-C) at a resumable point.\n"
    "  --header FILE   the disk's detached LUKS2 header (TARGET holds the data)\n"
    "  --hotzone SIZE  bytes re-encrypted per header commit (16M..256M, default 64M)\n"
    "  --resume        only resume an operation in progress\n"
    "  --json          progress events as JSON lines on stdout\n" CLI_ALLOW_REVOKED_HELP;

int cmd_recrypt(struct cli *cli, int argc, char **argv)
{
  return cli_reenc_command(cli, argc, argv, REENC_RECRYPT, recrypt_help);
}

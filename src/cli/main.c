/* nbdcrypt: the command-line tool around serving (DESIGN.md section 7). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "nbdcrypt/crypto.h"

static const struct {
  const char *name;
  int (*run)(struct cli *cli, int argc, char **argv);
  const char *summary;
} commands[] = {
    {"kek", cmd_kek, "create, list, revoke or destroy key-encryption keys"},
    {"format", cmd_format, "write a new LUKS2 header bound to a KEK"},
    {"info", cmd_info, "show a disk's LUKS2 header (no keys needed)"},
    {"check", cmd_check, "check that this host can unlock a disk"},
    {"enroll", cmd_enroll, "bind a passphrase disk to a KEK (adds a keyslot)"},
    {"rekey", cmd_rekey, "bind the volume key to a new KEK (shallow re-key)"},
    {"serve", cmd_serve, "serve a disk decrypted over NBD with nbdkit"},
    {"recrypt", cmd_recrypt, "re-encrypt every sector with a new DEK (resumable)"},
    {"encrypt", cmd_encrypt, "encrypt a plaintext image in place (resumable)"},
    {"decrypt", cmd_decrypt, "decrypt a disk back to its plaintext image (resumable)"},
};

static void usage(FILE *out)
{
  fprintf(out, "Usage: nbdcrypt [--config FILE] COMMAND [OPTIONS] [TARGET]\n\n"
               "TARGET is an image file or an NBD URI (nbd://HOST[:PORT]/EXPORT,\n"
               "nbd+unix:///EXPORT?socket=PATH).\n\nCommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
  fprintf(out, "\nOptions:\n"
               "  --config FILE  key provider configuration (default: $NBDCRYPT_CONFIG,\n"
               "                 else /etc/nbdcrypt/config.json, else a native keystore in\n"
               "                 $XDG_DATA_HOME/nbdcrypt/keystore.json)\n"
               "  --batch-mode, -q, --yes\n"
               "                 never ask for confirmation: format --force over data,\n"
               "                 decrypt and kek destroy ask \"Are you sure?\" when stdin is a\n"
               "                 terminal (as cryptsetup); also an option of those commands\n"
               "  --help         this text; 'nbdcrypt COMMAND --help' for a command\n"
               "  --version      print the version\n\n"
               "Exit status: 0 success, 1 failure (reason on stderr), 2 bad usage.\n");
}

int main(int argc, char **argv)
{
  static const struct option opts[] = {
      {"config", required_argument, NULL, 'c'},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      CLI_BATCH_OPTIONS,
      {NULL, 0, NULL, 0},
  };
  struct cli cli = {0};
  int c;

  secmem_harden_process();
  while ((c = getopt_long(argc, argv, "+c:hq", opts, NULL)) != -1) {
    switch (c) {
    case 'c':
      cli.config_path = optarg;
      break;
    case 'h':
      usage(stdout);
      return CLI_OK;
    case 'q':
      cli.batch = true;
      break;
    case 'V':
      printf("nbdcrypt %s\n", NBDCRYPT_VERSION);
      return CLI_OK;
    default:
      usage(stderr);
      return CLI_USAGE;
    }
  }
  if (optind >= argc) {
    usage(stderr);
    return CLI_USAGE;
  }

  const char *name = argv[optind];
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    if (strcmp(name, commands[i].name) == 0) {
      int sub_argc = argc - optind;
      char **sub_argv = argv + optind;
      optind = 0; /* full re-initialisation of getopt for the subcommand */
      int r = commands[i].run(&cli, sub_argc, sub_argv);
      keys_config_free(cli.cfg);
      return r;
    }
  }
  fprintf(stderr, "nbdcrypt: unknown command '%s'\n", name);
  usage(stderr);
  return CLI_USAGE;
}

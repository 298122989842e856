/* The nbdcrypt command: one file per subcommand (src/cli/cmd_*.c). */
#ifndef NBDCRYPT_CLI_H
#define NBDCRYPT_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include <stdint.h>

#include "nbdcrypt/blockdev.h"
#include "nbdcrypt/keys.h"

/* Exit statuses (DESIGN.md section 7). */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

struct cli {
  const char *config_path; /* --config FILE, or NULL */
  struct keys_config *cfg; /* loaded on first use by cli_config() */
  bool allow_revoked;      /* --allow-revoked: set before cli_config() */
};

/* The --allow-revoked option of the commands that unlock (getopt value). */
#define CLI_OPT_ALLOW_REVOKED 0x100
#define CLI_ALLOW_REVOKED_OPTION                                                                   \
  {                                                                                                \
    "allow-revoked", no_argument, NULL, CLI_OPT_ALLOW_REVOKED                                      \
  }
#define CLI_ALLOW_REVOKED_HELP                                                                     \
  "  --allow-revoked  unlock even with a KEK the KMS marks deactivated or\n"                       \
  "                   compromised, with a warning: only to rescue the data (rekey\n"               \
  "                   it to an active KEK)\n"

/* The configuration (loaded once); NULL after printing the error. */
struct keys_config *cli_config(struct cli *cli);

/* Print "nbdcrypt: <msg>" on stderr and return CLI_FAIL. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "nbdcrypt CMD: <msg>\nTry 'nbdcrypt CMD --help'." and return CLI_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parse a size with an optional K/M/G/T suffix (binary).  false if invalid. */
bool cli_parse_size(const char *s, uint64_t *out);

/* Passphrases: a file's or descriptor's exact bytes (as cryptsetup --key-file),
 * 1..CLI_PASSPHRASE_MAX-1 of them, read into secure memory of
 * CLI_PASSPHRASE_MAX bytes that the caller frees with
 * secmem_free(p, CLI_PASSPHRASE_MAX).  Print the error and return CLI_FAIL. */
#define CLI_PASSPHRASE_MAX 8192
int cli_read_passphrase_fd(int fd, const char *what, uint8_t **out, size_t *len);
int cli_read_passphrase_file(const char *path, uint8_t **out, size_t *len);

/* Open TARGET (file or NBD URI); prints the error and returns CLI_FAIL. */
int cli_open_target(const char *target, unsigned flags, uint64_t create_size, struct bdev **out);

/* Subcommands: argv[0] is the subcommand name; getopt_long is reset. */
int cmd_kek(struct cli *cli, int argc, char **argv);
int cmd_format(struct cli *cli, int argc, char **argv);
int cmd_info(struct cli *cli, int argc, char **argv);
/* info on a LUKS1 disk (info_luks1.c): 1 when dev is LUKS1 (printed, or
 * refused as corrupt; *result the exit code), 0 when it is not LUKS1. */
int cli_info_luks1(const char *target, struct bdev *dev, bool json, int *result);
int cmd_check(struct cli *cli, int argc, char **argv);
int cmd_enroll(struct cli *cli, int argc, char **argv);
int cmd_rekey(struct cli *cli, int argc, char **argv);
int cmd_serve(struct cli *cli, int argc, char **argv); /* src/cli/cmd_serve.c */
int cmd_recrypt(struct cli *cli, int argc, char **argv);
int cmd_encrypt(struct cli *cli, int argc, char **argv);
int cmd_decrypt(struct cli *cli, int argc, char **argv);

#endif

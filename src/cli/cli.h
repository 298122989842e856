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
  bool batch;              /* --batch-mode, -q, --yes: never ask for confirmation */
};

/* --batch-mode, -q and --yes (cryptsetup's): the options of the commands
 * that ask before destroying (getopt value 'q'). */
#define CLI_BATCH_OPTIONS                                                                          \
  {"batch-mode", no_argument, NULL, 'q'},                                                          \
  {                                                                                                \
    "yes", no_argument, NULL, 'q'                                                                  \
  }
#define CLI_BATCH_HELP                                                                             \
  "  --batch-mode, -q, --yes  do not ask for confirmation (asked only when stdin\n"                \
  "                   is a terminal)\n"

/* Ask as cryptsetup does before a destructive step: when stdin is a
 * terminal and not in batch mode, print "WARNING! <warning>" and "Are you
 * sure? (Type 'yes' in capital letters): " on stderr and read a line.
 * CLI_OK for "YES" (or no question asked), else print "operation aborted"
 * and return CLI_FAIL. */
int cli_confirm(const struct cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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

/* Print "nbdcrypt: <msg>" on stderr and return CLI_FAIL.  With a hook set
 * (cli_set_fail_hook), the hook also gets <msg>: how --json commands put
 * their errors into their JSON output. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
typedef void (*cli_fail_hook_fn)(void *ctx, const char *msg);
void cli_set_fail_hook(cli_fail_hook_fn fn, void *ctx);

/* JSON output (docs/nbdcrypt.1.md, JSON OUTPUT).  Every string is made valid
 * UTF-8 first: each byte that is not part of a well-formed UTF-8 sequence
 * (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF)
 * becomes U+FFFD, as Python's errors="replace" does for one byte; json-c
 * escapes control characters ("\n", "\u0001").  cli_json_string: a new
 * json-c string of s so cleaned (s NULL: JSON null).  cli_json_print: clean
 * every string of the tree o (values; keys are ours), print it on stdout as
 * one pretty-printed object (pretty) or one line, flush, and drop o. */
struct json_object;
struct json_object *cli_json_string(const char *s);
void cli_json_print(struct json_object *o, bool pretty);
/* The result object of a --json command: "target", "ok" (r == CLI_OK) and,
 * when r is not, "error": the messages collected (cli_errors_collect). */
struct json_object *cli_json_result(const char *target, int r);

/* The messages cli_fail printed while collecting (a --json command's
 * "error" field): cli_errors_collect() starts, cli_errors_text() is "" or
 * the messages joined with "; ", valid until the next call. */
void cli_errors_collect(void);
const char *cli_errors_text(void);
/* Print "nbdcrypt: <doing> TARGET: <msg>" (doing: e.g. "cannot format", or
 * NULL), naming TARGET once: when msg already names it, "nbdcrypt: <doing>:
 * <msg>" (or the bare msg).  Returns CLI_FAIL. */
int cli_fail_target(const char *target, const char *doing, const char *msg);
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
/* Open the detached header file of TARGET (--header); refuses TARGET itself. */
int cli_open_header(const char *target, const char *header, unsigned flags, struct bdev **out);
/* Test seam: a device a metadata command (enroll) opened for writing goes
 * through here before the library sees it.  The CLI's own definition (weak)
 * leaves it as it is; the test build nbdcrypt-faults (tests/support/
 * cli_faults.c) wraps it in a fault-injecting bdev.  On success *dev may be
 * a new bdev that owns the old one (bdev_close closes both). */
int cli_wrap_write_bdev(struct bdev **dev, struct nbdc_error *err);

/* Subcommands: argv[0] is the subcommand name; getopt_long is reset. */
int cmd_kek(struct cli *cli, int argc, char **argv);
int cmd_format(struct cli *cli, int argc, char **argv);
int cmd_info(struct cli *cli, int argc, char **argv);
/* info on a LUKS1 disk (info_luks1.c): 1 when dev is LUKS1 (printed, or
 * refused as corrupt or, header given, as a detached LUKS1 header; *result
 * the exit code), 0 when it is not LUKS1.  dev: the header device (header's
 * with --header, else target's). */
int cli_info_luks1(const char *target, const char *header, struct bdev *dev, bool json,
                   int *result);
int cmd_check(struct cli *cli, int argc, char **argv);
int cmd_enroll(struct cli *cli, int argc, char **argv);
int cmd_rekey(struct cli *cli, int argc, char **argv);
int cmd_serve(struct cli *cli, int argc, char **argv); /* src/cli/cmd_serve.c */
int cmd_recrypt(struct cli *cli, int argc, char **argv);
int cmd_encrypt(struct cli *cli, int argc, char **argv);
int cmd_decrypt(struct cli *cli, int argc, char **argv);

#endif

/* Progress display for long commands (recrypt, encrypt, decrypt): a bar with
 * percent, rate and ETA on a terminal, one line per 10% otherwise, or JSON
 * events (one object per line on stdout) with --json. */
#ifndef NBDCRYPT_CLI_PROGRESS_H
#define NBDCRYPT_CLI_PROGRESS_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "cli/cli.h"
#include "nbdcrypt/reencrypt.h"

struct progress {
  const char *what; /* "recrypt" ... */
  bool json;
  bool tty;
  double start;
  uint64_t first_done; /* work already done when this run started */
  int last_decile;
  bool started;
};

void progress_init(struct progress *p, const char *what, bool json);
/* reenc_progress_fn */
void progress_update(void *opaque, uint64_t done, uint64_t total);
/* End the bar line; with --json, a final event ("done", "interrupted" or "error"). */
void progress_end(struct progress *p, const char *event, const char *message);

/* Install SIGINT/SIGTERM handlers that set *flag (stop at a resumable point). */
void progress_catch_signals(volatile sig_atomic_t *flag);

/* Open target (and the detached header) with the image lock of a data
 * writer, run the engine on them and close them (cli/reenc_target.c);
 * removes a header file created for an encrypt that did not get to use it,
 * and the header of a finished decrypt.  *half_way: on an error, the disk is
 * left in the middle of the operation (reenc_target.half_way). */
int cli_reenc_run(const char *target, const char *header, struct reenc_opts *ro, bool *half_way,
                  struct nbdc_error *err);

/* Test programs built from the CLI's sources (tests/) replace this weak
 * no-op to wrap the opened devices (a fault-injecting bdev); 0 or -errno. */
int cli_reenc_wrap_target(struct reenc_target *t, struct nbdc_error *err);

/* The shared body of recrypt/encrypt/decrypt. */
int cli_reenc_command(struct cli *cli, int argc, char **argv, enum reenc_mode mode,
                      const char *help);

#endif

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
  const char *what;   /* "recrypt" ... */
  const char *target; /* for JSON events, may be NULL */
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

/* The shared body of recrypt/encrypt/decrypt. */
int cli_reenc_command(struct cli *cli, int argc, char **argv, enum reenc_mode mode,
                      const char *help);

#endif

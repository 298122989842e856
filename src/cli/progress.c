/* Progress bar / lines / JSON events, signal handling, and the common body
 * of the re-encryption commands. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/progress.h"
#include "nbdcrypt/crypto.h"
#include "nbdcrypt/luks2.h"

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void progress_init(struct progress *p, const char *what, bool json)
{
  *p = (struct progress){.what = what,
                         .json = json,
                         .tty = isatty(STDERR_FILENO) == 1,
                         .start = now(),
                         .last_decile = -1};
}

void progress_update(void *opaque, uint64_t done, uint64_t total)
{
  struct progress *p = opaque;
  if (!p->started) {
    p->started = true;
    p->first_done = done;
    p->start = now();
  }
  double elapsed = now() - p->start;
  double pct = total ? 100.0 * (double)done / (double)total : 100.0;
  double rate = elapsed > 0 ? (double)(done - p->first_done) / elapsed : 0; /* bytes/s */
  double eta = rate > 0 ? (double)(total - done) / rate : -1;
  if (p->json) {
    printf("{\"event\":\"progress\",\"operation\":\"%s\",\"done\":%" PRIu64 ",\"total\":%" PRIu64
           ",\"percent\":%.1f,\"rate_bytes_per_s\":%.0f,\"eta_s\":%.1f}\n",
           p->what, done, total, pct, rate, eta);
    fflush(stdout);
    return;
  }
  if (p->tty) {
    char bar[31];
    int fill = (int)(pct * 30 / 100);
    for (int i = 0; i < 30; i++)
      bar[i] = i < fill ? '#' : '-';
    bar[30] = '\0';
    if (eta >= 0)
      fprintf(stderr, "\r%s [%s] %5.1f%% %7.1f MiB/s ETA %4.0fs ", p->what, bar, pct,
              rate / 1048576.0, eta);
    else
      fprintf(stderr, "\r%s [%s] %5.1f%%                        ", p->what, bar, pct);
    fflush(stderr);
    return;
  }
  int decile = (int)(pct / 10);
  if (decile != p->last_decile) {
    p->last_decile = decile;
    fprintf(stderr, "%s: %d%% (%" PRIu64 " of %" PRIu64 " MiB, %.1f MiB/s)\n", p->what, decile * 10,
            done >> 20, total >> 20, rate / 1048576.0);
  }
}

void progress_end(struct progress *p, const char *event, const char *message)
{
  if (p->json) {
    printf("{\"event\":\"%s\",\"operation\":\"%s\",\"elapsed_s\":%.2f", event, p->what,
           now() - p->start);
    if (message) {
      fputs(",\"message\":\"", stdout);
      for (const char *c = message; *c; c++) {
        if (*c == '"' || *c == '\\')
          putchar('\\');
        if ((unsigned char)*c >= 0x20)
          putchar(*c);
      }
      putchar('"');
    }
    puts("}");
    fflush(stdout);
  } else if (p->tty && p->started) {
    fputc('\n', stderr);
  }
}

static volatile sig_atomic_t *stop_flag;

static void on_signal(int sig)
{
  (void)sig;
  if (stop_flag)
    *stop_flag = 1;
}

void progress_catch_signals(volatile sig_atomic_t *flag)
{
  stop_flag = flag;
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

static int run_reenc(const char *cmd, const char *target, const char *header, struct reenc_opts *ro,
                     bool json);

int cli_reenc_command(struct cli *cli, int argc, char **argv, enum reenc_mode mode,
                      const char *help)
{
  static const struct option opts[] = {
      {"provider", required_argument, NULL, 'p'},
      {"kek", required_argument, NULL, 'k'},
      {"kms-wrapped", no_argument, NULL, 'w'},
      {"header", required_argument, NULL, 'H'},
      {"hotzone", required_argument, NULL, 'z'},
      {"resume", no_argument, NULL, 'r'},
      {"json", no_argument, NULL, 'j'},
      {"drop-passphrase-keyslots", no_argument, NULL, 'D'},
      {"passphrase-file", required_argument, NULL, 'f'},
      CLI_ALLOW_REVOKED_OPTION,
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *cmd = argv[0];
  struct reenc_opts ro = {.mode = mode};
  const char *header = NULL;
  struct reenc_passphrase pass[LUKS2_MAX_KEYSLOTS];
  const char *pass_files[LUKS2_MAX_KEYSLOTS];
  size_t n_pass = 0;
  bool json = false;
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'p':
    case 'k':
    case 'w':
      if (mode == REENC_DECRYPT)
        return cli_usage(cmd, "decrypt takes no KEK options");
      if (c == 'p')
        ro.provider = optarg;
      else if (c == 'k')
        ro.kek_id = optarg;
      else
        ro.kms_wrapped = true;
      break;
    case 'H':
      if (mode == REENC_RECRYPT)
        return cli_usage(cmd, "recrypt does not take --header");
      header = optarg;
      break;
    case 'z':
      if (!cli_parse_size(optarg, &ro.hotzone) || ro.hotzone == 0)
        return cli_usage(cmd, "bad --hotzone '%s'", optarg);
      break;
    case 'r':
      ro.resume_only = true;
      break;
    case 'j':
      json = true;
      break;
    case 'D':
      if (mode != REENC_RECRYPT)
        return cli_usage(cmd, "only recrypt takes --drop-passphrase-keyslots");
      ro.drop_unbound = true;
      break;
    case 'f':
      if (mode != REENC_RECRYPT)
        return cli_usage(cmd, "only recrypt takes --passphrase-file");
      if (n_pass == LUKS2_MAX_KEYSLOTS)
        return cli_usage(cmd, "at most %d --passphrase-file options", LUKS2_MAX_KEYSLOTS);
      pass_files[n_pass++] = optarg;
      break;
    case CLI_OPT_ALLOW_REVOKED:
      if (mode == REENC_ENCRYPT)
        return cli_usage(cmd, "encrypt takes no --allow-revoked");
      cli->allow_revoked = true;
      break;
    case 'h':
      fputs(help, stdout);
      return CLI_OK;
    default:
      return cli_usage(cmd, "bad option");
    }
  }
  if (optind != argc - 1)
    return cli_usage(cmd, optind >= argc ? "missing TARGET" : "too many arguments");
  const char *target = argv[optind];
  ro.cfg = cli_config(cli);
  if (!ro.cfg)
    return CLI_FAIL;
  int r = CLI_OK;
  size_t n_read = 0;
  for (; n_read < n_pass && r == CLI_OK; n_read++) {
    uint8_t *data = NULL;
    size_t len = 0;
    r = cli_read_passphrase_file(pass_files[n_read], &data, &len);
    pass[n_read] = (struct reenc_passphrase){.data = data, .len = len, .name = pass_files[n_read]};
  }
  if (r == CLI_OK) {
    ro.passphrases = pass;
    ro.n_passphrases = n_pass;
    r = run_reenc(cmd, target, header, &ro, json);
  }
  for (size_t i = 0; i < n_read; i++)
    secmem_free((void *)pass[i].data, CLI_PASSPHRASE_MAX);
  return r;
}

static int run_reenc(const char *cmd, const char *target, const char *header, struct reenc_opts *ro,
                     bool json)
{
  static volatile sig_atomic_t stop;
  struct progress pr;
  progress_init(&pr, cmd, json);
  progress_catch_signals(&stop);
  ro->stop = &stop;
  ro->progress = progress_update;
  ro->progress_opaque = &pr;

  struct nbdc_error err = {0};
  bool half_way = false;
  int r = cli_reenc_run(target, header, ro, &half_way, &err);
  if (r == -EINTR) {
    progress_end(&pr, "interrupted", err.msg);
    return cli_fail("%s: %s stopped at a resumable point; run it again (or with --resume) to "
                    "continue",
                    target, cmd);
  }
  if (r < 0 && half_way) {
    /* as after Ctrl-C: the disk is safe, and the way on is the same */
    char msg[NBDC_ERROR_MAX + 256];
    snprintf(msg, sizeof msg,
             "%s; the disk is left half way through the %s (nothing is lost): once the cause "
             "is fixed, run the same command again (or with --resume) to continue",
             err.msg, cmd);
    progress_end(&pr, "error", msg);
    return cli_fail("%s: %s", target, msg);
  }
  if (r < 0) {
    progress_end(&pr, "error", err.msg);
    return cli_fail("%s: %s", target, err.msg);
  }
  progress_end(&pr, "done", NULL);
  if (!json)
    fprintf(stderr, "%s: %s complete\n", target, cmd);
  return CLI_OK;
}

/* Helpers shared by the nbdcrypt subcommands. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "nbdcrypt/crypto.h"

static void cli_warn(void *ctx, const char *msg)
{
  (void)ctx;
  fprintf(stderr, "nbdcrypt: warning: %s\n", msg);
}

struct keys_config *cli_config(struct cli *cli)
{
  if (!cli->cfg) {
    struct nbdc_error err = {0};
    if (keys_config_load(cli->config_path, &cli->cfg, &err) < 0) {
      cli_fail("%s", err.msg);
      return NULL;
    }
    keys_config_set_warn(cli->cfg, cli_warn, NULL);
  }
  keys_config_set_allow_revoked(cli->cfg, cli->allow_revoked);
  return cli->cfg;
}

int cli_read_passphrase_fd(int fd, const char *what, uint8_t **out, size_t *len)
{
  uint8_t *buf = secmem_alloc(CLI_PASSPHRASE_MAX);
  if (!buf)
    return cli_fail("cannot allocate secure memory: %s", strerror(errno));
  size_t used = 0;
  for (;;) {
    ssize_t n = read(fd, buf + used, CLI_PASSPHRASE_MAX - used);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int e = errno;
      secmem_free(buf, CLI_PASSPHRASE_MAX);
      return cli_fail("cannot read the passphrase from %s: %s", what, strerror(e));
    }
    if (n == 0)
      break;
    used += (size_t)n;
    if (used == CLI_PASSPHRASE_MAX) {
      secmem_free(buf, CLI_PASSPHRASE_MAX);
      return cli_fail("passphrase in %s is longer than %d bytes", what, CLI_PASSPHRASE_MAX - 1);
    }
  }
  if (used == 0) {
    secmem_free(buf, CLI_PASSPHRASE_MAX);
    return cli_fail("passphrase in %s is empty", what);
  }
  *out = buf;
  *len = used;
  return CLI_OK;
}

int cli_read_passphrase_file(const char *path, uint8_t **out, size_t *len)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return cli_fail("cannot open %s: %s", path, strerror(errno));
  int r = cli_read_passphrase_fd(fd, path, out, len);
  close(fd);
  return r;
}

int cli_fail(const char *fmt, ...)
{
  va_list ap;
  fputs("nbdcrypt: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return CLI_FAIL;
}

int cli_fail_target(const char *target, const char *doing, const char *msg)
{
  bool named = strstr(msg, target) != NULL;
  if (doing && named)
    return cli_fail("%s: %s", doing, msg);
  if (doing)
    return cli_fail("%s %s: %s", doing, target, msg);
  if (named)
    return cli_fail("%s", msg);
  return cli_fail("%s: %s", target, msg);
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
  va_list ap;
  fprintf(stderr, "nbdcrypt %s: ", cmd);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry 'nbdcrypt %s --help'.\n", cmd);
  return CLI_USAGE;
}

bool cli_parse_size(const char *s, uint64_t *out)
{
  char *end;
  if (!s || !*s || *s == '-')
    return false;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s)
    return false;
  unsigned shift = 0;
  if (*end) {
    switch (*end) {
    case 'k':
    case 'K':
      shift = 10;
      break;
    case 'm':
    case 'M':
      shift = 20;
      break;
    case 'g':
    case 'G':
      shift = 30;
      break;
    case 't':
    case 'T':
      shift = 40;
      break;
    case 'b':
    case 'B':
      shift = 0;
      break;
    default:
      return false;
    }
    end++;
    if (*end == 'i' && shift) /* accept "1GiB" */
      end++;
    if ((*end == 'B' || *end == 'b') && shift)
      end++;
    if (*end)
      return false;
  }
  if (shift && v > (UINT64_MAX >> shift))
    return false;
  *out = (uint64_t)v << shift;
  return true;
}

int cli_open_target(const char *target, unsigned flags, uint64_t create_size, struct bdev **out)
{
  struct nbdc_error err = {0};
  if (bdev_open(target, flags, create_size, out, &err) < 0)
    return cli_fail("%s", err.msg);
  return CLI_OK;
}

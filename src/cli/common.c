/* Helpers shared by the nbdcrypt subcommands. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

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

int cli_confirm(const struct cli *cli, const char *fmt, ...)
{
  if (cli->batch || isatty(STDIN_FILENO) != 1)
    return CLI_OK;
  char warning[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(warning, sizeof warning, fmt, ap);
  va_end(ap);
  fprintf(stderr,
          "\nWARNING!\n========\n%s\n\nAre you sure? (Type 'yes' in capital letters): ", warning);
  fflush(stderr);
  char line[16];
  size_t len = 0;
  bool too_long = false;
  for (;;) {
    char ch;
    ssize_t n = read(STDIN_FILENO, &ch, 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0 || ch == '\n')
      break;
    if (len < sizeof line - 1)
      line[len++] = ch;
    else
      too_long = true;
  }
  line[len] = '\0';
  if (!too_long && strcmp(line, "YES") == 0)
    return CLI_OK;
  return cli_fail("operation aborted: not confirmed (type YES to go on); nothing was changed");
}

static cli_fail_hook_fn fail_hook;
static void *fail_hook_ctx;

void cli_set_fail_hook(cli_fail_hook_fn fn, void *ctx)
{
  fail_hook = fn;
  fail_hook_ctx = ctx;
}

int cli_fail(const char *fmt, ...)
{
  char msg[2 * NBDC_ERROR_MAX + 512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "nbdcrypt: %s\n", msg);
  if (fail_hook)
    fail_hook(fail_hook_ctx, msg);
  return CLI_FAIL;
}

static char collected[4 * NBDC_ERROR_MAX];

static void collect_error(void *ctx, const char *msg)
{
  (void)ctx;
  size_t used = strlen(collected);
  if (used + 3 < sizeof collected)
    snprintf(collected + used, sizeof collected - used, "%s%s", used ? "; " : "", msg);
}

void cli_errors_collect(void)
{
  collected[0] = '\0';
  cli_set_fail_hook(collect_error, NULL);
}

const char *cli_errors_text(void)
{
  return collected;
}

/* The length of the well-formed UTF-8 sequence at s (RFC 3629, Unicode
 * Table 3-7), 0 if the byte at s starts none. */
static size_t utf8_seq_len(const unsigned char *s)
{
  unsigned char c = s[0];
  if (c < 0x80)
    return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0)
      lo = 0xa0; /* no overlong forms */
    else if (c == 0xed)
      hi = 0x9f; /* no surrogates */
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0)
      lo = 0x90;
    else if (c == 0xf4)
      hi = 0x8f; /* nothing above U+10FFFF */
  } else {
    return 0;
  }
  if (s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < n; i++)
    if (s[i] < 0x80 || s[i] > 0xbf)
      return 0;
  return n;
}

/* s as valid UTF-8 (malloc'ed), or NULL when it already is (or on ENOMEM). */
static char *utf8_clean(const char *s, size_t len)
{
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0, bad = 0;
  while (i < len) {
    size_t n = utf8_seq_len(u + i);
    if (n == 0) {
      bad++;
      n = 1;
    }
    i += n;
  }
  if (!bad)
    return NULL;
  char *out = malloc(len + 2 * bad + 1), *o = out;
  if (!out)
    return NULL;
  for (i = 0; i < len;) {
    size_t n = utf8_seq_len(u + i);
    if (n == 0) {
      memcpy(o, "\xef\xbf\xbd", 3); /* U+FFFD */
      o += 3;
      i++;
    } else {
      memcpy(o, s + i, n);
      o += n;
      i += n;
    }
  }
  *o = '\0';
  return out;
}

struct json_object *cli_json_string(const char *s)
{
  if (!s)
    return NULL;
  char *clean = utf8_clean(s, strlen(s));
  struct json_object *o = json_object_new_string(clean ? clean : s);
  free(clean);
  return o;
}

static void json_clean_tree(struct json_object *o)
{
  switch (json_object_get_type(o)) {
  case json_type_string: {
    char *clean = utf8_clean(json_object_get_string(o), (size_t)json_object_get_string_len(o));
    if (clean)
      json_object_set_string(o, clean);
    free(clean);
    break;
  }
  case json_type_array:
    for (size_t i = 0; i < json_object_array_length(o); i++)
      json_clean_tree(json_object_array_get_idx(o, i));
    break;
  case json_type_object: {
    json_object_object_foreach(o, key, val)
    {
      (void)key;
      json_clean_tree(val);
    }
    break;
  }
  default:
    break;
  }
}

void cli_json_print(struct json_object *o, bool pretty)
{
  json_clean_tree(o);
  printf("%s\n", json_object_to_json_string_ext(
                     o, (pretty ? JSON_C_TO_STRING_PRETTY : JSON_C_TO_STRING_PLAIN) |
                            JSON_C_TO_STRING_NOSLASHESCAPE));
  fflush(stdout);
  json_object_put(o);
}

struct json_object *cli_json_result(const char *target, int r)
{
  struct json_object *o = json_object_new_object();
  json_object_object_add(o, "target", cli_json_string(target));
  json_object_object_add(o, "ok", json_object_new_boolean(r == CLI_OK));
  if (r != CLI_OK)
    json_object_object_add(o, "error", cli_json_string(cli_errors_text()));
  return o;
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

__attribute__((weak)) int cli_wrap_write_bdev(struct bdev **dev, struct nbdc_error *err)
{
  (void)dev, (void)err;
  return 0;
}

int cli_open_target(const char *target, unsigned flags, uint64_t create_size, struct bdev **out)
{
  struct nbdc_error err = {0};
  if (bdev_open(target, flags, create_size, out, &err) < 0)
    return cli_fail("%s", err.msg);
  return CLI_OK;
}

int cli_open_header(const char *target, const char *header, unsigned flags, struct bdev **out)
{
  struct stat a, b;
  if (!bdev_is_uri(target) && !bdev_is_uri(header) && stat(target, &a) == 0 &&
      stat(header, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    return cli_fail("--header %s is %s itself: a detached header is a file of its own, apart "
                    "from the data",
                    header, target);
  return cli_open_target(header, flags, 0, out);
}

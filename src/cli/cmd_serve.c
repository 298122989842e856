/* nbdcrypt serve: run nbdkit with the nbdcrypt filter over the file plugin
 * (an image path) or the nbd plugin (an NBD URI), and print the URI clients
 * should use. */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "nbdcrypt/blockdev.h"

#define SERVE_FILTER_SO      "nbdkit-nbdcrypt-filter.so"
#define SERVE_DEFAULT_PORT   "10809"
#define SERVE_DEFAULT_BIND   "127.0.0.1"
#define SERVE_MAX_EXTRA_ARGS 64

static void serve_help(void)
{
  printf("Usage: nbdcrypt serve TARGET [--socket PATH | --port N [--bind ADDR]] [--readonly]\n"
         "                      [--foreground] [--pidfile FILE] [--dry-run] [-- NBDKIT-ARGS...]\n\n"
         "Serve the decrypted view of the LUKS2 disk TARGET (an image file, or an NBD URI\n"
         "served through nbdkit's nbd plugin) with nbdkit and the nbdcrypt filter, then\n"
         "print the URI clients should use.  Without --socket or --port: TCP port %s on\n"
         "%s.  Without --foreground nbdkit runs in the background once listening.\n\n"
         "  --socket PATH    listen on a Unix domain socket\n"
         "  --port N         listen on TCP port N\n"
         "  --bind ADDR      TCP address to listen on (default %s)\n"
         "  --readonly, -r   read-only export\n"
         "  --foreground, -f stay in the foreground (nbdkit -f)\n"
         "  --pidfile FILE   nbdkit writes its pid to FILE\n"
         "  --dry-run        print the nbdkit command line instead of running it\n"
         "  -- ARGS...       passed to nbdkit, e.g. nbdcrypt-passphrase=+FILE, --threads=8\n\n"
         "Environment: NBDKIT (the nbdkit binary), NBDCRYPT_FILTER (the filter .so; by\n"
         "default the one beside this program in a build tree, else the installed one).\n",
         SERVE_DEFAULT_PORT, SERVE_DEFAULT_BIND, SERVE_DEFAULT_BIND);
}

static bool is_file(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The filter: $NBDCRYPT_FILTER, else the build tree's plugins/ beside (or
 * above) this executable, else the installed "nbdcrypt" in nbdkit's
 * filterdir.  Writes into buf (PATH_MAX). */
static const char *serve_find_filter(char *buf, size_t len)
{
  const char *env = getenv("NBDCRYPT_FILTER");
  if (env && *env)
    return env;
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    const char *dir = dirname(exe);
    static const char *const rel[] = {"plugins/" SERVE_FILTER_SO, "../plugins/" SERVE_FILTER_SO};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
      int w = snprintf(buf, len, "%s/%s", dir, rel[i]);
      if (w > 0 && (size_t)w < len && is_file(buf))
        return buf;
    }
  }
  return "nbdcrypt";
}

struct argv_builder {
  char *argv[32 + SERVE_MAX_EXTRA_ARGS];
  char *owned[8]; /* strings to free */
  size_t argc, nowned;
};

static void add(struct argv_builder *b, const char *s)
{
  if (b->argc < sizeof b->argv / sizeof b->argv[0] - 1)
    b->argv[b->argc++] = (char *)s;
  b->argv[b->argc] = NULL;
}

/* Add "prefix" + value as one (owned) argument; false on ENOMEM. */
static bool add_kv(struct argv_builder *b, const char *prefix, const char *value)
{
  char *s = NULL;
  if (asprintf(&s, "%s%s", prefix, value) < 0)
    return false;
  b->owned[b->nowned++] = s;
  add(b, s);
  return true;
}

static void builder_free(struct argv_builder *b)
{
  for (size_t i = 0; i < b->nowned; i++)
    free(b->owned[i]);
}

/* Quote an argument for display when it needs it. */
static void print_arg(FILE *out, const char *s)
{
  if (*s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=+/.,:@%") ==
                strlen(s)) {
    fputs(s, out);
    return;
  }
  fputc('\'', out);
  for (; *s; s++) {
    if (*s == '\'')
      fputs("'\\''", out);
    else
      fputc(*s, out);
  }
  fputc('\'', out);
}

static int serve_run(char **argv, bool foreground, const char *uri)
{
  fflush(stdout);
  if (foreground) {
    /* Replace ourselves: signals (Ctrl-C, systemd) reach nbdkit directly. */
    printf("nbdcrypt: serving on %s (foreground; Ctrl-C stops)\n", uri);
    fflush(stdout);
    execvp(argv[0], argv);
    return cli_fail("cannot run %s: %s", argv[0], strerror(errno));
  }
  pid_t pid = fork();
  if (pid == -1)
    return cli_fail("fork: %s", strerror(errno));
  if (pid == 0) {
    execvp(argv[0], argv);
    fprintf(stderr, "nbdcrypt: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) == -1) {
    if (errno != EINTR)
      return cli_fail("waitpid: %s", strerror(errno));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return cli_fail("nbdkit failed to start (exit status %d)",
                    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  /* nbdkit's parent exits once the daemon listens. */
  printf("%s\n", uri);
  return CLI_OK;
}

int cmd_serve(struct cli *cli, int argc, char **argv)
{
  static const struct option opts[] = {
      {"socket", required_argument, NULL, 'U'},
      {"port", required_argument, NULL, 'p'},
      {"bind", required_argument, NULL, 'i'},
      {"readonly", no_argument, NULL, 'r'},
      {"foreground", no_argument, NULL, 'f'},
      {"pidfile", required_argument, NULL, 'P'},
      {"dry-run", no_argument, NULL, 'n'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *socket_path = NULL, *port = NULL, *bind_addr = NULL, *pidfile = NULL;
  bool readonly = false, foreground = false, dry_run = false;
  int c;

  /* Options may follow TARGET; everything after "--" goes to nbdkit. */
  int nopts = argc, extra = argc;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      nopts = i;
      extra = i + 1;
      break;
    }
  }
  while ((c = getopt_long(nopts, argv, "U:p:i:rfP:nh", opts, NULL)) != -1) {
    switch (c) {
    case 'U':
      socket_path = optarg;
      break;
    case 'p':
      port = optarg;
      break;
    case 'i':
      bind_addr = optarg;
      break;
    case 'r':
      readonly = true;
      break;
    case 'f':
      foreground = true;
      break;
    case 'P':
      pidfile = optarg;
      break;
    case 'n':
      dry_run = true;
      break;
    case 'h':
      serve_help();
      return CLI_OK;
    default:
      return cli_usage("serve", "unknown option");
    }
  }
  if (optind >= nopts)
    return cli_usage("serve", "missing TARGET");
  const char *target = argv[optind++];
  if (optind < nopts)
    return cli_usage("serve", "unexpected argument '%s' (nbdkit arguments go after --)",
                     argv[optind]);
  if (argc - extra > SERVE_MAX_EXTRA_ARGS)
    return cli_usage("serve", "too many nbdkit arguments (at most %d)", SERVE_MAX_EXTRA_ARGS);
  if (socket_path && port)
    return cli_usage("serve", "--socket and --port are exclusive");
  if (socket_path && bind_addr)
    return cli_usage("serve", "--bind applies to --port only");
  if (port) {
    char *end;
    long n = strtol(port, &end, 10);
    if (*end || end == port || n < 1 || n > 65535)
      return cli_usage("serve", "bad port '%s'", port);
  }

  char filter_buf[PATH_MAX];
  const char *filter = serve_find_filter(filter_buf, sizeof filter_buf);
  const char *nbdkit = getenv("NBDKIT");
  if (!nbdkit || !*nbdkit)
    nbdkit = "nbdkit";

  struct argv_builder b = {0};
  int ret = CLI_FAIL;
  char *socket_abs = NULL, *target_abs = NULL, *config_abs = NULL, *uri = NULL;

  add(&b, nbdkit);
  if (foreground)
    add(&b, "-f");
  if (readonly)
    add(&b, "-r");
  if (socket_path) {
    /* nbdkit and clients may run in other directories. */
    if (socket_path[0] == '/')
      socket_abs = strdup(socket_path);
    else {
      char cwd[PATH_MAX];
      if (!getcwd(cwd, sizeof cwd) || asprintf(&socket_abs, "%s/%s", cwd, socket_path) < 0)
        socket_abs = NULL;
    }
    if (!socket_abs) {
      cli_fail("cannot make an absolute path of %s", socket_path);
      goto out;
    }
    add(&b, "-U");
    add(&b, socket_abs);
    if (asprintf(&uri, "nbd+unix:///?socket=%s", socket_abs) < 0)
      uri = NULL;
  } else {
    if (!port)
      port = SERVE_DEFAULT_PORT;
    if (!bind_addr)
      bind_addr = SERVE_DEFAULT_BIND;
    add(&b, "-i");
    add(&b, bind_addr);
    add(&b, "-p");
    add(&b, port);
    if (asprintf(&uri, strchr(bind_addr, ':') ? "nbd://[%s]:%s" : "nbd://%s:%s", bind_addr, port) <
        0)
      uri = NULL;
  }
  if (!uri) {
    cli_fail("out of memory");
    goto out;
  }
  if (pidfile) {
    add(&b, "-P");
    add(&b, pidfile);
  }
  if (!add_kv(&b, "--filter=", filter))
    goto oom;

  if (bdev_is_uri(target)) {
    add(&b, "nbd");
    if (!add_kv(&b, "uri=", target))
      goto oom;
  } else {
    target_abs = realpath(target, NULL);
    if (!target_abs) {
      cli_fail("%s: %s", target, strerror(errno));
      goto out;
    }
    add(&b, "file");
    if (!add_kv(&b, "file=", target_abs))
      goto oom;
  }
  if (cli->config_path) {
    config_abs = realpath(cli->config_path, NULL);
    if (!config_abs) {
      cli_fail("%s: %s", cli->config_path, strerror(errno));
      goto out;
    }
    if (!add_kv(&b, "nbdcrypt-config=", config_abs))
      goto oom;
  }
  for (int i = extra; i < argc; i++)
    add(&b, argv[i]);

  if (dry_run) {
    for (size_t i = 0; i < b.argc; i++) {
      if (i)
        putchar(' ');
      print_arg(stdout, b.argv[i]);
    }
    printf("\n%s\n", uri);
    ret = CLI_OK;
    goto out;
  }
  ret = serve_run(b.argv, foreground, uri);
  goto out;

oom:
  cli_fail("out of memory");
out:
  builder_free(&b);
  free(socket_abs);
  free(target_abs);
  free(config_abs);
  free(uri);
  return ret;
}

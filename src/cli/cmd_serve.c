/* nbdcrypt serve: run nbdkit with the nbdcrypt filter over the file plugin
 * (an image path) or the nbd plugin (an NBD URI), and print the URI clients
 * should use. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli/cli.h"
#include "nbdcrypt/blockdev.h"

#define SERVE_FILTER_SO      "nbdkit-nbdcrypt-filter.so"
#define SERVE_DEFAULT_PORT   "10809"
#define SERVE_DEFAULT_BIND   "127.0.0.1"
#define SERVE_MAX_EXTRA_ARGS 64

static void serve_help(void)
{
  printf(
      "Usage: nbdcrypt serve TARGET [--socket PATH | --port N [--bind ADDR]] [--readonly]\n"
      "                      [--header FILE] [--foreground] [--pidfile FILE] [--dry-run] [--json]\n"
      "                      [--recrypt] [-- NBDKIT-ARGS...]\n\n"
      "Serve the decrypted view of the LUKS2 disk TARGET (an image file, or an NBD URI\n"
      "served through nbdkit's nbd plugin) with nbdkit and the nbdcrypt filter, then\n"
      "print the URI clients should use.  Without --socket or --port: TCP port %s on\n"
      "%s.  serve checks the disk unlocks with one connection once nbdkit listens;\n"
      "if nbdkit does not start or the disk does not unlock, it stops nbdkit and exits\n"
      "1 with the reason.  nbdkit's messages go to this command's stderr, also after\n"
      "it has returned.  Without --foreground nbdkit keeps running in the background.\n\n"
      "  --socket PATH    listen on a Unix domain socket; a socket left there by a\n"
      "                   server that is gone is replaced, one a server listens on\n"
      "                   (or a file that is no socket) is refused\n"
      "  --port N         listen on TCP port N\n"
      "  --bind ADDR      TCP address to listen on (default %s)\n"
      "  --readonly, -r   read-only export\n"
      "  --header FILE    the disk's detached LUKS2 header (TARGET holds the data)\n"
      "  --foreground, -f stay in the foreground as nbdkit's parent until it exits\n"
      "  --pidfile FILE   nbdkit writes its pid to FILE\n"
      "  --dry-run        print the nbdkit command line instead of running it\n"
      "  --json           JSON events on stdout, one per line: ready (uri, socket,\n"
      "                   pid) or error; in the foreground also stopped\n"
      "  --recrypt        deep recrypt (new volume key) while serving\n"
      "                   (nbdcrypt-reencrypt=recrypt; a recrypt left half way is\n"
      "                   resumed without it)\n"
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

/* How long nbdkit may take to listen, and to exit once told to. */
#define SERVE_START_TIMEOUT_MS 60000
#define SERVE_STOP_TIMEOUT_MS  10000
#define SERVE_POLL_MS          50

struct serve_run {
  char **argv;
  bool foreground;
  bool probe;             /* false: the server only takes TLS clients */
  const char *uri;        /* what clients use, and what the probe connects to */
  const char *target;     /* for messages */
  const char *pidfile;    /* nbdkit -P: written once it listens */
  const char *socket_abs; /* its Unix socket, removed if we stop it; may be NULL */
  bool json;              /* --json: events on stdout instead of text */
};

/* A --json event: {"event": NAME, "target": ..., "uri": ..., "socket": ...}. */
static struct json_object *serve_event(const struct serve_run *run, const char *name)
{
  struct json_object *o = json_object_new_object();
  json_object_object_add(o, "event", json_object_new_string(name));
  json_object_object_add(o, "target", cli_json_string(run->target));
  json_object_object_add(o, "uri", cli_json_string(run->uri));
  json_object_object_add(o, "socket", cli_json_string(run->socket_abs));
  return o;
}

static void serve_event_ready(const struct serve_run *run, long pid)
{
  struct json_object *o = serve_event(run, "ready");
  json_object_object_add(o, "pid", json_object_new_int64(pid));
  json_object_object_add(o, "foreground", json_object_new_boolean(run->foreground));
  cli_json_print(o, false);
}

static bool serve_error_printed, serve_ready_sent;

static void serve_event_error(const struct serve_run *run, const char *message)
{
  serve_error_printed = true;
  struct json_object *o = serve_event(run, "error");
  json_object_object_add(o, "message", cli_json_string(message));
  cli_json_print(o, false);
}

static void serve_sleep_ms(long ms)
{
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
    ;
}

/* The exit status of a child as the shell shows it. */
static int serve_status(int status)
{
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* nbdkit writes its pidfile after binding its sockets and before taking
 * connections, in the background and with -f alike: the file holding our
 * child's pid means it listens.  A stale file of an earlier server holds
 * another pid and is not mistaken for ours.  1 listening, 0 exited (status
 * in *status), -1 timeout. */
static int serve_wait_listening(const struct serve_run *run, pid_t pid, int *status)
{
  for (long waited = 0; waited < SERVE_START_TIMEOUT_MS; waited += SERVE_POLL_MS) {
    pid_t w = waitpid(pid, status, WNOHANG);
    if (w == pid)
      return 0;
    FILE *f = fopen(run->pidfile, "re");
    if (f) {
      long written = 0;
      char nl = 0;
      bool whole = fscanf(f, "%ld%c", &written, &nl) == 2 && nl == '\n';
      fclose(f);
      if (whole && written == (long)pid)
        return 1;
    }
    serve_sleep_ms(SERVE_POLL_MS);
  }
  return -1;
}

/* The socket and pidfile a server of ours that has listened leaves behind
 * (nbdkit removes neither), so a failed serve leaves nothing that a later
 * one trips over. */
static void serve_remove_leftovers(const struct serve_run *run)
{
  if (run->socket_abs)
    unlink(run->socket_abs);
  unlink(run->pidfile);
}

/* Stop the nbdkit we started: SIGTERM, then SIGKILL if it lingers. */
static void serve_stop(const struct serve_run *run, pid_t pid, bool listening)
{
  int status;
  kill(pid, SIGTERM);
  for (long waited = 0; waitpid(pid, &status, WNOHANG) != pid; waited += SERVE_POLL_MS) {
    if (waited >= SERVE_STOP_TIMEOUT_MS) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    serve_sleep_ms(SERVE_POLL_MS);
  }
  if (listening)
    serve_remove_leftovers(run);
}

/* One connection, as a client makes it: the filter unlocks the disk when a
 * client first opens the export, so this is where a disk this host cannot
 * unlock (a KEK missing, the KMS down, not a LUKS2 disk at all) shows. */
static int serve_probe(const struct serve_run *run, struct nbdc_error *err)
{
  struct bdev *dev = NULL;
  int r = bdev_open(run->uri, BDEV_RDONLY, 0, &dev, err);
  bdev_close(dev);
  return r;
}

static pid_t serve_child;

static void serve_forward_signal(int sig)
{
  if (serve_child > 0)
    kill(serve_child, sig);
}

/* Stay nbdkit's parent until it exits, passing on the signals that stop it
 * (Ctrl-C reaches both of us; systemd's SIGTERM may reach only us). */
static int serve_wait_child(const struct serve_run *run, pid_t pid)
{
  struct sigaction sa = {.sa_handler = serve_forward_signal};
  sigemptyset(&sa.sa_mask);
  serve_child = pid;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  int status;
  while (waitpid(pid, &status, 0) == -1) {
    if (errno != EINTR)
      return cli_fail("waitpid: %s", strerror(errno));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return CLI_OK;
  if (WIFSIGNALED(status) &&
      (WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGINT || WTERMSIG(status) == SIGHUP))
    return CLI_OK;
  return cli_fail("nbdkit serving %s exited with status %d", run->target, serve_status(status));
}

/* Start nbdkit -f as our child, wait until it listens, make the probe
 * connection, then stay its parent until it exits.  report_fd >= 0 (in the
 * background): one byte 'R' on it once the disk is served, so that the
 * process the user started can print the URI and return. */
static int serve_supervise(const struct serve_run *run, int report_fd)
{
  pid_t pid = fork();
  if (pid == -1)
    return cli_fail("fork: %s", strerror(errno));
  if (pid == 0) {
    execvp(run->argv[0], run->argv);
    fprintf(stderr, "nbdcrypt: cannot run %s: %s\n", run->argv[0], strerror(errno));
    _exit(127);
  }

  int status = 0;
  int listening = serve_wait_listening(run, pid, &status);
  if (listening == 0)
    return cli_fail("cannot serve %s: nbdkit exited with status %d before listening (its "
                    "messages are above)",
                    run->target, serve_status(status));
  if (listening < 0) {
    serve_stop(run, pid, false);
    return cli_fail("cannot serve %s: nbdkit (pid %ld) did not listen within %d s; stopped it",
                    run->target, (long)pid, SERVE_START_TIMEOUT_MS / 1000);
  }
  struct nbdc_error err = {0};
  if (run->probe && serve_probe(run, &err) < 0) {
    serve_stop(run, pid, true);
    return cli_fail("cannot serve %s: the first connection failed (%s); the reason is in "
                    "nbdkit's messages above; stopped nbdkit (pid %ld)",
                    run->target, err.msg, (long)pid);
  }
  if (waitpid(pid, &status, WNOHANG) == pid) {
    serve_remove_leftovers(run);
    return cli_fail("cannot serve %s: nbdkit exited with status %d after the first connection",
                    run->target, serve_status(status));
  }
  if (report_fd >= 0) {
    char ready[32];
    int n = snprintf(ready, sizeof ready, "R%ld\n", (long)pid);
    while (write(report_fd, ready, (size_t)n) == -1 && errno == EINTR)
      ;
    close(report_fd);
    serve_ready_sent = true;
  } else if (run->json) {
    serve_event_ready(run, (long)pid);
  } else {
    printf("nbdcrypt: serving %s on %s (foreground; Ctrl-C stops)\n", run->target, run->uri);
    fflush(stdout);
  }
  int r = serve_wait_child(run, pid);
  if (report_fd < 0 && run->json && r == CLI_OK) {
    struct json_object *o = serve_event(run, "stopped");
    json_object_object_add(o, "pid", json_object_new_int64((long)pid));
    cli_json_print(o, false);
  }
  return r;
}

/* nbdkit runs with -f as a child of ours, so that its messages reach our
 * stderr: in its own background mode nbdkit sends stderr to /dev/null and
 * the reason a disk does not unlock would be lost.  nbdkit also asks for
 * SIGTERM when its parent exits (PR_SET_PDEATHSIG), so in the background its
 * parent is a small supervising process of ours, in a session of its own,
 * that lives as long as nbdkit does: stopping either stops both. */
static int serve_run(const struct serve_run *run)
{
  fflush(stdout);
  fflush(stderr);
  if (run->foreground)
    return serve_supervise(run, -1);

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    return cli_fail("pipe: %s", strerror(errno));
  pid_t pid = fork();
  if (pid == -1) {
    close(fds[0]);
    close(fds[1]);
    return cli_fail("fork: %s", strerror(errno));
  }
  if (pid == 0) {
    close(fds[0]);
    setsid();
    /* Nothing of ours keeps the caller's stdout (a $(...)) open. */
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd >= 0) {
      dup2(null_fd, STDIN_FILENO);
      dup2(null_fd, STDOUT_FILENO);
      close(null_fd);
    }
    /* A failure's messages go to the user's process too (for --json). */
    cli_errors_collect();
    int r = serve_supervise(run, fds[1]);
    if (r != CLI_OK && !serve_ready_sent) {
      const char *msg = cli_errors_text();
      while (write(fds[1], "E", 1) == -1 && errno == EINTR)
        ;
      for (size_t off = 0, len = strlen(msg); off < len;) {
        ssize_t w = write(fds[1], msg + off, len - off);
        if (w <= 0 && errno != EINTR)
          break;
        off += w > 0 ? (size_t)w : 0;
      }
    }
    _exit(r);
  }
  close(fds[1]);
  /* "R<nbdkit pid>\n" once the disk is served, else "E<messages>" and EOF. */
  char report[4 * NBDC_ERROR_MAX + 64];
  size_t got = 0;
  for (;;) {
    ssize_t n = read(fds[0], report + got, sizeof report - 1 - got);
    if (n == -1 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += (size_t)n;
    if (report[0] == 'R' && memchr(report, '\n', got))
      break;
    if (got == sizeof report - 1)
      break;
  }
  report[got] = '\0';
  close(fds[0]);
  if (got < 2 || report[0] != 'R') {
    /* The supervisor has said why on stderr and exits; collect it. */
    while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
      ;
    if (run->json)
      serve_event_error(run, got > 1 && report[0] == 'E' ? report + 1 : "nbdkit did not start");
    return CLI_FAIL;
  }
  if (run->json)
    serve_event_ready(run, strtol(report + 1, NULL, 10));
  else
    printf("%s\n", run->uri);
  return CLI_OK;
}

/* The socket path nbdkit is to listen on: nothing there, or a socket no
 * server listens on any more (connect() refused: its server is gone), which
 * is removed.  A socket a server accepts connections on, or anything that
 * is not a socket, is refused. */
static int serve_claim_socket(const char *path)
{
  struct stat st;
  if (lstat(path, &st) != 0)
    return errno == ENOENT ? CLI_OK
                           : cli_fail("cannot examine socket %s: %s", path, strerror(errno));
  if (!S_ISSOCK(st.st_mode))
    return cli_fail("cannot serve on %s: it exists and is not a socket; refusing to replace it",
                    path);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof sa.sun_path)
    return cli_fail("cannot serve on %s: the path is longer than %zu bytes", path,
                    sizeof sa.sun_path - 1);
  memcpy(sa.sun_path, path, strlen(path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return cli_fail("socket: %s", strerror(errno));
  int r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
  int e = errno;
  if (r == 0) {
    /* Take an NBD server's greeting (at most 1 s) before hanging up, so that
     * it logs no failed handshake for this look. */
    char greeting[18];
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    for (size_t got = 0; got < sizeof greeting && poll(&pfd, 1, 1000) == 1;) {
      ssize_t n = read(fd, greeting + got, sizeof greeting - got);
      if (n <= 0)
        break;
      got += (size_t)n;
    }
  }
  close(fd);
  if (r == 0)
    return cli_fail("cannot serve on %s: a server is listening on that socket; stop it first or "
                    "choose another --socket",
                    path);
  if (e != ECONNREFUSED)
    return cli_fail("cannot serve on %s: cannot tell whether a server listens on it: %s", path,
                    strerror(e));
  if (unlink(path) != 0)
    return cli_fail("cannot remove the stale socket %s: %s", path, strerror(errno));
  fprintf(stderr, "nbdcrypt: removed the stale socket %s (no server listens on it)\n", path);
  return CLI_OK;
}

/* True when the nbdkit arguments make the server refuse clients without TLS:
 * then the probe, a plain connection, cannot be made. */
static bool serve_tls_only(int argc, char **argv, int extra)
{
  for (int i = extra; i < argc; i++) {
    if (strcmp(argv[i], "--tls=require") == 0)
      return true;
    if (strcmp(argv[i], "--tls") == 0 && i + 1 < argc && strcmp(argv[i + 1], "require") == 0)
      return true;
  }
  return false;
}

int cmd_serve(struct cli *cli, int argc, char **argv)
{
  static const struct option opts[] = {
      {"socket", required_argument, NULL, 'U'},  {"port", required_argument, NULL, 'p'},
      {"bind", required_argument, NULL, 'i'},    {"readonly", no_argument, NULL, 'r'},
      {"header", required_argument, NULL, 'H'},  {"foreground", no_argument, NULL, 'f'},
      {"pidfile", required_argument, NULL, 'P'}, {"dry-run", no_argument, NULL, 'n'},
      {"json", no_argument, NULL, 'j'},          {"recrypt", no_argument, NULL, 'R'},
      {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
  };
  const char *socket_path = NULL, *port = NULL, *bind_addr = NULL, *pidfile = NULL;
  const char *header = NULL;
  bool readonly = false, foreground = false, dry_run = false, json = false, recrypt = false;
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
  while ((c = getopt_long(nopts, argv, "U:p:i:rfP:nRh", opts, NULL)) != -1) {
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
    case 'H':
      header = optarg;
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
    case 'j':
      json = true;
      break;
    case 'R':
      recrypt = true;
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
  if (recrypt && readonly)
    return cli_usage("serve", "--recrypt rewrites the disk: not with --readonly");
  if (socket_path && bind_addr)
    return cli_usage("serve", "--bind applies to --port only");
  if (port) {
    char *end;
    long n = strtol(port, &end, 10);
    if (*end || end == port || n < 1 || n > 65535)
      return cli_usage("serve", "bad port '%s'", port);
  }

  if (json)
    cli_errors_collect();
  char filter_buf[PATH_MAX];
  const char *filter = serve_find_filter(filter_buf, sizeof filter_buf);
  const char *nbdkit = getenv("NBDKIT");
  if (!nbdkit || !*nbdkit)
    nbdkit = "nbdkit";

  struct argv_builder b = {0};
  int ret = CLI_FAIL;
  char *socket_abs = NULL, *target_abs = NULL, *config_abs = NULL, *header_abs = NULL, *uri = NULL;
  char *tmp_dir = NULL, *tmp_pidfile = NULL;

  add(&b, nbdkit);
  /* serve watches nbdkit start (serve_run): it runs as our child, logs to
   * our stderr and writes a pidfile.  --dry-run shows the command to run by
   * hand, without those. */
  if (foreground || !dry_run)
    add(&b, "-f");
  if (!dry_run)
    add(&b, "--log=stderr");
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
  if (!pidfile && !dry_run) {
    const char *tmp = getenv("TMPDIR");
    if (asprintf(&tmp_dir, "%s/nbdcrypt-serve.XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0)
      tmp_dir = NULL;
    if (!tmp_dir || !mkdtemp(tmp_dir) || asprintf(&tmp_pidfile, "%s/nbdkit.pid", tmp_dir) < 0) {
      cli_fail("cannot make a temporary directory for nbdkit's pidfile: %s", strerror(errno));
      free(tmp_dir);
      tmp_dir = NULL;
      goto out;
    }
    pidfile = tmp_pidfile;
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
    /* Read-only servers of one image coexist (the filter cannot see -r). */
    if (readonly)
      add(&b, "nbdcrypt-lock=readonly");
  }
  if (header) {
    if (bdev_is_uri(header)) {
      cli_fail("--header must be a file, not %s", header);
      goto out;
    }
    header_abs = realpath(header, NULL);
    if (!header_abs) {
      cli_fail("header %s: %s", header, strerror(errno));
      goto out;
    }
    if (!add_kv(&b, "nbdcrypt-header=", header_abs))
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
  if (recrypt)
    add(&b, "nbdcrypt-reencrypt=recrypt");
  for (int i = extra; i < argc; i++)
    add(&b, argv[i]);

  struct serve_run run = {
      .argv = b.argv,
      .foreground = foreground,
      .probe = !serve_tls_only(argc, argv, extra),
      .uri = uri,
      .target = target,
      .pidfile = pidfile,
      .socket_abs = socket_abs,
      .json = json,
  };
  if (dry_run && json) {
    struct json_object *o = serve_event(&run, "dry-run"), *cmd = json_object_new_array();
    for (size_t i = 0; i < b.argc; i++)
      json_object_array_add(cmd, cli_json_string(b.argv[i]));
    json_object_object_add(o, "command", cmd);
    cli_json_print(o, false);
    ret = CLI_OK;
    goto out;
  }
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
  if (socket_abs && serve_claim_socket(socket_abs) != CLI_OK)
    goto out;
  if (!run.probe)
    fprintf(stderr, "nbdcrypt: not checking that %s unlocks: the server takes TLS clients only\n",
            target);
  ret = serve_run(&run);
  goto out;

oom:
  cli_fail("out of memory");
out:
  if (json && ret != CLI_OK && !serve_error_printed) {
    struct serve_run r = {.target = target, .uri = uri, .socket_abs = socket_abs};
    serve_event_error(&r, cli_errors_text());
  }
  builder_free(&b);
  free(socket_abs);
  free(target_abs);
  free(config_abs);
  free(header_abs);
  free(uri);
  if (tmp_pidfile) {
    unlink(tmp_pidfile);
    free(tmp_pidfile);
  }
  if (tmp_dir) {
    rmdir(tmp_dir);
    free(tmp_dir);
  }
  return ret;
}

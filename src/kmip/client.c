/* KMIP client handle: server list with failover, one reused connection,
 * and the round trip shared by every operation (src/kmip/ops.c). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "nbdcrypt/crypto.h"
#include "nbdcrypt/kmip.h"
#include "kmip/client.h"
#include "kmip/internal.h"

#define SERVER_MAX 300

struct kmip_client {
  pthread_mutex_t lock;
  char (*servers)[SERVER_MAX];
  size_t server_count;
  SSL_CTX *ctx;
  int timeout_ms;
  struct kmip_version max_version; /* highest we offer */
  pthread_mutex_t negotiation;     /* held while Discover Versions runs */
  bool negotiated;
  struct kmip_version version; /* of our requests, once negotiated */
  size_t max_message;
  bool trace;
  char *operation_policy; /* or NULL */
  struct kmip_conn *conn; /* open connection, to servers[conn_server] */
  size_t conn_server;
  char last_server[SERVER_MAX];
};

int kmip_client_new(const struct kmip_client_options *opts, struct kmip_client **out,
                    struct nbdc_error *err)
{
  *out = NULL;
  if (!opts || !opts->servers || opts->server_count == 0)
    return nbdc_error_set(err, EINVAL, "kmip: no server given");
  if (opts->timeout_ms < 0 || opts->timeout_ms > 600000)
    return nbdc_error_set(err, EINVAL, "kmip: timeout %d ms out of range 1..600000",
                          opts->timeout_ms);
  struct kmip_version max = opts->max_version;
  if (max.major == 0 && max.minor == 0)
    max = (struct kmip_version){1, opts->protocol_minor ? opts->protocol_minor
                                                        : KMIP_VERSION_MAX_MINOR};
  if (max.major != 1 || max.minor < 0 || max.minor > KMIP_VERSION_MAX_MINOR)
    return nbdc_error_set(err, EINVAL, "kmip: protocol %d.%d not supported (1.0 to 1.%d)",
                          max.major, max.minor, KMIP_VERSION_MAX_MINOR);
  for (size_t i = 0; i < opts->server_count; i++) {
    char host[256], port[8];
    if (!opts->servers[i])
      return nbdc_error_set(err, EINVAL, "kmip: server %zu is missing", i);
    if (strlen(opts->servers[i]) >= SERVER_MAX)
      return nbdc_error_set(err, ENAMETOOLONG, "kmip: server %zu is too long", i);
    int r = kmip_split_server(opts->servers[i], host, sizeof host, port, sizeof port, err);
    if (r < 0)
      return r;
  }
  struct kmip_client *c = calloc(1, sizeof *c);
  if (!c)
    return nbdc_error_set(err, ENOMEM, "out of memory");
  c->servers = calloc(opts->server_count, sizeof *c->servers);
  if (!c->servers) {
    free(c);
    return nbdc_error_set(err, ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < opts->server_count; i++)
    snprintf(c->servers[i], SERVER_MAX, "%s", opts->servers[i]);
  c->server_count = opts->server_count;
  if (opts->operation_policy && !(c->operation_policy = strdup(opts->operation_policy))) {
    free(c->servers);
    free(c);
    return nbdc_error_set(err, ENOMEM, "out of memory");
  }
  c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 5000;
  c->max_version = max;
  c->max_message = opts->max_message_size ? opts->max_message_size : KMIP_MAX_MESSAGE_SIZE;
  const char *env = getenv("NBDCRYPT_KMIP_TRACE");
  c->trace = opts->trace || (env && strcmp(env, "1") == 0);
  int r = kmip_tls_ctx_new(opts->ca, opts->cert, opts->key, &c->ctx, err);
  if (r < 0) {
    free(c->operation_policy);
    free(c->servers);
    free(c);
    return r;
  }
  pthread_mutex_init(&c->lock, NULL);
  pthread_mutex_init(&c->negotiation, NULL);
  *out = c;
  return 0;
}

void kmip_client_free(struct kmip_client *c)
{
  if (!c)
    return;
  kmip_conn_close(c->conn);
  kmip_tls_ctx_free(c->ctx);
  pthread_mutex_destroy(&c->lock);
  pthread_mutex_destroy(&c->negotiation);
  free(c->operation_policy);
  free(c->servers);
  free(c);
}

const char *kmip_client_server(const struct kmip_client *c)
{
  return c->last_server;
}

struct kmip_version kmip_client_max_version(const struct kmip_client *c)
{
  return c->max_version;
}

bool kmip_client_version(struct kmip_client *c, struct kmip_version *version)
{
  pthread_mutex_lock(&c->lock);
  bool known = c->negotiated;
  if (known)
    *version = c->version;
  pthread_mutex_unlock(&c->lock);
  return known;
}

void kmip_client_set_version(struct kmip_client *c, struct kmip_version version)
{
  pthread_mutex_lock(&c->lock);
  c->version = version;
  c->negotiated = true;
  pthread_mutex_unlock(&c->lock);
}

void kmip_client_negotiation_lock(struct kmip_client *c)
{
  pthread_mutex_lock(&c->negotiation);
}

void kmip_client_negotiation_unlock(struct kmip_client *c)
{
  pthread_mutex_unlock(&c->negotiation);
}

const char *kmip_client_operation_policy(const struct kmip_client *c)
{
  return c->operation_policy;
}

size_t kmip_client_max_message(const struct kmip_client *c)
{
  return c->max_message;
}

void kmip_call_free(struct kmip_call *call)
{
  kmip_tree_free(call->tree);
  secmem_free(call->buf, call->len);
  memset(call, 0, sizeof *call);
}

int kmip_call_parse(struct kmip_call *call, size_t max, struct nbdc_error *err)
{
  int r = kmip_decode(call->buf, call->len, max, &call->tree, err);
  if (r == 0)
    r = kmip_msg_parse_response(call->tree, &call->resp, err);
  return r;
}

static void trace_message(const struct kmip_client *c, const char *dir, const char *server,
                          const uint8_t *buf, size_t len)
{
  struct kmip_tree *tree;
  struct nbdc_error derr = {0};
  flockfile(stderr);
  fprintf(stderr, "kmip: %s %s (%zu bytes)\n", dir, server, len);
  if (kmip_decode(buf, len, c->max_message, &tree, &derr) == 0) {
    kmip_tree_dump(tree, stderr, "kmip:   ");
    kmip_tree_free(tree);
  } else {
    fprintf(stderr, "kmip:   undecodable: %s\n", derr.msg);
  }
  funlockfile(stderr);
}

static void drop_conn(struct kmip_client *c)
{
  kmip_conn_close(c->conn);
  c->conn = NULL;
}

/* One attempt on server i: connect if needed, send, receive, decode, parse.
 * A reused connection that the server closed while idle is re-established
 * once, provided not a byte of answer came back (so nothing was processed). */
static int try_server(struct kmip_client *c, size_t i, const struct kmip_enc *req,
                      struct kmip_call *call, struct nbdc_error *err)
{
  char host[256], port[8];
  int r = kmip_split_server(c->servers[i], host, sizeof host, port, sizeof port, err);
  if (r < 0)
    return r;
  bool reused = false;
  if (c->conn && (c->conn_server != i || !kmip_conn_alive(c->conn)))
    drop_conn(c);
  if (c->conn)
    reused = true;
  for (int attempt = 0; attempt < 2; attempt++) {
    if (!c->conn) {
      r = kmip_conn_open(c->ctx, host, port, c->timeout_ms, &c->conn, err);
      if (r < 0)
        return r;
      c->conn_server = i;
    }
    if (c->trace)
      trace_message(c, "request to", c->servers[i], req->data, req->len);
    bool got_bytes = false;
    r = kmip_conn_roundtrip(c->conn, req->data, req->len, c->max_message, c->timeout_ms, &call->buf,
                            &call->len, &got_bytes, err);
    if (r == 0)
      break;
    drop_conn(c);
    if (!(reused && !got_bytes && r == -ECONNRESET))
      return r;
    reused = false; /* reconnect once */
  }
  if (c->trace)
    trace_message(c, "response from", c->servers[i], call->buf, call->len);
  r = kmip_call_parse(call, c->max_message, err);
  if (r < 0) {
    drop_conn(c); /* the stream can no longer be trusted */
    kmip_call_free(call);
  }
  return r;
}

int kmip_client_call(struct kmip_client *c, const struct kmip_expect *want,
                     const struct kmip_enc *req, struct kmip_call *call, struct nbdc_error *err)
{
  memset(call, 0, sizeof *call);
  int r = kmip_enc_finish(req, err);
  if (r < 0)
    return r;

  /* A library must not change the process's SIGPIPE disposition: block it in
   * this thread while we write, and swallow one we caused. */
  sigset_t pipe_set, old_set, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  sigpending(&pending);
  bool was_pending = sigismember(&pending, SIGPIPE);

  pthread_mutex_lock(&c->lock);
  char summary[NBDC_ERROR_MAX] = "";
  size_t len = 0;
  int first_code = 0;
  bool same_code = true;
  size_t order[64];
  size_t n = 0;
  if (c->conn)
    order[n++] = c->conn_server;
  for (size_t i = 0; i < c->server_count && n < sizeof order / sizeof order[0]; i++)
    if (!(c->conn && i == c->conn_server))
      order[n++] = i;
  r = -EHOSTUNREACH;
  for (size_t k = 0; k < n; k++) {
    struct nbdc_error one = {0};
    size_t i = order[k];
    r = try_server(c, i, req, call, &one);
    if (r == 0) {
      snprintf(c->last_server, sizeof c->last_server, "%s", c->servers[i]);
      break;
    }
    if (first_code == 0)
      first_code = one.code;
    else if (one.code != first_code)
      same_code = false;
    int w = snprintf(summary + len, sizeof summary - len, "%s%s: %s", len ? "; " : "",
                     c->servers[i], one.msg);
    if (w > 0)
      len = len + (size_t)w < sizeof summary ? len + (size_t)w : sizeof summary - 1;
  }
  if (r < 0) {
    c->last_server[0] = '\0';
    int code = same_code && first_code ? first_code : EHOSTUNREACH;
    if (c->server_count == 1)
      r = nbdc_error_set(err, code, "kms %s", summary);
    else
      r = nbdc_error_set(err, code, "all KMIP servers failed: %s", summary);
  }
  char server[SERVER_MAX];
  memcpy(server, c->last_server, sizeof server);
  pthread_mutex_unlock(&c->lock);

  if (!was_pending) {
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, NULL, &zero) > 0)
      ;
  }
  pthread_sigmask(SIG_SETMASK, &old_set, NULL);
  if (r < 0)
    return r;

  /* one request, one answer, and it must be a success that answers it */
  r = kmip_msg_check(&call->resp, want, server, err);
  if (r < 0)
    kmip_call_free(call);
  return r;
}

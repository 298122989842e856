/* TLS transport to one KMIP server: non-blocking TCP connect, OpenSSL
 * handshake with peer verification, and one request/response round trip,
 * every step bounded by a deadline and driven by poll. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "nbdcrypt/crypto.h"
#include "nbdcrypt/kmip.h"
#include "kmip/internal.h"

/* PyKMIP speaks TLS 1.2 only and, left to choose, picks a suite without
 * forward secrecy; ECDHE-RSA-AES256-SHA384 is what it does best. */
#define KMIP_CIPHERS "ECDHE+AESGCM:ECDHE+AES256:ECDHE+AES128:!aNULL:!MD5:!RC4"

struct kmip_conn {
  int fd;
  SSL *ssl;
};

/* The first queued OpenSSL error as text, queue cleared. */
static const char *ossl_text(char *buf, size_t size)
{
  unsigned long e = ERR_peek_last_error();
  if (!e) {
    snprintf(buf, size, "no detail from openssl");
  } else {
    ERR_error_string_n(e, buf, size);
  }
  ERR_clear_error();
  return buf;
}

/* No passphrase prompt on a terminal for an encrypted key: refuse it. */
static int no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
  (void)buf;
  (void)size;
  (void)rwflag;
  (void)userdata;
  return -1;
}

/* The client key is the host's identity on the KMS: like ssh, refuse one
 * that group or others may read or change, judged on the file we opened. */
static int kmip_tls_use_key(SSL_CTX *ctx, const char *key, struct nbdc_error *err)
{
  char detail[256];
  int fd = open(key, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return nbdc_error_set(err, errno == ENOENT ? ENOENT : errno,
                          "kmip: cannot open client key %s: %s", key, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) < 0) {
    int e = errno;
    close(fd);
    return nbdc_error_set(err, e, "kmip: cannot examine client key %s: %s", key, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return nbdc_error_set(err, EPERM, "kmip: client key %s is not a regular file; refusing it",
                          key);
  }
  if (st.st_mode & 077) {
    close(fd);
    return nbdc_error_set(err, EPERM,
                          "kmip: client key %s has mode %04o: group or others can read or change "
                          "it; refusing it (fix with: chmod 600 %s)",
                          key, (unsigned)(st.st_mode & 07777), key);
  }
  /* read into locked memory, wiped afterwards: stdio would leave the PEM
   * text in a heap buffer */
  enum { KEY_FILE_MAX = 64 * 1024 };
  if (st.st_size > KEY_FILE_MAX) {
    close(fd);
    return nbdc_error_set(err, EFBIG, "kmip: client key %s is larger than %d bytes", key,
                          KEY_FILE_MAX);
  }
  size_t size = (size_t)st.st_size;
  uint8_t *pem = secmem_alloc(size + 1);
  if (!pem) {
    close(fd);
    return nbdc_error_set(err, ENOMEM, "kmip: no secure memory for client key %s", key);
  }
  size_t len = 0;
  while (len < size) {
    ssize_t n = read(fd, pem + len, size - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  int read_errno = errno;
  close(fd);
  if (len < size) {
    secmem_free(pem, size + 1);
    return nbdc_error_set(err, EIO, "kmip: cannot read client key %s: %s", key,
                          strerror(read_errno));
  }
  ERR_clear_error();
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
  BIO_free(bio);
  secmem_free(pem, size + 1);
  if (!pkey)
    return nbdc_error_set(err, EINVAL,
                          "kmip: cannot load client key %s (PEM, without a passphrase): %s", key,
                          ossl_text(detail, sizeof detail));
  int ok = SSL_CTX_use_PrivateKey(ctx, pkey);
  EVP_PKEY_free(pkey);
  if (ok != 1)
    return nbdc_error_set(err, EINVAL, "kmip: cannot use client key %s: %s", key,
                          ossl_text(detail, sizeof detail));
  return 0;
}

/* A CA or certificate file that cannot be opened: the system's reason
 * ("No such file or directory"), not OpenSSL's "system lib". */
static int kmip_tls_readable(const char *what, const char *path, struct nbdc_error *err)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return nbdc_error_set(err, errno, "kmip: cannot open %s %s: %s", what, path, strerror(errno));
  close(fd);
  return 0;
}

int kmip_tls_ctx_new(const char *ca, const char *cert, const char *key, SSL_CTX **out,
                     struct nbdc_error *err)
{
  char detail[256];
  *out = NULL;
  if (!ca || !*ca)
    return nbdc_error_set(err, EINVAL, "kmip: no CA file to verify the servers with");
  if (!cert || !*cert || !key || !*key)
    return nbdc_error_set(err, EINVAL, "kmip: a client certificate and key are required");
  int rr = kmip_tls_readable("CA file", ca, err);
  if (rr < 0 || (rr = kmip_tls_readable("client certificate", cert, err)) < 0)
    return rr;
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx)
    return nbdc_error_set(err, ENOMEM, "kmip: cannot create a TLS context: %s",
                          ossl_text(detail, sizeof detail));
  if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
      !SSL_CTX_set_cipher_list(ctx, KMIP_CIPHERS)) {
    SSL_CTX_free(ctx);
    return nbdc_error_set(err, EIO, "kmip: cannot configure TLS: %s",
                          ossl_text(detail, sizeof detail));
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  /* Responses carry keys: OpenSSL wipes its copy of each decrypted record
   * once we have read it. */
  SSL_CTX_set_options(ctx, SSL_OP_CLEANSE_PLAINTEXT);
  if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
    SSL_CTX_free(ctx);
    return nbdc_error_set(err, EINVAL, "kmip: cannot load CA file %s: %s", ca,
                          ossl_text(detail, sizeof detail));
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
    SSL_CTX_free(ctx);
    return nbdc_error_set(err, EINVAL, "kmip: cannot load client certificate %s: %s", cert,
                          ossl_text(detail, sizeof detail));
  }
  int r = kmip_tls_use_key(ctx, key, err);
  if (r < 0) {
    SSL_CTX_free(ctx);
    return r;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    SSL_CTX_free(ctx);
    return nbdc_error_set(err, EINVAL, "kmip: client key %s does not match certificate %s", key,
                          cert);
  }
  *out = ctx;
  return 0;
}

void kmip_tls_ctx_free(SSL_CTX *ctx)
{
  SSL_CTX_free(ctx);
}

int kmip_split_server(const char *server, char *host, size_t host_size, char *port,
                      size_t port_size, struct nbdc_error *err)
{
  const char *colon;
  const char *h = server;
  size_t hlen;
  if (server[0] == '[') {
    const char *close = strchr(server, ']');
    if (!close || close[1] != ':')
      return nbdc_error_set(err, EINVAL, "kmip server \"%s\" is not [address]:port", server);
    h = server + 1;
    hlen = (size_t)(close - h);
    colon = close + 1;
  } else {
    colon = strrchr(server, ':');
    if (!colon || strchr(server, ':') != colon)
      return nbdc_error_set(err, EINVAL, "kmip server \"%s\" is not host:port", server);
    hlen = (size_t)(colon - server);
  }
  const char *p = colon + 1;
  char *end;
  errno = 0;
  long portnum = strtol(p, &end, 10);
  if (hlen == 0 || !*p || *end || errno || portnum < 1 || portnum > 65535)
    return nbdc_error_set(err, EINVAL, "kmip server \"%s\": bad host or port", server);
  if (hlen >= host_size || strlen(p) >= port_size)
    return nbdc_error_set(err, ENAMETOOLONG, "kmip server \"%s\" is too long", server);
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  snprintf(port, port_size, "%ld", portnum);
  return 0;
}

static int64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for events on fd until deadline: 1 ready, 0 timed out, -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0)
      return 0;
    struct pollfd pfd = {.fd = fd, .events = events};
    int r = poll(&pfd, 1, (int)(left > 60000 ? 60000 : left));
    if (r > 0)
      return 1;
    if (r < 0 && errno != EINTR)
      return -errno;
  }
}

static int tcp_connect(const char *host, const char *port, int64_t deadline, int timeout_ms,
                       int *fd_out, struct nbdc_error *err)
{
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  struct addrinfo *res = NULL;
  int gai = getaddrinfo(host, port, &hints, &res);
  if (gai != 0)
    return nbdc_error_set(err, EHOSTUNREACH, "cannot resolve host: %s", gai_strerror(gai));
  int last = ECONNREFUSED;
  bool timed_out = false;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last = errno;
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      freeaddrinfo(res);
      *fd_out = fd;
      return 0;
    }
    if (errno == EINPROGRESS) {
      int w = wait_fd(fd, POLLOUT, deadline);
      if (w == 1) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (soerr == 0) {
          freeaddrinfo(res);
          *fd_out = fd;
          return 0;
        }
        last = soerr;
      } else if (w == 0) {
        timed_out = true;
        close(fd);
        break;
      } else {
        last = -w;
      }
    } else {
      last = errno;
    }
    close(fd);
  }
  freeaddrinfo(res);
  if (timed_out)
    return nbdc_error_set(err, ETIMEDOUT, "timed out after %d ms (connect)", timeout_ms);
  if (last == ECONNREFUSED)
    return nbdc_error_set(err, ECONNREFUSED, "connection refused");
  return nbdc_error_set(err, last, "cannot connect: %s", strerror(last));
}

/* Drive an SSL call that wants I/O: 1 call again, 0 done, -errno with err. */
static int ssl_want(struct kmip_conn *conn, int r, int64_t deadline, int timeout_ms,
                    const char *step, struct nbdc_error *err)
{
  char detail[256];
  int e = SSL_get_error(conn->ssl, r);
  int w;
  switch (e) {
  case SSL_ERROR_NONE:
    return 0;
  case SSL_ERROR_WANT_READ:
    w = wait_fd(conn->fd, POLLIN, deadline);
    break;
  case SSL_ERROR_WANT_WRITE:
    w = wait_fd(conn->fd, POLLOUT, deadline);
    break;
  case SSL_ERROR_ZERO_RETURN:
    return nbdc_error_set(err, ECONNRESET, "connection closed by the server (%s)", step);
  case SSL_ERROR_SYSCALL: {
    int saved = errno;
    ERR_clear_error();
    if (saved == 0 || saved == EPIPE)
      return nbdc_error_set(err, ECONNRESET, "connection closed by the server (%s)", step);
    if (saved == ECONNRESET)
      return nbdc_error_set(err, ECONNRESET, "connection reset (%s)", step);
    return nbdc_error_set(err, saved, "%s: %s", step, strerror(saved));
  }
  default: {
    long v = SSL_get_verify_result(conn->ssl);
    if (v != X509_V_OK)
      return nbdc_error_set(err, EPROTO, "tls %s failed: server certificate not trusted (%s)", step,
                            X509_verify_cert_error_string(v));
    return nbdc_error_set(err, EPROTO, "tls %s failed: %s", step, ossl_text(detail, sizeof detail));
  }
  }
  if (w == 0)
    return nbdc_error_set(err, ETIMEDOUT, "timed out after %d ms (%s)", timeout_ms, step);
  if (w < 0)
    return nbdc_error_set(err, -w, "%s: %s", step, strerror(-w));
  return 1;
}

int kmip_conn_open(SSL_CTX *ctx, const char *host, const char *port, int timeout_ms,
                   struct kmip_conn **out, struct nbdc_error *err)
{
  char detail[256];
  int64_t deadline = now_ms() + timeout_ms;
  *out = NULL;
  struct kmip_conn *conn = calloc(1, sizeof *conn);
  if (!conn)
    return nbdc_error_set(err, ENOMEM, "out of memory");
  conn->fd = -1;
  int r = tcp_connect(host, port, deadline, timeout_ms, &conn->fd, err);
  if (r < 0) {
    free(conn);
    return r;
  }
  ERR_clear_error();
  conn->ssl = SSL_new(ctx);
  if (!conn->ssl || SSL_set_fd(conn->ssl, conn->fd) != 1) {
    kmip_conn_close(conn);
    return nbdc_error_set(err, ENOMEM, "cannot set up tls: %s", ossl_text(detail, sizeof detail));
  }
  /* The server certificate must name what we dialled: an IP address is
   * matched against IP SANs, a host name against DNS SANs (and sent as SNI). */
  X509_VERIFY_PARAM *param = SSL_get0_param(conn->ssl);
  unsigned char ipbuf[16];
  bool is_ip = inet_pton(AF_INET, host, ipbuf) == 1 || inet_pton(AF_INET6, host, ipbuf) == 1;
  int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
                 : X509_VERIFY_PARAM_set1_host(param, host, 0) &&
                       SSL_set_tlsext_host_name(conn->ssl, host);
  if (!ok) {
    kmip_conn_close(conn);
    return nbdc_error_set(err, EINVAL, "cannot set the expected server name %s: %s", host,
                          ossl_text(detail, sizeof detail));
  }
  for (;;) {
    r = SSL_connect(conn->ssl);
    if (r == 1)
      break;
    r = ssl_want(conn, r, deadline, timeout_ms, "handshake", err);
    if (r < 0) {
      kmip_conn_close(conn);
      return r;
    }
  }
  *out = conn;
  return 0;
}

void kmip_conn_close(struct kmip_conn *conn)
{
  if (!conn)
    return;
  if (conn->ssl) {
    /* best effort close_notify; the socket is non-blocking so this never waits */
    if (SSL_is_init_finished(conn->ssl))
      SSL_shutdown(conn->ssl);
    SSL_free(conn->ssl);
    ERR_clear_error();
  }
  if (conn->fd >= 0)
    close(conn->fd);
  free(conn);
}

bool kmip_conn_alive(struct kmip_conn *conn)
{
  if (!conn)
    return false;
  if (SSL_pending(conn->ssl) > 0)
    return false; /* stray data nobody asked for: start afresh */
  struct pollfd pfd = {.fd = conn->fd, .events = POLLIN};
  int r = poll(&pfd, 1, 0);
  if (r == 0)
    return true;
  if (r < 0 || (pfd.revents & (POLLERR | POLLHUP | POLLNVAL)))
    return false;
  /* readable while idle: either EOF/close_notify or junk; both end it */
  return false;
}

static int conn_read(struct kmip_conn *conn, uint8_t *buf, size_t len, int64_t deadline,
                     int timeout_ms, bool *got_bytes, struct nbdc_error *err)
{
  size_t done = 0;
  while (done < len) {
    size_t n = 0;
    int r = SSL_read_ex(conn->ssl, buf + done, len - done, &n);
    if (r == 1) {
      done += n;
      *got_bytes = true;
      continue;
    }
    r = ssl_want(conn, 0, deadline, timeout_ms, "reading the response", err);
    if (r < 0)
      return r;
  }
  return 0;
}

int kmip_conn_roundtrip(struct kmip_conn *conn, const uint8_t *req, size_t req_len, size_t max,
                        int timeout_ms, uint8_t **resp, size_t *resp_len, bool *got_bytes,
                        struct nbdc_error *err)
{
  int64_t deadline = now_ms() + timeout_ms;
  *resp = NULL;
  *resp_len = 0;
  *got_bytes = false;
  ERR_clear_error();
  size_t done = 0;
  while (done < req_len) {
    size_t n = 0;
    int r = SSL_write_ex(conn->ssl, req + done, req_len - done, &n);
    if (r == 1) {
      done += n;
      continue;
    }
    r = ssl_want(conn, 0, deadline, timeout_ms, "sending the request", err);
    if (r < 0)
      return r;
  }
  uint8_t header[8];
  int r = conn_read(conn, header, sizeof header, deadline, timeout_ms, got_bytes, err);
  if (r < 0)
    return r;
  size_t total;
  r = kmip_frame_length(header, max, &total, err);
  if (r < 0)
    return r;
  /* A response may carry a key (Get) or an unwrapped secret (Decrypt):
   * locked memory, wiped on free. */
  uint8_t *buf = secmem_alloc(total);
  if (!buf) {
    int e = errno ? errno : ENOMEM;
    return nbdc_error_set(err, e, "cannot allocate %zu bytes of locked memory for the response: %s",
                          total, strerror(e));
  }
  memcpy(buf, header, sizeof header);
  r = conn_read(conn, buf + 8, total - 8, deadline, timeout_ms, got_bytes, err);
  if (r < 0) {
    secmem_free(buf, total);
    return r;
  }
  *resp = buf;
  *resp_len = total;
  return 0;
}

/* The worker threads of re-encryption: while the engine's thread commits
 * hotzone k and writes it back, the workers read hotzone k+1, note the head
 * of each old 4 KiB block (the discriminator of docs/reencrypt.md) and
 * convert it in their own buffer slices, each with its own XTS contexts.
 * Reading and converting ahead never touches the disk, so it changes none of
 * the crash points: the engine still writes a hotzone only after the commit
 * that names it. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reencrypt/internal.h"

#define PIECE     (512u * 1024) /* bytes a worker reads and converts at once */
#define SUB       (64u * 1024)  /* decrypt then encrypt this much while it is in cache */
#define BLOCK     4096u
#define MAX_WORKS 8

struct worker {
  struct reenc_pipe *pipe;
  pthread_t tid;
  bool started;
  struct bdev *dev; /* own read-only bdev (files) or the shared one */
  bool own_dev;
  struct xts_ctx *old_xts, *new_xts;
  void *stack; /* secmem: WORKER_STACK bytes */
};

/* The workers' stacks are secure memory (locked, left out of core dumps):
 * the cipher library's frames on them see the keys (a gcore of a paused
 * recrypt found 16 bytes of the new volume key on a worker's stack with
 * ordinary stacks), and a stack of a thread that exited is reused by the
 * next one.  The workers' call depth is small. */
#define WORKER_STACK (512 * 1024)

struct reenc_pipe {
  pthread_mutex_t mu;
  pthread_cond_t work_cv, done_cv;
  size_t nworkers;
  struct worker w[MAX_WORKS];
  uint64_t iv_tweak;
  struct bdev *hint_dev; /* the engine's device: readahead hints */
  bool quit;
  /* the job in progress */
  bool active;
  uint8_t *buf, *heads;
  uint64_t logical, len, phys;
  size_t next_piece, npieces, finished;
  int result;
  struct nbdc_error err;
};

/* One piece: read, note the heads of the old blocks, convert in place. */
static int pipe_piece(struct worker *w, uint8_t *buf, uint8_t *heads, uint64_t logical, size_t len,
                      uint64_t phys, struct nbdc_error *err)
{
  struct reenc_pipe *p = w->pipe;
  int r = bdev_pread(w->dev, buf, len, phys, err);
  if (r < 0)
    return r;
  if (heads)
    for (size_t off = 0; off < len; off += BLOCK)
      memcpy(heads + off / BLOCK * REENC_HEAD_LEN, buf + off, REENC_HEAD_LEN);
  for (size_t off = 0; off < len && r == 0; off += SUB) {
    size_t n = len - off < SUB ? len - off : SUB;
    uint64_t unit = (logical + off) / 512 + p->iv_tweak;
    if (w->old_xts)
      r = xts_decrypt(w->old_xts, buf + off, buf + off, n, unit, err);
    if (r == 0 && w->new_xts)
      r = xts_encrypt(w->new_xts, buf + off, buf + off, n, unit, err);
  }
  return r;
}

static void *pipe_worker(void *arg)
{
  struct worker *w = arg;
  struct reenc_pipe *p = w->pipe;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->quit && !(p->active && p->next_piece < p->npieces))
      pthread_cond_wait(&p->work_cv, &p->mu);
    if (p->quit)
      break;
    size_t i = p->next_piece++;
    uint64_t off = (uint64_t)i * PIECE;
    size_t len = p->len - off < PIECE ? (size_t)(p->len - off) : PIECE;
    uint8_t *buf = p->buf + off, *heads = p->heads ? p->heads + off / BLOCK * REENC_HEAD_LEN : NULL;
    uint64_t logical = p->logical + off, phys = p->phys + off;
    bool failed = p->result < 0;
    pthread_mutex_unlock(&p->mu);

    struct nbdc_error err = {0};
    int r = failed ? 0 : pipe_piece(w, buf, heads, logical, len, phys, &err);

    pthread_mutex_lock(&p->mu);
    if (r < 0 && p->result == 0) {
      p->result = r;
      p->err = err;
    }
    if (++p->finished == p->npieces)
      pthread_cond_broadcast(&p->done_cv);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

static size_t pipe_default_workers(void)
{
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1)
    n = 1;
  return n > MAX_WORKS ? MAX_WORKS : (size_t)n;
}

int reenc_pipe_new(struct reenc_pipe **out, struct bdev *dev, const struct xts_ctx *old_xts,
                   const struct xts_ctx *new_xts, uint64_t iv_tweak, size_t nworkers,
                   struct nbdc_error *err)
{
  struct reenc_pipe *p = calloc(1, sizeof *p);
  if (!p)
    return nbdc_error_set(err, ENOMEM, "out of memory");
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->work_cv, NULL);
  pthread_cond_init(&p->done_cv, NULL);
  p->iv_tweak = iv_tweak;
  p->hint_dev = dev;
  p->nworkers = nworkers ? (nworkers > MAX_WORKS ? MAX_WORKS : nworkers) : pipe_default_workers();
  int r = 0;
  for (size_t i = 0; i < p->nworkers && r == 0; i++) {
    struct worker *w = &p->w[i];
    w->pipe = p;
    /* A second reader each where the device has them (files), else the
     * shared device (its calls serialized by reenc_bdev_shared). */
    r = bdev_open_reader(dev, &w->dev, err);
    w->own_dev = r == 0;
    if (r == -ENOTSUP) {
      nbdc_error_clear(err);
      w->dev = dev;
      r = 0;
    }
    if (r == 0 && old_xts)
      r = xts_dup(old_xts, &w->old_xts, err);
    if (r == 0 && new_xts)
      r = xts_dup(new_xts, &w->new_xts, err);
    if (r == 0) {
      /* Signals (Ctrl-C) go to the engine's thread, which stops cleanly;
       * the workers inherit a mask that blocks them. */
      sigset_t all, old;
      sigfillset(&all);
      pthread_sigmask(SIG_BLOCK, &all, &old);
      pthread_attr_t attr;
      int e = pthread_attr_init(&attr);
      if (e == 0 && !(w->stack = secmem_alloc(WORKER_STACK)))
        e = errno ? errno : ENOMEM;
      if (e == 0)
        e = pthread_attr_setstack(&attr, w->stack, WORKER_STACK);
      if (e == 0)
        e = pthread_create(&w->tid, &attr, pipe_worker, w);
      pthread_attr_destroy(&attr);
      pthread_sigmask(SIG_SETMASK, &old, NULL);
      if (e != 0)
        r = nbdc_error_set(err, e, "cannot start a re-encryption thread: %s", strerror(e));
      else
        w->started = true;
    }
  }
  /* reenc_pipe_free copes with the partly built pipe */
  *out = p;
  return r;
}

void reenc_pipe_fill(struct reenc_pipe *p, uint8_t *buf, uint8_t *heads, uint64_t logical,
                     uint64_t len, uint64_t phys)
{
  /* Cold data: ask for the whole range now, the workers' small interleaved
   * reads would defeat the kernel's sequential readahead. */
  bdev_readahead(p->hint_dev, phys, len);
  pthread_mutex_lock(&p->mu);
  p->buf = buf;
  p->heads = heads;
  p->logical = logical;
  p->len = len;
  p->phys = phys;
  p->next_piece = 0;
  p->npieces = (size_t)((len + PIECE - 1) / PIECE);
  p->finished = 0;
  p->result = 0;
  p->active = p->npieces > 0;
  pthread_cond_broadcast(&p->work_cv);
  pthread_mutex_unlock(&p->mu);
}

int reenc_pipe_wait(struct reenc_pipe *p, struct nbdc_error *err)
{
  if (!p)
    return 0;
  pthread_mutex_lock(&p->mu);
  while (p->active && p->finished < p->npieces)
    pthread_cond_wait(&p->done_cv, &p->mu);
  p->active = false;
  int r = p->result;
  if (r < 0 && err)
    *err = p->err;
  pthread_mutex_unlock(&p->mu);
  return r;
}

void reenc_pipe_free(struct reenc_pipe *p)
{
  if (!p)
    return;
  reenc_pipe_wait(p, NULL);
  pthread_mutex_lock(&p->mu);
  p->quit = true;
  pthread_cond_broadcast(&p->work_cv);
  pthread_mutex_unlock(&p->mu);
  for (size_t i = 0; i < p->nworkers; i++) {
    struct worker *w = &p->w[i];
    if (w->started)
      pthread_join(w->tid, NULL);
    xts_free(w->old_xts);
    xts_free(w->new_xts);
    secmem_free(w->stack, WORKER_STACK); /* after the join: wipes it */
    if (w->own_dev)
      bdev_close(w->dev);
  }
  pthread_cond_destroy(&p->work_cv);
  pthread_cond_destroy(&p->done_cv);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

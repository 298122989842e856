/* Tracked secure blocks for the crypto backends' allocation hooks
 * (src/crypto/internal.h).
 *
 * Every secure block is its own secmem_alloc mapping (locked, not dumped)
 * with this record in front; the records form a list, so that a hook's free
 * or realloc tells a secure block from an ordinary malloc block without
 * reading memory in front of a pointer it did not hand out.  Secure blocks
 * are few (one cipher context per thread, a hash state per AF operation) and
 * are looked up only when the library allocates or frees, never on the data
 * path.  secmem_alloc puts its own record 32 bytes into a page and this one
 * follows it: a secure user pointer is 64 bytes into a page, so most
 * lookups skip the lock. */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "crypto/internal.h"
#include "nbdcrypt/crypto.h"

struct sec_block {
  struct sec_block *prev, *next;
  size_t size;   /* user bytes */
  size_t pad[1]; /* 32 bytes: the user pointer stays 16-byte aligned */
};

static pthread_mutex_t sec_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sec_block *sec_blocks; /* under sec_lock */

static struct sec_block *sec_find_locked(const void *p)
{
  for (struct sec_block *b = sec_blocks; b; b = b->next)
    if ((const void *)(b + 1) == p)
      return b;
  return NULL;
}

void *secblock_alloc(size_t n)
{
  struct sec_block *b = secmem_alloc(sizeof *b + n);
  if (!b)
    return NULL;
  b->size = n;
  pthread_mutex_lock(&sec_lock);
  b->next = sec_blocks;
  if (sec_blocks)
    sec_blocks->prev = b;
  sec_blocks = b;
  pthread_mutex_unlock(&sec_lock);
  return b + 1;
}

bool secblock_is(const void *p)
{
  if (!p || ((uintptr_t)p & 4095) != 64)
    return false;
  pthread_mutex_lock(&sec_lock);
  bool found = sec_find_locked(p) != NULL;
  pthread_mutex_unlock(&sec_lock);
  return found;
}

/* p's record, unlinked, if p is a secure block; else NULL. */
static struct sec_block *sec_take(void *p)
{
  if (!p || ((uintptr_t)p & 4095) != 64)
    return NULL;
  pthread_mutex_lock(&sec_lock);
  struct sec_block *b = sec_find_locked(p);
  if (b) {
    if (b->prev)
      b->prev->next = b->next;
    else
      sec_blocks = b->next;
    if (b->next)
      b->next->prev = b->prev;
  }
  pthread_mutex_unlock(&sec_lock);
  return b;
}

bool secblock_free(void *p)
{
  struct sec_block *b = sec_take(p);
  if (!b)
    return false;
  secmem_free(b, sizeof *b + b->size); /* wipes */
  return true;
}

bool secblock_realloc(void *p, size_t n, void **out)
{
  if (!secblock_is(p))
    return false;
  /* As realloc: when no new block can be had, p stays as it was. */
  void *q = secblock_alloc(n);
  if (q) {
    const struct sec_block *b = (const struct sec_block *)p - 1;
    memcpy(q, p, b->size < n ? b->size : n);
    secblock_free(p);
  }
  *out = q;
  return true;
}

/* Secure memory for key material (include/nbdcrypt/crypto.h).
 *
 * Every allocation is its own anonymous mapping, so that mlock, MADV_DONTDUMP
 * and munmap act on exactly the pages holding the secret and nothing else.
 * A small record at the start of the mapping keeps the mapped length, so a
 * free with the wrong size still wipes and unmaps the whole block.  No global
 * state: mmap/mlock/munmap are thread-safe, and so is this file.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "nbdcrypt/crypto.h"

#define SECMEM_MAGIC UINT64_C(0x6e62646373656331) /* "nbdcsec1" */

/* 32 bytes keep the user pointer aligned for any type (max_align_t is 16). */
struct secmem_record {
  uint64_t magic;
  uint64_t map_len;
  uint64_t user_len;
  uint64_t reserved;
};

/* Straight to the kernel: AddressSanitizer intercepts mlock/munlock as
 * no-ops, and a sanitizer build must still lock (and fail like production
 * when it cannot). */
static int secmem_mlock(void *addr, size_t len)
{
  return (int)syscall(SYS_mlock, addr, len);
}

static void secmem_munlock(void *addr, size_t len)
{
  (void)syscall(SYS_munlock, addr, len);
}

static size_t secmem_page_size(void)
{
  long page = sysconf(_SC_PAGESIZE);
  return page > 0 ? (size_t)page : 4096;
}

void *secmem_alloc(size_t n)
{
  size_t page = secmem_page_size();
  size_t hdr = sizeof(struct secmem_record);
  if (n > SIZE_MAX - hdr - page) {
    errno = ENOMEM;
    return NULL;
  }
  size_t map_len = (n + hdr + page - 1) / page * page;
  void *base = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED)
    return NULL;
  if (secmem_mlock(base, map_len) != 0) {
    int saved = errno;
    munmap(base, map_len);
    errno = saved;
    return NULL;
  }
  /* Best effort: older kernels may not know MADV_DONTDUMP; the process is
   * also made non-dumpable by secmem_harden_process. */
  (void)madvise(base, map_len, MADV_DONTDUMP);

  struct secmem_record *rec = base;
  rec->magic = SECMEM_MAGIC;
  rec->map_len = map_len;
  rec->user_len = n;
  return (uint8_t *)base + hdr; /* anonymous mappings are already zero */
}

void secmem_free(void *p, size_t n)
{
  if (!p)
    return;
  struct secmem_record *rec = (struct secmem_record *)((uint8_t *)p - sizeof *rec);
  /* A bad record means p did not come from secmem_alloc or the heap is
   * corrupt: continuing could unmap unrelated memory. */
  if (rec->magic != SECMEM_MAGIC || rec->map_len < sizeof *rec + rec->user_len)
    abort();
  (void)n; /* the record is authoritative: it covers the whole mapping */
  size_t map_len = rec->map_len;
  nbdc_wipe(rec, map_len);
  secmem_munlock(rec, map_len);
  munmap(rec, map_len);
}

int secmem_harden_process(void)
{
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
    return -errno;
  struct rlimit none = {0, 0};
  if (setrlimit(RLIMIT_CORE, &none) != 0)
    return -errno;
  return 0;
}

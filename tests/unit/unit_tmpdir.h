/* A temporary directory for a unit test: under $NBDCRYPT_TEST_TMPDIR (set by
 * ctest to the build tree) or /tmp, removed with everything in it. */
#ifndef NBDCRYPT_UNIT_TMPDIR_H
#define NBDCRYPT_UNIT_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

/* Make base/PREFIX-XXXXXX into dir[size]; 0, or -1 when it cannot be made. */
static inline int unit_tmpdir_make(char *dir, size_t size, const char *prefix)
{
  const char *base = getenv("NBDCRYPT_TEST_TMPDIR");
  int n = snprintf(dir, size, "%s/%s-XXXXXX", base && *base ? base : "/tmp", prefix);
  if (n < 0 || (size_t)n >= size)
    return -1;
  return mkdtemp(dir) ? 0 : -1;
}

static inline int unit_tmpdir_remove_entry(const char *path, const struct stat *st, int type,
                                           struct FTW *ftw)
{
  (void)st;
  (void)type;
  (void)ftw;
  return remove(path);
}

/* Remove dir and everything below it; 0 or -1. */
static inline int unit_tmpdir_remove(const char *dir)
{
  return nftw(dir, unit_tmpdir_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif

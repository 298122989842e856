/* Per-call error messages (include/nbdcrypt/error.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <string.h>

#include "nbdcrypt/error.h"

int nbdc_error_set(struct nbdc_error *err, int code, const char *fmt, ...)
{
  if (code <= 0)
    code = 5; /* EIO: a failure always carries an errno */
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
  }
  return -code;
}

int nbdc_error_prefix(struct nbdc_error *err, const char *fmt, ...)
{
  if (!err)
    return -5;
  char prefix[NBDC_ERROR_MAX];
  char old[NBDC_ERROR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  char joined[2 * NBDC_ERROR_MAX + 8];
  memcpy(old, err->msg, sizeof old);
  old[sizeof old - 1] = '\0';
  snprintf(joined, sizeof joined, "%s: %s", prefix, old);
  memcpy(err->msg, joined, sizeof err->msg - 1);
  err->msg[sizeof err->msg - 1] = '\0';
  if (err->code <= 0)
    err->code = 5;
  return -err->code;
}

void nbdc_error_clear(struct nbdc_error *err)
{
  if (err) {
    err->code = 0;
    err->msg[0] = '\0';
  }
}

void nbdc_wipe(void *p, size_t n)
{
  if (p && n)
    explicit_bzero(p, n); /* never optimised away (glibc 2.25) */
}

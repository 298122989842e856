/* OpenSSL error text in nbdc_error messages. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include <openssl/err.h>

#include "crypto/internal.h"

int crypto_ossl_error(struct nbdc_error *err, int code, const char *fmt, ...)
{
  char what[NBDC_ERROR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);

  unsigned long e = ERR_peek_error();
  const char *reason = e ? ERR_reason_error_string(e) : NULL;
  ERR_clear_error();
  if (reason)
    return nbdc_error_set(err, code, "%.*s: %s", NBDC_ERROR_MAX - 64, what, reason);
  return nbdc_error_set(err, code, "%s", what);
}

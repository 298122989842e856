/* Helpers shared by the files of the crypto module only. */
#ifndef NBDCRYPT_CRYPTO_INTERNAL_H
#define NBDCRYPT_CRYPTO_INTERNAL_H

#include "nbdcrypt/error.h"

/* Like nbdc_error_set, with the oldest queued OpenSSL error appended as
 * ": <reason>"; the OpenSSL error queue of this thread is cleared. */
int crypto_ossl_error(struct nbdc_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif

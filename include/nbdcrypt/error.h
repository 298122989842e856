/* nbdcrypt: per-call error reporting shared by every module.
 *
 * Functions return 0 (or a count) on success and a negative errno on failure,
 * and fill a caller-provided struct nbdc_error with one human sentence that
 * names the thing that was wrong.  No module keeps a process-global error.
 */
#ifndef NBDCRYPT_ERROR_H
#define NBDCRYPT_ERROR_H

#include <stddef.h>

#define NBDC_ERROR_MAX 512

struct nbdc_error {
  int code;                 /* positive errno of the failure, 0 if none */
  char msg[NBDC_ERROR_MAX]; /* lower-case sentence, no trailing newline */
};

/* Fill err (may be NULL) and return -code.  code is a positive errno. */
int nbdc_error_set(struct nbdc_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepend context to an existing message: "ctx: old message".  Returns -err->code. */
int nbdc_error_prefix(struct nbdc_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Clear err. */
void nbdc_error_clear(struct nbdc_error *err);

/* Wipe memory in a way the compiler cannot elide (OPENSSL_cleanse). */
void nbdc_wipe(void *p, size_t n);

#endif

/* Preloaded into nbdkit after the ASan runtime when the ASan build's
 * integration tests load the filter (see nbdkit-sanitize.sh).
 *
 * nbdkit is not built with ASan, so the preloaded runtime initializes lazily,
 * on the first call it intercepts: malloc() inside newlocale(), called by
 * libp11-kit's constructor (libgnutls, linked by nbdkit, needs it) while glibc
 * holds its locale lock for writing.  That initialization calls
 * dlsym(RTLD_DEFAULT, "swift_demangle") and, when the symbol is missing,
 * dlerror(), whose message translation takes the same lock for reading: that
 * fails (the thread is the writer), and its unlock releases the writer's lock,
 * after which newlocale()'s own unlock leaves the reader count at -1.  The next
 * newlocale() in the process (json-c's, when the filter reads its
 * configuration) then waits for ever.  With swift_demangle defined here dlsym()
 * succeeds and there is no error message to translate. */
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>

/* The Swift runtime's demangler: "not a Swift name" for every name, so the
 * sanitizers fall back to their C++ demangler. */
__attribute__((visibility("default"))) char *
swift_demangle(const char *mangled_name, size_t mangled_name_length, char *output_buffer,
               size_t *output_buffer_size, uint32_t flags)
{
  (void)mangled_name;
  (void)mangled_name_length;
  (void)output_buffer;
  (void)output_buffer_size;
  (void)flags;
  return NULL;
}

/* nbdkit unloads the filter before it exits, and LeakSanitizer looks for leaks
 * at exit: a leak's stack would then name no function of the filter.  The
 * runtime's dlclose() calls the next one in lookup order, this one, so every
 * module stays loaded. */
__attribute__((visibility("default"))) int dlclose(void *handle)
{
  (void)handle;
  return 0;
}

# Hardening flags for release builds (Release, RelWithDebInfo, MinSizeRel),
# as distributions build packages: _FORTIFY_SOURCE (3 where the compiler and
# C library support it, else 2), -fstack-protector-strong, full RELRO with
# immediate binding, and PIE executables.  Not in a sanitizer build (ASan
# replaces the checked string functions and its own tests want -O0/-O1), not
# in Debug (_FORTIFY_SOURCE needs optimisation).
set(NBDCRYPT_HARDENED OFF)
set(NBDCRYPT_FORTIFY_LEVEL "")
string(TOUPPER "${CMAKE_BUILD_TYPE}" _nbdcrypt_build_type)
if(NBDCRYPT_HARDEN AND NOT NBDCRYPT_SANITIZE
   AND _nbdcrypt_build_type MATCHES "^(RELEASE|RELWITHDEBINFO|MINSIZEREL)$")
  include(CheckCSourceCompiles)
  include(CheckPIESupported)

  # Level 3 uses __builtin_dynamic_object_size (gcc 12, clang 9) and glibc's
  # support for it (2.34); with either missing, level 3 means 2 or nothing.
  set(CMAKE_REQUIRED_FLAGS "-O2")
  check_c_source_compiles([=[
#include <features.h>
#if !defined(__GLIBC__) || __GLIBC__ < 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ < 34)
#error "glibc before 2.34 has no _FORTIFY_SOURCE=3"
#endif
#if !defined(__has_builtin)
#error "no __has_builtin"
#elif !__has_builtin(__builtin_dynamic_object_size)
#error "no __builtin_dynamic_object_size"
#endif
int main(void) { return 0; }
]=] NBDCRYPT_HAVE_FORTIFY3)
  unset(CMAKE_REQUIRED_FLAGS)
  if(NBDCRYPT_HAVE_FORTIFY3)
    set(NBDCRYPT_FORTIFY_LEVEL 3)
  else()
    set(NBDCRYPT_FORTIFY_LEVEL 2)
  endif()
  # A toolchain that defines _FORTIFY_SOURCE itself (Ubuntu's gcc) would warn
  # about the redefinition.
  add_compile_options(-U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=${NBDCRYPT_FORTIFY_LEVEL}
                      -fstack-protector-strong)
  add_link_options(LINKER:-z,relro LINKER:-z,now)
  check_pie_supported(LANGUAGES C)
  # CMAKE_POSITION_INDEPENDENT_CODE (set at the top) then links executables
  # with -pie (policy CMP0083).
  set(NBDCRYPT_HARDENED ON)
  message(STATUS "nbdcrypt: hardened build (_FORTIFY_SOURCE=${NBDCRYPT_FORTIFY_LEVEL}, "
                 "stack protector, relro/now, PIE)")
endif()

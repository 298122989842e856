#!/bin/sh
# nbdkit with the sanitizer runtime preloaded: the ASan build's integration
# tests run their servers through this (NBDCRYPT_TEST_NBDKIT for lib-filter.sh,
# NBDKIT for "nbdcrypt serve"), so the ASan/UBSan-built filter runs inside the
# system's uninstrumented nbdkit.  tests/CMakeLists.txt sets
#   NBDCRYPT_TEST_PRELOAD  the runtime, then preload.c's library (colon-separated);
# lib-filter.sh sets
#   NBDCRYPT_TEST_SANITIZER_LOG  where the sanitizers write their reports
#                                (PREFIX.PID), checked when each test ends.
set -eu
: "${NBDCRYPT_TEST_PRELOAD:?set by ctest in the ASan build}"
LD_PRELOAD=$NBDCRYPT_TEST_PRELOAD${LD_PRELOAD:+:$LD_PRELOAD}
export LD_PRELOAD
if [ -n "${NBDCRYPT_TEST_SANITIZER_LOG:-}" ]; then
  ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$NBDCRYPT_TEST_SANITIZER_LOG
  UBSAN_OPTIONS=${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$NBDCRYPT_TEST_SANITIZER_LOG
  export ASAN_OPTIONS UBSAN_OPTIONS
fi
exec nbdkit "$@"

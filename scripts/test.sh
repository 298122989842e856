#!/usr/bin/env bash
# The whole nbdcrypt test suite, from a fresh Debian 12 machine (as root):
# installs the packages, configures, builds with -Werror (NBDCRYPT_WERROR=ON),
# runs every test with ctest.  Options:
#   --sanitize   also build with -fsanitize=address,undefined and run the tests labelled
#                sanitize there: unit tests, the filter's tests (in nbdkit with the ASan
#                runtime preloaded, see docs/decisions.md) and the CLI tests marked so;
#                then builds the libFuzzer targets with clang (tests/fuzz), runs each
#                over its corpus and fuzzes each for 10 s (tests/fuzz/run.sh): a crash
#                fails the run
#   --build DIR  build directory (default: build); the OpenSSL-backend build is DIR-openssl
# The main build uses the default crypto backend (libgcrypt); a second build
# with -DNBDCRYPT_CRYPTO_BACKEND=openssl runs the unit tests and the tests of
# the data path (cipher, filter, cryptsetup interoperation, recrypt, cores).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$top/build
sanitize=0
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize=1 ;;
    --build) build=$2; shift ;;
    *) echo "usage: scripts/test.sh [--sanitize] [--build DIR]" >&2; exit 2 ;;
  esac
  shift
done

. "$top/scripts/deps.sh"
nbdcrypt_install_packages "${NBDCRYPT_BUILD_PACKAGES[@]}" "${NBDCRYPT_TEST_PACKAGES[@]}"

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNBDCRYPT_WERROR=ON >/dev/null
cmake --build "$build" -j "$jobs"

status=0
# Unit tests in parallel; integration tests $jobs at a time, except those
# marked "# nbdcrypt-test: serial" (they bound how long something may take,
# install into the system or start a Ceph cluster), which run alone.
ctest --test-dir "$build" -L unit -j "$jobs" --output-on-failure || status=1
ctest --test-dir "$build" -L integration -j "$jobs" --output-on-failure || status=1

# The other crypto backend: unit tests and the data-path tests.
ossl=$build-openssl
cmake -S "$top" -B "$ossl" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNBDCRYPT_CRYPTO_BACKEND=openssl \
  -DNBDCRYPT_WERROR=ON >/dev/null
cmake --build "$ossl" -j "$jobs"
ctest --test-dir "$ossl" -L unit -j "$jobs" --output-on-failure || status=1
ctest --test-dir "$ossl" -j "$jobs" --output-on-failure -R \
  'integration/test-(filter-roundtrip|filter-concurrency|filter-unaligned-rmw-errors|filter-cryptsetup|cryptsetup-encrypted-data-decrypts|cryptsetup-reads-our-format|cryptsetup-format-opens-with-nbdcrypt|cryptsetup-token|reencrypt-roundtrip|core-holds-no-key|core-holds-no-kmip-key)$' ||
  status=1

if [ "$sanitize" = 1 ]; then
  asan=$build-asan
  cmake -S "$top" -B "$asan" -DCMAKE_BUILD_TYPE=Debug -DNBDCRYPT_SANITIZE=ON -DNBDCRYPT_WERROR=ON \
    >/dev/null
  cmake --build "$asan" -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$asan" -L sanitize -j "$jobs" --output-on-failure || status=1

  # libFuzzer needs clang; only the fuzz targets (and what they link) are built.
  fuzz=$build-fuzz
  CC=clang cmake -S "$top" -B "$fuzz" -DCMAKE_BUILD_TYPE=Debug -DNBDCRYPT_SANITIZE=ON \
    -DNBDCRYPT_FUZZ=ON >/dev/null
  cmake --build "$fuzz" -j "$jobs" --target fuzz_kmip_ttlv fuzz_kmip_msg fuzz_keys_config \
    fuzz_luks2_load fuzz_luks1_parse fuzz_volume_token
  ASAN_OPTIONS=detect_leaks=1 ctest --test-dir "$fuzz" -L fuzz --output-on-failure || status=1
  ASAN_OPTIONS=detect_leaks=1 "$top/tests/fuzz/run.sh" "$fuzz" 10 || status=1
fi
exit $status

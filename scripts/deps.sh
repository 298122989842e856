#!/usr/bin/env bash
# The Debian 12 packages nbdcrypt builds, tests and serves with.  Sourced by
# scripts/test.sh and scripts/main-job.sh; run directly to install them.
NBDCRYPT_BUILD_PACKAGES=(
  build-essential cmake pkg-config clang
  libssl-dev libgcrypt20-dev libjson-c-dev libargon2-dev libnbd-dev nbdkit nbdkit-plugin-dev
  libcmocka-dev libcryptsetup-dev libblkid-dev pandoc
)
NBDCRYPT_TEST_PACKAGES=(
  openssl libnbd-bin python3-libnbd cryptsetup-bin qemu-utils nbd-client fio
  python3-pykmip python3-cryptography e2fsprogs fuse3 procps iproute2 fdisk gdb
  man-db systemd
  ceph-mon ceph-osd ceph-common qemu-block-extra
)

# Install whatever of the given packages is missing (apt-get update only when needed).
nbdcrypt_install_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "nbdcrypt: missing packages: ${missing[*]} (run as root to install them)" >&2
    return 1
  fi
  echo "nbdcrypt: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -e
  nbdcrypt_install_packages "${NBDCRYPT_BUILD_PACKAGES[@]}" "${NBDCRYPT_TEST_PACKAGES[@]}"
fi

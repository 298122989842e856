/* nbdcrypt signature probe (src/probe): what a device already holds
 * (filesystems, LUKS1/LUKS2, partition tables, swap, RAID members, ...), found
 * by libblkid as cryptsetup's luksFormat finds it, so format does not destroy
 * data by default.  Works on any bdev, NBD URIs included: the regions that
 * blkid's probes read are copied into a sparse memfd of the device's size. */
#ifndef NBDCRYPT_PROBE_H
#define NBDCRYPT_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbdcrypt/blockdev.h"
#include "nbdcrypt/error.h"

#define PROBE_MAX_SIGNATURES 8

/* Bytes copied from the start and from the end of the device: the first
 * 16 MiB (what format overwrites, and where every superblock, LUKS2's
 * secondary headers and partition tables live) and the last 1 MiB (GPT's
 * backup, MD 0.90/1.0, ZFS and DDF labels). */
#define PROBE_HEAD_BYTES (16u << 20)
#define PROBE_TAIL_BYTES (1u << 20)

struct probe_signature {
  bool partition_table; /* a partition table (PTTYPE), else a superblock (TYPE) */
  char type[32];        /* blkid's TYPE or PTTYPE: "ext4", "crypto_LUKS", "dos", "swap" */
  char version[16];     /* VERSION ("2" for LUKS2), "" if none */
  char usage[16];       /* USAGE: "filesystem", "crypto", "raid", "other"; "" for tables */
  char uuid[64];        /* UUID or PTUUID, "" if none */
  char label[64];       /* LABEL, "" if none */
  uint64_t offset;      /* byte offset of the magic that matched */
};

struct probe_result {
  size_t count; /* signatures in sig[] */
  bool more;    /* more than PROBE_MAX_SIGNATURES were found */
  struct probe_signature sig[PROBE_MAX_SIGNATURES];
};

/* Probe dev for every known signature (libblkid superblocks and partitions
 * chains, bad-checksum superblocks included).  count 0 means nothing known was
 * found (an all-zero or random device).  -EIO etc. when dev cannot be read. */
int probe_signatures(struct bdev *dev, struct probe_result *out, struct nbdc_error *err);

/* One signature in words, with its article: "an ext4 filesystem", "a LUKS2
 * header", "a dos partition table", "a swap area". */
void probe_describe(const struct probe_signature *sig, char *buf, size_t len);

/* Every signature of res in words, joined: "an ext4 filesystem and a dos
 * partition table"; "" when res->count is 0. */
void probe_describe_all(const struct probe_result *res, char *buf, size_t len);

#endif

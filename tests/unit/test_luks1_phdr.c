/* LUKS1 phdr parser and keyslot unlock: a disk built here byte by byte as
 * the LUKS1 spec describes it (PBKDF2, AF split, aes-xts-plain64 key
 * material), then every way its phdr can be corrupt. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nbdcrypt/blockdev.h"
#include "nbdcrypt/crypto.h"
#include "nbdcrypt/luks1.h"

#define PAYLOAD_SECTORS 4096u
#define DEV_SIZE        (UINT64_C(3) << 20)
#define ITER            1000u
#define PASS            "luks1 passphrase"

static void put_be32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

struct disk {
  uint8_t phdr[LUKS1_PHDR_SIZE];
  uint8_t mk[64];
  struct bdev *dev;
};

/* cryptsetup's layout: key material of slot i at sector 8 + i * 512 (for a
 * 64-byte key: 500 sectors, aligned up to 4 KiB), payload at 4096 sectors. */
static uint32_t slot_sector(int i)
{
  return 8 + (uint32_t)i * 504;
}

static void build(struct disk *d, const char *hash, uint32_t key_bytes)
{
  struct nbdc_error err = {0};
  uint8_t *p = d->phdr;
  memset(p, 0, sizeof d->phdr);
  memcpy(p, "LUKS\xba\xbe", 6);
  p[7] = 1;
  strcpy((char *)p + 8, "aes");
  strcpy((char *)p + 40, "xts-plain64");
  strcpy((char *)p + 72, hash);
  put_be32(p + 104, PAYLOAD_SECTORS);
  put_be32(p + 108, key_bytes);
  for (size_t i = 0; i < key_bytes; i++)
    d->mk[i] = (uint8_t)(i * 13 + 5);
  uint8_t *salt = p + 132;
  for (int i = 0; i < 32; i++)
    salt[i] = (uint8_t)(0x40 + i);
  assert_int_equal(kdf_pbkdf2(hash, d->mk, key_bytes, salt, 32, ITER, p + 112, 20, &err), 0);
  put_be32(p + 164, ITER);
  strcpy((char *)p + 168, "11111111-2222-3333-4444-555555555555");
  for (int i = 0; i < LUKS1_NUM_KEYS; i++) {
    uint8_t *kb = p + 208 + 48 * i;
    put_be32(kb, i == 0 ? LUKS1_KEY_ENABLED : LUKS1_KEY_DISABLED);
    put_be32(kb + 4, i == 0 ? ITER : 0);
    put_be32(kb + 40, slot_sector(i));
    put_be32(kb + 44, LUKS1_STRIPES);
  }
  uint8_t *ksalt = p + 208 + 8;
  for (int i = 0; i < 32; i++)
    ksalt[i] = (uint8_t)(0x90 + i);

  /* Keyslot 0: PBKDF2(passphrase) encrypts the AF-split master key. */
  size_t material = (key_bytes * LUKS1_STRIPES + 511) / 512 * 512;
  uint8_t *split = calloc(1, material), derived[64];
  struct xts_ctx *xts = NULL;
  assert_non_null(split);
  assert_int_equal(af_split(d->mk, key_bytes, LUKS1_STRIPES, hash, split, &err), 0);
  assert_int_equal(kdf_pbkdf2(hash, (const uint8_t *)PASS, strlen(PASS), ksalt, 32, ITER, derived,
                              key_bytes, &err),
                   0);
  assert_int_equal(xts_new(&xts, derived, key_bytes, 512, &err), 0);
  assert_int_equal(xts_encrypt(xts, split, split, material, 0, &err), 0);
  xts_free(xts);
  assert_int_equal(bdev_open_memory(DEV_SIZE, &d->dev, &err), 0);
  assert_int_equal(bdev_pwrite(d->dev, p, LUKS1_PHDR_SIZE, 0, &err), 0);
  assert_int_equal(bdev_pwrite(d->dev, split, material, (uint64_t)slot_sector(0) * 512, &err), 0);
  free(split);
}

static void test_parse_and_unlock(void **state)
{
  (void)state;
  static const struct {
    const char *hash;
    uint32_t key_bytes;
  } variants[] = {{"sha256", 64}, {"sha1", 32}, {"sha512", 64}};
  for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
    struct disk d;
    struct luks1_hdr h;
    struct nbdc_error err = {0};
    build(&d, variants[v].hash, variants[v].key_bytes);
    assert_true(luks1_detect(d.phdr, sizeof d.phdr));
    assert_int_equal(luks1_load(d.dev, &h, &err), 0);
    assert_string_equal(h.cipher, "aes-xts-plain64");
    assert_string_equal(h.hash_spec, variants[v].hash);
    assert_string_equal(h.uuid, "11111111-2222-3333-4444-555555555555");
    assert_int_equal(h.key_bytes, variants[v].key_bytes);
    assert_int_equal(luks1_payload_offset(&h), PAYLOAD_SECTORS * 512);
    assert_int_equal(luks1_active_keyslots(&h), 1);

    uint8_t *mk = NULL;
    size_t mk_len = 0;
    int opened = -1;
    assert_int_equal(luks1_keyslot_open(&h, d.dev, -1, (const uint8_t *)PASS, strlen(PASS), &mk,
                                        &mk_len, &opened, &err),
                     0);
    assert_int_equal(opened, 0);
    assert_int_equal(mk_len, variants[v].key_bytes);
    assert_memory_equal(mk, d.mk, mk_len);
    secmem_free(mk, mk_len);

    assert_int_equal(
        luks1_keyslot_open(&h, d.dev, -1, (const uint8_t *)"wrong", 5, &mk, &mk_len, &opened, &err),
        -EPERM);
    assert_string_equal(err.msg, "no keyslot matches the passphrase");
    assert_null(mk);
    assert_int_equal(
        luks1_keyslot_open(&h, d.dev, 0, (const uint8_t *)"wrong", 5, &mk, &mk_len, &opened, &err),
        -EPERM);
    assert_string_equal(err.msg, "keyslot 0: wrong passphrase");
    assert_int_equal(luks1_keyslot_open(&h, d.dev, 3, (const uint8_t *)PASS, strlen(PASS), &mk,
                                        &mk_len, &opened, &err),
                     -ENOENT);
    assert_string_equal(err.msg, "keyslot 3 is not active");
    bdev_close(d.dev);
  }
}

/* Damaged key material: the master key digest catches it. */
static void test_damaged_material(void **state)
{
  (void)state;
  struct disk d;
  struct luks1_hdr h;
  struct nbdc_error err = {0};
  build(&d, "sha256", 64);
  uint8_t junk[512];
  memset(junk, 0xee, sizeof junk);
  assert_int_equal(bdev_pwrite(d.dev, junk, sizeof junk, slot_sector(0) * 512 + 4096, &err), 0);
  assert_int_equal(luks1_load(d.dev, &h, &err), 0);
  uint8_t *mk = NULL;
  size_t mk_len = 0;
  assert_int_equal(luks1_keyslot_open(&h, d.dev, -1, (const uint8_t *)PASS, strlen(PASS), &mk,
                                      &mk_len, NULL, &err),
                   -EPERM);
  bdev_close(d.dev);
}

struct corruption {
  size_t off;
  const void *bytes;
  size_t len;
  int code;
  const char *msg; /* a substring of the error */
};

static void test_corrupt(void **state)
{
  (void)state;
  static const uint8_t v2[] = {0, 2}, bad_state[] = {0x12, 0x34, 0x56, 0x78},
                       stripes[] = {0, 0, 0x0f, 0x9f}, zero4[] = {0, 0, 0, 0},
                       past[] = {0, 0, 0x0f, 0xff}, overlap[] = {0, 0, 0, 9},
                       key48[] = {0, 0, 0, 48}, nonul[32] = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                       in_hdr[] = {0, 0, 0, 1};
  const struct corruption cases[] = {
      {0, "LUKZ", 4, ENODATA, "no LUKS header"},
      {6, v2, 2, ENODATA, "LUKS version 2, not LUKS1"},
      {8, "twofish", 8, EINVAL, "cipher twofish-xts-plain64 not supported"},
      {40, "cbc-plain\0", 10, EINVAL, "cipher aes-cbc-plain not supported"},
      {72, "md5x\0", 5, EINVAL, "hash spec 'md5x' not supported"},
      {72, nonul, 32, EINVAL, "hash spec not NUL-terminated"},
      {104, zero4, 4, EINVAL, "payload offset 0"},
      {108, key48, 4, EINVAL, "key size 48 bytes not supported"},
      {164, zero4, 4, EINVAL, "master key digest iterations is 0"},
      {168, nonul, 32, EINVAL, "", /* uuid: 32 bytes of x, still NUL after */},
      {208, bad_state, 4, EINVAL, "keyslot 0 state 0x12345678 is neither enabled nor disabled"},
      {208 + 4, zero4, 4, EINVAL, "keyslot 0 iterations is 0"},
      {208 + 44, stripes, 4, EINVAL, "keyslot 0 has 3999 stripes, expected 4000"},
      {208 + 40, in_hdr, 4, EINVAL, "keyslot 0 key material at sector 1 overlaps the header"},
      {208 + 48 * 7 + 40, past, 4, EINVAL, "keyslot 7 key material (sectors 4095..4594)"},
      {208 + 48 + 40, overlap, 4, EINVAL, "key material of keyslots 0 and 1 overlaps"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct disk d;
    struct luks1_hdr h;
    struct nbdc_error err = {0};
    build(&d, "sha256", 64);
    bdev_close(d.dev);
    memcpy(d.phdr + cases[i].off, cases[i].bytes, cases[i].len);
    int r = luks1_parse(d.phdr, sizeof d.phdr, &h, &err);
    if (!cases[i].msg[0]) {
      assert_int_equal(r, 0);
      continue;
    }
    if (r != -cases[i].code || !strstr(err.msg, cases[i].msg))
      fail_msg("case %zu: got %d '%s', expected -%d '%s'", i, r, err.msg, cases[i].code,
               cases[i].msg);
  }
}

static void test_truncated(void **state)
{
  (void)state;
  struct disk d;
  struct luks1_hdr h;
  struct nbdc_error err = {0};
  build(&d, "sha256", 64);
  bdev_close(d.dev);
  assert_int_equal(luks1_parse(d.phdr, 300, &h, &err), -EINVAL);
  assert_string_equal(err.msg, "LUKS1 header truncated: 300 of 592 bytes");

  /* A device that ends before the payload. */
  assert_int_equal(bdev_open_memory(1 << 20, &d.dev, &err), 0);
  assert_int_equal(bdev_pwrite(d.dev, d.phdr, sizeof d.phdr, 0, &err), 0);
  assert_int_equal(luks1_load(d.dev, &h, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "is truncated: 1048576 bytes, but its data starts at 2097152"));
  bdev_close(d.dev);
}

/* The first step of a conversion: the keyslot moves beyond the bytes LUKS2
 * will write and still opens; with no inactive keyslot there, nothing is
 * written; a phdr changed on disk since it was read is not overwritten. */
static void test_keep_keyslot_above(void **state)
{
  (void)state;
  struct disk d;
  struct luks1_hdr h;
  struct nbdc_error err = {0};
  build(&d, "sha256", 64);
  assert_int_equal(luks1_load(d.dev, &h, &err), 0);
  int to = -1;
  assert_int_equal(luks1_keep_keyslot_above(d.dev, &h, 0, 300000, &to, &err), 0);
  assert_int_equal(to, 2); /* slot 1's material starts at 262144, slot 2's at 520192 */
  struct luks1_hdr again;
  assert_int_equal(luks1_load(d.dev, &again, &err), 0);
  assert_false(again.keyslots[0].active);
  assert_true(again.keyslots[2].active);
  assert_int_equal(again.keyslots[2].key_material_offset, slot_sector(2));
  assert_int_equal(again.keyslots[2].iterations, ITER);
  uint8_t *mk = NULL;
  size_t mk_len = 0;
  int opened = -1;
  assert_int_equal(luks1_keyslot_open(&again, d.dev, -1, (const uint8_t *)PASS, strlen(PASS), &mk,
                                      &mk_len, &opened, &err),
                   0);
  assert_int_equal(opened, 2);
  assert_memory_equal(mk, d.mk, mk_len);
  secmem_free(mk, mk_len);
  /* Already beyond: nothing moves. */
  assert_int_equal(luks1_keep_keyslot_above(d.dev, &again, 2, 300000, &to, &err), 0);
  assert_int_equal(to, 2);

  /* The phdr on disk is not the one given: refused. */
  again.keyslots[5].iterations = 7;
  assert_int_equal(luks1_keep_keyslot_above(d.dev, &again, 2, 600000, &to, &err), -EBUSY);
  bdev_close(d.dev);

  /* No inactive keyslot far enough: -ENOSPC, the device untouched. */
  build(&d, "sha256", 64);
  assert_int_equal(luks1_load(d.dev, &h, &err), 0);
  uint8_t before[LUKS1_PHDR_SIZE], after[LUKS1_PHDR_SIZE];
  assert_int_equal(bdev_pread(d.dev, before, sizeof before, 0, &err), 0);
  assert_int_equal(luks1_keep_keyslot_above(d.dev, &h, 0, 8 * 504 * 512, &to, &err), -ENOSPC);
  assert_non_null(strstr(err.msg, "no inactive LUKS1 keyslot"));
  assert_int_equal(bdev_pread(d.dev, after, sizeof after, 0, &err), 0);
  assert_memory_equal(before, after, sizeof before);
  bdev_close(d.dev);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_and_unlock),
      cmocka_unit_test(test_damaged_material),
      cmocka_unit_test(test_corrupt),
      cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_keep_keyslot_above),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

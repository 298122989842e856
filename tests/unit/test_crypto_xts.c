/* XTS sector engine: IEEE 1619-2007 XTS-AES-256 vectors 10..14 (512-byte data
 * units, tweak = data unit sequence number), the LUKS2 IV convention for
 * 4096-byte sectors, multi-sector runs, in-place use, xts_dup and errors.
 * Vectors as reproduced in Botan's src/tests/data/modes/xts.vec. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "nbdcrypt/crypto.h"

static void hex_to_bytes(const char *hex, uint8_t *out, size_t n)
{
  assert_int_equal(strlen(hex), 2 * n);
  for (size_t i = 0; i < n; i++) {
    char byte[3] = {hex[2 * i], hex[2 * i + 1], 0};
    out[i] = (uint8_t)strtoul(byte, NULL, 16);
  }
}

static const char ieee_key_256[] =
    "27182818284590452353602874713526624977572470936999595749669676273141592653589793238462643383"
    "279502884197169399375105820974944592";

/* Vectors 10..14 all encrypt the pattern 00..ff 00..ff. */
static const struct {
  int number;
  uint64_t unit;
  const char *ciphertext;
} ieee_vectors[] = {
    {10, UINT64_C(0xff),
     "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b"
     "5d31e276f8fe4a8d66b317f9ac683f44680a86ac35adfc3345befecb4bb188fd"
     "5776926c49a3095eb108fd1098baec70aaa66999a72a82f27d848b21d4a741b0"
     "c5cd4d5fff9dac89aeba122961d03a757123e9870f8acf1000020887891429ca"
     "2a3e7a7d7df7b10355165c8b9a6d0a7de8b062c4500dc4cd120c0f7418dae3d0"
     "b5781c34803fa75421c790dfe1de1834f280d7667b327f6c8cd7557e12ac3a0f"
     "93ec05c52e0493ef31a12d3d9260f79a289d6a379bc70c50841473d1a8cc81ec"
     "583e9645e07b8d9670655ba5bbcfecc6dc3966380ad8fecb17b6ba02469a020a"
     "84e18e8f84252070c13e9f1f289be54fbc481457778f616015e1327a02b140f1"
     "505eb309326d68378f8374595c849d84f4c333ec4423885143cb47bd71c5edae"
     "9be69a2ffeceb1bec9de244fbe15992b11b77c040f12bd8f6a975a44a0f90c29"
     "a9abc3d4d893927284c58754cce294529f8614dcd2aba991925fedc4ae74ffac"
     "6e333b93eb4aff0479da9a410e4450e0dd7ae4c6e2910900575da401fc07059f"
     "645e8b7e9bfdef33943054ff84011493c27b3429eaedb4ed5376441a77ed4385"
     "1ad77f16f541dfd269d50d6a5f14fb0aab1cbb4c1550be97f7ab4066193c4caa"
     "773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151"},
    {11, UINT64_C(0xffff),
     "77a31251618a15e6b92d1d66dffe7b50b50bad552305ba0217a610688eff7e11"
     "e1d0225438e093242d6db274fde801d4cae06f2092c728b2478559df58e837c2"
     "469ee4a4fa794e4bbc7f39bc026e3cb72c33b0888f25b4acf56a2a9804f1ce6d"
     "3d6e1dc6ca181d4b546179d55544aa7760c40d06741539c7e3cd9d2f6650b201"
     "3fd0eeb8c2b8e3d8d240ccae2d4c98320a7442e1c8d75a42d6e6cfa4c2eca179"
     "8d158c7aecdf82490f24bb9b38e108bcda12c3faf9a21141c3613b58367f922a"
     "aa26cd22f23d708dae699ad7cb40a8ad0b6e2784973dcb605684c08b8d6998c6"
     "9aac049921871ebb65301a4619ca80ecb485a31d744223ce8ddc2394828d6a80"
     "470c092f5ba413c3378fa6054255c6f9df4495862bbb3287681f931b687c888a"
     "bf844dfc8fc28331e579928cd12bd2390ae123cf03818d14dedde5c0c24c8ab0"
     "18bfca75ca096f2d531f3d1619e785f1ada437cab92e980558b3dce1474afb75"
     "bfedbf8ff54cb2618e0244c9ac0d3c66fb51598cd2db11f9be39791abe447c63"
     "094f7c453b7ff87cb5bb36b7c79efb0872d17058b83b15ab0866ad8a58656c5a"
     "7e20dbdf308b2461d97c0ec0024a2715055249cf3b478ddd4740de654f75ca68"
     "6e0d7345c69ed50cdc2a8b332b1f8824108ac937eb050585608ee734097fc090"
     "54fbff89eeaeea791f4a7ab1f9868294a4f9e27b42af8100cb9d59cef9645803"},
    {12, UINT64_C(0xffffff),
     "e387aaa58ba483afa7e8eb469778317ecf4cf573aa9d4eac23f2cdf914e4e200"
     "a8b490e42ee646802dc6ee2b471b278195d60918ececb44bf79966f83faba049"
     "9298ebc699c0c8634715a320bb4f075d622e74c8c932004f25b41e361025b5a8"
     "7815391f6108fc4afa6a05d9303c6ba68a128a55705d415985832fdeaae6c8e1"
     "9110e84d1b1f199a2692119edc96132658f09da7c623efcec712537a3d94c0bf"
     "5d7e352ec94ae5797fdb377dc1551150721adf15bd26a8efc2fcaad56881fa9e"
     "62462c28f30ae1ceaca93c345cf243b73f542e2074a705bd2643bb9f7cc79bb6"
     "e7091ea6e232df0f9ad0d6cf502327876d82207abf2115cdacf6d5a48f6c1879"
     "a65b115f0f8b3cb3c59d15dd8c769bc014795a1837f3901b5845eb491adfefe0"
     "97b1fa30a12fc1f65ba22905031539971a10f2f36c321bb51331cdefb39e3964"
     "c7ef079994f5b69b2edd83a71ef549971ee93f44eac3938fcdd61d01fa71799d"
     "a3a8091c4c48aa9ed263ff0749df95d44fef6a0bb578ec69456aa5408ae32c7a"
     "f08ad7ba8921287e3bbee31b767be06a0e705c864a769137df28292283ea81a2"
     "480241b44d9921cdbec1bc28dc1fda114bd8e5217ac9d8ebafa720e9da4f9ace"
     "231cc949e5b96fe76ffc21063fddc83a6b8679c00d35e09576a875305bed5f36"
     "ed242c8900dd1fa965bc950dfce09b132263a1eef52dd6888c309f5a7d712826"},
    {13, UINT64_C(0xffffffff),
     "bf53d2dade78e822a4d949a9bc6766b01b06a8ef70d26748c6a7fc36d80ae4c5"
     "520f7c4ab0ac8544424fa405162fef5a6b7f229498063618d39f0003cb5fb8d1"
     "c86b643497da1ff945c8d3bedeca4f479702a7a735f043ddb1d6aaade3c4a0ac"
     "7ca7f3fa5279bef56f82cd7a2f38672e824814e10700300a055e1630b8f1cb0e"
     "919f5e942010a416e2bf48cb46993d3cb6a51c19bacf864785a00bc2ecff15d3"
     "50875b246ed53e68be6f55bd7e05cfc2b2ed6432198a6444b6d8c247fab941f5"
     "69768b5c429366f1d3f00f0345b96123d56204c01c63b22ce78baf116e525ed9"
     "0fdea39fa469494d3866c31e05f295ff21fea8d4e6e13d67e47ce722e9698a1c"
     "1048d68ebcde76b86fcf976eab8aa9790268b7068e017a8b9b749409514f1053"
     "027fd16c3786ea1bac5f15cb79711ee2abe82f5cf8b13ae73030ef5b9e4457e7"
     "5d1304f988d62dd6fc4b94ed38ba831da4b7634971b6cd8ec325d9c61c00f1df"
     "73627ed3745a5e8489f3a95c69639c32cd6e1d537a85f75cc844726e8a72fc00"
     "77ad22000f1d5078f6b866318c668f1ad03d5a5fced5219f2eabbd0aa5c0f460"
     "d183f04404a0d6f469558e81fab24a167905ab4c7878502ad3e38fdbe62a4155"
     "6cec37325759533ce8f25f367c87bb5578d667ae93f9e2fd99bcbc5f2fbba88c"
     "f6516139420fcff3b7361d86322c4bd84c82f335abb152c4a93411373aaa8220"},
    {14, UINT64_C(0xffffffffff),
     "64497e5a831e4a932c09be3e5393376daa599548b816031d224bbf50a818ed23"
     "50eae7e96087c8a0db51ad290bd00c1ac1620857635bf246c176ab463be30b80"
     "8da548081ac847b158e1264be25bb0910bbc92647108089415d45fab1b3d2604"
     "e8a8eff1ae4020cfa39936b66827b23f371b92200be90251e6d73c5f86de5fd4"
     "a950781933d79a28272b782a2ec313efdfcc0628f43d744c2dc2ff3dcb66999b"
     "50c7ca895b0c64791eeaa5f29499fb1c026f84ce5b5c72ba1083cddb5ce45434"
     "631665c333b60b11593fb253c5179a2c8db813782a004856a1653011e93fb6d8"
     "76c18366dd8683f53412c0c180f9c848592d593f8609ca736317d356e13e2bff"
     "3a9f59cd9aeb19cd482593d8c46128bb32423b37a9adfb482b99453fbe25a41b"
     "f6feb4aa0bef5ed24bf73c762978025482c13115e4015aac992e5613a3b5c2f6"
     "85b84795cb6e9b2656d8c88157e52c42f978d8634c43d06fea928f2822e465aa"
     "6576e9bf419384506cc3ce3c54ac1a6f67dc66f3b30191e698380bc999b05abc"
     "e19dc0c6dcc2dd001ec535ba18deb2df1a101023108318c75dc98611a09dc48a"
     "0acdec676fabdf222f07e026f059b672b56e5cbc8e1d21bbd867dd9272120546"
     "81d70ea737134cdfce93b6f82ae22423274e58a0821cc5502e2d0ab4585e94de"
     "6975be5e0b4efce51cd3e70c25a1fbbbd609d273ad5b0d59631c531f6a0a57b9"},
};

static void fill_pattern(uint8_t *buf, size_t n)
{
  for (size_t i = 0; i < n; i++)
    buf[i] = (uint8_t)i;
}

static void fill_test_key(uint8_t *key, size_t n, uint8_t seed)
{
  for (size_t i = 0; i < n; i++)
    key[i] = (uint8_t)(seed + i * 37u);
}

/* XTS of one data unit straight through EVP with an explicit 16-byte IV. */
static void evp_xts(const uint8_t *key, size_t key_len, const uint8_t iv[16], const uint8_t *in,
                    uint8_t *out, size_t len, int enc)
{
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  assert_non_null(c);
  const EVP_CIPHER *cipher = key_len == 64 ? EVP_aes_256_xts() : EVP_aes_128_xts();
  int outl = 0;
  assert_int_equal(EVP_CipherInit_ex(c, cipher, NULL, key, iv, enc), 1);
  assert_int_equal(EVP_CipherUpdate(c, out, &outl, in, (int)len), 1);
  assert_int_equal(outl, (int)len);
  EVP_CIPHER_CTX_free(c);
}

static void iv_for_unit(uint8_t iv[16], uint64_t unit)
{
  memset(iv, 0, 16);
  for (int b = 0; b < 8; b++)
    iv[b] = (uint8_t)(unit >> (8 * b));
}

static void test_ieee1619_vectors_10_to_14(void **state)
{
  (void)state;
  uint8_t key[64], plain[512], expect[512], buf[512], back[512];
  hex_to_bytes(ieee_key_256, key, sizeof key);
  fill_pattern(plain, sizeof plain);
  struct nbdc_error err = {0};
  struct xts_ctx *ctx = NULL;
  assert_int_equal(xts_new(&ctx, key, sizeof key, 512, &err), 0);
  for (size_t v = 0; v < sizeof ieee_vectors / sizeof ieee_vectors[0]; v++) {
    hex_to_bytes(ieee_vectors[v].ciphertext, expect, sizeof expect);
    assert_int_equal(xts_encrypt(ctx, buf, plain, sizeof plain, ieee_vectors[v].unit, &err), 0);
    if (memcmp(buf, expect, sizeof buf) != 0)
      fail_msg("ieee 1619 vector %d: ciphertext mismatch", ieee_vectors[v].number);
    assert_int_equal(xts_decrypt(ctx, back, buf, sizeof buf, ieee_vectors[v].unit, &err), 0);
    assert_memory_equal(back, plain, sizeof plain);
  }
  xts_free(ctx);
}

/* A 4096-byte sector n uses IV LE64(n * 8): IVs count 512-byte units. */
static void test_4096_sector_iv_counts_512_byte_units(void **state)
{
  (void)state;
  enum { SECTOR = 4096, SECTORS = 3 };
  uint8_t key[64];
  fill_test_key(key, sizeof key, 1);
  uint8_t *plain = malloc(SECTOR * SECTORS), *ours = malloc(SECTOR * SECTORS);
  uint8_t *theirs = malloc(SECTOR);
  assert_non_null(plain);
  assert_non_null(ours);
  assert_non_null(theirs);
  for (size_t i = 0; i < SECTOR * SECTORS; i++)
    plain[i] = (uint8_t)(i * 7 + (i >> 9));

  struct nbdc_error err = {0};
  struct xts_ctx *ctx = NULL;
  assert_int_equal(xts_new(&ctx, key, sizeof key, SECTOR, &err), 0);
  assert_int_equal(xts_sector_size(ctx), SECTOR);
  const uint64_t first_sector = 1000;
  assert_int_equal(xts_encrypt(ctx, ours, plain, SECTOR * SECTORS, first_sector * 8, &err), 0);
  for (int s = 0; s < SECTORS; s++) {
    uint8_t iv[16];
    iv_for_unit(iv, (first_sector + (uint64_t)s) * 8);
    evp_xts(key, sizeof key, iv, plain + s * SECTOR, theirs, SECTOR, 1);
    assert_memory_equal(ours + s * SECTOR, theirs, SECTOR);
  }
  /* And the wrong convention (IV = sector number) must differ. */
  uint8_t iv[16];
  iv_for_unit(iv, first_sector);
  evp_xts(key, sizeof key, iv, plain, theirs, SECTOR, 1);
  assert_memory_not_equal(ours, theirs, SECTOR);
  xts_free(ctx);
  free(plain);
  free(ours);
  free(theirs);
}

/* One call over many sectors equals one call per sector; decrypt inverts. */
static void test_multi_sector_run_equals_per_sector(void **state)
{
  (void)state;
  static const uint32_t sizes[] = {512, 1024, 2048, 4096};
  static const size_t key_lens[] = {32, 64};
  enum { LEN = 64 * 1024 };
  uint8_t *plain = malloc(LEN), *whole = malloc(LEN), *pieces = malloc(LEN), *back = malloc(LEN);
  assert_true(plain && whole && pieces && back);
  for (size_t i = 0; i < LEN; i++)
    plain[i] = (uint8_t)(i ^ (i >> 8) ^ (i >> 16));
  for (size_t k = 0; k < 2; k++) {
    for (size_t s = 0; s < 4; s++) {
      uint8_t key[64];
      fill_test_key(key, key_lens[k], (uint8_t)(s + 3));
      struct nbdc_error err = {0};
      struct xts_ctx *ctx = NULL;
      assert_int_equal(xts_new(&ctx, key, key_lens[k], sizes[s], &err), 0);
      uint64_t first = UINT64_C(0x123456789);
      assert_int_equal(xts_encrypt(ctx, whole, plain, LEN, first, &err), 0);
      uint32_t units = sizes[s] / 512;
      for (size_t off = 0; off < LEN; off += sizes[s]) {
        assert_int_equal(xts_encrypt(ctx, pieces + off, plain + off, sizes[s],
                                     first + off / sizes[s] * units, &err),
                         0);
        uint8_t iv[16];
        uint8_t ref[4096];
        iv_for_unit(iv, first + off / 512);
        evp_xts(key, key_lens[k], iv, plain + off, ref, sizes[s], 1);
        assert_memory_equal(whole + off, ref, sizes[s]);
      }
      assert_memory_equal(whole, pieces, LEN);
      assert_memory_not_equal(whole, plain, LEN);
      assert_int_equal(xts_decrypt(ctx, back, whole, LEN, first, &err), 0);
      assert_memory_equal(back, plain, LEN);
      /* Decrypting at the wrong position does not give the plaintext back. */
      assert_int_equal(xts_decrypt(ctx, back, whole, LEN, first + units, &err), 0);
      assert_memory_not_equal(back, plain, sizes[s]);
      xts_free(ctx);
    }
  }
  free(plain);
  free(whole);
  free(pieces);
  free(back);
}

static void test_in_place_equals_out_of_place(void **state)
{
  (void)state;
  enum { LEN = 8 * 4096 };
  uint8_t key[64];
  fill_test_key(key, sizeof key, 9);
  uint8_t *plain = malloc(LEN), *out = malloc(LEN), *inplace = malloc(LEN);
  assert_true(plain && out && inplace);
  for (size_t i = 0; i < LEN; i++)
    plain[i] = (uint8_t)(i * 13);
  memcpy(inplace, plain, LEN);
  struct nbdc_error err = {0};
  struct xts_ctx *ctx = NULL;
  assert_int_equal(xts_new(&ctx, key, sizeof key, 4096, &err), 0);
  assert_int_equal(xts_encrypt(ctx, out, plain, LEN, 64, &err), 0);
  assert_int_equal(xts_encrypt(ctx, inplace, inplace, LEN, 64, &err), 0);
  assert_memory_equal(out, inplace, LEN);
  assert_int_equal(xts_decrypt(ctx, inplace, inplace, LEN, 64, &err), 0);
  assert_memory_equal(inplace, plain, LEN);
  xts_free(ctx);
  free(plain);
  free(out);
  free(inplace);
}

static void test_dup_is_equivalent_and_independent(void **state)
{
  (void)state;
  enum { LEN = 4 * 4096 };
  uint8_t key[64];
  fill_test_key(key, sizeof key, 21);
  uint8_t *plain = malloc(LEN), *a = malloc(LEN), *b = malloc(LEN);
  assert_true(plain && a && b);
  for (size_t i = 0; i < LEN; i++)
    plain[i] = (uint8_t)(i * 5 + 1);
  struct nbdc_error err = {0};
  struct xts_ctx *ctx = NULL, *copy = NULL;
  assert_int_equal(xts_new(&ctx, key, sizeof key, 4096, &err), 0);
  assert_int_equal(xts_dup(ctx, &copy, &err), 0);
  assert_ptr_not_equal(ctx, copy);
  assert_int_equal(xts_sector_size(copy), 4096);
  assert_int_equal(xts_encrypt(ctx, a, plain, LEN, 8, &err), 0);
  xts_free(ctx); /* the copy must not depend on the original */
  assert_int_equal(xts_encrypt(copy, b, plain, LEN, 8, &err), 0);
  assert_memory_equal(a, b, LEN);
  assert_int_equal(xts_decrypt(copy, b, b, LEN, 8, &err), 0);
  assert_memory_equal(b, plain, LEN);
  xts_free(copy);
  free(plain);
  free(a);
  free(b);
}

struct xts_job {
  struct xts_ctx *ctx;
  uint8_t *buf;
  size_t len;
  uint64_t first_unit;
  int result;
};

static void *xts_job_run(void *arg)
{
  struct xts_job *job = arg;
  struct nbdc_error err = {0};
  job->result = 0;
  for (int round = 0; round < 20 && job->result == 0; round++) {
    job->result = xts_encrypt(job->ctx, job->buf, job->buf, job->len, job->first_unit, &err);
    if (job->result == 0)
      job->result = xts_decrypt(job->ctx, job->buf, job->buf, job->len, job->first_unit, &err);
  }
  if (job->result == 0)
    job->result = xts_encrypt(job->ctx, job->buf, job->buf, job->len, job->first_unit, &err);
  return NULL;
}

/* Per-thread contexts from xts_dup, used concurrently, give the same bytes as one context. */
static void test_dup_contexts_in_parallel_threads(void **state)
{
  (void)state;
  enum { THREADS = 3, LEN = 64 * 1024 };
  uint8_t key[64];
  fill_test_key(key, sizeof key, 77);
  struct nbdc_error err = {0};
  struct xts_ctx *base = NULL;
  assert_int_equal(xts_new(&base, key, sizeof key, 4096, &err), 0);
  uint8_t *expect = malloc(LEN);
  assert_non_null(expect);
  struct xts_job jobs[THREADS];
  pthread_t threads[THREADS];
  for (int t = 0; t < THREADS; t++) {
    jobs[t].buf = malloc(LEN);
    assert_non_null(jobs[t].buf);
    memset(jobs[t].buf, 0x3c, LEN);
    jobs[t].len = LEN;
    jobs[t].first_unit = 4096;
    assert_int_equal(xts_dup(base, &jobs[t].ctx, &err), 0);
  }
  memset(expect, 0x3c, LEN);
  assert_int_equal(xts_encrypt(base, expect, expect, LEN, 4096, &err), 0);
  for (int t = 0; t < THREADS; t++)
    assert_int_equal(pthread_create(&threads[t], NULL, xts_job_run, &jobs[t]), 0);
  for (int t = 0; t < THREADS; t++) {
    assert_int_equal(pthread_join(threads[t], NULL), 0);
    assert_int_equal(jobs[t].result, 0);
    assert_memory_equal(jobs[t].buf, expect, LEN);
    xts_free(jobs[t].ctx);
    free(jobs[t].buf);
  }
  xts_free(base);
  free(expect);
}

static void test_errors(void **state)
{
  (void)state;
  uint8_t key[64];
  fill_test_key(key, sizeof key, 42);
  struct nbdc_error err = {0};
  struct xts_ctx *ctx = (struct xts_ctx *)&err; /* must be reset to NULL on failure */

  assert_int_equal(xts_new(&ctx, key, 48, 512, &err), -EINVAL);
  assert_null(ctx);
  assert_int_equal(err.code, EINVAL);
  assert_non_null(strstr(err.msg, "bad xts key length 48"));

  assert_int_equal(xts_new(&ctx, key, 64, 768, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "sector size 768"));
  assert_int_equal(xts_new(&ctx, key, 64, 8192, &err), -EINVAL);
  assert_int_equal(xts_new(&ctx, key, 64, 256, &err), -EINVAL);

  uint8_t equal_halves[64];
  memset(equal_halves, 0xab, sizeof equal_halves);
  assert_int_equal(xts_new(&ctx, equal_halves, 64, 512, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "halves are equal"));
  fill_test_key(equal_halves, 16, 1);
  memcpy(equal_halves + 16, equal_halves, 16);
  assert_int_equal(xts_new(&ctx, equal_halves, 32, 512, &err), -EINVAL);

  assert_int_equal(xts_new(&ctx, key, 64, 4096, &err), 0);
  uint8_t buf[8192] = {0};
  assert_int_equal(xts_encrypt(ctx, buf, buf, 512, 0, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "length 512 is not a multiple of the sector size 4096"));
  assert_int_equal(xts_decrypt(ctx, buf, buf, 4097, 0, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "decrypt length 4097"));
  assert_int_equal(xts_encrypt(ctx, buf + 512, buf, 4096, 0, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "overlap"));
  assert_int_equal(xts_encrypt(ctx, buf, buf, 0, 0, &err), 0);
  xts_free(ctx);
  xts_free(NULL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ieee1619_vectors_10_to_14),
      cmocka_unit_test(test_4096_sector_iv_counts_512_byte_units),
      cmocka_unit_test(test_multi_sector_run_equals_per_sector),
      cmocka_unit_test(test_in_place_equals_out_of_place),
      cmocka_unit_test(test_dup_is_equivalent_and_independent),
      cmocka_unit_test(test_dup_contexts_in_parallel_threads),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* reencrypt: the engine over memory bdevs (no second reader: the workers
 * share the device under the engine's mutex), wrapped by the
 * fault-injecting bdev of tests/support.  For every N, a run whose N-th
 * write fails is resumed: the data is intact every time, and
 * the engine says truly whether it left the disk half way.  Also the order
 * of the hooks an online caller relies on.  Torn writes (half of the N-th
 * write lands) for recrypt (header commits) and encrypt (the marker that
 * grows the image); decrypt's header writes are recrypt's. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fault_bdev.h"
#include "nbdcrypt/reencrypt.h"
#include "nbdcrypt/volume.h"
#include "counting_bdev.h"
#include "unit_tmpdir.h"

#define MIB       (UINT64_C(1) << 20)
#define DATA_SIZE (20 * MIB) /* two zones of 16 MiB and 4 MiB */
#define HOTZONE   (16 * MIB)
#define PIECE     (2u << 20) /* fault granularity: writes counted per 2 MiB */

struct fixture {
  char dir[256];
  struct keys_config *cfg;
  char kek_id[KEYS_ID_MAX];
  uint8_t *plain;    /* DATA_SIZE bytes */
  uint8_t *enc;      /* an encrypted image of plain */
  uint64_t enc_size; /* its size */
};

static struct bdev *memory_with(const uint8_t *data, uint64_t size)
{
  struct nbdc_error err = {0};
  struct bdev *dev = NULL;
  if (bdev_open_memory_file(size, &dev, &err) < 0 || bdev_pwrite(dev, data, size, 0, &err) < 0)
    fail_msg("memory device: %s", err.msg);
  return dev;
}

static uint8_t *contents(struct bdev *dev, uint64_t *size)
{
  struct nbdc_error err = {0};
  if (bdev_get_size(dev, size, &err) < 0)
    fail_msg("size: %s", err.msg);
  uint8_t *buf = malloc(*size);
  assert_non_null(buf);
  if (bdev_pread(dev, buf, *size, 0, &err) < 0)
    fail_msg("read: %s", err.msg);
  return buf;
}

static struct reenc_opts opts_for(struct fixture *f, enum reenc_mode mode)
{
  return (struct reenc_opts){.mode = mode,
                             .cfg = f->cfg,
                             .kek_id = mode == REENC_ENCRYPT ? f->kek_id : NULL,
                             .hotzone = HOTZONE,
                             .workers = 2};
}

/* Run mode on dev; with plan, through the fault bdev.  *half_way (may be
 * NULL) gets the engine's word on the disk left behind. */
static int run(struct fixture *f, struct bdev *dev, enum reenc_mode mode, bool resume_only,
               struct fault_plan *plan, const struct reenc_hooks *hooks, bool *half_way,
               struct nbdc_error *err)
{
  struct bdev *faulty = NULL;
  if (plan && fault_bdev_wrap(dev, false, plan, PIECE, &faulty, err) < 0)
    fail_msg("fault_bdev_wrap: %s", err->msg);
  struct reenc_target t = {.data = faulty ? faulty : dev, .name = "memory"};
  struct reenc_opts o = opts_for(f, mode);
  o.resume_only = resume_only;
  o.hooks = hooks;
  int r = reenc_run(&t, &o, err);
  if (half_way)
    *half_way = t.half_way;
  bdev_close(faulty);
  return r;
}

/* The plaintext dev's data area holds, read with cfg's KEK. */
static void assert_decrypts_to_plain(struct fixture *f, struct bdev *dev, const char *what)
{
  struct nbdc_error err = {0};
  struct volume *vol = NULL;
  struct volume_unlock_opts uo = {.cfg = f->cfg, .keyslot = -1};
  if (volume_open(dev, &uo, &vol, &err) < 0)
    fail_msg("%s: volume_open: %s", what, err.msg);
  const struct luks2_segment *seg = volume_segment(vol);
  uint64_t dev_size, size;
  assert_int_equal(bdev_get_size(dev, &dev_size, &err), 0);
  assert_int_equal(volume_data_size(vol, dev_size, &size, &err), 0);
  if (size != DATA_SIZE)
    fail_msg("%s: data size %llu", what, (unsigned long long)size);
  struct xts_ctx *xts = NULL;
  assert_int_equal(volume_xts_new(vol, &xts, &err), 0);
  uint8_t *buf = malloc(DATA_SIZE);
  assert_non_null(buf);
  assert_int_equal(bdev_pread(dev, buf, DATA_SIZE, seg->offset, &err), 0);
  assert_int_equal(xts_decrypt(xts, buf, buf, DATA_SIZE, seg->iv_tweak, &err), 0);
  if (memcmp(buf, f->plain, DATA_SIZE) != 0)
    fail_msg("%s: the data does not decrypt to the original", what);
  free(buf);
  xts_free(xts);
  volume_close(vol);
}

static int setup(void **state)
{
  struct fixture *f = calloc(1, sizeof *f);
  struct nbdc_error err = {0};
  char json[1024];
  assert_int_equal(unit_tmpdir_make(f->dir, sizeof f->dir, "reencrypt-engine"), 0);
  snprintf(json, sizeof json,
           "{\"providers\": {\"local\": {\"type\": \"native\", \"keystore\": "
           "\"%s/keystore.json\"}}, \"default_provider\": \"local\"}",
           f->dir);
  assert_int_equal(keys_config_parse(json, "test", &f->cfg, &err), 0);
  struct keys_provider *p = NULL;
  assert_int_equal(keys_provider_open(f->cfg, "local", &p, &err), 0);
  assert_int_equal(keys_kek_create(p, "engine test", f->kek_id, &err), 0);
  keys_provider_close(p);
  f->plain = malloc(DATA_SIZE);
  assert_non_null(f->plain);
  assert_int_equal(crypto_random(f->plain, DATA_SIZE, &err), 0);
  /* the encrypted image every recrypt and decrypt starts from */
  struct bdev *dev = memory_with(f->plain, DATA_SIZE);
  if (run(f, dev, REENC_ENCRYPT, false, NULL, NULL, NULL, &err) < 0)
    fail_msg("encrypt: %s", err.msg);
  f->enc = contents(dev, &f->enc_size);
  assert_int_equal(f->enc_size, DATA_SIZE + 16 * MIB);
  assert_decrypts_to_plain(f, dev, "encrypted image");
  bdev_close(dev);
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  struct fixture *f = *state;
  keys_config_free(f->cfg);
  assert_int_equal(unit_tmpdir_remove(f->dir), 0);
  free(f->plain);
  free(f->enc);
  free(f);
  return 0;
}

/* The final state of mode on dev is right. */
static void assert_final(struct fixture *f, struct bdev *dev, enum reenc_mode mode,
                         const uint8_t *old_key, const char *what)
{
  if (mode == REENC_DECRYPT) {
    uint64_t size;
    uint8_t *got = contents(dev, &size);
    if (size != DATA_SIZE || memcmp(got, f->plain, DATA_SIZE) != 0)
      fail_msg("%s: the decrypted image differs from the original", what);
    free(got);
    return;
  }
  assert_decrypts_to_plain(f, dev, what);
  if (mode == REENC_RECRYPT && old_key) {
    struct nbdc_error err = {0};
    struct luks2_hdr *hdr = NULL;
    assert_int_equal(luks2_load(dev, &hdr, &err), 0);
    if (luks2_digest_verify(hdr, old_key, 64, &err) == 0)
      fail_msg("%s: the old volume key still opens the disk", what);
    luks2_free(hdr);
  }
}

/* The volume key of the pristine encrypted image. */
static void old_key_of(struct fixture *f, uint8_t key[64])
{
  struct nbdc_error err = {0};
  struct bdev *dev = memory_with(f->enc, f->enc_size);
  struct volume *vol = NULL;
  struct volume_unlock_opts uo = {.cfg = f->cfg, .keyslot = -1};
  assert_int_equal(volume_open(dev, &uo, &vol, &err), 0);
  size_t len;
  memcpy(key, volume_key(vol, &len), 64);
  volume_close(vol);
  bdev_close(dev);
}

/* For every N: fail (or tear) the N-th write, then resume; the data is
 * intact, and the engine's half_way matches what a --resume finds. */
static void every_write_fails(struct fixture *f, enum reenc_mode mode, enum fault_action action)
{
  const uint8_t *start = mode == REENC_ENCRYPT ? f->plain : f->enc;
  uint64_t start_size = mode == REENC_ENCRYPT ? DATA_SIZE : f->enc_size;
  uint8_t old_key[64];
  if (mode != REENC_ENCRYPT)
    old_key_of(f, old_key);
  /* how many writes a whole run makes */
  struct nbdc_error err = {0};
  struct bdev *dev = memory_with(start, start_size);
  struct fault_plan count = {0};
  if (run(f, dev, mode, false, &count, NULL, NULL, &err) < 0)
    fail_msg("uninterrupted run: %s", err.msg);
  bdev_close(dev);
  assert_true(count.writes > 4);
  int half_way_runs = 0;
  for (long n = 1; n <= count.writes; n++) {
    char what[128];
    snprintf(what, sizeof what, "mode %d, action %d, write %ld of %ld", mode, action, n,
             count.writes);
    dev = memory_with(start, start_size);
    struct fault_plan plan = {.action = action, .at = n};
    bool half_way = false;
    int r = run(f, dev, mode, false, &plan, NULL, &half_way, &err);
    if (r == 0)
      fail_msg("%s: the run did not fail", what);
    if (!strstr(err.msg, "injected"))
      fail_msg("%s: the error is not the injected one: %s", what, err.msg);
    /* --resume finds an operation exactly when the engine said half way */
    r = run(f, dev, mode, true, NULL, NULL, NULL, &err);
    if (half_way && r < 0)
      fail_msg("%s: --resume of a disk left half way: %s", what, err.msg);
    if (!half_way) {
      if (r != -ENOENT || !strstr(err.msg, "no operation to resume"))
        fail_msg("%s: --resume of a disk the engine did not change: %d %s", what, r, err.msg);
      /* a run cut after its last commit took: nothing left to do, said so */
      r = run(f, dev, mode, false, NULL, NULL, NULL, &err);
      if (r < 0 && !(mode == REENC_ENCRYPT && r == -EEXIST) &&
          !(mode == REENC_DECRYPT && r == -ENODATA))
        fail_msg("%s: a rerun: %s", what, err.msg);
    }
    half_way_runs += half_way;
    assert_final(f, dev, mode, mode == REENC_RECRYPT ? old_key : NULL, what);
    bdev_close(dev);
  }
  /* nearly every write point is inside the operation */
  assert_true(half_way_runs >= count.writes / 2);
}

static void test_recrypt_every_write_fails(void **state)
{
  every_write_fails(*state, REENC_RECRYPT, FAULT_FAIL);
}

static void test_recrypt_every_write_torn(void **state)
{
  every_write_fails(*state, REENC_RECRYPT, FAULT_TORN);
}

static void test_encrypt_every_write_fails(void **state)
{
  every_write_fails(*state, REENC_ENCRYPT, FAULT_FAIL);
}

static void test_encrypt_every_write_torn(void **state)
{
  every_write_fails(*state, REENC_ENCRYPT, FAULT_TORN);
}

static void test_decrypt_every_write_fails(void **state)
{
  every_write_fails(*state, REENC_DECRYPT, FAULT_FAIL);
}

/* ---- hooks ---- */

struct trace {
  int started;
  uint64_t begun_end; /* end of the last zone begun */
  uint64_t done;      /* the boundary last reported */
  int open_zones;     /* begun, not yet done */
  int max_open;
  int zones;
  bool bad_order;
  int stop_at_zone; /* zone_begin of this zone (1-based) fails; 0: never */
};

static int trace_started(void *opaque, const struct reenc_info *info)
{
  struct trace *t = opaque;
  t->started++;
  if (!info->old_xts || !info->new_xts || info->state.data_size != DATA_SIZE)
    t->bad_order = true;
  t->done = info->state.done;
  t->begun_end = info->state.done;
  return 0;
}

static int trace_begin(void *opaque, uint64_t offset, uint64_t len)
{
  struct trace *t = opaque;
  if (!t->started || offset != t->begun_end || len == 0)
    t->bad_order = true;
  t->begun_end = offset + len;
  if (++t->open_zones > t->max_open)
    t->max_open = t->open_zones;
  if (++t->zones == t->stop_at_zone)
    return -ECANCELED;
  return 0;
}

static void trace_done(void *opaque, uint64_t offset, uint64_t len, uint64_t done)
{
  struct trace *t = opaque;
  if (offset != t->done || done != offset + len || done > t->begun_end)
    t->bad_order = true;
  t->done = done;
  t->open_zones--;
}

/* started once, zones begun in order before they are read, each done after
 * it was begun, at most two open at once (the pipeline reads one ahead), the
 * boundary moving forward to the end. */
static void test_recrypt_hooks_in_order(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct bdev *dev = memory_with(f->enc, f->enc_size);
  struct trace tr = {0};
  struct reenc_hooks hooks = {
      .opaque = &tr, .started = trace_started, .zone_begin = trace_begin, .zone_done = trace_done};
  if (run(f, dev, REENC_RECRYPT, false, NULL, &hooks, NULL, &err) < 0)
    fail_msg("recrypt: %s", err.msg);
  assert_int_equal(tr.started, 1);
  assert_false(tr.bad_order);
  assert_int_equal(tr.zones, 2);
  assert_int_equal(tr.open_zones, 0);
  assert_true(tr.max_open <= 2);
  assert_int_equal(tr.done, DATA_SIZE);
  assert_final(f, dev, REENC_RECRYPT, NULL, "recrypt with hooks");
  bdev_close(dev);
}

/* A caller's zone_begin that refuses stops the run at a resumable point
 * with its error; a resume finishes it, its hooks in order. */
static void test_recrypt_hook_refusal_stops_resumably(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct bdev *dev = memory_with(f->enc, f->enc_size);
  struct trace tr = {.stop_at_zone = 2};
  struct reenc_hooks hooks = {
      .opaque = &tr, .started = trace_started, .zone_begin = trace_begin, .zone_done = trace_done};
  bool half_way = false;
  assert_int_equal(run(f, dev, REENC_RECRYPT, false, NULL, &hooks, &half_way, &err), -ECANCELED);
  assert_true(half_way);
  assert_non_null(strstr(err.msg, "stopped it"));
  struct trace again = {0};
  hooks.opaque = &again;
  if (run(f, dev, REENC_RECRYPT, true, NULL, &hooks, NULL, &err) < 0)
    fail_msg("resume: %s", err.msg);
  assert_false(again.bad_order);
  assert_int_equal(again.done, DATA_SIZE);
  assert_final(f, dev, REENC_RECRYPT, NULL, "recrypt resumed after a hook refused");
  bdev_close(dev);
}

/* A caller that unlocked the disk itself passes its volume: the engine
 * unlocks nothing (no configuration needed for the old key). */
static void test_recrypt_from_callers_volume(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct bdev *dev = memory_with(f->enc, f->enc_size);
  struct volume *vol = NULL;
  struct volume_unlock_opts uo = {.cfg = f->cfg, .keyslot = -1};
  assert_int_equal(volume_open(dev, &uo, &vol, &err), 0);
  struct reenc_target t = {.data = dev};
  struct reenc_opts o = opts_for(f, REENC_RECRYPT);
  o.old_volume = vol;
  if (reenc_run(&t, &o, &err) < 0)
    fail_msg("recrypt with the caller's volume: %s", err.msg);
  size_t len;
  uint8_t old_key[64];
  memcpy(old_key, volume_key(vol, &len), 64);
  volume_close(vol);
  assert_final(f, dev, REENC_RECRYPT, old_key, "recrypt from the caller's volume");
  bdev_close(dev);
}

/* The header is loaded once before the first commit (which reads it back
 * once for its seqid check): no load of its own by the volume's unlock or
 * the start.  Counted as reads of the primary header's first block. */
struct start_count {
  struct counting_bdev *c;
  int at_start;
};
static int record_start(void *opaque, const struct reenc_info *info)
{
  (void)info;
  struct start_count *sc = opaque;
  sc->at_start = sc->c->header_reads;
  return 0;
}

static void test_recrypt_loads_header_once(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct counting_bdev c = {.inner = memory_with(f->enc, f->enc_size)};
  struct bdev *dev = NULL;
  assert_int_equal(counting_bdev_wrap(&c, &dev, &err), 0);
  struct start_count sc = {.c = &c};
  struct reenc_hooks hooks = {.opaque = &sc, .started = record_start};
  if (run(f, dev, REENC_RECRYPT, false, NULL, &hooks, NULL, &err) < 0)
    fail_msg("recrypt: %s", err.msg);
  /* one load, one read back by the first commit */
  assert_int_equal(sc.at_start, 2);
  assert_final(f, c.inner, REENC_RECRYPT, NULL, "recrypt counting header reads");
  bdev_close(dev);
  bdev_close(c.inner);
}

/* Without resize, an operation that moves the data is refused before
 * anything is written. */
static int no_resize_pread(void *opaque, void *buf, size_t count, uint64_t offset,
                           struct nbdc_error *err)
{
  return bdev_pread(opaque, buf, count, offset, err);
}
static int no_resize_pwrite(void *opaque, const void *buf, size_t count, uint64_t offset,
                            struct nbdc_error *err)
{
  return bdev_pwrite(opaque, buf, count, offset, err);
}
static int no_resize_size(void *opaque, uint64_t *size, struct nbdc_error *err)
{
  return bdev_get_size(opaque, size, err);
}

static void test_encrypt_needs_resize(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct bdev *mem = memory_with(f->plain, DATA_SIZE), *dev = NULL;
  static const struct bdev_ops ops = {
      .pread = no_resize_pread, .pwrite = no_resize_pwrite, .get_size = no_resize_size};
  assert_int_equal(bdev_from_ops(&ops, mem, "fixed", false, &dev, &err), 0);
  struct fault_plan count = {0};
  bool half_way = true;
  assert_int_equal(run(f, dev, REENC_ENCRYPT, false, &count, NULL, &half_way, &err), -ENOTSUP);
  assert_non_null(strstr(err.msg, "cannot grow or shrink"));
  assert_int_equal(count.writes, 0);
  assert_false(half_way);
  bdev_close(dev);
  bdev_close(mem);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_recrypt_every_write_fails),
      cmocka_unit_test(test_recrypt_every_write_torn),
      cmocka_unit_test(test_encrypt_every_write_fails),
      cmocka_unit_test(test_encrypt_every_write_torn),
      cmocka_unit_test(test_decrypt_every_write_fails),
      cmocka_unit_test(test_recrypt_hooks_in_order),
      cmocka_unit_test(test_recrypt_hook_refusal_stops_resumably),
      cmocka_unit_test(test_recrypt_from_callers_volume),
      cmocka_unit_test(test_encrypt_needs_resize),
      cmocka_unit_test(test_recrypt_loads_header_once),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

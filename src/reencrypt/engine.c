/* The re-encryption engine: one loop of hotzones for recrypt, encrypt and
 * decrypt.  docs/reencrypt.md gives the write order and why every crash
 * point is safe; the comments here say which rule a step follows. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "nbdcrypt/luks2.h"
#include "reencrypt/engine.h"

static void sha256(const void *data, size_t len, uint8_t out[32])
{
  /* sha256 is in every backend: cannot fail but for memory. */
  if (crypto_hash_once("sha256", data, len, out, 32, NULL) < 0)
    memset(out, 0, 32);
}

/* ---- data conversion ---- */

/* buf holds logical bytes [logical, logical+len) in the old form; turn them
 * into the new form. */
static int convert(struct reenc *re, uint8_t *buf, size_t len, uint64_t logical,
                   struct nbdc_error *err)
{
  uint64_t unit = logical / 512 + re->st.iv_tweak;
  int r = 0;
  if (re->old_xts)
    r = xts_decrypt(re->old_xts, buf, buf, len, unit, err);
  if (r == 0 && re->new_xts)
    r = xts_encrypt(re->new_xts, buf, buf, len, unit, err);
  return r;
}

/* ---- writing the new form ---- */

static bool all_zero(const uint8_t *p, size_t n)
{
  return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Write len converted bytes at phys.  Plaintext (decrypt) that is all zero
 * in a 4 KiB block becomes a hole where the device can make one, so that a
 * sparse image decrypts to a sparse image (docs/reencrypt.md): a block that
 * reads as zeros is what was written either way, and it matches no entry of
 * the checksum table (the old block was ciphertext).  Ciphertext is never
 * zero: encrypt and recrypt write every block, as cryptsetup does. */
static int write_converted(struct reenc *re, const uint8_t *buf, size_t len, uint64_t phys,
                           struct nbdc_error *err)
{
  if (re->new_xts || !bdev_can_zero(re->dev))
    return bdev_pwrite(re->dev, buf, len, phys, err);
  size_t off = 0;
  while (off < len) {
    size_t n = (size_t)min_u64(BLOCK, len - off);
    bool zero = all_zero(buf + off, n);
    size_t end = off + n;
    while (end < len) {
      size_t m = (size_t)min_u64(BLOCK, len - end);
      if (all_zero(buf + end, m) != zero)
        break;
      end += m;
    }
    int r = zero ? bdev_zero(re->dev, phys + off, end - off, err)
                 : bdev_pwrite(re->dev, buf + off, end - off, phys + off, err);
    if (r < 0)
      return r;
    off = end;
  }
  return 0;
}

/* ---- header ---- */

static size_t build_segments(const struct reenc *re, struct luks2_segment_spec *s, bool final)
{
  const struct reenc_state *st = &re->st;
  size_t n = 0;
  uint64_t N = st->data_size, P = st->done;
  struct luks2_segment_spec crypt_new = {
      .crypt = true, .sector_size = st->sector_size, .digest = re->new_digest};
  struct luks2_segment_spec crypt_old = {
      .crypt = true, .sector_size = st->sector_size, .digest = re->old_digest};
  if (final) {
    if (st->mode == REENC_DECRYPT) {
      s[n++] = (struct luks2_segment_spec){.offset = st->new_offset, .size = N};
      return n;
    }
    crypt_new.offset = st->new_offset;
    crypt_new.size = N;
    crypt_new.dynamic = st->size_dynamic;
    crypt_new.iv_tweak = st->iv_tweak;
    s[n++] = crypt_new;
    return n;
  }
  if (st->mode == REENC_DECRYPT && st->phase == REENC_PHASE_PREPARE) {
    crypt_old.offset = st->old_offset;
    crypt_old.size = N;
    crypt_old.iv_tweak = st->iv_tweak;
    s[n++] = crypt_old;
    return n;
  }
  bool shift = st->old_offset != st->new_offset;
  if (!shift) {
    /* In place, forward: [0, P) new form, [P, N) old form. */
    struct luks2_segment_spec done = crypt_new, rest = crypt_old;
    if (!re->new_xts)
      done = (struct luks2_segment_spec){0};
    if (!re->old_xts)
      rest = (struct luks2_segment_spec){0};
    done.offset = st->old_offset;
    done.size = P;
    done.iv_tweak = st->iv_tweak;
    rest.offset = st->old_offset + P;
    rest.size = N - P;
    rest.iv_tweak = st->iv_tweak + P / 512;
    if (P > 0)
      s[n++] = done;
    if (P < N) {
      rest.dynamic = st->size_dynamic && st->mode == REENC_RECRYPT;
      s[n++] = rest;
    }
    return n;
  }
  /* Datashift: the first chunk lives at the tail (plaintext); the rest is
   * plaintext at its logical offset plus the plaintext side's offset, or
   * encrypted at logical offset plus the encrypted side's offset. */
  uint64_t C = st->chunk_size;
  s[n++] = (struct luks2_segment_spec){.offset = st->tail_offset, .size = C};
  if (st->mode == REENC_ENCRYPT) {
    if (P > C)
      s[n++] = (struct luks2_segment_spec){.offset = C, .size = P - C};
    if (P < N) {
      crypt_new.offset = P + st->new_offset;
      crypt_new.size = N - P;
      crypt_new.iv_tweak = P / 512;
      s[n++] = crypt_new;
    }
  } else {
    if (P > C)
      s[n++] = (struct luks2_segment_spec){.offset = C, .size = P - C};
    if (P < N) {
      crypt_old.offset = P + st->old_offset;
      crypt_old.size = N - P;
      crypt_old.iv_tweak = st->iv_tweak + P / 512;
      s[n++] = crypt_old;
    }
  }
  return n;
}

static int remove_progress_token(struct reenc *re, struct nbdc_error *err)
{
  int id;
  while ((id = luks2_token_next(re->hdr, -1, REENC_TOKEN_TYPE)) >= 0) {
    int r = luks2_token_remove(re->hdr, id, err);
    if (r < 0)
      return r;
  }
  return 0;
}

/* One atomic header commit of the current state (luks2_write: both copies,
 * each flushed). */
int reenc_commit(struct reenc *re, struct nbdc_error *err)
{
  struct luks2_segment_spec specs[4];
  size_t n = build_segments(re, specs, false);
  struct json_object *tok = NULL;
  int r = luks2_segments_set(re->hdr, specs, n, err);
  if (r == 0)
    r = remove_progress_token(re, err);
  if (r == 0)
    r = reenc_state_to_json(&re->st, re->old_key, re->old_len, re->new_key, re->new_len, &tok, err);
  if (r == 0) {
    r = luks2_token_add(re->hdr, -1, tok, NULL, err);
    if (r < 0)
      json_object_put(tok);
  }
  if (r == 0)
    r = luks2_requirement_set(re->hdr, REENC_REQUIREMENT, true, err);
  re->t->header_used = true;
  re->t->half_way = true;
  if (r == 0)
    r = luks2_write(re->hdev, re->hdr, err);
  return r;
}

/* The final header: one segment, no progress record, no requirement flag,
 * no keyslot of the old key. */
static int commit_final(struct reenc *re, struct nbdc_error *err)
{
  struct luks2_segment_spec specs[1];
  size_t n = build_segments(re, specs, true);
  int r = luks2_segments_set(re->hdr, specs, n, err);
  if (r == 0)
    r = remove_progress_token(re, err);
  if (r == 0 && re->st.mode == REENC_RECRYPT) {
    /* Every keyslot of the old key goes: it would open a key that decrypts
     * nothing any more.  Keyslots of the new key and keyslots assigned to
     * no digest (cryptsetup's --unbound ones) stay. */
    int ids[LUKS2_MAX_KEYSLOTS];
    size_t count = luks2_keyslot_list(re->hdr, ids, LUKS2_MAX_KEYSLOTS);
    for (size_t i = 0; i < count && r == 0; i++) {
      struct luks2_keyslot_info ki;
      if (luks2_keyslot_info(re->hdr, ids[i], &ki) == 0 && ki.digest == re->old_digest)
        r = luks2_keyslot_remove(re->hdr, ids[i], err);
    }
  }
  if (r == 0)
    r = luks2_requirement_set(re->hdr, REENC_REQUIREMENT, false, err);
  if (r == 0)
    r = luks2_write(re->hdev, re->hdr, err);
  return r;
}

/* ---- files ---- */

int reenc_marker_write(struct reenc *re, uint32_t kind, const uint8_t chunk_sha[32],
                       struct nbdc_error *err)
{
  uint8_t *block = calloc(1, BLOCK);
  if (!block)
    return fail_nomem(err);
  struct marker m = {.kind = kind,
                     .data_size = re->st.data_size,
                     .chunk_size = re->st.chunk_size,
                     .tail_offset = re->st.tail_offset};
  memcpy(m.magic, MARKER_MAGIC, sizeof MARKER_MAGIC);
  memcpy(m.chunk_sha, chunk_sha, 32);
  memcpy(block, &m, sizeof m);
  sha256(block, BLOCK - 32, block + BLOCK - 32);
  re->t->half_way = true;
  int r = bdev_pwrite(re->dev, block, BLOCK, re->st.tail_offset + re->st.chunk_size, err);
  if (r == 0)
    r = bdev_flush(re->dev, err);
  free(block);
  return r;
}

/* A valid marker in the last block of the file, or -ENODATA. */
static int marker_read(struct reenc *re, struct marker *m, struct nbdc_error *err)
{
  uint64_t size;
  int r = bdev_get_size(re->dev, &size, err);
  if (r < 0)
    return r;
  if (size < BLOCK || size % 512)
    return -ENODATA;
  uint8_t *block = malloc(BLOCK);
  if (!block)
    return fail_nomem(err);
  r = bdev_pread(re->dev, block, BLOCK, size - BLOCK, err);
  uint8_t sum[32];
  if (r == 0) {
    sha256(block, BLOCK - 32, sum);
    memcpy(m, block, sizeof *m);
    if (memcmp(sum, block + BLOCK - 32, 32) != 0 || memcmp(m->magic, MARKER_MAGIC, 16) != 0 ||
        m->chunk_size == 0 || m->chunk_size > REENC_SHIFT ||
        m->tail_offset + m->chunk_size + BLOCK != size)
      r = -ENODATA;
  }
  free(block);
  return r;
}

/* An encrypt whose marker write was cut short (a crash while the image was
 * growing by it: no header yet, the data untouched) leaves the start of the
 * marker in the last, partial block.  Its fields are consistent with where
 * it lies, which random plaintext never is: *data_size is then the image's
 * original size.  -ENODATA when there is no such marker. */
static int torn_marker_read(struct reenc *re, uint64_t *data_size, struct nbdc_error *err)
{
  uint64_t size;
  int r = bdev_get_size(re->dev, &size, err);
  if (r < 0)
    return r;
  if (size < BLOCK || size % 512)
    return -ENODATA;
  uint8_t sector[512];
  for (uint64_t back = 512; back < BLOCK; back += 512) {
    uint64_t at = size - back;
    struct marker m;
    if ((r = bdev_pread(re->dev, sector, sizeof sector, at, err)) < 0)
      return r;
    memcpy(&m, sector, sizeof m);
    if (memcmp(m.magic, MARKER_MAGIC, 16) == 0 && m.kind == MARKER_ENCRYPT && m.data_size > 0 &&
        m.data_size % 512 == 0 && m.data_size <= (UINT64_C(1) << 60) &&
        m.chunk_size == min_u64(REENC_SHIFT, m.data_size) &&
        m.tail_offset == m.data_size + REENC_SHIFT && m.tail_offset + m.chunk_size == at) {
      *data_size = m.data_size;
      return 0;
    }
  }
  return -ENODATA;
}

int reenc_chunk_sha(struct reenc *re, uint64_t phys, uint8_t out[32], struct nbdc_error *err)
{
  int r = bdev_pread(re->dev, re->buf, re->st.chunk_size, phys, err);
  if (r == 0)
    sha256(re->buf, re->st.chunk_size, out);
  return r;
}

/* ---- hooks ---- */

int reenc_hook_started(struct reenc *re, struct nbdc_error *err)
{
  const struct reenc_hooks *h = re->opts->hooks;
  if (!h || !h->started)
    return 0;
  struct reenc_info info = {
      .state = re->st, .old_xts = re->old_xts, .new_xts = re->new_xts, .hdr = re->hdr};
  int r = h->started(h->opaque, &info);
  if (r < 0)
    return nbdc_error_set(err, -r, "%s: the re-encryption's caller refused to start: %s",
                          re->target, strerror(-r));
  return 0;
}

/* r: what a zone_begin or write_begin hook returned before offset. */
static int hook_refused(struct reenc *re, int r, uint64_t offset, struct nbdc_error *err)
{
  if (r < 0)
    return nbdc_error_set(err, -r,
                          "%s: the re-encryption's caller stopped it before offset %" PRIu64 ": %s",
                          re->target, offset, strerror(-r));
  return 0;
}

int reenc_hook_begin(struct reenc *re, uint64_t offset, uint64_t len, struct nbdc_error *err)
{
  const struct reenc_hooks *h = re->opts->hooks;
  if (!h || !h->zone_begin)
    return 0;
  return hook_refused(re, h->zone_begin(h->opaque, offset, len), offset, err);
}

void reenc_hook_done(struct reenc *re, uint64_t offset, uint64_t len)
{
  const struct reenc_hooks *h = re->opts->hooks;
  if (h && h->zone_done)
    h->zone_done(h->opaque, offset, len, re->st.done);
}

/* ---- steps ---- */

static void report(struct reenc *re)
{
  if (!re->opts->progress)
    return;
  const struct reenc_state *st = &re->st;
  uint64_t work = st->backward ? st->data_size - st->done : st->done;
  re->opts->progress(re->opts->progress_opaque, work, st->data_size);
}

static bool stop_requested(const struct reenc *re)
{
  return re->opts->stop && *re->opts->stop;
}

/* The new form of logical [a, a+h) (in buf) to phys: in one go, or piece by
 * piece between the caller's write hooks. */
static int write_zone(struct reenc *re, const uint8_t *buf, uint64_t a, uint64_t h, uint64_t phys,
                      struct nbdc_error *err)
{
  const struct reenc_hooks *hk = re->opts->hooks;
  if (!hk || !hk->write_begin)
    return write_converted(re, buf, (size_t)h, phys, err);
  for (uint64_t p = 0; p < h; p += REENC_PIECE) {
    size_t n = (size_t)min_u64(REENC_PIECE, h - p);
    int r = hook_refused(re, hk->write_begin(hk->opaque, a + p, n), a + p, err);
    if (r < 0)
      return r;
    r = write_converted(re, buf + p, n, phys + p, err);
    if (hk->write_done)
      hk->write_done(hk->opaque, a + p, n, r == 0);
    if (r < 0)
      return r;
  }
  return 0;
}

/* In place with checksums, hotzone [a, a+h) already read and converted in
 * buf by the workers, heads holding its old blocks' discriminators: the table
 * is durable and named by the header before any block is overwritten. */
static int write_checksum_step(struct reenc *re, uint64_t a, uint64_t h, const uint8_t *buf,
                               const uint8_t *heads, struct nbdc_error *err)
{
  struct reenc_state *st = &re->st;
  uint64_t phys = st->old_offset + a;
  size_t table_len = (size_t)((h + BLOCK - 1) / BLOCK) * REENC_HEAD_LEN;
  /* The other slot than the one the header names now: a crash before the
   * commit below still finds the previous table intact. */
  uint64_t slot = st->checksum_offset == re->csum_base ? re->csum_base + CSUM_SLOT : re->csum_base;
  int r = bdev_pwrite(re->hdev, heads, table_len, slot, err);
  if (r < 0)
    return r;
  if ((r = bdev_flush(re->dev, err)) < 0) /* the previous hotzone's data, too */
    return r;
  if (re->hdev != re->dev && (r = bdev_flush(re->hdev, err)) < 0)
    return r;
  st->hotzone_offset = a;
  st->hotzone_size = h;
  st->checksum_offset = slot;
  st->checksum = REENC_CHECKSUM_HEAD16;
  sha256(heads, table_len, st->checksum_sha);
  if ((r = reenc_commit(re, err)) < 0)
    return r;
  if ((r = write_zone(re, buf, a, h, phys, err)) < 0)
    return r;
  st->done = a + h;
  st->hotzone_size = 0;
  st->hotzone_offset = 0;
  return 0;
}

/* Is the block at buf (len bytes) still in its old form, by table entry? */
static bool block_is_old(const struct reenc *re, const uint8_t *block, size_t len,
                         const uint8_t *entry)
{
  if (re->st.checksum == REENC_CHECKSUM_HEAD16)
    return memcmp(block, entry, REENC_HEAD_LEN) == 0;
  uint8_t sum[32];
  sha256(block, len, sum);
  return memcmp(sum, entry, CSUM_LEN) == 0;
}

/* After a crash inside a checksum hotzone: blocks that still match their
 * table entry are converted, the others were written already. */
static int recover_checksum_hotzone(struct reenc *re, struct nbdc_error *err)
{
  struct reenc_state *st = &re->st;
  uint64_t a = st->hotzone_offset, h = st->hotzone_size, phys = st->old_offset + a;
  size_t entry = st->checksum == REENC_CHECKSUM_HEAD16 ? REENC_HEAD_LEN : CSUM_LEN;
  size_t nblocks = (size_t)((h + BLOCK - 1) / BLOCK);
  if (h > MAX_HOTZONE || nblocks * entry > CSUM_SLOT)
    return nbdc_error_set(err, EINVAL, "progress record: hotzone of %" PRIu64 " bytes too large",
                          h);
  uint8_t sum[32];
  int r = bdev_pread(re->hdev, re->sums, nblocks * entry, st->checksum_offset, err);
  if (r < 0)
    return r;
  sha256(re->sums, nblocks * entry, sum);
  if (memcmp(sum, st->checksum_sha, 32) != 0)
    return nbdc_error_set(err, EIO,
                          "checksum table at offset %" PRIu64 " of the hotzone is damaged; "
                          "cannot tell old from new blocks",
                          st->checksum_offset);
  if ((r = reenc_hook_begin(re, a, h, err)) < 0)
    return r;
  /* Block by block, through the buffer in parts: this run's --hotzone may
   * be smaller than the crashed run's. */
  for (uint64_t part = 0; part < h; part += re->buf_size) {
    size_t part_len = (size_t)min_u64(re->buf_size, h - part);
    if ((r = bdev_pread(re->dev, re->buf, part_len, phys + part, err)) < 0)
      return r;
    for (size_t off = 0; off < part_len; off += BLOCK) {
      size_t len = (size_t)min_u64(BLOCK, part_len - off), i = (size_t)((part + off) / BLOCK);
      if (!block_is_old(re, re->buf + off, len, re->sums + i * entry))
        continue;
      if ((r = convert(re, re->buf + off, len, a + part + off, err)) < 0)
        return r;
      if ((r = bdev_pwrite(re->dev, re->buf + off, len, phys + part + off, err)) < 0)
        return r;
    }
  }
  if ((r = bdev_flush(re->dev, err)) < 0)
    return r;
  st->done = a + h;
  st->hotzone_size = 0;
  st->hotzone_offset = 0;
  reenc_hook_done(re, a, h);
  return reenc_commit(re, err);
}

/* Datashift, logical [a, a+h) converted in buf: source and destination never
 * overlap and the destination only holds data already converted, so a step
 * is simply done again after a crash.  One commit per step, after the data
 * is flushed. */
static int write_shift_step(struct reenc *re, uint64_t a, uint64_t h, const uint8_t *buf,
                            struct nbdc_error *err)
{
  struct reenc_state *st = &re->st;
  int r = write_converted(re, buf, h, st->new_offset + a, err);
  if (r == 0)
    r = bdev_flush(re->dev, err);
  if (r < 0)
    return r;
  st->done = st->mode == REENC_ENCRYPT ? a : a + h;
  return reenc_commit(re, err);
}

/* ---- the operations ---- */

/* The step that follows when st->done is done: false when none is left. */
static bool next_step(const struct reenc *re, uint64_t done, uint64_t *a, uint64_t *h)
{
  const struct reenc_state *st = &re->st;
  if (st->old_offset == st->new_offset) {
    *a = done;
    *h = min_u64(re->hotzone, st->data_size - done);
    return done < st->data_size;
  }
  uint64_t step = min_u64(re->hotzone, REENC_SHIFT);
  if (st->mode == REENC_ENCRYPT) {
    if (done <= st->chunk_size)
      return false;
    *h = min_u64(step, done - st->chunk_size);
    *a = done - *h;
    return true;
  }
  *a = done;
  *h = min_u64(step, st->data_size - done);
  return done < st->data_size;
}

/* The main loop.  While this thread commits and writes step k, the workers
 * read and convert step k+1 into the other buffer. */
static int run_loop(struct reenc *re, struct nbdc_error *err)
{
  struct reenc_state *st = &re->st;
  int r = 0;
  bool shift = st->old_offset != st->new_offset;
  if (!shift && st->hotzone_size && (r = recover_checksum_hotzone(re, err)) < 0)
    return r;
  report(re);
  uint64_t a, h, next_a, next_h;
  bool more = next_step(re, st->done, &a, &h);
  if (more && !stop_requested(re)) {
    if (!re->pipe && (r = reenc_pipe_new(&re->pipe, re->dev, re->old_xts, re->new_xts, st->iv_tweak,
                                         re->opts->workers, err)) < 0)
      return r;
    if ((r = reenc_hook_begin(re, a, h, err)) < 0)
      return r;
    reenc_pipe_fill(re->pipe, re->bufs[0], re->heads[0], a, h, st->old_offset + a);
  }
  for (int cur = 0; more; cur ^= 1) {
    if (stop_requested(re)) {
      reenc_pipe_wait(re->pipe, NULL);
      if (!shift && (r = bdev_flush(re->dev, err)) == 0)
        r = reenc_commit(re, err);
      return r < 0 ? r : nbdc_error_set(err, EINTR, "interrupted; run the command again to resume");
    }
    if ((r = reenc_pipe_wait(re->pipe, err)) < 0)
      return r;
    uint64_t after = shift && st->mode == REENC_ENCRYPT ? a : a + h;
    bool have_next = next_step(re, after, &next_a, &next_h);
    bool filling = have_next && !stop_requested(re);
    if (filling && (r = reenc_hook_begin(re, next_a, next_h, err)) < 0)
      return r;
    if (filling)
      reenc_pipe_fill(re->pipe, re->bufs[cur ^ 1], re->heads[cur ^ 1], next_a, next_h,
                      st->old_offset + next_a);
    r = shift ? write_shift_step(re, a, h, re->bufs[cur], err)
              : write_checksum_step(re, a, h, re->bufs[cur], re->heads[cur], err);
    if (r < 0) {
      reenc_pipe_wait(re->pipe, NULL);
      return r;
    }
    report(re);
    reenc_hook_done(re, a, h);
    more = have_next;
    a = next_a;
    h = next_h;
  }
  if (!shift) {
    if ((r = bdev_flush(re->dev, err)) == 0 && st->hotzone_size == 0)
      r = reenc_commit(re, err);
  }
  return r;
}

/* Two step buffers (one being written, one being filled by the workers) and
 * their head tables; re->buf is the first, for the serial paths. */
static int alloc_buffers(struct reenc *re, struct nbdc_error *err)
{
  re->buf_size = (size_t)re->hotzone;
  if (re->buf_size < REENC_SHIFT)
    re->buf_size = REENC_SHIFT;
  size_t heads = (re->buf_size / BLOCK + 1) * REENC_HEAD_LEN;
  for (int i = 0; i < 2; i++) {
    re->bufs[i] = malloc(re->buf_size);
    re->heads[i] = malloc(heads);
    if (!re->bufs[i] || !re->heads[i])
      return fail_nomem(err);
  }
  re->buf = re->bufs[0];
  re->sums = malloc(CSUM_SLOT);
  if (!re->sums)
    return fail_nomem(err);
  return 0;
}

/* The checksum slots: the last 2 * CSUM_SLOT bytes of the keyslots area,
 * which must be clear of every keyslot. */
int reenc_place_checksums(struct reenc *re, struct nbdc_error *err)
{
  uint64_t ks_end = 2 * luks2_hdr_size(re->hdr) + luks2_keyslots_size(re->hdr);
  if (luks2_keyslots_size(re->hdr) < 4 * CSUM_SLOT)
    return nbdc_error_set(err, ENOSPC,
                          "keyslots area of %" PRIu64 " bytes too small for the "
                          "re-encryption checksums",
                          luks2_keyslots_size(re->hdr));
  re->csum_base = ks_end - 2 * CSUM_SLOT;
  int ids[LUKS2_MAX_KEYSLOTS];
  size_t n = luks2_keyslot_list(re->hdr, ids, LUKS2_MAX_KEYSLOTS);
  for (size_t i = 0; i < n; i++) {
    struct luks2_keyslot_info ki;
    if (luks2_keyslot_info(re->hdr, ids[i], &ki) == 0 &&
        ki.area_offset + ki.area_size > re->csum_base)
      return nbdc_error_set(err, ENOSPC,
                            "keyslot %d's area reaches into the re-encryption checksum area at "
                            "%" PRIu64,
                            ids[i], re->csum_base);
  }
  return 0;
}

static int finish(struct reenc *re, struct nbdc_error *err)
{
  struct reenc_state *st = &re->st;
  int r;
  bool shift = st->old_offset != st->new_offset;
  if (st->mode == REENC_DECRYPT) {
    if (!shift) {
      /* Data is plain in place: the detached header is of no further use. */
      if ((r = bdev_flush(re->dev, err)) < 0)
        return r;
      re->t->header_released = true; /* the caller removes it */
      return 0;
    }
    /* Last step: the header's place gets the first chunk; the marker
     * after the tail lets a rerun finish without a header. */
    if (st->phase != REENC_PHASE_FINAL) {
      uint8_t sum[32];
      if ((r = reenc_chunk_sha(re, st->tail_offset, sum, err)) < 0)
        return r;
      if ((r = reenc_marker_write(re, MARKER_DECRYPT, sum, err)) < 0)
        return r;
      st->phase = REENC_PHASE_FINAL;
      if ((r = reenc_commit(re, err)) < 0)
        return r;
    }
    if ((r = bdev_pread(re->dev, re->buf, st->chunk_size, st->tail_offset, err)) < 0 ||
        (r = write_converted(re, re->buf, st->chunk_size, 0, err)) < 0 ||
        (r = bdev_flush(re->dev, err)) < 0)
      return r;
    return bdev_resize(re->dev, st->data_size, err);
  }
  if (shift && st->phase != REENC_PHASE_FINAL) {
    /* encrypt: the moved first chunk goes to its place after the header */
    if ((r = bdev_pread(re->dev, re->buf, st->chunk_size, st->tail_offset, err)) < 0 ||
        (r = convert(re, re->buf, st->chunk_size, 0, err)) < 0 ||
        (r = bdev_pwrite(re->dev, re->buf, st->chunk_size, st->new_offset, err)) < 0 ||
        (r = bdev_flush(re->dev, err)) < 0)
      return r;
    st->done = 0;
    st->phase = REENC_PHASE_FINAL;
    if ((r = reenc_commit(re, err)) < 0)
      return r;
  }
  if (shift && (r = bdev_resize(re->dev, st->data_size + st->new_offset, err)) < 0)
    return r;
  return commit_final(re, err);
}

/* decrypt, datashift: the first chunk goes to the tail as plaintext. */
static int decrypt_prepare(struct reenc *re, struct nbdc_error *err)
{
  struct reenc_state *st = &re->st;
  int r = bdev_pread(re->dev, re->buf, st->chunk_size, st->old_offset, err);
  if (r == 0)
    r = convert(re, re->buf, st->chunk_size, 0, err);
  if (r == 0)
    r = bdev_pwrite(re->dev, re->buf, st->chunk_size, st->tail_offset, err);
  if (r == 0)
    r = bdev_flush(re->dev, err);
  if (r < 0)
    return r;
  st->done = st->chunk_size;
  st->phase = REENC_PHASE_MAIN;
  return reenc_commit(re, err);
}

static void reenc_free(struct reenc *re)
{
  reenc_pipe_free(re->pipe);
  xts_free(re->old_xts);
  xts_free(re->new_xts);
  secmem_free(re->old_key, re->old_len);
  secmem_free(re->new_key, re->new_len);
  secmem_free(re->old_kek, re->old_kek_len);
  luks2_free(re->hdr);
  for (int i = 0; i < 2; i++) {
    free(re->bufs[i]);
    free(re->heads[i]);
  }
  free(re->sums);
  if (re->dev != re->raw_dev)
    bdev_close(re->dev);
  if (re->hdev_locked)
    bdev_unlock(re->hdev, NULL);
  if (re->dev_locked)
    bdev_unlock(re->raw_dev, NULL);
}

/* The whole operation holds the metadata lock, from the first header load to
 * the last commit (each luks2_write also compares the on-disk seqid; its own
 * lock nests in this one); a device without one (NBD, the filter's next
 * plugin) has none to take: as luks2_write, go on without.  The image lock
 * of a data writer is the caller's. */
static int lock_device(struct bdev *dev, bool *locked, struct nbdc_error *err)
{
  int r = bdev_lock(dev, true, err);
  *locked = r == 0;
  if (r == -ENOTSUP || r == -EOPNOTSUPP) {
    nbdc_error_clear(err);
    r = 0;
  }
  return r;
}

static int open_devices(struct reenc *re, struct nbdc_error *err)
{
  struct reenc_target *t = re->t;
  re->raw_dev = t->data;
  re->hdev = t->header ? t->header : t->data;
  int r = lock_device(re->raw_dev, &re->dev_locked, err);
  if (r == 0 && t->header)
    r = lock_device(t->header, &re->hdev_locked, err);
  if (r < 0)
    return r;
  /* The workers read through second readers where data has them; else they
   * share it with this thread. */
  if (bdev_has_reader(re->raw_dev))
    re->dev = re->raw_dev;
  else
    r = reenc_bdev_shared(re->raw_dev, &re->io_mu, &re->dev, err);
  if (r == 0 && !t->header)
    re->hdev = re->dev;
  return r;
}

/* After a failed run that wrote: does the disk now hold an operation in
 * progress (a header with the requirement flag, or a marker), as the next
 * run will find it?  A write that failed may have left the header as it was.
 * When the disk cannot even be read, assume it does. */
static bool left_half_way(struct reenc *re, bool shift)
{
  struct luks2_hdr *hdr = NULL;
  struct nbdc_error e = {0};
  int r = luks2_load(re->hdev, &hdr, &e);
  if (r == 0) {
    const char *reqs[8];
    size_t n = luks2_requirements(hdr, reqs, 8);
    bool found = false;
    for (size_t i = 0; i < n; i++)
      found |= strcmp(reqs[i], REENC_REQUIREMENT) == 0;
    luks2_free(hdr);
    return found;
  }
  struct marker m;
  uint64_t size;
  if (shift && (marker_read(re, &m, NULL) == 0 ||
                (re->opts->mode == REENC_ENCRYPT && torn_marker_read(re, &size, NULL) == 0)))
    return true;
  return r != -ENODATA && r != -EINVAL;
}

/* Either LUKS magic (primary or secondary header) at offset 0: a LUKS1 disk
 * or a damaged LUKS2 one is not a plaintext image. */
static bool has_luks_magic(struct bdev *dev)
{
  static const uint8_t primary[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};
  static const uint8_t secondary[6] = {'S', 'K', 'U', 'L', 0xba, 0xbe};
  uint8_t magic[6];
  if (bdev_pread(dev, magic, sizeof magic, 0, NULL) < 0)
    return false;
  return memcmp(magic, primary, 6) == 0 || memcmp(magic, secondary, 6) == 0;
}

int reenc_run(struct reenc_target *t, const struct reenc_opts *opts, struct nbdc_error *err)
{
  if (!t || !t->data || !opts)
    return nbdc_error_set(err, EINVAL, "re-encryption without a data device");
  t->header_used = t->header_released = t->half_way = false;
  const char *target = t->name ? t->name : bdev_name(t->data);
  struct reenc re = {
      .opts = opts,
      .t = t,
      .target = target,
      .detached = t->header != NULL,
      .header_name = t->header ? (t->header_name ? t->header_name : bdev_name(t->header)) : NULL,
      .old_digest = -1,
      .new_digest = -1,
      .io_mu = PTHREAD_MUTEX_INITIALIZER};
  re.hotzone = opts->hotzone ? opts->hotzone : DEFAULT_HOTZONE;
  bool shift = opts->mode != REENC_RECRYPT && !re.detached;
  bool in_progress_at_start = false;
  int r;
  if (re.hotzone % BLOCK || re.hotzone < REENC_SHIFT || re.hotzone > MAX_HOTZONE) {
    r = nbdc_error_set(err, EINVAL,
                       "hotzone %" PRIu64 " must be a multiple of 4096 between 16 MiB and 256 MiB",
                       re.hotzone);
    goto out;
  }

  if (shift && !bdev_can_resize(t->data)) {
    r = nbdc_error_set(err, ENOTSUP,
                       "%s cannot grow or shrink; use --header FILE to keep the header in a file "
                       "and the data in place",
                       bdev_is_uri(target) ? "an NBD export" : "this device");
    goto out;
  }
  if ((r = open_devices(&re, err)) < 0 || (r = alloc_buffers(&re, err)) < 0)
    goto out;

  struct nbdc_error load_err = {0};
  int lr = luks2_load(re.hdev, &re.hdr, &load_err);
  const char *reqs[8];
  bool in_progress = false;
  if (lr == 0) {
    size_t n = luks2_requirements(re.hdr, reqs, 8);
    for (size_t i = 0; i < n; i++)
      in_progress |= strcmp(reqs[i], REENC_REQUIREMENT) == 0;
  }
  struct marker m;
  bool have_marker = false;
  if (lr < 0 && shift && marker_read(&re, &m, NULL) == 0)
    have_marker = (opts->mode == REENC_ENCRYPT && m.kind == MARKER_ENCRYPT &&
                   m.tail_offset == m.data_size + REENC_SHIFT) ||
                  (opts->mode == REENC_DECRYPT && m.kind == MARKER_DECRYPT &&
                   m.tail_offset >= m.data_size + REENC_SHIFT);

  /* an encrypt cut inside its marker write: back to the original size (no
   * data was changed), then as a new start */
  uint64_t torn_size = 0;
  bool torn_marker = lr == -ENODATA && shift && opts->mode == REENC_ENCRYPT && !have_marker &&
                     !has_luks_magic(re.hdev) && torn_marker_read(&re, &torn_size, NULL) == 0;
  if (torn_marker && (r = bdev_resize(re.dev, torn_size, err)) < 0)
    goto out;
  t->half_way = in_progress || have_marker || torn_marker;
  in_progress_at_start = t->half_way;
  if (in_progress) {
    if ((r = reenc_resume(&re, err)) < 0)
      goto out;
  } else if (have_marker && opts->mode == REENC_DECRYPT) {
    /* the header was already given up to the first chunk: finish that copy */
    re.st = (struct reenc_state){.mode = REENC_DECRYPT,
                                 .phase = REENC_PHASE_FINAL,
                                 .data_size = m.data_size,
                                 .chunk_size = m.chunk_size,
                                 .tail_offset = m.tail_offset,
                                 .old_offset = REENC_SHIFT};
    uint8_t sum[32];
    if ((r = reenc_chunk_sha(&re, m.tail_offset, sum, err)) < 0)
      goto out;
    if (memcmp(sum, m.chunk_sha, 32) != 0) {
      r = nbdc_error_set(err, EIO, "%s: the saved first chunk does not match its record", target);
      goto out;
    }
    r = finish(&re, err);
    goto out;
  } else if (opts->resume_only && !((have_marker || torn_marker) && opts->mode == REENC_ENCRYPT)) {
    /* (an encrypt stopped after its marker, before its first header commit,
     * is resumed below: the image has grown, the data is still plain) */
    r = nbdc_error_set(err, ENOENT, "%s: no operation to resume", target);
    goto out;
  } else if (opts->mode == REENC_ENCRYPT) {
    if (lr == 0) {
      /* as cryptsetup reencrypt --encrypt refuses a LUKS device: status 1 */
      r = nbdc_error_set(
          err, EEXIST, "already encrypted (LUKS2 header%s%s, uuid %s); nothing to do",
          re.detached ? " in " : "", re.detached ? re.header_name : "", luks2_uuid(re.hdr));
      goto out;
    }
    if (!have_marker && (lr != -ENODATA || has_luks_magic(re.hdev))) {
      if (re.hdev != re.dev)
        r = nbdc_error_set(err, -lr,
                           "header file %s: %s; not overwriting it (if it is left from an encrypt "
                           "that stopped before its first header write, no data was changed yet: "
                           "remove it and run again)",
                           re.header_name, load_err.msg);
      else
        r = nbdc_error_set(err, -lr, "%s; not encrypting it again", load_err.msg);
      goto out;
    }
    if (!have_marker && re.hdev != re.dev && has_luks_magic(re.dev)) {
      r = nbdc_error_set(err, EEXIST,
                         "already encrypted (a LUKS header at offset 0); not encrypting it again "
                         "with a detached header");
      goto out;
    }
    t->header_used = true; /* from here on it holds the operation's state */
    if ((r = reenc_start_encrypt(&re, have_marker ? &m : NULL, err)) < 0)
      goto out;
  } else if (lr == -ENODATA && opts->mode == REENC_DECRYPT && !re.detached &&
             !has_luks_magic(re.dev)) {
    r = nbdc_error_set(err, ENODATA, "not encrypted (no LUKS header); nothing to decrypt");
    goto out;
  } else if (lr < 0) {
    r = nbdc_error_set(err, -lr, "%s", load_err.msg);
    goto out;
  } else {
    /* re.hdr, loaded once under the lock, is the one the start works on */
    r = opts->mode == REENC_RECRYPT ? reenc_start_recrypt(&re, err) : reenc_start_decrypt(&re, err);
    if (r < 0)
      goto out;
  }

  if ((r = reenc_hook_started(&re, err)) < 0)
    goto out;
  if (re.st.phase == REENC_PHASE_PREPARE && (r = decrypt_prepare(&re, err)) < 0)
    goto out;
  if (re.st.phase == REENC_PHASE_MAIN && (r = run_loop(&re, err)) < 0)
    goto out;
  r = finish(&re, err);
  if (r == 0)
    report(&re);
out:
  if (r == 0)
    t->half_way = false;
  else if (t->half_way && re.hdev && !in_progress_at_start)
    t->half_way = left_half_way(&re, shift);
  reenc_free(&re);
  return r;
}

/* TTLV codec: a growable encoder and a strict, bounded decoder into a tree.
 *
 * An item is tag (3 bytes) | type (1) | length (4, value only) | value |
 * zero padding to a multiple of 8, all big-endian.  The decoder trusts
 * nothing: every length is checked against what remains of its parent
 * before a byte is read, so arbitrary input never leads outside the buffer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nbdcrypt/crypto.h"
#include "nbdcrypt/kmip.h"
#include "kmip/internal.h"

/* ---- encoder ------------------------------------------------------------- */

void kmip_enc_init(struct kmip_enc *enc, size_t max)
{
  memset(enc, 0, sizeof *enc);
  enc->max = max ? max : KMIP_MAX_MESSAGE_SIZE;
}

void kmip_enc_free(struct kmip_enc *enc)
{
  secmem_free(enc->data, enc->cap);
  enc->data = NULL;
  enc->len = enc->cap = 0;
  enc->depth = 0;
}

/* Make room for n more bytes.  Grows by doubling.  Requests may carry a
 * secret to encrypt (kms-wrapped keyslots): the buffer is locked memory,
 * wiped when it grows or is freed. */
static uint8_t *enc_reserve(struct kmip_enc *enc, size_t n)
{
  if (enc->error)
    return NULL;
  if (n > enc->max || enc->len > enc->max - n) {
    enc->error = -EMSGSIZE;
    return NULL;
  }
  if (enc->len + n > enc->cap) {
    size_t cap = enc->cap ? enc->cap : 256;
    while (cap < enc->len + n)
      cap *= 2;
    uint8_t *data = secmem_alloc(cap);
    if (!data) {
      enc->error = -ENOMEM;
      return NULL;
    }
    if (enc->data) {
      memcpy(data, enc->data, enc->len);
      secmem_free(enc->data, enc->cap);
    }
    enc->data = data;
    enc->cap = cap;
  }
  uint8_t *p = enc->data + enc->len;
  enc->len += n;
  return p;
}

static void put_be32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
  put_be32(p, (uint32_t)(v >> 32));
  put_be32(p + 4, (uint32_t)v);
}

static uint32_t get_be32(const uint8_t *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
  return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static size_t padded(size_t n)
{
  return (n + 7) & ~(size_t)7;
}

/* Write a header and a value of len bytes (copied from value if not NULL)
 * followed by zero padding. */
static uint8_t *enc_item(struct kmip_enc *enc, uint32_t tag, enum kmip_type type, const void *value,
                         size_t len)
{
  if (!enc->error && (tag > 0xFFFFFF || len > UINT32_MAX)) {
    enc->error = -EINVAL;
    return NULL;
  }
  if (len > SIZE_MAX - 16)
    return NULL;
  uint8_t *p = enc_reserve(enc, 8 + padded(len));
  if (!p)
    return NULL;
  put_be32(p, tag << 8 | type);
  put_be32(p + 4, (uint32_t)len);
  if (value && len)
    memcpy(p + 8, value, len);
  memset(p + 8 + len, 0, padded(len) - len);
  return p + 8;
}

void kmip_enc_begin(struct kmip_enc *enc, uint32_t tag)
{
  if (enc->error)
    return;
  if (enc->depth >= KMIP_MAX_DEPTH) {
    enc->error = -E2BIG;
    return;
  }
  size_t at = enc->len;
  if (enc_item(enc, tag, KMIP_TYPE_STRUCTURE, NULL, 0))
    enc->open[enc->depth++] = at;
}

void kmip_enc_end(struct kmip_enc *enc)
{
  if (enc->error)
    return;
  if (enc->depth == 0) {
    enc->error = -EINVAL;
    return;
  }
  size_t at = enc->open[--enc->depth];
  size_t len = enc->len - at - 8;
  if (len > UINT32_MAX) {
    enc->error = -EMSGSIZE;
    return;
  }
  put_be32(enc->data + at + 4, (uint32_t)len);
}

void kmip_enc_integer(struct kmip_enc *enc, uint32_t tag, int32_t value)
{
  uint8_t v[4];
  put_be32(v, (uint32_t)value);
  enc_item(enc, tag, KMIP_TYPE_INTEGER, v, 4);
}

void kmip_enc_long(struct kmip_enc *enc, uint32_t tag, int64_t value)
{
  uint8_t v[8];
  put_be64(v, (uint64_t)value);
  enc_item(enc, tag, KMIP_TYPE_LONG_INTEGER, v, 8);
}

void kmip_enc_big(struct kmip_enc *enc, uint32_t tag, const uint8_t *value, size_t len)
{
  if (len == 0 || !value) {
    if (!enc->error)
      enc->error = -EINVAL;
    return;
  }
  size_t total = padded(len);
  uint8_t *p = enc_item(enc, tag, KMIP_TYPE_BIG_INTEGER, NULL, total);
  if (!p)
    return;
  /* sign-extend on the left to a multiple of 8 bytes */
  memset(p, value[0] & 0x80 ? 0xFF : 0x00, total - len);
  memcpy(p + total - len, value, len);
}

void kmip_enc_enum(struct kmip_enc *enc, uint32_t tag, uint32_t value)
{
  uint8_t v[4];
  put_be32(v, value);
  enc_item(enc, tag, KMIP_TYPE_ENUMERATION, v, 4);
}

void kmip_enc_bool(struct kmip_enc *enc, uint32_t tag, bool value)
{
  uint8_t v[8];
  put_be64(v, value ? 1 : 0);
  enc_item(enc, tag, KMIP_TYPE_BOOLEAN, v, 8);
}

void kmip_enc_text(struct kmip_enc *enc, uint32_t tag, const char *value, size_t len)
{
  if (len && (!value || memchr(value, 0, len))) {
    if (!enc->error)
      enc->error = -EINVAL;
    return;
  }
  enc_item(enc, tag, KMIP_TYPE_TEXT_STRING, value, len);
}

void kmip_enc_bytes(struct kmip_enc *enc, uint32_t tag, const uint8_t *value, size_t len)
{
  if (len && !value) {
    if (!enc->error)
      enc->error = -EINVAL;
    return;
  }
  enc_item(enc, tag, KMIP_TYPE_BYTE_STRING, value, len);
}

void kmip_enc_datetime(struct kmip_enc *enc, uint32_t tag, int64_t seconds)
{
  uint8_t v[8];
  put_be64(v, (uint64_t)seconds);
  enc_item(enc, tag, KMIP_TYPE_DATE_TIME, v, 8);
}

void kmip_enc_interval(struct kmip_enc *enc, uint32_t tag, uint32_t seconds)
{
  uint8_t v[4];
  put_be32(v, seconds);
  enc_item(enc, tag, KMIP_TYPE_INTERVAL, v, 4);
}

int kmip_enc_finish(const struct kmip_enc *enc, struct nbdc_error *err)
{
  switch (enc->error) {
  case 0:
    break;
  case -EMSGSIZE:
    return nbdc_error_set(err, EMSGSIZE, "kmip request larger than the maximum of %zu bytes",
                          enc->max);
  case -E2BIG:
    return nbdc_error_set(err, E2BIG, "kmip request nests structures deeper than %d",
                          KMIP_MAX_DEPTH);
  case -ENOMEM:
    return nbdc_error_set(err, ENOMEM, "out of memory encoding a kmip request");
  default:
    return nbdc_error_set(err, -enc->error, "invalid kmip request item (bad tag, value or end)");
  }
  if (enc->depth != 0)
    return nbdc_error_set(err, EINVAL, "kmip request has %u unclosed structure(s)", enc->depth);
  if (enc->len == 0)
    return nbdc_error_set(err, EINVAL, "kmip request is empty");
  return 0;
}

/* ---- decoder ------------------------------------------------------------- */

struct kmip_tree {
  struct kmip_item *items;
  size_t count;
};

struct dec {
  const uint8_t *base;
  struct kmip_item *items; /* NULL on the counting pass */
  size_t count;
  struct nbdc_error *err;
};

static int dec_fail(struct dec *d, const uint8_t *at, const char *what, uint32_t tag)
{
  char name[16];
  return nbdc_error_set(d->err, EBADMSG, "malformed kmip message at byte %zu (%s): %s",
                        (size_t)(at - d->base), kmip_tag_name(tag, name), what);
}

static bool utf8_valid(const uint8_t *s, size_t n)
{
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    size_t extra;
    uint32_t cp;
    if (c == 0)
      return false;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i <= extra)
      return false;
    for (size_t k = 1; k <= extra; k++) {
      if ((s[i + k] & 0xC0) != 0x80)
        return false;
      cp = cp << 6 | (s[i + k] & 0x3F);
    }
    if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += extra + 1;
  }
  return true;
}

/* Decode the items filling p[0..len) at depth; link them as siblings and
 * return the index of the first in *first (SIZE_MAX if none). */
static int dec_items(struct dec *d, const uint8_t *p, size_t len, unsigned depth, size_t *first)
{
  size_t prev = SIZE_MAX;
  *first = SIZE_MAX;
  while (len > 0) {
    if (depth > KMIP_MAX_DEPTH)
      return dec_fail(d, p, "structures nested deeper than 16", 0);
    if (len < 8)
      return dec_fail(d, p, "truncated item header", 0);
    uint32_t tag = get_be32(p) >> 8;
    uint8_t type = p[3];
    uint32_t vlen = get_be32(p + 4);
    if ((vlen & 7) && type == KMIP_TYPE_STRUCTURE)
      return dec_fail(d, p, "structure length not a multiple of 8", tag);
    if (vlen > len - 8 || padded(vlen) > len - 8)
      return dec_fail(d, p, "length beyond the end of its container", tag);
    if ((tag >> 16) != 0x42 && (tag >> 16) != 0x54)
      return dec_fail(d, p, "tag outside the standard (42xxxx) and extension (54xxxx) ranges", tag);
    size_t fixed = 0;
    switch (type) {
    case KMIP_TYPE_INTEGER:
    case KMIP_TYPE_ENUMERATION:
    case KMIP_TYPE_INTERVAL:
      fixed = 4;
      break;
    case KMIP_TYPE_LONG_INTEGER:
    case KMIP_TYPE_BOOLEAN:
    case KMIP_TYPE_DATE_TIME:
      fixed = 8;
      break;
    case KMIP_TYPE_BIG_INTEGER:
      if (vlen == 0 || (vlen & 7))
        return dec_fail(d, p, "big integer length not a positive multiple of 8", tag);
      break;
    case KMIP_TYPE_STRUCTURE:
    case KMIP_TYPE_TEXT_STRING:
    case KMIP_TYPE_BYTE_STRING:
      break;
    default:
      return dec_fail(d, p, "unknown item type", tag);
    }
    if (fixed && vlen != fixed)
      return dec_fail(d, p, "wrong length for its type", tag);
    int want = kmip_tag_type(tag);
    if (want > 0 && want != type)
      return dec_fail(d, p, "wrong type for this tag", tag);
    const uint8_t *value = p + 8;
    for (size_t i = vlen; i < padded(vlen); i++)
      if (value[i] != 0)
        return dec_fail(d, p, "non-zero padding", tag);

    int64_t integer = 0;
    switch (type) {
    case KMIP_TYPE_INTEGER:
      integer = (int32_t)get_be32(value);
      break;
    case KMIP_TYPE_ENUMERATION:
    case KMIP_TYPE_INTERVAL:
      integer = get_be32(value);
      break;
    case KMIP_TYPE_LONG_INTEGER:
    case KMIP_TYPE_DATE_TIME:
      integer = (int64_t)get_be64(value);
      break;
    case KMIP_TYPE_BOOLEAN: {
      uint64_t b = get_be64(value);
      if (b > 1)
        return dec_fail(d, p, "boolean other than 0 or 1", tag);
      integer = (int64_t)b;
      break;
    }
    case KMIP_TYPE_TEXT_STRING:
      if (!utf8_valid(value, vlen))
        return dec_fail(d, p, "text string not valid UTF-8 without NUL", tag);
      break;
    default:
      break;
    }

    size_t index = d->count++;
    if (d->items) {
      struct kmip_item *it = &d->items[index];
      it->tag = tag;
      it->type = type;
      it->length = vlen;
      it->bytes = type == KMIP_TYPE_STRUCTURE ? NULL : value;
      it->integer = integer;
      it->depth = depth;
      it->child = NULL;
      it->next = NULL;
      if (prev != SIZE_MAX)
        d->items[prev].next = it;
    }
    if (*first == SIZE_MAX)
      *first = index;
    prev = index;
    if (type == KMIP_TYPE_STRUCTURE) {
      size_t child;
      int r = dec_items(d, value, vlen, depth + 1, &child);
      if (r < 0)
        return r;
      if (d->items && child != SIZE_MAX)
        d->items[index].child = &d->items[child];
    }
    p += 8 + padded(vlen);
    len -= 8 + padded(vlen);
  }
  return 0;
}

int kmip_decode(const uint8_t *buf, size_t len, size_t max, struct kmip_tree **out,
                struct nbdc_error *err)
{
  *out = NULL;
  if (!max)
    max = KMIP_MAX_MESSAGE_SIZE;
  if (len > max)
    return nbdc_error_set(err, EMSGSIZE, "kmip message of %zu bytes exceeds the maximum of %zu",
                          len, max);
  if (len == 0 || !buf)
    return nbdc_error_set(err, EBADMSG, "empty kmip message");
  if (len < 8)
    return nbdc_error_set(err, EBADMSG, "kmip message of %zu bytes is shorter than a header", len);
  /* exactly one outer item, nothing after it */
  size_t announced = 8 + padded((size_t)get_be32(buf + 4));
  if (announced != len)
    return nbdc_error_set(err, EBADMSG, "kmip message announces %zu bytes but %zu were given",
                          announced, len);
  /* Pass 1 validates and counts, pass 2 fills: the items never move, so
   * child/next can be plain pointers. */
  struct dec d = {.base = buf, .err = err};
  size_t first;
  int r = dec_items(&d, buf, len, 1, &first);
  if (r < 0)
    return r;
  struct kmip_tree *tree = calloc(1, sizeof *tree);
  if (!tree)
    return nbdc_error_set(err, ENOMEM, "out of memory decoding a kmip message");
  tree->items = calloc(d.count, sizeof *tree->items);
  if (!tree->items) {
    free(tree);
    return nbdc_error_set(err, ENOMEM, "out of memory decoding a kmip message");
  }
  size_t count = d.count;
  d.items = tree->items;
  d.count = 0;
  r = dec_items(&d, buf, len, 1, &first);
  if (r < 0) {
    kmip_tree_free(tree);
    return r;
  }
  tree->count = count;
  *out = tree;
  return 0;
}

void kmip_tree_free(struct kmip_tree *tree)
{
  if (!tree)
    return;
  /* items hold integers that may be secret-adjacent; they are cheap to wipe */
  nbdc_wipe(tree->items, tree->count * sizeof *tree->items);
  free(tree->items);
  free(tree);
}

const struct kmip_item *kmip_tree_root(const struct kmip_tree *tree)
{
  return tree && tree->count ? &tree->items[0] : NULL;
}

const struct kmip_item *kmip_item_find(const struct kmip_item *parent, uint32_t tag)
{
  if (!parent || parent->type != KMIP_TYPE_STRUCTURE)
    return NULL;
  for (const struct kmip_item *it = parent->child; it; it = it->next)
    if (it->tag == tag)
      return it;
  return NULL;
}

const struct kmip_item *kmip_item_next_same(const struct kmip_item *item)
{
  if (!item)
    return NULL;
  for (const struct kmip_item *it = item->next; it; it = it->next)
    if (it->tag == item->tag)
      return it;
  return NULL;
}

int kmip_frame_length(const uint8_t header[8], size_t max, size_t *total, struct nbdc_error *err)
{
  if (!max)
    max = KMIP_MAX_MESSAGE_SIZE;
  uint32_t tag = get_be32(header) >> 8;
  char name[16];
  if (header[3] != KMIP_TYPE_STRUCTURE)
    return nbdc_error_set(err, EBADMSG, "kmip message %s is not a structure (type 0x%02x)",
                          kmip_tag_name(tag, name), header[3]);
  size_t len = get_be32(header + 4);
  if (len & 7)
    return nbdc_error_set(err, EBADMSG, "kmip message length %zu is not a multiple of 8", len);
  if (len + 8 > max)
    return nbdc_error_set(err, EMSGSIZE, "kmip message of %zu bytes exceeds the maximum of %zu",
                          len + 8, max);
  *total = len + 8;
  return 0;
}

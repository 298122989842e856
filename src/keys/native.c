/* The native key provider: named 256-bit KEKs in a JSON keystore file.
 *
 *   {"version": 1,
 *    "keys": {"<uuid>": {"key": "<base64 of 32 bytes>", "name": "<label>",
 *                        "created": "2026-11-22T18:00:00Z",
 *                        "state": "compromised", "revoked": "2026-12-01T10:00:00Z"}}}
 *
 * "state" (KMIP's words: "deactivated", "compromised") and "revoked" appear
 * once a key is revoked; a key without them is Active, so keystores written
 * before states existed read as they did.  (An older nbdcrypt keeps the two
 * fields as unknown ones and treats the key as usable.)
 *
 * The file is the only secret on the host, so it is handled like an ssh
 * private key: owned by the user, mode 0600 in a 0700 directory, refused when
 * group or others could read it, when it is a symbolic link or not a regular
 * file.  Every change rewrites it atomically (an O_TMPFILE named only once
 * complete, fsync, rename, fsync of the directory: native_save) under an
 * flock on PATH.lock, so concurrent creators never lose a key.  Readers take
 * no lock: a rename is atomic.
 *
 * Key bytes are decoded straight into secure memory; the base64 copies json-c
 * and the serialiser handle are wiped before their memory is released.
 * Unknown fields, top-level or per key, are kept across rewrites. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "nbdcrypt/crypto.h"
#include "keys/provider.h"

#define NATIVE_VERSION         1
#define NATIVE_MAX_BYTES       ((off_t)16 * 1024 * 1024)
#define NATIVE_B64_KEK_LEN     44 /* base64 of KEYS_KEK_SIZE bytes, padded */
#define NATIVE_DECODE_MAX      64
#define NATIVE_TOKENER_RESERVE 4096

struct native_state {
  char *provider; /* provider name, for messages */
  char *keystore; /* path of the keystore file */
  char *lock_path;
};

struct native_entry {
  char *id;
  char *name;
  char *created;
  enum keys_kek_state state;
  char *revoked;
  struct json_object *extra; /* unknown fields of the key's object, or NULL */
};

/* A loaded keystore: entries[i]'s KEK is keks[i * KEYS_KEK_SIZE]. */
struct native_store {
  struct native_entry *entries;
  size_t count;
  size_t cap;
  uint8_t *keks;             /* secure memory, cap * KEYS_KEK_SIZE bytes */
  struct json_object *extra; /* unknown top-level fields, or NULL */
  bool missing;              /* the keystore file does not exist (yet) */
};

/* ---- the in-memory store ------------------------------------------------ */

static void native_entry_clear(struct native_entry *e)
{
  free(e->id);
  free(e->name);
  free(e->created);
  free(e->revoked);
  json_object_put(e->extra);
  memset(e, 0, sizeof *e);
}

static void native_store_free(struct native_store *store)
{
  for (size_t i = 0; i < store->count; i++)
    native_entry_clear(&store->entries[i]);
  free(store->entries);
  secmem_free(store->keks, store->cap * KEYS_KEK_SIZE);
  json_object_put(store->extra);
  memset(store, 0, sizeof *store);
}

/* Room for cap entries; KEKs move to a new secure block, the old is wiped. */
static int native_store_reserve(struct native_store *store, size_t cap, struct nbdc_error *err)
{
  if (cap <= store->cap)
    return 0;
  struct native_entry *entries = realloc(store->entries, cap * sizeof *entries);
  if (!entries)
    return nbdc_error_set(err, ENOMEM, "out of memory");
  store->entries = entries;
  uint8_t *keks = secmem_alloc(cap * KEYS_KEK_SIZE);
  if (!keks)
    return nbdc_error_set(err, errno ? errno : ENOMEM,
                          "cannot allocate secure memory for %zu keys: %s", cap, strerror(errno));
  if (store->keks)
    memcpy(keks, store->keks, store->count * KEYS_KEK_SIZE);
  secmem_free(store->keks, store->cap * KEYS_KEK_SIZE);
  store->keks = keks;
  store->cap = cap;
  return 0;
}

static ssize_t native_store_find(const struct native_store *store, const char *id)
{
  for (size_t i = 0; i < store->count; i++)
    if (strcmp(store->entries[i].id, id) == 0)
      return (ssize_t)i;
  return -1;
}

/* ---- reading ----------------------------------------------------------- */

static int native_check_stat(const struct native_state *ns, const struct stat *st,
                             struct nbdc_error *err)
{
  if (S_ISLNK(st->st_mode))
    return nbdc_error_set(err, EPERM,
                          "keystore %s is a symbolic link; refusing it (configure the path of "
                          "the real file)",
                          ns->keystore);
  if (!S_ISREG(st->st_mode))
    return nbdc_error_set(err, EPERM, "keystore %s is not a regular file; refusing it",
                          ns->keystore);
  if (st->st_uid != geteuid())
    return nbdc_error_set(err, EPERM,
                          "keystore %s is owned by uid %u, not by this user (uid %u); refusing "
                          "it",
                          ns->keystore, (unsigned)st->st_uid, (unsigned)geteuid());
  if (st->st_mode & 077)
    return nbdc_error_set(err, EPERM,
                          "keystore %s has mode %04o: group or others can access it; refusing "
                          "it (fix with: chmod 600 %s)",
                          ns->keystore, (unsigned)(st->st_mode & 07777), ns->keystore);
  return 0;
}

/* Read the keystore file into a malloc'ed, NUL-terminated buffer (*text_len
 * bytes; the caller wipes and frees it).  *text NULL: the keystore does not exist. */
static int native_read_file(const struct native_state *ns, char **text, size_t *text_len,
                            struct nbdc_error *err)
{
  *text = NULL;
  *text_len = 0;
  struct stat st;
  if (lstat(ns->keystore, &st) < 0) {
    if (errno == ENOENT)
      return 0;
    return nbdc_error_set(err, errno, "cannot examine keystore %s: %s", ns->keystore,
                          strerror(errno));
  }
  int r = native_check_stat(ns, &st, err);
  if (r < 0)
    return r;

  int fd = open(ns->keystore, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ELOOP)
      return nbdc_error_set(err, EPERM, "keystore %s is a symbolic link; refusing it",
                            ns->keystore);
    return nbdc_error_set(err, errno, "cannot open keystore %s: %s", ns->keystore, strerror(errno));
  }
  struct stat fst;
  if (fstat(fd, &fst) < 0) {
    r = nbdc_error_set(err, errno, "cannot examine keystore %s: %s", ns->keystore, strerror(errno));
    goto out;
  }
  r = native_check_stat(ns, &fst, err);
  if (r < 0)
    goto out;
  if (fst.st_dev != st.st_dev || fst.st_ino != st.st_ino) {
    r = nbdc_error_set(err, EAGAIN, "keystore %s was replaced while being opened; try again",
                       ns->keystore);
    goto out;
  }
  if (fst.st_size > NATIVE_MAX_BYTES) {
    r = nbdc_error_set(err, EFBIG, "keystore %s is larger than %lld bytes", ns->keystore,
                       (long long)NATIVE_MAX_BYTES);
    goto out;
  }

  size_t size = (size_t)fst.st_size;
  char *buf = malloc(size + 1);
  if (!buf) {
    r = nbdc_error_set(err, ENOMEM, "out of memory");
    goto out;
  }
  size_t len = 0;
  while (len < size) {
    ssize_t n = read(fd, buf + len, size - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      r = nbdc_error_set(err, errno, "cannot read keystore %s: %s", ns->keystore, strerror(errno));
      nbdc_wipe(buf, len);
      free(buf);
      goto out;
    }
    if (n == 0)
      break;
    len += (size_t)n;
  }
  buf[len] = '\0';
  *text = buf;
  *text_len = len;
  r = 0;
out:
  close(fd);
  return r;
}

/* Overwrite the base64 of every key in a parsed keystore before json-c frees
 * it: json_object_put does not wipe. */
static void native_wipe_json_keys(struct json_object *root)
{
  struct json_object *keys;
  if (!json_object_is_type(root, json_type_object) ||
      !json_object_object_get_ex(root, "keys", &keys) ||
      !json_object_is_type(keys, json_type_object))
    return;
  json_object_object_foreach(keys, id, entry)
  {
    (void)id;
    struct json_object *key;
    if (json_object_is_type(entry, json_type_object) &&
        json_object_object_get_ex(entry, "key", &key) && json_object_is_type(key, json_type_string))
      nbdc_wipe((char *)json_object_get_string(key), (size_t)json_object_get_string_len(key));
  }
}

/* Parse JSON text holding key material.  json-c's tokener accumulates each
 * string in a buffer it grows by realloc, which would leave pieces of keys in
 * freed memory; growing it past any key's length first (by parsing a long
 * dummy string) means it is never reallocated while keys pass through, and it
 * is wiped before it is freed. */
static int native_parse(const struct native_state *ns, const char *text, size_t len,
                        struct json_object **out, struct nbdc_error *err)
{
  *out = NULL;
  struct json_tokener *tok = json_tokener_new();
  if (!tok)
    return nbdc_error_set(err, ENOMEM, "out of memory");
  char reserve[NATIVE_TOKENER_RESERVE + 3];
  memset(reserve, 'x', sizeof reserve);
  reserve[0] = '"';
  reserve[sizeof reserve - 2] = '"';
  reserve[sizeof reserve - 1] = '\0';
  json_object_put(json_tokener_parse_ex(tok, reserve, (int)sizeof reserve - 1));
  json_tokener_reset(tok);

  struct json_object *root = json_tokener_parse_ex(tok, text, (int)len);
  enum json_tokener_error jerr = json_tokener_get_error(tok);
  size_t end = json_tokener_get_parse_end(tok);
  if (jerr == json_tokener_continue)
    jerr = json_tokener_error_parse_eof;
  if (root && jerr == json_tokener_success) {
    while (end < len && strchr(" \t\r\n", text[end]))
      end++;
    if (end < len)
      jerr = json_tokener_error_parse_unexpected;
  }
  if (tok->pb && tok->pb->buf) /* see above; the struct is public in json-c 0.16 */
    nbdc_wipe(tok->pb->buf, (size_t)tok->pb->size);
  json_tokener_free(tok);
  if (!root || jerr != json_tokener_success) {
    native_wipe_json_keys(root);
    json_object_put(root);
    return nbdc_error_set(err, EINVAL, "keystore %s is not valid JSON: %s", ns->keystore,
                          json_tokener_error_desc(jerr));
  }
  *out = root;
  return 0;
}

/* A copy of obj's fields except those named in skip, or NULL if there are none. */
static int native_extra_fields(struct json_object *obj, const char *const *skip,
                               struct json_object **extra, struct nbdc_error *err)
{
  *extra = NULL;
  json_object_object_foreach(obj, field, value)
  {
    bool known = false;
    for (const char *const *s = skip; *s; s++)
      known = known || strcmp(*s, field) == 0;
    if (known)
      continue;
    if (!*extra && !(*extra = json_object_new_object()))
      return nbdc_error_set(err, ENOMEM, "out of memory");
    if (json_object_object_add(*extra, field, json_object_get(value)) != 0) {
      json_object_put(value);
      return nbdc_error_set(err, ENOMEM, "out of memory");
    }
  }
  return 0;
}

/* An optional string field of kek id: NULL if absent. */
static int native_opt_string(const struct native_state *ns, struct json_object *entry,
                             const char *id, const char *field, char **out, struct nbdc_error *err)
{
  struct json_object *value;
  *out = NULL;
  if (!json_object_object_get_ex(entry, field, &value))
    return 0;
  if (!json_object_is_type(value, json_type_string))
    return nbdc_error_set(err, EINVAL, "keystore %s: field %s of kek %s is not a string",
                          ns->keystore, field, id);
  if (!(*out = strdup(json_object_get_string(value))))
    return nbdc_error_set(err, ENOMEM, "out of memory");
  return 0;
}

/* The states a native key can be in; absent means Active. */
static const struct {
  const char *word;
  enum keys_kek_state state;
} native_states[] = {
    {"active", KEYS_KEK_ACTIVE},
    {"deactivated", KEYS_KEK_DEACTIVATED},
    {"compromised", KEYS_KEK_COMPROMISED},
};

static int native_read_state(const struct native_state *ns, struct json_object *entry,
                             const char *id, enum keys_kek_state *state, struct nbdc_error *err)
{
  struct json_object *value;
  *state = KEYS_KEK_ACTIVE;
  if (!json_object_object_get_ex(entry, "state", &value))
    return 0;
  const char *word =
      json_object_is_type(value, json_type_string) ? json_object_get_string(value) : NULL;
  for (size_t i = 0; word && i < sizeof native_states / sizeof native_states[0]; i++) {
    if (strcmp(word, native_states[i].word) == 0) {
      *state = native_states[i].state;
      return 0;
    }
  }
  return nbdc_error_set(err, EINVAL,
                        "keystore %s: field state of kek %s is %s (expected \"active\", "
                        "\"deactivated\" or \"compromised\")",
                        ns->keystore, id, json_object_to_json_string(value));
}

/* Check the parsed keystore and move it into store (KEKs into secure memory). */
static int native_convert(const struct native_state *ns, struct json_object *root,
                          struct native_store *store, struct nbdc_error *err)
{
  static const char *const top_fields[] = {"version", "keys", NULL};
  static const char *const key_fields[] = {"key", "name", "created", "state", "revoked", NULL};

  if (!json_object_is_type(root, json_type_object))
    return nbdc_error_set(err, EINVAL, "keystore %s is not a JSON object", ns->keystore);
  struct json_object *version, *keys;
  if (!json_object_object_get_ex(root, "version", &version))
    return nbdc_error_set(err, EINVAL, "keystore %s: field version is missing", ns->keystore);
  if (!json_object_is_type(version, json_type_int) ||
      json_object_get_int64(version) != NATIVE_VERSION)
    return nbdc_error_set(err, EINVAL, "keystore %s: version %s is not supported (expected %d)",
                          ns->keystore, json_object_to_json_string(version), NATIVE_VERSION);
  if (!json_object_object_get_ex(root, "keys", &keys))
    return nbdc_error_set(err, EINVAL, "keystore %s: field keys is missing", ns->keystore);
  if (!json_object_is_type(keys, json_type_object))
    return nbdc_error_set(err, EINVAL, "keystore %s: field keys is not an object", ns->keystore);

  int r = native_extra_fields(root, top_fields, &store->extra, err);
  if (r < 0)
    return r;
  r = native_store_reserve(store, (size_t)json_object_object_length(keys) + 1, err);
  if (r < 0)
    return r;

  uint8_t *decoded = secmem_alloc(NATIVE_DECODE_MAX);
  if (!decoded)
    return nbdc_error_set(err, errno ? errno : ENOMEM, "cannot allocate secure memory: %s",
                          strerror(errno));
  json_object_object_foreach(keys, id, entry)
  {
    if (id[0] == '\0' || strlen(id) >= KEYS_ID_MAX) {
      r = nbdc_error_set(err, EINVAL, "keystore %s: kek id \"%.*s\" is empty or too long",
                         ns->keystore, 64, id);
      goto out;
    }
    if (!json_object_is_type(entry, json_type_object)) {
      r = nbdc_error_set(err, EINVAL, "keystore %s: kek %s is not an object", ns->keystore, id);
      goto out;
    }
    struct json_object *key;
    if (!json_object_object_get_ex(entry, "key", &key)) {
      r = nbdc_error_set(err, EINVAL, "keystore %s: kek %s has no field key", ns->keystore, id);
      goto out;
    }
    if (!json_object_is_type(key, json_type_string)) {
      r = nbdc_error_set(err, EINVAL, "keystore %s: field key of kek %s is not a string",
                         ns->keystore, id);
      goto out;
    }
    size_t decoded_len = 0;
    if (json_object_get_string_len(key) > NATIVE_B64_KEK_LEN + 4 ||
        base64_decode(json_object_get_string(key), decoded, NATIVE_DECODE_MAX, &decoded_len) < 0) {
      r = nbdc_error_set(err, EINVAL, "keystore %s: field key of kek %s is not base64 of %d bytes",
                         ns->keystore, id, KEYS_KEK_SIZE);
      goto out;
    }
    if (decoded_len != KEYS_KEK_SIZE) {
      r = nbdc_error_set(err, EINVAL, "keystore %s: key of kek %s is %zu bytes, expected %d",
                         ns->keystore, id, decoded_len, KEYS_KEK_SIZE);
      goto out;
    }

    struct native_entry *e = &store->entries[store->count];
    memset(e, 0, sizeof *e);
    memcpy(store->keks + store->count * KEYS_KEK_SIZE, decoded, KEYS_KEK_SIZE);
    store->count++; /* from here on, store_free releases e */
    if (!(e->id = strdup(id))) {
      r = nbdc_error_set(err, ENOMEM, "out of memory");
      goto out;
    }
    if ((r = native_opt_string(ns, entry, id, "name", &e->name, err)) < 0 ||
        (r = native_opt_string(ns, entry, id, "created", &e->created, err)) < 0 ||
        (r = native_opt_string(ns, entry, id, "revoked", &e->revoked, err)) < 0 ||
        (r = native_read_state(ns, entry, id, &e->state, err)) < 0 ||
        (r = native_extra_fields(entry, key_fields, &e->extra, err)) < 0)
      goto out;
  }
  r = 0;
out:
  secmem_free(decoded, NATIVE_DECODE_MAX);
  return r;
}

/* Load the keystore; a missing one is an empty store. */
static int native_load(const struct native_state *ns, struct native_store *store,
                       struct nbdc_error *err)
{
  memset(store, 0, sizeof *store);
  char *text;
  size_t len;
  int r = native_read_file(ns, &text, &len, err);
  if (r < 0)
    return r;
  if (!text) {
    store->missing = true;
    return native_store_reserve(store, 1, err);
  }

  struct json_object *root = NULL;
  if (memchr(text, '\0', len))
    r = nbdc_error_set(err, EINVAL, "keystore %s is not valid JSON (it contains a NUL byte)",
                       ns->keystore);
  else if ((r = native_parse(ns, text, len, &root, err)) == 0)
    r = native_convert(ns, root, store, err);
  nbdc_wipe(text, len);
  free(text);
  native_wipe_json_keys(root);
  json_object_put(root);
  if (r < 0)
    native_store_free(store);
  return r;
}

/* ---- writing ----------------------------------------------------------- */

/* Output buffer: data NULL measures, otherwise writes at most cap bytes. */
struct native_out {
  char *data;
  size_t len;
  size_t cap;
  bool overflow;
};

static void out_put(struct native_out *o, const char *s, size_t n)
{
  if (o->data) {
    if (o->len + n > o->cap) {
      o->overflow = true;
      return;
    }
    memcpy(o->data + o->len, s, n);
  }
  o->len += n;
}

static void out_str(struct native_out *o, const char *s)
{
  out_put(o, s, strlen(s));
}

/* s as a JSON string literal. */
static void out_json_string(struct native_out *o, const char *s)
{
  out_put(o, "\"", 1);
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    char esc[8];
    if (*c == '"' || *c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)*c;
      out_put(o, esc, 2);
    } else if (*c < 0x20 || *c == 0x7f) {
      snprintf(esc, sizeof esc, "\\u%04x", *c);
      out_put(o, esc, 6);
    } else {
      out_put(o, (const char *)c, 1);
    }
  }
  out_put(o, "\"", 1);
}

/* Base64 of a KEK, encoded straight into the output buffer. */
static void out_kek(struct native_out *o, const uint8_t *kek)
{
  out_put(o, "\"", 1);
  if (o->data) {
    if (o->len + NATIVE_B64_KEK_LEN + 1 > o->cap) { /* base64_encode_into adds a NUL */
      o->overflow = true;
      return;
    }
    base64_encode_into(kek, KEYS_KEK_SIZE, o->data + o->len);
  }
  o->len += NATIVE_B64_KEK_LEN;
  out_put(o, "\"", 1);
}

static void out_extra(struct native_out *o, struct json_object *extra, const char *indent)
{
  if (!extra)
    return;
  json_object_object_foreach(extra, field, value)
  {
    out_str(o, ",\n");
    out_str(o, indent);
    out_json_string(o, field);
    out_str(o, ": ");
    out_str(o, json_object_to_json_string_ext(value, JSON_C_TO_STRING_PLAIN |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE));
  }
}

static void native_serialise(const struct native_store *store, struct native_out *o)
{
  out_str(o, "{\n  \"version\": 1,\n  \"keys\": {");
  for (size_t i = 0; i < store->count; i++) {
    const struct native_entry *e = &store->entries[i];
    out_str(o, i ? ",\n    " : "\n    ");
    out_json_string(o, e->id);
    out_str(o, ": {\n      \"key\": ");
    out_kek(o, store->keks + i * KEYS_KEK_SIZE);
    if (e->name) {
      out_str(o, ",\n      \"name\": ");
      out_json_string(o, e->name);
    }
    if (e->created) {
      out_str(o, ",\n      \"created\": ");
      out_json_string(o, e->created);
    }
    if (e->state != KEYS_KEK_ACTIVE) {
      out_str(o, ",\n      \"state\": ");
      out_json_string(o, keys_kek_state_name(e->state));
    }
    if (e->revoked) {
      out_str(o, ",\n      \"revoked\": ");
      out_json_string(o, e->revoked);
    }
    out_extra(o, e->extra, "      ");
    out_str(o, "\n    }");
  }
  out_str(o, store->count ? "\n  }" : "}");
  out_extra(o, store->extra, "  ");
  out_str(o, "\n}\n");
}

static int native_write_all(int fd, const char *data, size_t len)
{
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

/* The directory part of path (malloc'ed). */
static char *native_dirname(const char *path)
{
  const char *slash = strrchr(path, '/');
  if (!slash)
    return strdup(".");
  if (slash == path)
    return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

/* The file name part of path. */
static const char *native_basename(const char *path)
{
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

/* Forget a named temporary file: its blocks first (it holds every key), then
 * its name. */
static void native_drop_tmp(int dir_fd, const char *name, int fd)
{
  /* Best effort, so the result is unused; glibc's _FORTIFY_SOURCE declares
   * ftruncate warn_unused_result, which a (void) cast does not silence. */
  int truncated = 0;
  if (fd >= 0)
    truncated = ftruncate(fd, 0);
  else if ((fd = openat(dir_fd, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)) >= 0) {
    truncated = ftruncate(fd, 0);
    close(fd);
  }
  (void)truncated;
  (void)unlinkat(dir_fd, name, 0);
}

/* Temporary files a writer left when it was killed between its link and its
 * rename (or, before O_TMPFILE, at any time): we hold the keystore's lock, so
 * no writer is using them. */
static void native_remove_stale_tmp(int dir_fd, const char *base)
{
  int fd = dup(dir_fd);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d) {
    if (fd >= 0)
      close(fd);
    return;
  }
  size_t base_len = strlen(base);
  struct dirent *de;
  while ((de = readdir(d))) {
    if (strncmp(de->d_name, base, base_len) == 0 &&
        strncmp(de->d_name + base_len, ".tmp.", 5) == 0 && strlen(de->d_name) == base_len + 13)
      native_drop_tmp(dir_fd, de->d_name, -1);
  }
  closedir(d);
}

/* A random temporary name beside the keystore. */
static int native_tmp_name(const struct native_state *ns, char name[NAME_MAX + 1],
                           struct nbdc_error *err)
{
  uint32_t suffix;
  int r = crypto_random(&suffix, sizeof suffix, err);
  if (r < 0)
    return r;
  int n = snprintf(name, NAME_MAX + 1, "%s.tmp.%08x", native_basename(ns->keystore), suffix);
  if (n < 0 || n > NAME_MAX)
    return nbdc_error_set(err, ENAMETOOLONG, "keystore %s: file name too long for a temporary file",
                          ns->keystore);
  return 0;
}

/* Give the complete, synced O_TMPFILE fd a temporary name. */
static int native_link_tmp(const struct native_state *ns, int dir_fd, int fd,
                           char name[NAME_MAX + 1], struct nbdc_error *err)
{
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  for (int attempt = 0; attempt < 16; attempt++) {
    int r = native_tmp_name(ns, name, err);
    if (r < 0)
      return r;
    /* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc works for everyone */
    if (linkat(fd, "", dir_fd, name, AT_EMPTY_PATH) == 0 ||
        (errno != EEXIST && linkat(AT_FDCWD, proc, dir_fd, name, AT_SYMLINK_FOLLOW) == 0))
      return 0;
    if (errno != EEXIST)
      return nbdc_error_set(err, errno, "cannot link the new keystore beside %s: %s", ns->keystore,
                            strerror(errno));
  }
  return nbdc_error_set(err, EEXIST, "cannot name a temporary file beside keystore %s",
                        ns->keystore);
}

/* Replace the keystore with store, so that no file holding keys is ever left
 * behind: the new contents go to an unnamed O_TMPFILE in the keystore's
 * directory, which gets a temporary name only once it is complete and
 * synced, and is renamed over the keystore at once; then the directory is
 * synced.  Without O_TMPFILE (some file systems), a named temporary file
 * that every failure truncates and removes.  Either way a writer killed
 * between name and rename leaves a file the next writer removes. */
static int native_save(const struct native_state *ns, const struct native_store *store,
                       struct nbdc_error *err)
{
  struct native_out o = {0};
  native_serialise(store, &o);
  o.cap = o.len + 1;
  o.len = 0;
  o.data = malloc(o.cap);
  if (!o.data)
    return nbdc_error_set(err, ENOMEM, "out of memory");
  native_serialise(store, &o);

  int r;
  int fd = -1;
  bool named = false; /* tmp names a file we must remove on failure */
  char tmp[NAME_MAX + 1] = "";
  const char *base = native_basename(ns->keystore);
  char *dir = native_dirname(ns->keystore);
  int dir_fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
  if (!dir) {
    r = nbdc_error_set(err, ENOMEM, "out of memory");
    goto out;
  }
  if (dir_fd < 0) {
    r = nbdc_error_set(err, errno, "cannot open directory %s of keystore %s: %s", dir, ns->keystore,
                       strerror(errno));
    goto out;
  }
  if (o.overflow) {
    r = nbdc_error_set(err, EIO, "keystore %s: internal error serialising it", ns->keystore);
    goto out;
  }
  native_remove_stale_tmp(dir_fd, base);

  fd = openat(dir_fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  bool tmpfile = fd >= 0;
  if (!tmpfile && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
    r = nbdc_error_set(err, errno, "cannot create a temporary file in %s: %s", dir,
                       strerror(errno));
    goto out;
  }
  for (int attempt = 0; fd < 0 && attempt < 16; attempt++) {
    if ((r = native_tmp_name(ns, tmp, err)) < 0)
      goto out;
    fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) {
      r = nbdc_error_set(err, errno, "cannot create %s/%s: %s", dir, tmp, strerror(errno));
      goto out;
    }
  }
  if (fd < 0) {
    r = nbdc_error_set(err, EEXIST, "cannot create a temporary file beside keystore %s",
                       ns->keystore);
    goto out;
  }
  named = !tmpfile;

  const char *failed = NULL;
  if (fchmod(fd, 0600) < 0)
    failed = "set the mode of";
  else if ((r = native_write_all(fd, o.data, o.len)) < 0)
    errno = -r, failed = "write";
  else if (fsync(fd) < 0)
    failed = "sync";
  if (failed) {
    r = nbdc_error_set(err, errno, "cannot %s the new keystore beside %s: %s", failed, ns->keystore,
                       strerror(errno));
    goto out;
  }
  if (tmpfile) {
    if ((r = native_link_tmp(ns, dir_fd, fd, tmp, err)) < 0)
      goto out;
    named = true;
  }
  if (renameat(dir_fd, tmp, dir_fd, base) < 0) {
    r = nbdc_error_set(err, errno, "cannot rename %s/%s to %s: %s", dir, tmp, ns->keystore,
                       strerror(errno));
    goto out;
  }
  named = false; /* renamed: it is the keystore now */
  if (close(fd) < 0) {
    fd = -1;
    r = nbdc_error_set(err, errno, "cannot write keystore %s: %s", ns->keystore, strerror(errno));
    goto out;
  }
  fd = -1;
  if (fsync(dir_fd) < 0)
    r = nbdc_error_set(err, errno, "cannot sync directory %s: %s", dir, strerror(errno));
  else
    r = 0;

out:
  if (named)
    native_drop_tmp(dir_fd, tmp, fd);
  if (fd >= 0)
    close(fd);
  if (dir_fd >= 0)
    close(dir_fd);
  free(dir);
  nbdc_wipe(o.data, o.cap);
  free(o.data);
  return r;
}

/* mkdir -p of the keystore's directory; directories we create are 0700. */
static int native_make_dirs(const struct native_state *ns, struct nbdc_error *err)
{
  char *dir = native_dirname(ns->keystore);
  if (!dir)
    return nbdc_error_set(err, ENOMEM, "out of memory");
  int r = 0;
  size_t len = strlen(dir);
  for (size_t i = 1; i <= len && r == 0; i++) {
    if (dir[i] != '/' && dir[i] != '\0')
      continue;
    char saved = dir[i];
    dir[i] = '\0';
    if (mkdir(dir, 0700) == 0) {
      if (chmod(dir, 0700) < 0) /* in case the umask removed owner bits */
        r = nbdc_error_set(err, errno, "cannot set the mode of directory %s: %s", dir,
                           strerror(errno));
    } else if (errno != EEXIST) {
      r = nbdc_error_set(err, errno, "cannot create directory %s for keystore %s: %s", dir,
                         ns->keystore, strerror(errno));
    } else {
      struct stat st;
      if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        r = nbdc_error_set(err, ENOTDIR, "%s (directory of keystore %s) is not a directory", dir,
                           ns->keystore);
    }
    dir[i] = saved;
  }
  free(dir);
  return r;
}

/* Take the keystore's lock for a read-modify-write; returns the lock's fd. */
static int native_lock(const struct native_state *ns, struct nbdc_error *err)
{
  int r = native_make_dirs(ns, err);
  if (r < 0)
    return r;
  int fd = open(ns->lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return nbdc_error_set(err, errno, "cannot open lock file %s: %s", ns->lock_path,
                          strerror(errno));
  while (flock(fd, LOCK_EX) < 0) {
    if (errno != EINTR) {
      r = nbdc_error_set(err, errno, "cannot lock %s: %s", ns->lock_path, strerror(errno));
      close(fd);
      return r;
    }
  }
  return fd;
}

static void native_unlock(int lock_fd)
{
  close(lock_fd); /* releases the flock */
}

/* ---- operations -------------------------------------------------------- */

static int native_not_found(const struct native_state *ns, const struct native_store *store,
                            const char *id, struct nbdc_error *err)
{
  if (store->missing)
    return nbdc_error_set(err, ENOENT,
                          "kek %s not found: keystore %s (provider %s) does not exist; is this "
                          "the configuration the KEK was created with?",
                          id, ns->keystore, ns->provider);
  return nbdc_error_set(err, ENOENT, "kek %s not found in keystore %s (provider %s)", id,
                        ns->keystore, ns->provider);
}

/* The current time, RFC 3339 UTC. */
static int native_now(char out[40], struct nbdc_error *err)
{
  struct tm tm;
  time_t now = time(NULL);
  if (!gmtime_r(&now, &tm) || strftime(out, 40, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    return nbdc_error_set(err, EOVERFLOW, "cannot format the current time");
  return 0;
}

static int native_kek_create(void *state, const char *name, char id_out[KEYS_ID_MAX],
                             struct nbdc_error *err)
{
  struct native_state *ns = state;
  int lock_fd = native_lock(ns, err);
  if (lock_fd < 0)
    return lock_fd;

  struct native_store store;
  int r = native_load(ns, &store, err);
  if (r < 0)
    goto out_unlock;
  r = native_store_reserve(&store, store.count + 1, err);
  if (r < 0)
    goto out;

  char id[KEYS_ID_MAX];
  do {
    r = crypto_uuid_v4(id, err);
    if (r < 0)
      goto out;
  } while (native_store_find(&store, id) >= 0);

  char created[40];
  if ((r = native_now(created, err)) < 0)
    goto out;

  struct native_entry *e = &store.entries[store.count];
  memset(e, 0, sizeof *e);
  e->state = KEYS_KEK_ACTIVE;
  r = crypto_random(store.keks + store.count * KEYS_KEK_SIZE, KEYS_KEK_SIZE, err);
  if (r < 0)
    goto out;
  store.count++;
  if (!(e->id = strdup(id)) || !(e->name = strdup(name ? name : "")) ||
      !(e->created = strdup(created))) {
    r = nbdc_error_set(err, ENOMEM, "out of memory");
    goto out;
  }
  r = native_save(ns, &store, err);
  if (r == 0)
    memcpy(id_out, id, KEYS_ID_MAX);
out:
  native_store_free(&store);
out_unlock:
  native_unlock(lock_fd);
  return r;
}

static int native_kek_get(void *state, const char *id, uint8_t **kek, struct nbdc_error *err)
{
  struct native_state *ns = state;
  struct native_store store;
  int r = native_load(ns, &store, err);
  if (r < 0)
    return r;
  ssize_t i = native_store_find(&store, id);
  if (i < 0) {
    r = native_not_found(ns, &store, id, err);
  } else if (!(*kek = secmem_alloc(KEYS_KEK_SIZE))) {
    r = nbdc_error_set(err, errno ? errno : ENOMEM, "cannot allocate secure memory: %s",
                       strerror(errno));
  } else {
    memcpy(*kek, store.keks + (size_t)i * KEYS_KEK_SIZE, KEYS_KEK_SIZE);
    r = 0;
  }
  native_store_free(&store);
  return r;
}

static int native_kek_list(void *state, const char *prefix, struct keys_kek_info **list,
                           size_t *count, struct nbdc_error *err)
{
  struct native_state *ns = state;
  struct native_store store;
  int r = native_load(ns, &store, err);
  if (r < 0)
    return r;
  struct keys_kek_info *infos = calloc(store.count ? store.count : 1, sizeof *infos);
  if (!infos) {
    native_store_free(&store);
    return nbdc_error_set(err, ENOMEM, "out of memory");
  }
  /* Still an empty list, but the caller can say why (err->code stays 0). */
  if (store.missing && err) {
    nbdc_error_set(err, ENOENT, "keystore %s does not exist (yet): no KEK was created with it",
                   ns->keystore);
    err->code = 0;
  }
  size_t n = 0;
  size_t prefix_len = prefix ? strlen(prefix) : 0;
  for (size_t i = 0; i < store.count; i++) {
    const struct native_entry *e = &store.entries[i];
    const char *name = e->name ? e->name : "";
    if (prefix_len && strncmp(name, prefix, prefix_len) != 0)
      continue;
    struct keys_kek_info *info = &infos[n++];
    snprintf(info->id, sizeof info->id, "%s", e->id);
    snprintf(info->name, sizeof info->name, "%s", name);
    snprintf(info->created, sizeof info->created, "%s", e->created ? e->created : "");
    snprintf(info->state, sizeof info->state, "%s", keys_kek_state_name(e->state));
    snprintf(info->revoked, sizeof info->revoked, "%s", e->revoked ? e->revoked : "");
  }
  native_store_free(&store);
  *list = infos;
  *count = n;
  return 0;
}

static int native_kek_state(void *state, const char *id, enum keys_kek_state *kek_state,
                            struct nbdc_error *err)
{
  struct native_state *ns = state;
  struct native_store store;
  int r = native_load(ns, &store, err);
  if (r < 0)
    return r;
  ssize_t i = native_store_find(&store, id);
  if (i < 0)
    r = native_not_found(ns, &store, id, err);
  else
    *kek_state = store.entries[i].state;
  native_store_free(&store);
  return r;
}

/* KMIP's transitions: a compromise from Active or Deactivated (again is a
 * no-op that keeps the first date), any other reason only from Active. */
static int native_kek_revoke(void *state, const char *id, bool compromised, struct nbdc_error *err)
{
  struct native_state *ns = state;
  int lock_fd = native_lock(ns, err);
  if (lock_fd < 0)
    return lock_fd;
  struct native_store store;
  int r = native_load(ns, &store, err);
  if (r < 0)
    goto out_unlock;
  ssize_t found = native_store_find(&store, id);
  if (found < 0) {
    r = native_not_found(ns, &store, id, err);
    goto out;
  }
  struct native_entry *e = &store.entries[found];
  if (compromised && e->state == KEYS_KEK_COMPROMISED) {
    r = 0;
    goto out;
  }
  if (!compromised && e->state != KEYS_KEK_ACTIVE) {
    r = nbdc_error_set(err, EPERM,
                       "kek %s in keystore %s is %s, not active: only a compromise can revoke it "
                       "again (provider %s)",
                       id, ns->keystore, keys_kek_state_name(e->state), ns->provider);
    goto out;
  }
  char now[40];
  if ((r = native_now(now, err)) < 0)
    goto out;
  char *revoked = strdup(now);
  if (!revoked) {
    r = nbdc_error_set(err, ENOMEM, "out of memory");
    goto out;
  }
  free(e->revoked);
  e->revoked = revoked;
  e->state = compromised ? KEYS_KEK_COMPROMISED : KEYS_KEK_DEACTIVATED;
  r = native_save(ns, &store, err);
out:
  native_store_free(&store);
out_unlock:
  native_unlock(lock_fd);
  return r;
}

static int native_kek_destroy(void *state, const char *id, struct nbdc_error *err)
{
  struct native_state *ns = state;
  int lock_fd = native_lock(ns, err);
  if (lock_fd < 0)
    return lock_fd;
  struct native_store store;
  int r = native_load(ns, &store, err);
  if (r < 0)
    goto out_unlock;
  ssize_t found = native_store_find(&store, id);
  if (found < 0) {
    r = native_not_found(ns, &store, id, err);
    goto out;
  }
  size_t i = (size_t)found;
  native_entry_clear(&store.entries[i]);
  size_t after = store.count - i - 1;
  memmove(&store.entries[i], &store.entries[i + 1], after * sizeof *store.entries);
  memmove(store.keks + i * KEYS_KEK_SIZE, store.keks + (i + 1) * KEYS_KEK_SIZE,
          after * KEYS_KEK_SIZE);
  store.count--;
  nbdc_wipe(store.keks + store.count * KEYS_KEK_SIZE, KEYS_KEK_SIZE);
  r = native_save(ns, &store, err);
out:
  native_store_free(&store);
out_unlock:
  native_unlock(lock_fd);
  return r;
}

static void native_close(void *state)
{
  struct native_state *ns = state;
  if (!ns)
    return;
  free(ns->provider);
  free(ns->keystore);
  free(ns->lock_path);
  free(ns);
}

static const struct keys_provider_ops native_ops = {
    .type = "native",
    .kek_create = native_kek_create,
    .kek_get = native_kek_get,
    .kek_list = native_kek_list,
    .kek_state = native_kek_state,
    .kek_revoke = native_kek_revoke,
    .kek_destroy = native_kek_destroy,
    .close = native_close,
};

int keys_native_open(const char *name, struct json_object *conf, const char *origin,
                     enum keys_role role, const struct keys_provider_ops **ops, void **state,
                     struct nbdc_error *err)
{
  (void)role; /* the keystore file has one owner: the file mode is the access control */
  struct json_object *keystore;
  if (!json_object_object_get_ex(conf, "keystore", &keystore) ||
      !json_object_is_type(keystore, json_type_string) ||
      json_object_get_string(keystore)[0] == '\0')
    return nbdc_error_set(err, EINVAL, "provider %s in %s: field keystore is missing or not a path",
                          name, origin);
  struct native_state *ns = calloc(1, sizeof *ns);
  if (!ns)
    return nbdc_error_set(err, ENOMEM, "out of memory");
  ns->provider = strdup(name);
  ns->keystore = strdup(json_object_get_string(keystore));
  if (!ns->provider || !ns->keystore || asprintf(&ns->lock_path, "%s.lock", ns->keystore) < 0) {
    ns->lock_path = NULL;
    native_close(ns);
    return nbdc_error_set(err, ENOMEM, "out of memory");
  }
  *ops = &native_ops;
  *state = ns;
  return 0;
}

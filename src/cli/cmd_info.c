/* nbdcrypt info: what a disk's LUKS2 header says, without keys. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli/cli.h"
#include "nbdcrypt/luks2.h"
#include "nbdcrypt/reencrypt.h"
#include "nbdcrypt/volume.h"

static const char info_help[] =
    "Usage: nbdcrypt info TARGET [--header FILE] [--json]\n"
    "                     [--dump-volume-key FILE [--allow-revoked]]\n\n"
    "Show the LUKS2 header of TARGET (image file or NBD URI): uuid, label, cipher,\n"
    "sector size, data offset and size, keyslots, tokens (provider, KEK id) and\n"
    "requirement flags, and a data segment that does not fit the device (which\n"
    "the filter refuses to serve).  Needs no keys.\n"
    "  --header FILE           the disk's detached LUKS2 header (TARGET holds the data)\n"
    "  --json                  machine-readable output\n"
    "  --dump-volume-key FILE  unlock with the configured providers and write the\n"
    "                          volume key (raw bytes) to FILE, created mode 0600;\n"
    "                          never written to a terminal\n"
    "  --allow-revoked     --dump-volume-key: unlock even with a revoked KEK\n";

/* Everything the header says, as one JSON object (also the source of the text output). */
static const char *jstr(struct json_object *o, const char *key);

static struct json_object *info_json(struct luks2_hdr *hdr, uint64_t dev_size, bool header_given)
{
  struct json_object *o = json_object_new_object();
  struct luks2_segment seg;
  struct nbdc_error err = {0};

  json_object_object_add(o, "luks2", json_object_new_boolean(1));
  json_object_object_add(o, "uuid", json_object_new_string(luks2_uuid(hdr)));
  json_object_object_add(o, "label", json_object_new_string(luks2_label(hdr)));
  json_object_object_add(o, "seqid", json_object_new_int64((int64_t)luks2_seqid(hdr)));
  json_object_object_add(o, "header_size", json_object_new_int64((int64_t)luks2_hdr_size(hdr)));
  json_object_object_add(o, "keyslots_size",
                         json_object_new_int64((int64_t)luks2_keyslots_size(hdr)));
  json_object_object_add(o, "device_size", json_object_new_int64((int64_t)dev_size));
  /* With --header the header is detached whatever its offset (counted on
   * TARGET); without it, a header whose data starts at 0 is on a header file. */
  bool detached = header_given || luks2_detached_header(hdr);
  json_object_object_add(o, "detached_header", json_object_new_boolean(detached));
  struct json_object *problems = json_object_new_array();
  int sr = header_given ? luks2_data_segment_detached(hdr, &seg, &err)
                        : luks2_data_segment(hdr, &seg, &err);
  if (sr == 0 || detached) {
    json_object_object_add(o, "cipher", json_object_new_string(seg.cipher));
    json_object_object_add(o, "key_bits",
                           json_object_new_int((int)(luks2_volume_key_size(hdr) * 8)));
    json_object_object_add(o, "sector_size", json_object_new_int((int)seg.sector_size));
    json_object_object_add(o, "data_offset", json_object_new_int64((int64_t)seg.offset));
    uint64_t size = seg.size;
    if (sr == 0) {
      /* The filter's own check: the reason it would refuse the disk. */
      struct nbdc_error e = {0};
      if (volume_segment_data_size(&seg, luks2_uuid(hdr), dev_size, &size, &e) < 0) {
        json_object_array_add(problems, json_object_new_string(e.msg));
        size = 0;
      }
    } else if (seg.dynamic) {
      size = 0; /* a header file of its own: the data device is not known here */
    }
    json_object_object_add(o, "data_size", json_object_new_int64((int64_t)size));
    json_object_object_add(o, "data_size_dynamic", json_object_new_boolean(seg.dynamic));
  } else {
    json_object_object_add(o, "segment_error", json_object_new_string(err.msg));
  }
  json_object_object_add(o, "problems", problems);

  const char *reqs[LUKS2_MAX_SEGMENTS];
  size_t nreqs = luks2_requirements(hdr, reqs, LUKS2_MAX_SEGMENTS);
  struct json_object *req_arr = json_object_new_array();
  for (size_t i = 0; i < nreqs; i++)
    json_object_array_add(req_arr, json_object_new_string(reqs[i]));
  json_object_object_add(o, "requirements", req_arr);

  int ids[LUKS2_MAX_KEYSLOTS];
  size_t nslots = luks2_keyslot_list(hdr, ids, LUKS2_MAX_KEYSLOTS);
  struct json_object *slots = json_object_new_array();
  for (size_t i = 0; i < nslots; i++) {
    struct luks2_keyslot_info ki;
    if (luks2_keyslot_info(hdr, ids[i], &ki) < 0)
      continue;
    struct json_object *s = json_object_new_object();
    json_object_object_add(s, "id", json_object_new_int(ki.id));
    json_object_object_add(s, "type", json_object_new_string(ki.type));
    json_object_object_add(s, "kdf", json_object_new_string(ki.kdf));
    json_object_object_add(s, "key_bits", json_object_new_int((int)(ki.key_size * 8)));
    json_object_object_add(s, "priority", json_object_new_int(ki.priority));
    json_object_object_add(s, "area_offset", json_object_new_int64((int64_t)ki.area_offset));
    json_object_object_add(s, "area_size", json_object_new_int64((int64_t)ki.area_size));
    json_object_array_add(slots, s);
  }
  json_object_object_add(o, "keyslots", slots);

  struct json_object *tokens = json_object_new_array();
  for (int id = luks2_token_next(hdr, -1, NULL); id >= 0; id = luks2_token_next(hdr, id, NULL)) {
    struct json_object *t = json_object_new_object();
    struct json_object *src = luks2_token_get(hdr, id);
    json_object_object_add(t, "id", json_object_new_int(id));
    /* Copy the descriptive fields only: a kms-wrapped token's ciphertext is
     * not secret, but it is noise here. */
    static const char *const fields[] = {"type", "keyslots", "provider", "kek_id", "mode"};
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
      struct json_object *v;
      if (json_object_object_get_ex(src, fields[f], &v))
        json_object_object_add(t, fields[f], json_object_get(v));
    }
    json_object_array_add(tokens, t);
  }
  json_object_object_add(o, "tokens", tokens);

  /* An operation in progress, from its progress record as it stands (not
   * authenticated: that needs the keys; only the engine acts on it). */
  int rid = luks2_token_next(hdr, -1, REENC_TOKEN_TYPE);
  if (rid >= 0) {
    struct json_object *src = luks2_token_get(hdr, rid), *op = json_object_new_object();
    static const char *const fields[] = {"mode", "phase",          "direction",   "data_size",
                                         "done", "hotzone_offset", "hotzone_size"};
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
      struct json_object *v;
      if (json_object_object_get_ex(src, fields[f], &v))
        json_object_object_add(op, fields[f], json_object_get(v));
    }
    uint64_t total = strtoull(jstr(src, "data_size"), NULL, 10);
    uint64_t done = strtoull(jstr(src, "done"), NULL, 10);
    if (strcmp(jstr(src, "direction"), "backward") == 0)
      done = done <= total ? total - done : 0;
    double pct = total ? 100.0 * (double)(done <= total ? done : total) / (double)total : 100.0;
    json_object_object_add(op, "percent", json_object_new_double((double)(int)(pct * 10) / 10));
    json_object_object_add(o, "operation", op);
  }
  if (luks2_load_warning(hdr))
    json_object_object_add(o, "warning", json_object_new_string(luks2_load_warning(hdr)));
  return o;
}

static const char *jstr(struct json_object *o, const char *key)
{
  struct json_object *v;
  return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "";
}

static void info_print_text(const char *target, struct json_object *o, bool header_given)
{
  struct json_object *v;
  printf("LUKS2 header on %s\n", target);
  printf("  uuid:          %s\n", jstr(o, "uuid"));
  printf("  label:         %s\n", *jstr(o, "label") ? jstr(o, "label") : "(none)");
  printf("  seqid:         %s\n", jstr(o, "seqid"));
  printf("  header size:   %s bytes (two copies), keyslots area %s bytes\n", jstr(o, "header_size"),
         jstr(o, "keyslots_size"));
  if (json_object_object_get_ex(o, "segment_error", &v)) {
    printf("  data segment:  %s\n", json_object_get_string(v));
  } else {
    printf("  cipher:        %s, %s-bit key\n", jstr(o, "cipher"), jstr(o, "key_bits"));
    printf("  sector size:   %s\n", jstr(o, "sector_size"));
    printf("  data offset:   %s\n", jstr(o, "data_offset"));
    json_object_object_get_ex(o, "detached_header", &v);
    if (json_object_get_boolean(v))
      printf("  detached:      yes: this is a detached header; the data is on another device\n");
    struct json_object *dyn, *det;
    json_object_object_get_ex(o, "data_size_dynamic", &dyn);
    json_object_object_get_ex(o, "detached_header", &det);
    if (json_object_get_boolean(dyn) && json_object_get_boolean(det) && !header_given)
      printf("  data size:     dynamic: to the end of the data device\n");
    else
      printf("  data size:     %s%s\n", jstr(o, "data_size"),
             json_object_get_boolean(dyn) ? " (dynamic: to the end of the device)" : "");
  }
  json_object_object_get_ex(o, "problems", &v);
  for (size_t i = 0; i < json_object_array_length(v); i++)
    printf("  problem:       %s; it cannot be served\n",
           json_object_get_string(json_object_array_get_idx(v, i)));
  json_object_object_get_ex(o, "requirements", &v);
  printf("  requirements:  %s\n", json_object_array_length(v)
                                      ? json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN)
                                      : "none");
  if (json_object_object_get_ex(o, "operation", &v)) {
    struct json_object *pct;
    json_object_object_get_ex(v, "percent", &pct);
    printf("  operation:     %s in progress, %.1f%% done (%s of %s bytes)%s\n", jstr(v, "mode"),
           json_object_get_double(pct), jstr(v, "done"), jstr(v, "data_size"),
           strcmp(jstr(v, "hotzone_size"), "0") ? ", a hotzone being rewritten" : "");
  }
  json_object_object_get_ex(o, "keyslots", &v);
  printf("  keyslots:\n");
  for (size_t i = 0; i < json_object_array_length(v); i++) {
    struct json_object *s = json_object_array_get_idx(v, i);
    printf("    %s: %s, kdf %s, %s-bit key, priority %s\n", jstr(s, "id"), jstr(s, "type"),
           jstr(s, "kdf"), jstr(s, "key_bits"), jstr(s, "priority"));
  }
  json_object_object_get_ex(o, "tokens", &v);
  printf("  tokens:\n");
  for (size_t i = 0; i < json_object_array_length(v); i++) {
    struct json_object *t = json_object_array_get_idx(v, i), *ks;
    printf("    %s: %s", jstr(t, "id"), jstr(t, "type"));
    if (json_object_object_get_ex(t, "provider", NULL))
      printf(", provider %s, kek %s, mode %s", jstr(t, "provider"), jstr(t, "kek_id"),
             jstr(t, "mode"));
    if (json_object_object_get_ex(t, "keyslots", &ks))
      printf(", keyslots %s", json_object_to_json_string_ext(ks, JSON_C_TO_STRING_PLAIN));
    printf("\n");
  }
  if (json_object_object_get_ex(o, "warning", &v))
    printf("  warning:       %s\n", json_object_get_string(v));
}

/* Write the volume key to path: a new or truncated file, mode 0600, never a
 * terminal.  Unlocked on hdr, the header info printed (not loaded again),
 * which this takes. */
static int dump_volume_key(struct cli *cli, struct bdev *dev, struct luks2_hdr *hdr, bool detached,
                           const char *path)
{
  struct nbdc_error err = {0};
  struct volume_unlock_opts uo = {.cfg = cli_config(cli), .keyslot = -1, .detached = detached};
  if (!uo.cfg) {
    luks2_free(hdr);
    return CLI_FAIL;
  }
  struct volume *vol = NULL;
  if (volume_open_hdr(dev, hdr, &uo, &vol, &err) < 0)
    return cli_fail("%s", err.msg);

  int r = CLI_OK;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    r = cli_fail("cannot create %s: %s", path, strerror(errno));
  } else if (isatty(fd)) {
    r = cli_fail("refusing to write the volume key to a terminal (%s)", path);
  } else {
    size_t len;
    const uint8_t *key = volume_key(vol, &len);
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && fchmod(fd, 0600) < 0)
      r = cli_fail("cannot chmod %s: %s", path, strerror(errno));
    else if (write(fd, key, len) != (ssize_t)len || (S_ISREG(st.st_mode) && fsync(fd) < 0))
      r = cli_fail("cannot write %s: %s", path, strerror(errno));
  }
  if (fd >= 0 && close(fd) < 0 && r == CLI_OK)
    r = cli_fail("cannot write %s: %s", path, strerror(errno));
  volume_close(vol);
  return r;
}

int cmd_info(struct cli *cli, int argc, char **argv)
{
  static const struct option opts[] = {
      {"json", no_argument, NULL, 'j'},         {"dump-volume-key", required_argument, NULL, 'd'},
      {"header", required_argument, NULL, 'H'}, CLI_ALLOW_REVOKED_OPTION,
      {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
  };
  bool json = false;
  const char *dump_path = NULL, *header = NULL;
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'j':
      json = true;
      break;
    case 'd':
      dump_path = optarg;
      break;
    case 'H':
      header = optarg;
      break;
    case CLI_OPT_ALLOW_REVOKED:
      cli->allow_revoked = true;
      break;
    case 'h':
      fputs(info_help, stdout);
      return CLI_OK;
    default:
      return cli_usage("info", "bad option");
    }
  }
  if (optind != argc - 1)
    return cli_usage("info", optind >= argc ? "missing TARGET" : "too many arguments");
  const char *target = argv[optind];

  /* With --header: the header (and keyslots) in FILE, the data on TARGET. */
  struct bdev *dev = NULL, *hdev = NULL;
  if (cli_open_target(target, header || !dump_path ? BDEV_RDONLY : 0, 0, &dev) != CLI_OK)
    return CLI_FAIL;
  if (header && cli_open_header(target, header, dump_path ? 0 : BDEV_RDONLY, &hdev) != CLI_OK) {
    bdev_close(dev);
    return CLI_FAIL;
  }
  struct bdev *hd = header ? hdev : dev;

  struct nbdc_error err = {0};
  struct luks2_hdr *hdr = NULL;
  uint64_t dev_size = 0;
  int r = CLI_OK;
  if (bdev_get_size(dev, &dev_size, &err) < 0 || luks2_load(hd, &hdr, &err) < 0) {
    if (err.code == ENODATA && !dump_path && cli_info_luks1(target, header, hd, json, &r)) {
      bdev_close(hdev);
      bdev_close(dev);
      return r;
    }
    if (json) {
      struct json_object *o = json_object_new_object();
      json_object_object_add(o, "target", cli_json_string(target));
      json_object_object_add(o, "luks2", json_object_new_boolean(0));
      json_object_object_add(o, "error", json_object_new_string(err.msg));
      cli_json_print(o, true);
    }
    const char *where = header ? header : target;
    r = strstr(err.msg, where) ? cli_fail("not a usable LUKS2 disk: %s", err.msg)
                               : cli_fail("%s: not a usable LUKS2 disk: %s", where, err.msg);
  } else {
    struct json_object *o = info_json(hdr, dev_size, header != NULL);
    json_object_object_add(o, "target", cli_json_string(target));
    if (json) {
      cli_json_print(o, true);
    } else {
      info_print_text(header ? header : target, o, header != NULL);
      json_object_put(o);
    }
    if (dump_path) {
      r = dump_volume_key(cli, hd, hdr, header != NULL, dump_path);
      hdr = NULL;
    }
  }
  luks2_free(hdr);
  bdev_close(hdev);
  bdev_close(dev);
  return r;
}

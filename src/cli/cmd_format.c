/* nbdcrypt format: a new LUKS2 header with a fresh DEK bound to a KEK. */
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
#include "nbdcrypt/probe.h"
#include "nbdcrypt/volume.h"

static const char format_help[] =
    "Usage: nbdcrypt format TARGET [--size SIZE] [--provider NAME] [--kek ID]\n"
    "                       [--sector-size 512|4096] [--label L] [--kms-wrapped] [--force]\n"
    "                       [--batch-mode] [--json]\n\n"
    "Write a LUKS2 header with a fresh random volume key (DEK) bound to a KEK.\n"
    "  TARGET              image file (created sparse when --size is given and it\n"
    "                      does not exist; removed again if the format fails) or NBD URI\n"
    "  --size SIZE         size of a new image file (K, M, G, T suffixes); an existing\n"
    "                      file must already have that size\n"
    "  --provider NAME     key provider (default: the configuration's default)\n"
    "  --kek ID            existing KEK to bind; without it a new KEK is created\n"
    "  --sector-size N     encryption sector size, 512 or 4096 (default 4096)\n"
    "  --label L           LUKS2 label\n"
    "  --kms-wrapped       the keyslot secret is random and wrapped by the KMS (kmip)\n"
    "  --force             overwrite a target that holds a filesystem, a LUKS header,\n"
    "                      a partition table or any other signature libblkid knows;\n"
    "                      asks first when stdin is a terminal (type YES)\n" CLI_BATCH_HELP
    "  --json              print the result as a JSON object on stdout\n"
    "Prints the KEK id on stdout.  Everything in the first 16 MiB is overwritten.\n"
    "A KEK created by a format that then fails is destroyed again.\n";

/* A file this run created (with --size), so that a failure removes it again
 * and never a file that was there before: it is removed only if the path
 * still names the inode we created. */
struct format_new_file {
  const char *path; /* NULL: nothing was created */
  dev_t dev;
  ino_t ino;
};

static int format_create(const char *target, uint64_t size, struct format_new_file *created)
{
  if (size > INT64_MAX)
    return cli_fail("cannot create %s with %" PRIu64 " bytes: too large", target, size);
  int fd = open(target, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return errno == EEXIST ? CLI_OK : cli_fail("cannot create %s: %s", target, strerror(errno));
  struct stat st;
  if (ftruncate(fd, (off_t)size) != 0 || fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    unlink(target);
    return cli_fail("cannot size new file %s to %" PRIu64 " bytes: %s", target, size, strerror(e));
  }
  close(fd);
  *created = (struct format_new_file){.path = target, .dev = st.st_dev, .ino = st.st_ino};
  return CLI_OK;
}

static void format_remove_new(const struct format_new_file *created)
{
  struct stat st;
  if (!created->path || stat(created->path, &st) != 0 || st.st_dev != created->dev ||
      st.st_ino != created->ino)
    return;
  if (unlink(created->path) == 0)
    fprintf(stderr, "nbdcrypt: removed %s, which this format had created\n", created->path);
  else
    cli_fail("cannot remove %s, which this format had created: %s", created->path, strerror(errno));
}

/* --size on a target that exists must match it: formatting an image of
 * another size than asked for is never what the caller meant. */
static int format_check_size(struct bdev *dev, const char *target, uint64_t size)
{
  struct nbdc_error err = {0};
  uint64_t have;
  if (bdev_get_size(dev, &have, &err) < 0)
    return cli_fail("%s", err.msg);
  if (have != size)
    return cli_fail("%s exists with %" PRIu64 " bytes, but --size asks for %" PRIu64
                    " bytes; leave --size out to format it at its size, or resize it first",
                    target, have, size);
  return CLI_OK;
}

/* What was found: refused without --force, with it confirmed on a terminal. */
static int format_found(const struct cli *cli, bool force, const char *target, const char *what)
{
  if (!force)
    return cli_fail("%s holds %s (use --force to overwrite)", target, what);
  return cli_confirm(cli, "This will overwrite data on %s irrevocably: it holds %s.", target, what);
}

/* Refuse a target that holds anything known: a filesystem, LUKS1/LUKS2, a
 * partition table, swap, ... (libblkid), or a damaged LUKS2 header that
 * blkid may not name.  With --force: ask what format_found asks. */
static int format_check_empty(const struct cli *cli, bool force, struct bdev *dev,
                              const char *target)
{
  struct nbdc_error err = {0};
  struct probe_result found;
  if (probe_signatures(dev, &found, &err) < 0)
    return force ? CLI_OK : cli_fail("%s", err.msg); /* --force: as before, nothing checked */
  if (found.count > 0) {
    char what[1024];
    probe_describe_all(&found, what, sizeof what);
    return format_found(cli, force, target, what);
  }
  struct luks2_hdr *old = NULL;
  int lr = luks2_load(dev, &old, &err);
  int r = CLI_OK;
  char what[NBDC_ERROR_MAX + 64];
  if (lr == 0) {
    snprintf(what, sizeof what, "a LUKS2 header (uuid %s)", luks2_uuid(old));
    r = format_found(cli, force, target, what);
  } else if (lr == -EINVAL) {
    snprintf(what, sizeof what, "a damaged LUKS2 header (%s)", err.msg);
    r = format_found(cli, force, target, what);
  } else if (lr != -ENODATA && !force)
    r = cli_fail("cannot read %s: %s", target, err.msg);
  luks2_free(old);
  return r;
}

/* --json: the result as one object (docs/nbdcrypt.1.md, JSON OUTPUT); returns r. */
static int format_print_json(bool json, const char *target, const char *kek_id,
                             const struct volume_format_opts *fo, int r, const char *uuid,
                             bool created)
{
  if (!json)
    return r;
  struct json_object *o = cli_json_result(target, r);
  if (r == CLI_OK) {
    json_object_object_add(o, "uuid", cli_json_string(uuid));
    json_object_object_add(o, "provider", cli_json_string(fo->provider));
    json_object_object_add(o, "kek_id", cli_json_string(kek_id));
    json_object_object_add(o, "kek_created", json_object_new_boolean(fo->kek_id == NULL));
    json_object_object_add(o, "mode",
                           json_object_new_string(fo->kms_wrapped ? "kms-wrapped" : "kek"));
    json_object_object_add(o, "sector_size", json_object_new_int((int)fo->sector_size));
    json_object_object_add(o, "file_created", json_object_new_boolean(created));
  }
  cli_json_print(o, true);
  return r;
}

int cmd_format(struct cli *cli, int argc, char **argv)
{
  static const struct option opts[] = {
      {"size", required_argument, NULL, 's'},
      {"provider", required_argument, NULL, 'p'},
      {"kek", required_argument, NULL, 'k'},
      {"sector-size", required_argument, NULL, 'S'},
      {"label", required_argument, NULL, 'l'},
      {"kms-wrapped", no_argument, NULL, 'w'},
      {"force", no_argument, NULL, 'f'},
      {"json", no_argument, NULL, 'j'},
      CLI_BATCH_OPTIONS,
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  struct volume_format_opts fo = {.sector_size = 4096};
  uint64_t size = 0;
  bool force = false, json = false;
  int c;

  while ((c = getopt_long(argc, argv, "hq", opts, NULL)) != -1) {
    switch (c) {
    case 's':
      if (!cli_parse_size(optarg, &size) || size == 0)
        return cli_usage("format", "bad --size '%s'", optarg);
      break;
    case 'p':
      fo.provider = optarg;
      break;
    case 'k':
      fo.kek_id = optarg;
      break;
    case 'S':
      if (strcmp(optarg, "512") == 0)
        fo.sector_size = 512;
      else if (strcmp(optarg, "4096") == 0)
        fo.sector_size = 4096;
      else
        return cli_usage("format", "bad --sector-size '%s' (512 or 4096)", optarg);
      break;
    case 'l':
      if (strlen(optarg) >= 48)
        return cli_usage("format", "--label is longer than 47 bytes");
      fo.label = optarg;
      break;
    case 'w':
      fo.kms_wrapped = true;
      break;
    case 'f':
      force = true;
      break;
    case 'j':
      json = true;
      break;
    case 'q':
      cli->batch = true;
      break;
    case 'h':
      fputs(format_help, stdout);
      return CLI_OK;
    default:
      return cli_usage("format", "bad option");
    }
  }
  if (optind != argc - 1)
    return cli_usage("format", optind >= argc ? "missing TARGET" : "too many arguments");
  const char *target = argv[optind];
  if (size && bdev_is_uri(target))
    return cli_usage("format", "--size applies to image files, not NBD URIs");

  if (json)
    cli_errors_collect();
  fo.cfg = cli_config(cli);
  if (!fo.cfg)
    return format_print_json(json, target, NULL, NULL, CLI_FAIL, "", false);

  struct format_new_file created = {0};
  if (size && format_create(target, size, &created) != CLI_OK)
    return format_print_json(json, target, NULL, NULL, CLI_FAIL, "", false);
  struct bdev *dev = NULL;
  int r = cli_open_target(target, BDEV_LOCK_WRITE, 0, &dev);
  if (r == CLI_OK && size && !created.path)
    r = format_check_size(dev, target, size);
  /* --force asks only on a terminal (cli_confirm): else nothing to look for */
  if (r == CLI_OK && !created.path && (!force || (!cli->batch && isatty(STDIN_FILENO) == 1)))
    r = format_check_empty(cli, force, dev, target);

  char kek_id[KEYS_ID_MAX];
  char uuid[VOLUME_UUID_MAX] = "";
  struct nbdc_error err = {0};
  fo.uuid_out = uuid;
  if (r == CLI_OK && volume_format(dev, &fo, kek_id, &err) < 0)
    r = cli_fail_target(target, "cannot format", err.msg);
  bdev_close(dev);
  if (r == CLI_OK && !json)
    printf("%s\n", kek_id);
  else if (r != CLI_OK)
    format_remove_new(&created);
  if (json) {
    fo.provider = fo.provider ? fo.provider : keys_config_default_provider(fo.cfg);
    return format_print_json(true, target, r == CLI_OK ? kek_id : NULL, &fo, r, uuid,
                             created.path != NULL);
  }
  return r;
}

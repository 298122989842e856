/* nbdcrypt format: a new LUKS2 header with a fresh DEK bound to a KEK. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "nbdcrypt/luks2.h"
#include "nbdcrypt/volume.h"

static const char format_help[] =
    "Usage: nbdcrypt format TARGET [--size SIZE] [--provider NAME] [--kek ID]\n"
    "                       [--sector-size 512|4096] [--label L] [--kms-wrapped] [--force]\n\n"
    "Write a LUKS2 header with a fresh random volume key (DEK) bound to a KEK.\n"
    "  TARGET              image file (created sparse when --size is given and it\n"
    "                      does not exist) or NBD URI\n"
    "  --size SIZE         size of a new image file (K, M, G, T suffixes)\n"
    "  --provider NAME     key provider (default: the configuration's default)\n"
    "  --kek ID            existing KEK to bind; without it a new KEK is created\n"
    "  --sector-size N     encryption sector size, 512 or 4096 (default 4096)\n"
    "  --label L           LUKS2 label\n"
    "  --kms-wrapped       the keyslot secret is random and wrapped by the KMS (kmip)\n"
    "  --force             overwrite an existing LUKS header\n"
    "Prints the KEK id on stdout.  Everything in the first 16 MiB is overwritten.\n";

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
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  struct volume_format_opts fo = {.sector_size = 4096};
  uint64_t size = 0;
  bool force = false;
  int c;

  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
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

  fo.cfg = cli_config(cli);
  if (!fo.cfg)
    return CLI_FAIL;

  struct bdev *dev = NULL;
  if (cli_open_target(target, (size ? BDEV_CREATE : 0) | BDEV_LOCK_WRITE, size, &dev) != CLI_OK)
    return CLI_FAIL;

  struct nbdc_error err = {0};
  int r = CLI_OK;
  if (!force) {
    struct luks2_hdr *old = NULL;
    int lr = luks2_load(dev, &old, &err);
    if (lr == 0)
      r = cli_fail("%s already holds a LUKS2 header (uuid %s); use --force to overwrite it", target,
                   luks2_uuid(old));
    else if (lr == -EINVAL)
      r = cli_fail("%s holds a damaged LUKS2 header (%s); use --force to overwrite it", target,
                   err.msg);
    else if (lr != -ENODATA)
      r = cli_fail("cannot read %s: %s", target, err.msg);
    luks2_free(old);
    if (r != CLI_OK) {
      bdev_close(dev);
      return r;
    }
    nbdc_error_clear(&err);
  }

  char kek_id[KEYS_ID_MAX];
  if (volume_format(dev, &fo, kek_id, &err) < 0)
    r = cli_fail("cannot format %s: %s", target, err.msg);
  else
    printf("%s\n", kek_id);
  bdev_close(dev);
  return r;
}

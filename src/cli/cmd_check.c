/* nbdcrypt check: can this host unlock the disk with its providers? */
#include <getopt.h>
#include <stdio.h>

#include "cli/cli.h"
#include "nbdcrypt/volume.h"

static const char check_help[] =
    "Usage: nbdcrypt check TARGET\n\n"
    "Exit 0 when this host can unlock TARGET with its configured key providers\n"
    "(the KEK is fetched, the keyslot opened and the volume key verified), else\n"
    "exit 1 with the reason.  Nothing is written.\n";

int cmd_check(struct cli *cli, int argc, char **argv)
{
  static const struct option opts[] = {
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (c == 'h') {
      fputs(check_help, stdout);
      return CLI_OK;
    }
    return cli_usage("check", "bad option");
  }
  if (optind != argc - 1)
    return cli_usage("check", optind >= argc ? "missing TARGET" : "too many arguments");
  const char *target = argv[optind];

  struct volume_unlock_opts uo = {.cfg = cli_config(cli), .keyslot = -1};
  if (!uo.cfg)
    return CLI_FAIL;
  struct bdev *dev = NULL;
  if (cli_open_target(target, BDEV_RDONLY, 0, &dev) != CLI_OK)
    return CLI_FAIL;

  struct nbdc_error err = {0};
  struct volume *vol = NULL;
  int r = CLI_OK;
  if (volume_open(dev, &uo, &vol, &err) < 0)
    r = cli_fail("%s: cannot be unlocked here: %s", target, err.msg);
  else
    printf("%s: ok: disk %s unlocks with provider %s, kek %s (keyslot %d)\n", target,
           luks2_uuid(volume_hdr(vol)), volume_provider(vol), volume_kek_id(vol),
           volume_keyslot(vol));
  volume_close(vol);
  bdev_close(dev);
  return r;
}

/* nbdcrypt check: can this host unlock the disk with its providers, and
 * what state is each KEK the disk is bound to in? */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cli/cli.h"
#include "nbdcrypt/volume.h"

static const char check_help[] =
    "Usage: nbdcrypt check TARGET [--header FILE] [--json] [--allow-revoked]\n\n"
    "Exit 0 when this host can unlock TARGET with its configured key providers\n"
    "(the KEK is fetched, the keyslot opened and the volume key verified) and the\n"
    "data segment fits TARGET, so that it can be served; else exit 1 with the\n"
    "reason.  Lists the state of every KEK the disk is bound to (active,\n"
    "deactivated, compromised, ...).  Nothing is written.\n"
    "  --header FILE    the disk's detached LUKS2 header (TARGET holds the data)\n"
    "  --json           machine-readable result\n" CLI_ALLOW_REVOKED_HELP;

static void check_print(const char *target, const struct luks2_hdr *hdr,
                        const struct volume_kek_status *keks, size_t nkeks,
                        const struct volume *vol, const char *error, bool json)
{
  if (!json) {
    if (vol)
      printf("%s: ok: disk %s unlocks with provider %s, kek %s (keyslot %d)\n", target,
             volume_uuid(vol), volume_provider(vol), volume_kek_id(vol), volume_keyslot(vol));
    for (size_t i = 0; i < nkeks; i++)
      printf("%s: keyslot %d: provider %s, kek %s: %s\n", target, keks[i].keyslot, keks[i].provider,
             keks[i].kek_id, keks[i].state ? keys_kek_state_name(keks[i].state) : keks[i].error);
    return;
  }
  struct json_object *o = json_object_new_object();
  json_object_object_add(o, "target", cli_json_string(target));
  json_object_object_add(o, "ok", json_object_new_boolean(vol != NULL));
  if (hdr)
    json_object_object_add(o, "uuid", json_object_new_string(luks2_uuid(hdr)));
  if (vol) {
    json_object_object_add(o, "provider", json_object_new_string(volume_provider(vol)));
    json_object_object_add(o, "kek_id", json_object_new_string(volume_kek_id(vol)));
    json_object_object_add(o, "keyslot", json_object_new_int(volume_keyslot(vol)));
  } else {
    json_object_object_add(o, "error", json_object_new_string(error));
  }
  struct json_object *arr = json_object_new_array();
  for (size_t i = 0; i < nkeks; i++) {
    struct json_object *k = json_object_new_object();
    json_object_object_add(k, "keyslot", json_object_new_int(keks[i].keyslot));
    json_object_object_add(k, "provider", json_object_new_string(keks[i].provider));
    json_object_object_add(k, "kek_id", json_object_new_string(keks[i].kek_id));
    json_object_object_add(k, "mode",
                           json_object_new_string(keks[i].kms_wrapped ? "kms-wrapped" : "kek"));
    if (keks[i].state)
      json_object_object_add(k, "state",
                             json_object_new_string(keys_kek_state_name(keks[i].state)));
    else
      json_object_object_add(k, "error", json_object_new_string(keks[i].error));
    json_object_array_add(arr, k);
  }
  json_object_object_add(o, "keks", arr);
  cli_json_print(o, true);
}

int cmd_check(struct cli *cli, int argc, char **argv)
{
  static const struct option opts[] = {
      {"json", no_argument, NULL, 'j'},
      {"header", required_argument, NULL, 'H'},
      CLI_ALLOW_REVOKED_OPTION,
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  bool json = false;
  const char *header = NULL;
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (c == 'h') {
      fputs(check_help, stdout);
      return CLI_OK;
    } else if (c == 'j') {
      json = true;
    } else if (c == 'H') {
      header = optarg;
    } else if (c == CLI_OPT_ALLOW_REVOKED) {
      cli->allow_revoked = true;
    } else {
      return cli_usage("check", "bad option");
    }
  }
  if (optind != argc - 1)
    return cli_usage("check", optind >= argc ? "missing TARGET" : "too many arguments");
  const char *target = argv[optind];

  struct volume_unlock_opts uo = {
      .cfg = cli_config(cli), .keyslot = -1, .allow_luks1 = true, .detached = header != NULL};
  if (!uo.cfg)
    return CLI_FAIL;
  struct bdev *dev = NULL, *hdev = NULL;
  if (cli_open_target(target, BDEV_RDONLY, 0, &dev) != CLI_OK)
    return CLI_FAIL;
  if (header && cli_open_header(target, header, BDEV_RDONLY, &hdev) != CLI_OK) {
    bdev_close(dev);
    return CLI_FAIL;
  }
  struct bdev *hd = header ? hdev : dev;
  const char *where = header ? header : target;

  struct nbdc_error err = {0};
  struct luks2_hdr *hdr = NULL;
  struct volume_kek_status keks[LUKS2_MAX_KEYSLOTS];
  size_t nkeks = 0;
  if (luks2_load(hd, &hdr, &err) == 0)
    (void)volume_kek_states(hdr, uo.cfg, keks, LUKS2_MAX_KEYSLOTS, &nkeks, NULL);
  nbdc_error_clear(&err);

  struct volume *vol = NULL;
  int r = CLI_OK;
  uint64_t dev_size, data_size;
  if (volume_open(hd, &uo, &vol, &err) < 0) {
    r = strstr(err.msg, where) ? cli_fail("cannot be unlocked here: %s", err.msg)
                               : cli_fail("%s: cannot be unlocked here: %s", where, err.msg);
  } else if (bdev_get_size(dev, &dev_size, &err) < 0 ||
             volume_data_size(vol, dev_size, &data_size, &err) < 0) {
    /* What the filter would refuse it with (volume_segment_data_size). */
    r = cli_fail("%s: cannot be served: %s", target, err.msg);
    volume_close(vol);
    vol = NULL;
  }
  check_print(target, hdr, keks, nkeks, vol, err.msg, json);
  volume_close(vol);
  luks2_free(hdr);
  bdev_close(hdev);
  bdev_close(dev);
  return r;
}

/* nbdcrypt rekey: shallow re-key, a new KEK for the same volume key. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cli/cli.h"
#include "nbdcrypt/volume.h"

static const char rekey_help[] =
    "Usage: nbdcrypt rekey TARGET [--header FILE] [--provider NAME] [--kek ID]\n"
    "                      [--kms-wrapped] [--allow-revoked] [--json]\n\n"
    "Bind the disk's volume key to a new KEK (created in the provider unless --kek\n"
    "names one) and remove the keyslots of the old KEKs.  The data and the volume\n"
    "key do not change, so this is safe while the disk is being served; each step\n"
    "is one atomic header write.  Afterwards the old KEK no longer unlocks the disk.\n"
    "Passphrase keyslots are kept.  If interrupted, rerun with --kek <new id>.\n"
    "Prints the new KEK id on stdout.\n"
    "  --provider NAME  key provider of the new KEK (default: the configuration's)\n"
    "  --kek ID         an existing KEK to bind instead of a new one\n"
    "  --kms-wrapped    token mode kms-wrapped (kmip providers)\n"
    "  --header FILE    the disk's detached LUKS2 header, which is what changes\n"
    "                   (TARGET, the data, is only checked to exist)\n"
    "  --json           print the result as a JSON object on stdout\n" CLI_ALLOW_REVOKED_HELP;

/* --json: the result as one object (docs/nbdcrypt.1.md, JSON OUTPUT); returns r. */
static int rekey_print_json(bool json, const char *target, const struct volume_rekey_opts *ro,
                            const char *kek_id, int removed, int r)
{
  if (!json)
    return r;
  struct json_object *o = cli_json_result(target, r);
  if (r == CLI_OK) {
    json_object_object_add(
        o, "provider",
        cli_json_string(ro->provider ? ro->provider : keys_config_default_provider(ro->cfg)));
    json_object_object_add(o, "kek_id", cli_json_string(kek_id));
    json_object_object_add(o, "kek_created", json_object_new_boolean(ro->kek_id == NULL));
    json_object_object_add(o, "mode",
                           json_object_new_string(ro->kms_wrapped ? "kms-wrapped" : "kek"));
    json_object_object_add(o, "removed_keyslots", json_object_new_int(removed));
  }
  cli_json_print(o, true);
  return r;
}

int cmd_rekey(struct cli *cli, int argc, char **argv)
{
  static const struct option opts[] = {
      {"provider", required_argument, NULL, 'p'},
      {"kek", required_argument, NULL, 'k'},
      {"kms-wrapped", no_argument, NULL, 'w'},
      {"header", required_argument, NULL, 'H'},
      CLI_ALLOW_REVOKED_OPTION,
      {"json", no_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  struct volume_rekey_opts ro = {0};
  const char *header = NULL;
  bool json = false;
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'p':
      ro.provider = optarg;
      break;
    case 'k':
      ro.kek_id = optarg;
      break;
    case 'w':
      ro.kms_wrapped = true;
      break;
    case 'H':
      header = optarg;
      ro.detached = true;
      break;
    case 'j':
      json = true;
      break;
    case CLI_OPT_ALLOW_REVOKED:
      cli->allow_revoked = true;
      break;
    case 'h':
      fputs(rekey_help, stdout);
      return CLI_OK;
    default:
      return cli_usage("rekey", "bad option");
    }
  }
  if (optind != argc - 1)
    return cli_usage("rekey", optind >= argc ? "missing TARGET" : "too many arguments");
  const char *target = argv[optind];

  if (json)
    cli_errors_collect();
  ro.cfg = cli_config(cli);
  struct bdev *dev = NULL;
  if (!ro.cfg)
    return rekey_print_json(json, target, &ro, NULL, 0, CLI_FAIL);
  if (header) {
    /* Only the header changes; the data device must be there all the same. */
    if (cli_open_target(target, BDEV_RDONLY, 0, &dev) != CLI_OK)
      return rekey_print_json(json, target, &ro, NULL, 0, CLI_FAIL);
    bdev_close(dev);
    dev = NULL;
  }
  if ((header ? cli_open_header(target, header, 0, &dev) : cli_open_target(target, 0, 0, &dev)) !=
      CLI_OK)
    return rekey_print_json(json, target, &ro, NULL, 0, CLI_FAIL);

  struct nbdc_error err = {0};
  char kek_id[KEYS_ID_MAX];
  int removed = 0, r = CLI_OK;
  if (volume_rekey(dev, &ro, kek_id, &removed, &err) < 0) {
    r = cli_fail_target(header ? header : target, "cannot rekey", err.msg);
  } else {
    if (!json)
      printf("%s\n", kek_id);
    fprintf(stderr, "nbdcrypt: %s: bound to kek %s; %d old keyslot%s removed\n", target, kek_id,
            removed, removed == 1 ? "" : "s");
  }
  bdev_close(dev);
  return rekey_print_json(json, target, &ro, kek_id, removed, r);
}

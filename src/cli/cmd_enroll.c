/* nbdcrypt enroll: bind a passphrase disk (made by cryptsetup or qemu) to a KEK. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli/cli.h"
#include "nbdcrypt/volume.h"

static const char enroll_help[] =
    "Usage: nbdcrypt enroll TARGET (--passphrase-file FILE | --passphrase-fd N)\n"
    "                       [--keyslot N] [--provider NAME] [--kek ID] [--kms-wrapped]\n"
    "                       [--header FILE] [--json] [--convert]\n\n"
    "Add a keyslot and nbdcrypt token bound to a KEK (created in the provider unless\n"
    "--kek names one) to a disk that opens with a passphrase, e.g. one made by\n"
    "cryptsetup luksFormat.  The passphrase keyslot is kept.  The passphrase is\n"
    "read from a file or file descriptor, never from the command line; a file's\n"
    "exact bytes are used (as cryptsetup --key-file does).\n"
    "A LUKS1 disk (qemu-img create -f luks, cryptsetup --type luks1) is refused\n"
    "unless --convert is given: it is then converted to LUKS2 in place (the data\n"
    "does not move; the passphrase is kept in a LUKS2 keyslot, other LUKS1\n"
    "keyslots are dropped), as cryptsetup convert --type luks2 does, and bound\n"
    "to the KEK.  Back up the header first (cryptsetup luksHeaderBackup).\n"
    "With --header FILE (a detached header, cryptsetup --header) FILE is what\n"
    "changes; TARGET, the data, is locked against servers and writers meanwhile.\n"
    "Prints the KEK id on stdout.\n"
    "  --passphrase-file FILE  the passphrase: the file's exact bytes\n"
    "  --passphrase-fd N       the passphrase: everything read from descriptor N\n"
    "  --keyslot N             open only keyslot N with it (default: any keyslot)\n"
    "  --provider NAME         key provider of the KEK (default: the configuration's)\n"
    "  --kek ID                an existing KEK to bind instead of a new one\n"
    "  --kms-wrapped           token mode kms-wrapped: the keyslot secret is random and\n"
    "                          wrapped by the KMS (kmip providers)\n"
    "  --header FILE           the disk's detached LUKS2 header (what changes)\n"
    "  --json                  print the result as a JSON object on stdout\n"
    "  --convert               convert a LUKS1 disk to LUKS2 (not a detached header)\n";

/* --json: the result as one object (docs/nbdcrypt.1.md, JSON OUTPUT); returns r. */
static int enroll_print_json(bool json, const char *target, const struct volume_enroll_result *res,
                             bool kms_wrapped, int r)
{
  if (!json)
    return r;
  struct json_object *o = cli_json_result(target, r);
  if (r == CLI_OK) {
    json_object_object_add(o, "provider", cli_json_string(res->provider));
    json_object_object_add(o, "kek_id", cli_json_string(res->kek_id));
    json_object_object_add(o, "kek_created", json_object_new_boolean(res->kek_created));
    json_object_object_add(o, "mode", json_object_new_string(kms_wrapped ? "kms-wrapped" : "kek"));
    json_object_object_add(o, "keyslot", json_object_new_int(res->keyslot));
  }
  if (res && res->was_luks1) {
    json_object_object_add(o, "converted", json_object_new_boolean(res->converted));
    json_object_object_add(o, "luks1_keyslots_dropped", json_object_new_int(res->luks1_dropped));
  }
  cli_json_print(o, true);
  return r;
}

int cmd_enroll(struct cli *cli, int argc, char **argv)
{
  static const struct option opts[] = {
      {"passphrase-file", required_argument, NULL, 'f'},
      {"passphrase-fd", required_argument, NULL, 'd'},
      {"keyslot", required_argument, NULL, 's'},
      {"provider", required_argument, NULL, 'p'},
      {"kek", required_argument, NULL, 'k'},
      {"kms-wrapped", no_argument, NULL, 'w'},
      {"header", required_argument, NULL, 'H'},
      {"json", no_argument, NULL, 'j'},
      {"convert", no_argument, NULL, 'c'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *pass_file = NULL, *provider_name = NULL, *kek_arg = NULL, *header = NULL;
  int pass_fd = -1, keyslot = -1, c;
  bool kms_wrapped = false, json = false, convert = false;
  char *end;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'f':
      pass_file = optarg;
      break;
    case 'd':
      pass_fd = (int)strtol(optarg, &end, 10);
      if (*end || pass_fd < 0)
        return cli_usage("enroll", "bad --passphrase-fd '%s'", optarg);
      break;
    case 's':
      keyslot = (int)strtol(optarg, &end, 10);
      if (*end || keyslot < 0 || keyslot >= LUKS2_MAX_KEYSLOTS)
        return cli_usage("enroll", "bad --keyslot '%s'", optarg);
      break;
    case 'p':
      provider_name = optarg;
      break;
    case 'k':
      kek_arg = optarg;
      break;
    case 'w':
      kms_wrapped = true;
      break;
    case 'H':
      header = optarg;
      break;
    case 'j':
      json = true;
      break;
    case 'c':
      convert = true;
      break;
    case 'h':
      fputs(enroll_help, stdout);
      return CLI_OK;
    default:
      return cli_usage("enroll", "bad option");
    }
  }
  if (optind != argc - 1)
    return cli_usage("enroll", optind >= argc ? "missing TARGET" : "too many arguments");
  if (!pass_file == (pass_fd < 0))
    return cli_usage("enroll", "give exactly one of --passphrase-file and --passphrase-fd");
  const char *target = argv[optind];

  if (json)
    cli_errors_collect();
  struct keys_config *cfg = cli_config(cli);
  if (!cfg)
    return enroll_print_json(json, target, NULL, false, CLI_FAIL);

  uint8_t *pass = NULL;
  size_t pass_len = 0;
  int r;
  if (pass_file)
    r = cli_read_passphrase_file(pass_file, &pass, &pass_len);
  else
    r = cli_read_passphrase_fd(pass_fd, "the passphrase file descriptor", &pass, &pass_len);
  if (r != CLI_OK)
    return enroll_print_json(json, target, NULL, false, r);

  struct bdev *dev = NULL, *hdev = NULL;
  struct nbdc_error err = {0};
  struct volume_enroll_opts eo = {.cfg = cfg,
                                  .passphrase = pass,
                                  .passphrase_len = pass_len,
                                  .keyslot = keyslot,
                                  .provider = provider_name,
                                  .kek_id = kek_arg,
                                  .kms_wrapped = kms_wrapped,
                                  .detached = header != NULL,
                                  .convert = convert};
  struct volume_enroll_result res = {.keyslot = -1};

  /* A data writer's image lock (a server or qemu using the disk refuses the
   * enrollment); the library takes the metadata lock from the load to the write. */
  r = cli_open_target(target, BDEV_LOCK_WRITE, 0, &dev);
  if (r == CLI_OK && header)
    r = cli_open_header(target, header, BDEV_LOCK_WRITE, &hdev);
  if (r != CLI_OK)
    goto out;
  if (cli_wrap_write_bdev(&dev, &err) < 0 || (hdev && cli_wrap_write_bdev(&hdev, &err) < 0)) {
    r = cli_fail("%s", err.msg);
    goto out;
  }
  if (volume_enroll(header ? hdev : dev, &eo, &res, &err) < 0) {
    r = cli_fail_target(target, "cannot enroll", err.msg);
    if (res.converted)
      /* the switch write may or may not have reached the disk */
      cli_fail("%s may be LUKS2 now and need kek %s: it is kept", target, res.kek_id);
    if (res.kek_undo == VOLUME_KEK_DESTROYED)
      cli_fail("kek %s created for this enrollment was destroyed", res.kek_id);
    else if (res.kek_undo == VOLUME_KEK_NOT_DESTROYED)
      cli_fail("kek %s created for this enrollment could not be destroyed: %s", res.kek_id,
               res.undo_error);
    goto out;
  }
  if (!json)
    printf("%s\n", res.kek_id);
  if (res.was_luks1)
    fprintf(stderr, "nbdcrypt: %s: converted from LUKS1 to LUKS2 (data offset unchanged)\n",
            target);
  if (res.luks1_dropped > 0)
    fprintf(stderr,
            "nbdcrypt: %s: %d other LUKS1 keyslot%s dropped: only the passphrase given is kept\n",
            target, res.luks1_dropped, res.luks1_dropped > 1 ? "s" : "");
  fprintf(stderr, "nbdcrypt: %s: keyslot %d bound to kek %s of provider %s\n", target, res.keyslot,
          res.kek_id, res.provider);
out:
  enroll_print_json(json, target, &res, kms_wrapped, r);
  bdev_close(hdev);
  bdev_close(dev);
  secmem_free(pass, CLI_PASSPHRASE_MAX);
  return r;
}

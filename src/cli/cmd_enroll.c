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
#include "nbdcrypt/luks1.h"
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

/* What enroll --convert did to a LUKS1 disk. */
struct enroll_luks1 {
  bool was_luks1; /* the disk opened as LUKS1 (--convert) */
  bool converted; /* its LUKS2 header was written (even if a later step failed) */
  int dropped;    /* other LUKS1 keyslots not carried over */
};

/* --json: the result as one object (docs/nbdcrypt.1.md, JSON OUTPUT); returns r. */
static int enroll_print_json(bool json, const char *target, struct keys_provider *provider,
                             const char *kek_id, int keyslot, bool created, bool kms_wrapped,
                             const struct enroll_luks1 *l1, int r)
{
  if (!json)
    return r;
  struct json_object *o = json_object_new_object();
  json_object_object_add(o, "target", cli_json_string(target));
  json_object_object_add(o, "ok", json_object_new_boolean(r == CLI_OK));
  if (r == CLI_OK) {
    json_object_object_add(o, "provider", cli_json_string(keys_provider_name(provider)));
    json_object_object_add(o, "kek_id", cli_json_string(kek_id));
    json_object_object_add(o, "kek_created", json_object_new_boolean(created));
    json_object_object_add(o, "mode", json_object_new_string(kms_wrapped ? "kms-wrapped" : "kek"));
    json_object_object_add(o, "keyslot", json_object_new_int(keyslot));
  } else {
    json_object_object_add(o, "error", cli_json_string(cli_errors_text()));
  }
  if (l1 && l1->was_luks1) {
    json_object_object_add(o, "converted", json_object_new_boolean(l1->converted));
    json_object_object_add(o, "luks1_keyslots_dropped", json_object_new_int(l1->dropped));
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
    return enroll_print_json(json, target, NULL, NULL, -1, false, false, NULL, CLI_FAIL);

  uint8_t *pass = NULL;
  size_t pass_len = 0;
  int r;
  if (pass_file)
    r = cli_read_passphrase_file(pass_file, &pass, &pass_len);
  else
    r = cli_read_passphrase_fd(pass_fd, "the passphrase file descriptor", &pass, &pass_len);
  if (r != CLI_OK)
    return enroll_print_json(json, target, NULL, NULL, -1, false, false, NULL, r);

  struct bdev *dev = NULL, *hdev = NULL;
  struct volume *vol = NULL;
  struct keys_provider *provider = NULL;
  struct nbdc_error err = {0};
  char kek_id[KEYS_ID_MAX];
  int slot = -1;
  bool locked = false, created = false;
  struct volume_unlock_opts uo = {.passphrase = pass,
                                  .passphrase_len = pass_len,
                                  .keyslot = keyslot,
                                  .allow_luks1 = convert,
                                  .detached = header != NULL};
  struct enroll_luks1 l1 = {0};

  /* A data writer's image lock (a server or qemu using the disk refuses the
   * enrollment), then the metadata lock from the load to the write. */
  r = cli_open_target(target, BDEV_LOCK_WRITE, 0, &dev);
  if (r == CLI_OK && header)
    r = cli_open_header(target, header, BDEV_LOCK_WRITE, &hdev);
  if (r != CLI_OK)
    goto out;
  struct bdev *hd = header ? hdev : dev; /* where the header and keyslots are */
  int lr = bdev_lock(hd, true, &err);
  locked = lr == 0;
  if (lr < 0 && lr != -ENOTSUP && lr != -EOPNOTSUPP) {
    r = cli_fail_target(target, "cannot enroll", err.msg);
    goto out;
  }
  nbdc_error_clear(&err);
  if (volume_open(hd, &uo, &vol, &err) < 0 ||
      keys_provider_open_role(cfg, provider_name,
                              !kek_arg || kms_wrapped ? KEYS_ROLE_ADMIN : KEYS_ROLE_SERVE,
                              &provider, &err) < 0) {
    r = cli_fail_target(target, "cannot enroll", err.msg);
    goto out;
  }
  if (kek_arg) {
    snprintf(kek_id, sizeof kek_id, "%s", kek_arg);
  } else {
    char name[KEYS_NAME_MAX];
    snprintf(name, sizeof name, "nbdcrypt %s", volume_uuid(vol));
    if (keys_kek_create(provider, name, kek_id, &err) < 0) {
      r = cli_fail_target(target, "cannot enroll", err.msg);
      goto out;
    }
    created = true;
  }
  l1.was_luks1 = volume_luks1(vol) != NULL;
  if (l1.was_luks1)
    l1.dropped = luks1_active_keyslots(volume_luks1(vol)) - 1;
  int br;
  if (l1.was_luks1)
    br = volume_convert_luks1(vol, hd, provider, kek_id, kms_wrapped, pass, pass_len, &slot,
                              &l1.converted, &err);
  else if ((br = volume_bind_kek(vol, hd, provider, kek_id, kms_wrapped, &slot, &err)) == 0)
    br = luks2_write(hd, volume_hdr_mut(vol), &err);
  if (br < 0) {
    r = cli_fail_target(target, "cannot enroll", err.msg);
    if (l1.converted)
      cli_fail("%s is LUKS2 now and may need kek %s: it is kept", target, kek_id);
    /* The disk never needed the new KEK: its passphrase keyslot stays. */
    if (created && !l1.converted) {
      struct nbdc_error e = {0};
      (void)keys_kek_revoke(provider, kek_id, &e);
      nbdc_error_clear(&e);
      if (keys_kek_destroy(provider, kek_id, &e) == 0)
        cli_fail("kek %s created for this enrollment was destroyed", kek_id);
      else
        cli_fail("kek %s created for this enrollment could not be destroyed: %s", kek_id, e.msg);
    }
    goto out;
  }
  if (!json)
    printf("%s\n", kek_id);
  if (l1.was_luks1)
    fprintf(stderr, "nbdcrypt: %s: converted from LUKS1 to LUKS2 (data offset unchanged)\n",
            target);
  if (l1.dropped > 0)
    fprintf(stderr,
            "nbdcrypt: %s: %d other LUKS1 keyslot%s dropped: only the passphrase given is kept\n",
            target, l1.dropped, l1.dropped > 1 ? "s" : "");
  fprintf(stderr, "nbdcrypt: %s: keyslot %d bound to kek %s of provider %s\n", target, slot, kek_id,
          keys_provider_name(provider));
out:
  enroll_print_json(json, target, provider, r == CLI_OK ? kek_id : NULL, slot, created, kms_wrapped,
                    &l1, r);
  keys_provider_close(provider);
  volume_close(vol);
  if (locked)
    bdev_unlock(hdev ? hdev : dev, NULL);
  bdev_close(hdev);
  bdev_close(dev);
  secmem_free(pass, CLI_PASSPHRASE_MAX);
  return r;
}

/* nbdcrypt kek create|list|revoke|destroy */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cli/cli.h"

static const char kek_help[] =
    "Usage: nbdcrypt kek create [--provider NAME] [--name LABEL]\n"
    "       nbdcrypt kek list [--provider NAME] [--prefix P] [--json]\n"
    "       nbdcrypt kek revoke ID [--compromised] [--provider NAME]\n"
    "       nbdcrypt kek destroy ID --force [--provider NAME] [--batch-mode]\n\n"
    "create prints the new KEK id, alone, on stdout.  Key material is never printed.\n"
    "These commands speak with the provider's admin identity when it has one.\n"
    "  --provider NAME  key provider from the configuration (default: default_provider)\n"
    "  --name LABEL     label stored with the key\n"
    "  --prefix P       list only keys whose label starts with P\n"
    "  --json           machine-readable list\n"
    "  --compromised    revoke: the key is compromised (KMIP KeyCompromise); disks\n"
    "                   (without it: deactivated).  Disks bound to a revoked key\n"
    "                   unlock only with --allow-revoked\n"
    "  --force          destroy: really destroy the key.  Every disk bound to it (and\n"
    "                   to no other key) becomes unreadable, for good; asks first\n"
    "                   when stdin is a terminal (type YES)\n" CLI_BATCH_HELP;

static int kek_list_print(struct keys_provider *p, const char *prefix, bool json)
{
  struct keys_kek_info *list = NULL;
  size_t count = 0;
  struct nbdc_error err = {0};
  if (keys_kek_list(p, prefix, &list, &count, &err) < 0)
    return cli_fail("%s", err.msg);
  if (count == 0)
    fprintf(stderr, "nbdcrypt: provider %s has no KEKs%s%s%s%s\n", keys_provider_name(p),
            prefix ? " whose label starts with " : "", prefix ? prefix : "", err.msg[0] ? ": " : "",
            err.msg);
  if (json) {
    struct json_object *arr = json_object_new_array();
    for (size_t i = 0; i < count; i++) {
      struct json_object *o = json_object_new_object();
      json_object_object_add(o, "id", json_object_new_string(list[i].id));
      json_object_object_add(o, "name", json_object_new_string(list[i].name));
      json_object_object_add(o, "created", json_object_new_string(list[i].created));
      json_object_object_add(o, "state", json_object_new_string(list[i].state));
      json_object_object_add(o, "provider", json_object_new_string(keys_provider_name(p)));
      json_object_array_add(arr, o);
    }
    cli_json_print(arr, true);
  } else {
    for (size_t i = 0; i < count; i++)
      printf("%-40s %-21s %-8s %s\n", list[i].id, list[i].created[0] ? list[i].created : "-",
             list[i].state[0] ? list[i].state : "-", list[i].name);
  }
  free(list);
  return CLI_OK;
}

struct kek_opts {
  const char *provider, *label, *prefix;
  bool json, force, compromised;
};

/* Parse all options (GNU getopt moves the action and id behind them);
 * -1 to go on, else an exit status. */
static int kek_parse_opts(struct cli *cli, int argc, char **argv, struct kek_opts *o)
{
  static const struct option opts[] = {
      {"provider", required_argument, NULL, 'p'},
      {"name", required_argument, NULL, 'n'},
      {"prefix", required_argument, NULL, 'x'},
      {"json", no_argument, NULL, 'j'},
      {"force", no_argument, NULL, 'f'},
      {"compromised", no_argument, NULL, 'c'},
      {"help", no_argument, NULL, 'h'},
      CLI_BATCH_OPTIONS,
      {NULL, 0, NULL, 0},
  };
  int c;
  while ((c = getopt_long(argc, argv, "hq", opts, NULL)) != -1) {
    switch (c) {
    case 'p':
      o->provider = optarg;
      break;
    case 'n':
      o->label = optarg;
      break;
    case 'x':
      o->prefix = optarg;
      break;
    case 'j':
      o->json = true;
      break;
    case 'f':
      o->force = true;
      break;
    case 'c':
      o->compromised = true;
      break;
    case 'q':
      cli->batch = true;
      break;
    case 'h':
      fputs(kek_help, stdout);
      return CLI_OK;
    default:
      return cli_usage("kek", "bad option");
    }
  }
  return -1;
}

int cmd_kek(struct cli *cli, int argc, char **argv)
{
  struct kek_opts o = {0};
  int r = kek_parse_opts(cli, argc, argv, &o);
  if (r >= 0)
    return r;
  if (optind >= argc)
    return cli_usage("kek", "missing action: create, list, revoke or destroy");
  const char *action = argv[optind++];
  const char *id = NULL;
  bool needs_id = strcmp(action, "revoke") == 0 || strcmp(action, "destroy") == 0;
  if (strcmp(action, "create") != 0 && strcmp(action, "list") != 0 && !needs_id)
    return cli_usage("kek", "unknown action '%s'", action);
  if (needs_id) {
    if (optind >= argc)
      return cli_usage("kek", "%s needs a KEK id", action);
    id = argv[optind++];
  }
  if (optind < argc)
    return cli_usage("kek", "unexpected argument '%s'", argv[optind]);
  if (o.force && strcmp(action, "destroy") != 0)
    return cli_usage("kek", "--force applies to destroy only");
  if (o.compromised && strcmp(action, "revoke") != 0)
    return cli_usage("kek", "--compromised applies to revoke only");
  /* Refused before the provider is even opened: nothing can be undone. */
  if (strcmp(action, "destroy") == 0 && !o.force)
    return cli_fail("not destroying kek %s without --force: disks bound to this KEK become "
                    "unreadable (rebind them first with nbdcrypt rekey)",
                    id);

  if (strcmp(action, "destroy") == 0 &&
      cli_confirm(cli,
                  "This destroys kek %s for good: every disk bound to it (and to no other key) "
                  "becomes unreadable.",
                  id) != CLI_OK)
    return CLI_FAIL;
  struct keys_config *cfg = cli_config(cli);
  if (!cfg)
    return CLI_FAIL;
  struct keys_provider *p = NULL;
  struct nbdc_error err = {0};
  if (keys_provider_open_role(cfg, o.provider, KEYS_ROLE_ADMIN, &p, &err) < 0)
    return cli_fail("%s", err.msg);

  r = CLI_OK;
  if (strcmp(action, "create") == 0) {
    char new_id[KEYS_ID_MAX];
    if (keys_kek_create(p, o.label, new_id, &err) < 0)
      r = cli_fail("%s", err.msg);
    else
      printf("%s\n", new_id);
  } else if (strcmp(action, "list") == 0) {
    r = kek_list_print(p, o.prefix, o.json);
  } else if (strcmp(action, "revoke") == 0) {
    if ((o.compromised ? keys_kek_revoke_compromised(p, id, &err) : keys_kek_revoke(p, id, &err)) <
        0)
      r = cli_fail("%s", err.msg);
  } else if (keys_kek_destroy(p, id, &err) < 0) {
    r = cli_fail("%s", err.msg);
  }
  keys_provider_close(p);
  return r;
}

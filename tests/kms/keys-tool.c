/* keys-tool: one key provider operation per run, for the shell tests of
 * KEK states (tests/integration/test-keys-*.sh), on any provider type.
 *
 *   keys-tool [--admin] CONFIG PROVIDER create NAME | state ID | revoke ID |
 *             revoke-compromised ID | destroy ID | get ID | list
 *
 * --admin opens the provider with its administrative identity
 * (KEYS_ROLE_ADMIN); without it, the serving one.
 *
 * get prints the KEK in hex (test code); list prints "ID NAME STATE REVOKED".
 * Exit 0 on success, 1 with the error on stderr, 2 on bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbdcrypt/crypto.h"
#include "nbdcrypt/keys.h"

int main(int argc, char **argv)
{
  enum keys_role role = KEYS_ROLE_SERVE;
  if (argc > 1 && strcmp(argv[1], "--admin") == 0) {
    role = KEYS_ROLE_ADMIN;
    argv++;
    argc--;
  }
  if (argc < 4 || argc > 5) {
    fprintf(stderr, "usage: keys-tool [--admin] CONFIG PROVIDER COMMAND [ARG]\n");
    return 2;
  }
  const char *cmd = argv[3], *arg = argc == 5 ? argv[4] : NULL;
  struct nbdc_error err = {0};
  struct keys_config *cfg = NULL;
  struct keys_provider *p = NULL;
  if (keys_config_load(argv[1], &cfg, &err) < 0 ||
      keys_provider_open_role(cfg, argv[2], role, &p, &err) < 0) {
    fprintf(stderr, "keys-tool: %s\n", err.msg);
    keys_config_free(cfg);
    return 1;
  }
  int r = 0;
  if (strcmp(cmd, "create") == 0 && arg) {
    char id[KEYS_ID_MAX];
    if ((r = keys_kek_create(p, arg, id, &err)) == 0)
      printf("%s\n", id);
  } else if (strcmp(cmd, "state") == 0 && arg) {
    enum keys_kek_state st;
    if ((r = keys_kek_get_state(p, arg, &st, &err)) == 0)
      printf("%s\n", keys_kek_state_name(st));
  } else if (strcmp(cmd, "revoke") == 0 && arg) {
    r = keys_kek_revoke(p, arg, &err);
  } else if (strcmp(cmd, "revoke-compromised") == 0 && arg) {
    r = keys_kek_revoke_compromised(p, arg, &err);
  } else if (strcmp(cmd, "destroy") == 0 && arg) {
    r = keys_kek_destroy(p, arg, &err);
  } else if (strcmp(cmd, "get") == 0 && arg) {
    uint8_t *kek;
    if ((r = keys_kek_get(p, arg, &kek, &err)) == 0) {
      for (int i = 0; i < KEYS_KEK_SIZE; i++)
        printf("%02x", kek[i]);
      printf("\n");
      secmem_free(kek, KEYS_KEK_SIZE);
    }
  } else if (strcmp(cmd, "list") == 0 && !arg) {
    struct keys_kek_info *list;
    size_t n;
    if ((r = keys_kek_list(p, NULL, &list, &n, &err)) == 0) {
      for (size_t i = 0; i < n; i++)
        printf("%s %s %s %s\n", list[i].id, list[i].name[0] ? list[i].name : "-",
               list[i].state[0] ? list[i].state : "-", list[i].revoked[0] ? list[i].revoked : "-");
      free(list);
    }
  } else {
    fprintf(stderr, "keys-tool: unknown command or missing argument: %s\n", cmd);
    r = -1;
    keys_provider_close(p);
    keys_config_free(cfg);
    return 2;
  }
  if (r < 0)
    fprintf(stderr, "keys-tool: %s\n", err.msg);
  keys_provider_close(p);
  keys_config_free(cfg);
  return r < 0 ? 1 : 0;
}

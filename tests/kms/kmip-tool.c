/* kmip-tool: one KMIP operation per run, for the shell tests.
 *
 *   kmip-tool -s HOST:PORT [-s ...] --ca F --cert F --key F [--timeout MS]
 *             [--protocol 1.0-1.4 (the highest offered)] [--trace] [--verbose]
 *             [--policy NAME (Operation Policy Name of created keys)] COMMAND [ARGS]
 *
 * Commands: versions | negotiate (prints the version the handle uses) |
 * query | create [NAME] | activate ID | get ID | locate [NAME] | info ID |
 * state ID | revoke ID | revoke-compromised ID | destroy ID |
 * encrypt ID PLAINHEX [AADHEX] (prints "IV TAG CIPHER" in hex) |
 * decrypt ID IVHEX TAGHEX CIPHERHEX [AADHEX] | get-twice ID SECONDS (two Gets
 * on one handle with a pause between: connection reuse and reconnection).
 * Exit 0 on success, 1 with the error on stderr, 2 on bad usage.
 * Test code: keys are printed in hex on purpose.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nbdcrypt/kmip.h"

static void usage(void)
{
  fprintf(stderr,
          "usage: kmip-tool -s HOST:PORT [-s ...] --ca F --cert F --key F [--timeout MS]\n"
          "       [--protocol 1.0..1.4] [--trace] [--verbose] [--policy NAME] COMMAND [ARGS]\n");
  exit(2);
}

static void print_hex(const uint8_t *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    printf("%02x", p[i]);
}

static uint8_t *unhex(const char *s, size_t *len)
{
  size_t n = strlen(s);
  if (n % 2) {
    fprintf(stderr, "kmip-tool: odd hex string\n");
    exit(2);
  }
  uint8_t *out = malloc(n / 2 + 1);
  for (size_t i = 0; i < n / 2; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1) {
      fprintf(stderr, "kmip-tool: bad hex string\n");
      exit(2);
    }
    out[i] = (uint8_t)v;
  }
  *len = n / 2;
  return out;
}

static int fail(const struct nbdc_error *err)
{
  fprintf(stderr, "kmip-tool: %s\n", err->msg);
  return 1;
}

int main(int argc, char **argv)
{
  static const struct option longopts[] = {
      {"server", required_argument, NULL, 's'},  {"ca", required_argument, NULL, 'a'},
      {"cert", required_argument, NULL, 'c'},    {"key", required_argument, NULL, 'k'},
      {"timeout", required_argument, NULL, 't'}, {"protocol", required_argument, NULL, 'p'},
      {"trace", no_argument, NULL, 'T'},         {"verbose", no_argument, NULL, 'v'},
      {"policy", required_argument, NULL, 'P'},  {NULL, 0, NULL, 0},
  };
  const char *servers[16];
  struct kmip_client_options opts = {.servers = servers};
  bool verbose = false;
  int c;
  while ((c = getopt_long(argc, argv, "+s:", longopts, NULL)) != -1) {
    switch (c) {
    case 's':
      if (opts.server_count == 16)
        usage();
      servers[opts.server_count++] = optarg;
      break;
    case 'a':
      opts.ca = optarg;
      break;
    case 'c':
      opts.cert = optarg;
      break;
    case 'k':
      opts.key = optarg;
      break;
    case 't':
      opts.timeout_ms = atoi(optarg);
      break;
    case 'p':
      if (strlen(optarg) != 3 || strncmp(optarg, "1.", 2) != 0 || optarg[2] < '0' ||
          optarg[2] > '9')
        usage();
      opts.max_version = (struct kmip_version){1, optarg[2] - '0'};
      break;
    case 'T':
      opts.trace = true;
      break;
    case 'v':
      verbose = true;
      break;
    case 'P':
      opts.operation_policy = optarg;
      break;
    default:
      usage();
    }
  }
  if (optind >= argc)
    usage();
  const char *cmd = argv[optind];
  char **args = argv + optind + 1;
  int nargs = argc - optind - 1;

  struct nbdc_error err = {0};
  struct kmip_client *client;
  if (kmip_client_new(&opts, &client, &err) < 0)
    return fail(&err);
  int r = 0;
  if (strcmp(cmd, "versions") == 0 && nargs == 0) {
    struct kmip_version v[16];
    size_t n;
    r = kmip_discover_versions(client, v, 16, &n, &err);
    for (size_t i = 0; r == 0 && i < n; i++)
      printf("%d.%d\n", v[i].major, v[i].minor);
  } else if (strcmp(cmd, "query") == 0 && nargs == 0) {
    uint32_t ops[64];
    size_t n;
    char vendor[256];
    r = kmip_query(client, ops, 64, &n, vendor, sizeof vendor, &err);
    if (r == 0) {
      printf("vendor: %s\n", vendor);
      for (size_t i = 0; i < n; i++)
        printf("operation: %s\n", kmip_operation_name(ops[i]));
    }
  } else if (strcmp(cmd, "create") == 0 && nargs <= 1) {
    char id[KMIP_ID_MAX];
    r = kmip_create_aes256(client, nargs ? args[0] : NULL, id, &err);
    if (r == 0)
      printf("%s\n", id);
  } else if (strcmp(cmd, "activate") == 0 && nargs == 1) {
    r = kmip_activate(client, args[0], &err);
  } else if (strcmp(cmd, "get") == 0 && nargs == 1) {
    uint8_t key[64];
    size_t n;
    r = kmip_get_key(client, args[0], key, sizeof key, &n, &err);
    if (r == 0) {
      print_hex(key, n);
      printf("\n");
    }
  } else if (strcmp(cmd, "get-twice") == 0 && nargs == 2) {
    uint8_t key[64];
    size_t n;
    for (int i = 0; i < 2 && r == 0; i++) {
      if (i)
        sleep((unsigned)atoi(args[1]));
      r = kmip_get_key(client, args[0], key, sizeof key, &n, &err);
      if (r == 0) {
        print_hex(key, n);
        printf("\n");
        fflush(stdout);
      }
    }
  } else if (strcmp(cmd, "locate") == 0 && nargs <= 1) {
    char **ids;
    size_t n;
    r = kmip_locate(client, nargs ? args[0] : NULL, 0, &ids, &n, &err);
    if (r == 0) {
      for (size_t i = 0; i < n; i++)
        printf("%s\n", ids[i]);
      kmip_ids_free(ids, n);
    }
  } else if (strcmp(cmd, "info") == 0 && nargs == 1) {
    char name[256];
    uint32_t state;
    int64_t date;
    r = kmip_get_info(client, args[0], name, sizeof name, &state, &date, &err);
    if (r == 0)
      printf("name=%s state=%s initial_date=%lld\n", name, kmip_state_name(state), (long long)date);
  } else if (strcmp(cmd, "negotiate") == 0 && nargs == 0) {
    struct kmip_version v;
    r = kmip_client_negotiate(client, &v, &err);
    if (r == 0)
      printf("%d.%d\n", v.major, v.minor);
  } else if (strcmp(cmd, "state") == 0 && nargs == 1) {
    enum kmip_state state;
    r = kmip_get_state(client, args[0], &state, &err);
    if (r == 0)
      printf("%s\n", kmip_state_name(state));
  } else if (strcmp(cmd, "revoke-compromised") == 0 && nargs == 1) {
    r = kmip_revoke(client, args[0], KMIP_REVOKE_KEY_COMPROMISE, "kmip-tool", &err);
  } else if (strcmp(cmd, "revoke") == 0 && nargs == 1) {
    r = kmip_revoke(client, args[0], KMIP_REVOKE_CESSATION_OF_OPERATION, "kmip-tool", &err);
  } else if (strcmp(cmd, "destroy") == 0 && nargs == 1) {
    r = kmip_destroy(client, args[0], &err);
  } else if (strcmp(cmd, "encrypt") == 0 && (nargs == 2 || nargs == 3)) {
    size_t plen, alen = 0;
    uint8_t *plain = unhex(args[1], &plen);
    uint8_t *aad = nargs == 3 ? unhex(args[2], &alen) : NULL;
    uint8_t iv[12], tag[16], *cipher;
    size_t clen;
    r = kmip_encrypt_gcm(client, args[0], plain, plen, aad, alen, iv, tag, &cipher, &clen, &err);
    if (r == 0) {
      print_hex(iv, 12);
      printf(" ");
      print_hex(tag, 16);
      printf(" ");
      print_hex(cipher, clen);
      printf("\n");
      free(cipher);
    }
    free(plain);
    free(aad);
  } else if (strcmp(cmd, "decrypt") == 0 && (nargs == 4 || nargs == 5)) {
    size_t ivlen, taglen, clen, alen = 0;
    uint8_t *iv = unhex(args[1], &ivlen);
    uint8_t *tag = unhex(args[2], &taglen);
    uint8_t *cipher = unhex(args[3], &clen);
    uint8_t *aad = nargs == 5 ? unhex(args[4], &alen) : NULL;
    if (ivlen != 12 || taglen != 16) {
      fprintf(stderr, "kmip-tool: IV must be 12 bytes and tag 16\n");
      return 2;
    }
    uint8_t *plain = malloc(clen + 1);
    size_t plen;
    r = kmip_decrypt_gcm(client, args[0], cipher, clen, aad, alen, iv, tag, plain, clen, &plen,
                         &err);
    if (r == 0) {
      print_hex(plain, plen);
      printf("\n");
    }
    free(plain);
    free(iv);
    free(tag);
    free(cipher);
    free(aad);
  } else {
    kmip_client_free(client);
    usage();
  }
  if (r == 0 && verbose)
    fprintf(stderr, "kmip-tool: answered by %s\n", kmip_client_server(client));
  kmip_client_free(client);
  return r < 0 ? fail(&err) : 0;
}

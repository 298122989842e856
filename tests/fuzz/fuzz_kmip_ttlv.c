/* libFuzzer target for the TTLV decoder, the only parser fed straight from
 * the network: any input either decodes into a tree whose items all lie
 * inside the input and whose root fills it, or is refused with a message.
 * The masked dump walks every item of an accepted tree. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbdcrypt/kmip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const struct kmip_item *it, const uint8_t *buf, size_t size, unsigned depth)
{
  for (; it; it = it->next) {
    if (it->depth != depth || depth > KMIP_MAX_DEPTH + 1)
      abort();
    if (it->bytes && (it->bytes < buf || it->bytes + it->length > buf + size))
      abort();
    if (it->type == KMIP_TYPE_STRUCTURE)
      walk(it->child, buf, size, depth + 1);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  /* a copy of exactly size bytes, so ASan sees any read past the end */
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf)
    return 0;
  memcpy(buf, data, size);
  struct kmip_tree *tree = NULL;
  struct nbdc_error err = {0};
  int r = kmip_decode(buf, size, 0, &tree, &err);
  if (r == 0) {
    const struct kmip_item *root = kmip_tree_root(tree);
    if (!root || 8 + ((root->length + 7u) & ~7u) != size)
      abort();
    walk(root, buf, size, 1);
    FILE *null = fopen("/dev/null", "w");
    if (null) {
      kmip_tree_dump(tree, null, "");
      fclose(null);
    }
    kmip_tree_free(tree);
  } else if ((r != -EBADMSG && r != -EMSGSIZE && r != -ENOMEM) || !err.msg[0] || tree) {
    abort();
  }
  free(buf);
  return 0;
}

/* libFuzzer target for the LUKS1 phdr parser: the input is the start of a
 * disk.  A phdr that parses must describe key material inside the header
 * area, or the target aborts; one whose keyslots cost little is also
 * unlocked (a wrong passphrase, on an in-memory disk holding the input). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nbdcrypt/blockdev.h"
#include "nbdcrypt/crypto.h"
#include "nbdcrypt/luks1.h"

#define FUZZ_DEV_MAX (4u * 1024 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct luks1_hdr h;
  struct nbdc_error err = {0};
  (void)luks1_detect(data, size);
  if (luks1_parse(data, size, &h, &err) < 0)
    return 0;
  uint64_t material = luks1_key_material_size(&h);
  uint64_t payload = luks1_payload_offset(&h);
  bool cheap = h.mk_digest_iterations <= 1000;
  for (int i = 0; i < LUKS1_NUM_KEYS; i++) {
    uint64_t start = (uint64_t)h.keyslots[i].key_material_offset * LUKS1_SECTOR_SIZE;
    if (start < LUKS1_PHDR_SIZE || start + material > payload)
      abort();
    if (h.keyslots[i].active && h.keyslots[i].iterations > 1000)
      cheap = false;
  }
  if (!cheap || payload > FUZZ_DEV_MAX)
    return 0;
  struct bdev *dev = NULL;
  if (bdev_open_memory(payload, &dev, &err) < 0)
    return 0;
  if (bdev_pwrite(dev, data, size < payload ? size : (size_t)payload, 0, &err) == 0) {
    struct luks1_hdr loaded;
    uint8_t *mk = NULL;
    size_t mk_len = 0;
    if (luks1_load(dev, &loaded, &err) == 0 &&
        luks1_keyslot_open(&loaded, dev, -1, (const uint8_t *)"fuzz", 4, &mk, &mk_len, NULL,
                           &err) == 0)
      secmem_free(mk, mk_len);
  }
  bdev_close(dev);
  return 0;
}

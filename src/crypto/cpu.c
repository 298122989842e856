/* Zeroing the vector registers (include/nbdcrypt/crypto.h).
 *
 * Key derivation (argon2, PBKDF2), the AF merge's hashes and a cipher's key
 * expansion run through xmm/ymm/zmm registers; what stays there after the
 * call is saved with the thread's register state, which a core dump writes
 * out (NT_X86_XSTATE) and which every thread created later inherits.
 * libgcrypt clears the registers its AES code used; argon2, the hashes and
 * OpenSSL do not promise it.  So after a key went through them outside a
 * cipher context, the caller zeroes all of them: vpxord on the 32 zmm
 * registers where the CPU has AVX-512F, vzeroall (16 ymm) where it has AVX,
 * else pxor on the 16 xmm registers.
 */
#include "nbdcrypt/crypto.h"

#if defined(__x86_64__) && defined(__GNUC__)

__attribute__((target("avx512f"))) static void wipe_avx512(void)
{
  __asm__ volatile("vpxord %%zmm0, %%zmm0, %%zmm0\n\t"
                   "vpxord %%zmm1, %%zmm1, %%zmm1\n\t"
                   "vpxord %%zmm2, %%zmm2, %%zmm2\n\t"
                   "vpxord %%zmm3, %%zmm3, %%zmm3\n\t"
                   "vpxord %%zmm4, %%zmm4, %%zmm4\n\t"
                   "vpxord %%zmm5, %%zmm5, %%zmm5\n\t"
                   "vpxord %%zmm6, %%zmm6, %%zmm6\n\t"
                   "vpxord %%zmm7, %%zmm7, %%zmm7\n\t"
                   "vpxord %%zmm8, %%zmm8, %%zmm8\n\t"
                   "vpxord %%zmm9, %%zmm9, %%zmm9\n\t"
                   "vpxord %%zmm10, %%zmm10, %%zmm10\n\t"
                   "vpxord %%zmm11, %%zmm11, %%zmm11\n\t"
                   "vpxord %%zmm12, %%zmm12, %%zmm12\n\t"
                   "vpxord %%zmm13, %%zmm13, %%zmm13\n\t"
                   "vpxord %%zmm14, %%zmm14, %%zmm14\n\t"
                   "vpxord %%zmm15, %%zmm15, %%zmm15\n\t"
                   "vpxord %%zmm16, %%zmm16, %%zmm16\n\t"
                   "vpxord %%zmm17, %%zmm17, %%zmm17\n\t"
                   "vpxord %%zmm18, %%zmm18, %%zmm18\n\t"
                   "vpxord %%zmm19, %%zmm19, %%zmm19\n\t"
                   "vpxord %%zmm20, %%zmm20, %%zmm20\n\t"
                   "vpxord %%zmm21, %%zmm21, %%zmm21\n\t"
                   "vpxord %%zmm22, %%zmm22, %%zmm22\n\t"
                   "vpxord %%zmm23, %%zmm23, %%zmm23\n\t"
                   "vpxord %%zmm24, %%zmm24, %%zmm24\n\t"
                   "vpxord %%zmm25, %%zmm25, %%zmm25\n\t"
                   "vpxord %%zmm26, %%zmm26, %%zmm26\n\t"
                   "vpxord %%zmm27, %%zmm27, %%zmm27\n\t"
                   "vpxord %%zmm28, %%zmm28, %%zmm28\n\t"
                   "vpxord %%zmm29, %%zmm29, %%zmm29\n\t"
                   "vpxord %%zmm30, %%zmm30, %%zmm30\n\t"
                   "vpxord %%zmm31, %%zmm31, %%zmm31\n\t"
                   "vzeroupper" ::
                       : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                         "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16",
                         "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24",
                         "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
}

__attribute__((target("avx"))) static void wipe_avx(void)
{
  __asm__ volatile("vzeroall" ::
                       : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                         "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

static void wipe_sse(void)
{
  __asm__ volatile("pxor %%xmm0, %%xmm0\n\tpxor %%xmm1, %%xmm1\n\t"
                   "pxor %%xmm2, %%xmm2\n\tpxor %%xmm3, %%xmm3\n\t"
                   "pxor %%xmm4, %%xmm4\n\tpxor %%xmm5, %%xmm5\n\t"
                   "pxor %%xmm6, %%xmm6\n\tpxor %%xmm7, %%xmm7\n\t"
                   "pxor %%xmm8, %%xmm8\n\tpxor %%xmm9, %%xmm9\n\t"
                   "pxor %%xmm10, %%xmm10\n\tpxor %%xmm11, %%xmm11\n\t"
                   "pxor %%xmm12, %%xmm12\n\tpxor %%xmm13, %%xmm13\n\t"
                   "pxor %%xmm14, %%xmm14\n\tpxor %%xmm15, %%xmm15" ::
                       : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                         "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

void crypto_wipe_cpu_registers(void)
{
  if (__builtin_cpu_supports("avx512f"))
    wipe_avx512();
  else if (__builtin_cpu_supports("avx"))
    wipe_avx();
  else
    wipe_sse();
}

#else

void crypto_wipe_cpu_registers(void)
{
}

#endif

// The CPU's arithmetic limit, measured: every core issues nothing but
// independent vector FMAs (f32) or bf16 dot-product-accumulates, so the rate
// is cores x clock under load x FLOPs per cycle, whatever the clock and the
// number of vector pipes are. A matmul can approach it, never pass it.
//
//   gcc -O2 -march=native -fopenmp arithmetic_limit.c -o arithmetic_limit
//   ./arithmetic_limit SECONDS   ->  one JSON line
//
// Twelve independent accumulators per thread hide the instruction latency
// (4-5 cycles) on up to 2 pipes: more than 5 x 2.

#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#define CHAINS 12  // the accumulators c0..c11 below
#define INNER 1000  // instructions per chain between clock reads

#if defined(__AVX512F__)
#define BITS 512
typedef __m512 vec;
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define SUM _mm512_reduce_add_ps
#elif defined(__AVX2__) && defined(__FMA__)
#define BITS 256
typedef __m256 vec;
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
static float SUM(__m256 v) {
  float lanes[8];
  _mm256_storeu_ps(lanes, v);
  float sum = 0;
  for (int i = 0; i < 8; i++) sum += lanes[i];
  return sum;
}
#else
#error "needs AVX2 with FMA, or AVX-512"
#endif

#define LANES (BITS / 32)  // f32 lanes of one vector

// FLOPs of one instruction: an FMA is a multiply and an add per f32 lane; a
// bf16 dot-product-accumulate multiplies two bf16 pairs per f32 lane and adds
// both products to it.
#define F32_FLOPS_PER_INSTRUCTION (2 * LANES)
#define BF16_FLOPS_PER_INSTRUCTION (4 * LANES)

static double rate(double seconds, int bf16) {
  double flops = 0, elapsed = 0;
#pragma omp parallel reduction(+ : flops) reduction(max : elapsed)
  {
    float sink = 0;
    long rounds = 0;
    double start = omp_get_wtime(), now = start;
    // Twelve named accumulators, so they stay in registers at -O2 (an array of
    // them was kept in memory, and ran far below the limit).
    vec c0 = SET1(0), c1 = SET1(1e-3f), c2 = SET1(2e-3f), c3 = SET1(3e-3f), c4 = SET1(4e-3f),
        c5 = SET1(5e-3f), c6 = SET1(6e-3f), c7 = SET1(7e-3f), c8 = SET1(8e-3f),
        c9 = SET1(9e-3f), c10 = SET1(1e-2f), c11 = SET1(1.1e-2f);
#define EACH(OP) \
  c0 = OP(c0, a, b); c1 = OP(c1, a, b); c2 = OP(c2, a, b); c3 = OP(c3, a, b); \
  c4 = OP(c4, a, b); c5 = OP(c5, a, b); c6 = OP(c6, a, b); c7 = OP(c7, a, b); \
  c8 = OP(c8, a, b); c9 = OP(c9, a, b); c10 = OP(c10, a, b); c11 = OP(c11, a, b);
    if (!bf16) {
      const vec a = SET1(0.999999f), b = SET1(1e-7f);
      while (now - start < seconds) {
        for (int n = 0; n < INNER; n++) { EACH(FMA) }
        rounds++;
        now = omp_get_wtime();
      }
    } else {
#if defined(__AVX512BF16__)
      const __m512bh a = _mm512_cvtne2ps_pbh(SET1(0.5f), SET1(0.25f));
      const __m512bh b = _mm512_cvtne2ps_pbh(SET1(1e-3f), SET1(2e-3f));
      while (now - start < seconds) {
        for (int n = 0; n < INNER; n++) { EACH(_mm512_dpbf16_ps) }
        rounds++;
        now = omp_get_wtime();
      }
#endif
    }
    sink = SUM(c0) + SUM(c1) + SUM(c2) + SUM(c3) + SUM(c4) + SUM(c5) + SUM(c6) + SUM(c7) +
           SUM(c8) + SUM(c9) + SUM(c10) + SUM(c11);
    if (sink == 1234.5f) printf("#");  // the results are used: nothing is optimised away
    flops = (double)rounds * INNER * CHAINS *
            (bf16 ? BF16_FLOPS_PER_INSTRUCTION : F32_FLOPS_PER_INSTRUCTION);
    elapsed = now - start;
  }
  return flops / elapsed;
}

int main(int argc, char **argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 2.0;
  printf("{\"vector_bits\": %d, \"threads\": %d, \"f32_flops_per_instruction\": %d, "
         "\"f32_flops\": %.6g, ", BITS, omp_get_max_threads(), F32_FLOPS_PER_INSTRUCTION,
         rate(seconds, 0));
#if defined(__AVX512BF16__)
  printf("\"bf16_flops_per_instruction\": %d, \"bf16_flops\": %.6g}\n",
         BF16_FLOPS_PER_INSTRUCTION, rate(seconds, 1));
#else
  printf("\"bf16_flops_per_instruction\": null, \"bf16_flops\": null}\n");
#endif
  return 0;
}

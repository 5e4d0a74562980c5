// See CKernels.h. Every function with wide instructions carries its own target attribute and is
// only called after pd_cpu_features() says the CPU has them: the file builds without -march.
#include "CKernels.h"

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define AVX512_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define AVX512_TARGET __attribute__((target("avx512f")))
#define AVX2_TARGET __attribute__((target("avx2,fma")))

static unsigned long long read_xcr0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static unsigned detect_features(void) {
    unsigned eax, ebx, ecx, edx, features = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const int osxsave = (ecx >> 27) & 1, avx = (ecx >> 28) & 1;
    if (!osxsave || !avx) return 0;
    const unsigned long long xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return 0;  // the OS does not save ymm registers
    const int zmm_saved = (xcr0 & 0xE6) == 0xE6;
    if ((ecx >> 12) & 1) features |= PD_CPU_FMA;
    if ((ecx >> 29) & 1) features |= PD_CPU_F16C;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return features;
    if ((ebx >> 5) & 1) features |= PD_CPU_AVX2;
    if (zmm_saved) {
        if ((ebx >> 16) & 1) features |= PD_CPU_AVX512F;
        if ((ebx >> 30) & 1) features |= PD_CPU_AVX512BW;
        if ((ebx >> 31) & 1) features |= PD_CPU_AVX512VL;
        if ((ecx >> 11) & 1) features |= PD_CPU_AVX512_VNNI;
        unsigned eax1, ebx1, ecx1, edx1;
        if (__get_cpuid_count(7, 1, &eax1, &ebx1, &ecx1, &edx1) && ((eax1 >> 5) & 1)) features |= PD_CPU_AVX512_BF16;
    }
    return features;
}

unsigned pd_cpu_features(void) {
    static unsigned cached = 0xFFFFFFFFu;
    if (cached == 0xFFFFFFFFu) cached = detect_features();
    return cached;
}

static int has_bf16_dot(void) {
    const unsigned needed = PD_CPU_AVX512F | PD_CPU_AVX512BW | PD_CPU_AVX512VL | PD_CPU_AVX512_BF16;
    return (pd_cpu_features() & needed) == needed;
}

// The sum of a vector's 8 lanes.
AVX2_TARGET static float sum8_avx2(__m256 v) {
    const __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
    return _mm_cvtss_f32(_mm_add_ss(quarter, _mm_shuffle_ps(quarter, quarter, 1)));
}

// ---- Peak loops: 12 independent accumulator chains, enough to cover the latency of two pipes.

#define PEAK_CHAINS 12

AVX512_TARGET static double peak_fp32_avx512(long iterations, float *checksum) {
    __m512 acc[PEAK_CHAINS];
    for (int r = 0; r < PEAK_CHAINS; r++) acc[r] = _mm512_set1_ps((float)r);
    const __m512 x = _mm512_set1_ps(1e-6f), y = _mm512_set1_ps(0.5f);
    for (long it = 0; it < iterations; it++) {
        for (int r = 0; r < PEAK_CHAINS; r++) acc[r] = _mm512_fmadd_ps(x, y, acc[r]);
        __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]), "+v"(acc[4]), "+v"(acc[5]),
                         "+v"(acc[6]), "+v"(acc[7]), "+v"(acc[8]), "+v"(acc[9]), "+v"(acc[10]), "+v"(acc[11]));
    }
    __m512 total = acc[0];
    for (int r = 1; r < PEAK_CHAINS; r++) total = _mm512_add_ps(total, acc[r]);
    *checksum = _mm512_reduce_add_ps(total);
    return 2.0 * 16 * PEAK_CHAINS * (double)iterations;
}

AVX2_TARGET static double peak_fp32_avx2(long iterations, float *checksum) {
    __m256 acc[PEAK_CHAINS];
    for (int r = 0; r < PEAK_CHAINS; r++) acc[r] = _mm256_set1_ps((float)r);
    const __m256 x = _mm256_set1_ps(1e-6f), y = _mm256_set1_ps(0.5f);
    for (long it = 0; it < iterations; it++) {
        for (int r = 0; r < PEAK_CHAINS; r++) acc[r] = _mm256_fmadd_ps(x, y, acc[r]);
        __asm__ volatile("" : "+x"(acc[0]), "+x"(acc[1]), "+x"(acc[2]), "+x"(acc[3]), "+x"(acc[4]), "+x"(acc[5]),
                         "+x"(acc[6]), "+x"(acc[7]), "+x"(acc[8]), "+x"(acc[9]), "+x"(acc[10]), "+x"(acc[11]));
    }
    __m256 total = acc[0];
    for (int r = 1; r < PEAK_CHAINS; r++) total = _mm256_add_ps(total, acc[r]);
    *checksum = sum8_avx2(total);
    return 2.0 * 8 * PEAK_CHAINS * (double)iterations;
}

double pd_peak_fp32(long iterations, float *checksum) {
    const unsigned features = pd_cpu_features();
    if (features & PD_CPU_AVX512F) return peak_fp32_avx512(iterations, checksum);
    if ((features & (PD_CPU_AVX2 | PD_CPU_FMA)) == (PD_CPU_AVX2 | PD_CPU_FMA)) return peak_fp32_avx2(iterations, checksum);
    *checksum = 0;
    return 0;
}

AVX512_BF16_TARGET static double peak_bf16_avx512(long iterations, float *checksum) {
    __m512 acc[PEAK_CHAINS];
    for (int r = 0; r < PEAK_CHAINS; r++) acc[r] = _mm512_set1_ps((float)r);
    const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3580);  // bf16 ~1e-6
    const __m512bh y = (__m512bh)_mm512_set1_epi16(0x3F00);  // bf16 0.5
    for (long it = 0; it < iterations; it++) {
        for (int r = 0; r < PEAK_CHAINS; r++) acc[r] = _mm512_dpbf16_ps(acc[r], x, y);
        __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]), "+v"(acc[4]), "+v"(acc[5]),
                         "+v"(acc[6]), "+v"(acc[7]), "+v"(acc[8]), "+v"(acc[9]), "+v"(acc[10]), "+v"(acc[11]));
    }
    __m512 total = acc[0];
    for (int r = 1; r < PEAK_CHAINS; r++) total = _mm512_add_ps(total, acc[r]);
    *checksum = _mm512_reduce_add_ps(total);
    return 2.0 * 32 * PEAK_CHAINS * (double)iterations;
}

double pd_peak_bf16(long iterations, float *checksum) {
    if (!has_bf16_dot()) {
        *checksum = 0;
        return 0;
    }
    return peak_bf16_avx512(iterations, checksum);
}

// ---- Streaming read

AVX2_TARGET static float stream_sum_avx2(const float *values, size_t count) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    size_t i = 0;
    for (; i + 64 <= count; i += 64) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(values + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(values + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(values + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(values + i + 24));
        a4 = _mm256_add_ps(a4, _mm256_loadu_ps(values + i + 32));
        a5 = _mm256_add_ps(a5, _mm256_loadu_ps(values + i + 40));
        a6 = _mm256_add_ps(a6, _mm256_loadu_ps(values + i + 48));
        a7 = _mm256_add_ps(a7, _mm256_loadu_ps(values + i + 56));
    }
    __m256 total = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                 _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    float sum = sum8_avx2(total);
    for (; i < count; i++) sum += values[i];
    return sum;
}

float pd_stream_sum(const float *values, size_t count) {
    if (pd_cpu_features() & PD_CPU_AVX2) return stream_sum_avx2(values, count);
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= count; i += 4) {
        s0 += values[i];
        s1 += values[i + 1];
        s2 += values[i + 2];
        s3 += values[i + 3];
    }
    for (; i < count; i++) s0 += values[i];
    return (s0 + s1) + (s2 + s3);
}

// ---- Products with few input rows (decode): bf16 weights widened to fp32 in registers (exact),
// fp32 inputs. One weight row at a time, read front to back as one sequential stream (the
// hardware prefetcher follows one stream per thread best: on the AMD EPYC here 29 GB/s for one
// thread against 18 with four rows interleaved), four accumulator chains across the row; each
// row is dotted with every input row while it is in L1.

static void dot_rows_bf16_scalar(const uint16_t *w, size_t first, size_t count, size_t columns, const float *x,
                                 size_t inputs, float *out, size_t out_stride);

static inline float widen_one(uint16_t bits) {
    const uint32_t widened = (uint32_t)bits << 16;
    float value;
    memcpy(&value, &widened, 4);
    return value;
}

// x(columns) for the AVX-512 dot: within each block of 32, the 16 even-indexed values, then the
// 16 odd-indexed ones. A 64-byte load of 32 bf16 weights then widens with no shuffle: shifting
// each 32-bit lane left by 16 gives the even weights as fp32, masking off its low half the odd ones.
static void split_even_odd(const float *x, size_t blocks, float *split) {
    for (size_t b = 0; b < blocks; b++)
        for (size_t j = 0; j < 16; j++) {
            split[b * 32 + j] = x[b * 32 + 2 * j];
            split[b * 32 + 16 + j] = x[b * 32 + 2 * j + 1];
        }
}

AVX512_TARGET static inline __m512 dot32_avx512(const uint16_t *w, const float *split, __m512 acc) {
    const __m512i pairs = _mm512_loadu_si512((const void *)w);
    const __m512 even = _mm512_castsi512_ps(_mm512_slli_epi32(pairs, 16));
    const __m512 odd = _mm512_castsi512_ps(_mm512_and_si512(pairs, _mm512_set1_epi32((int)0xFFFF0000u)));
    acc = _mm512_fmadd_ps(even, _mm512_loadu_ps(split), acc);
    return _mm512_fmadd_ps(odd, _mm512_loadu_ps(split + 16), acc);
}

AVX512_TARGET static void dot_rows_bf16_avx512(const uint16_t *w, size_t first, size_t count, size_t columns,
                                               const float *x, size_t inputs, float *out, size_t out_stride) {
    const size_t blocks = columns / 32, vector_end = blocks * 32, quad_end = blocks / 4 * 128;
    const size_t split_stride = blocks * 32 + 16;
    float *split = aligned_alloc(64, inputs * split_stride * sizeof(float));  // (inputs, split_stride)
    if (!split) {
        dot_rows_bf16_scalar(w, first, count, columns, x, inputs, out, out_stride);
        return;
    }
    for (size_t i = 0; i < inputs; i++) split_even_odd(x + i * columns, blocks, split + i * split_stride);
    for (size_t r = first; r < first + count; r++) {
        const uint16_t *wr = w + r * columns;
        for (size_t i = 0; i < inputs; i++) {
            const float *xi = x + i * columns, *si = split + i * split_stride;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            size_t c = 0;
            for (; c < quad_end; c += 128) {
                a0 = dot32_avx512(wr + c, si + c, a0);
                a1 = dot32_avx512(wr + c + 32, si + c + 32, a1);
                a2 = dot32_avx512(wr + c + 64, si + c + 64, a2);
                a3 = dot32_avx512(wr + c + 96, si + c + 96, a3);
            }
            for (; c < vector_end; c += 32) a0 = dot32_avx512(wr + c, si + c, a0);
            float sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
            for (c = vector_end; c < columns; c++) sum += widen_one(wr[c]) * xi[c];
            out[i * out_stride + r] = sum;
        }
    }
    free(split);
}

AVX2_TARGET static inline __m256 widen8_avx2(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

AVX2_TARGET static void dot_rows_bf16_avx2(const uint16_t *w, size_t first, size_t count, size_t columns,
                                           const float *x, size_t inputs, float *out, size_t out_stride) {
    const size_t vector_end = columns / 8 * 8, quad_end = columns / 32 * 32;
    for (size_t r = first; r < first + count; r++) {
        const uint16_t *wr = w + r * columns;
        for (size_t i = 0; i < inputs; i++) {
            const float *xi = x + i * columns;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            size_t c = 0;
            for (; c < quad_end; c += 32) {
                a0 = _mm256_fmadd_ps(widen8_avx2(wr + c), _mm256_loadu_ps(xi + c), a0);
                a1 = _mm256_fmadd_ps(widen8_avx2(wr + c + 8), _mm256_loadu_ps(xi + c + 8), a1);
                a2 = _mm256_fmadd_ps(widen8_avx2(wr + c + 16), _mm256_loadu_ps(xi + c + 16), a2);
                a3 = _mm256_fmadd_ps(widen8_avx2(wr + c + 24), _mm256_loadu_ps(xi + c + 24), a3);
            }
            for (; c < vector_end; c += 8) a0 = _mm256_fmadd_ps(widen8_avx2(wr + c), _mm256_loadu_ps(xi + c), a0);
            float sum = sum8_avx2(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
            for (c = vector_end; c < columns; c++) sum += widen_one(wr[c]) * xi[c];
            out[i * out_stride + r] = sum;
        }
    }
}

static void dot_rows_bf16_scalar(const uint16_t *w, size_t first, size_t count, size_t columns, const float *x,
                                 size_t inputs, float *out, size_t out_stride) {
    for (size_t r = first; r < first + count; r++)
        for (size_t i = 0; i < inputs; i++) {
            float sum = 0;
            for (size_t c = 0; c < columns; c++) sum += widen_one(w[r * columns + c]) * x[i * columns + c];
            out[i * out_stride + r] = sum;
        }
}

void pd_dot_rows_bf16(const uint16_t *w, size_t first, size_t count, size_t columns, const float *x, size_t inputs,
                      float *out, size_t out_stride) {
    pd_dot_rows_bf16_using(pd_cpu_features(), w, first, count, columns, x, inputs, out, out_stride);
}

void pd_dot_rows_bf16_using(unsigned allowed, const uint16_t *w, size_t first, size_t count, size_t columns,
                            const float *x, size_t inputs, float *out, size_t out_stride) {
    const unsigned features = allowed & pd_cpu_features();
    if (features & PD_CPU_AVX512F)
        dot_rows_bf16_avx512(w, first, count, columns, x, inputs, out, out_stride);
    else if ((features & (PD_CPU_AVX2 | PD_CPU_FMA)) == (PD_CPU_AVX2 | PD_CPU_FMA))
        dot_rows_bf16_avx2(w, first, count, columns, x, inputs, out, out_stride);
    else
        dot_rows_bf16_scalar(w, first, count, columns, x, inputs, out, out_stride);
}

// ---- fp32 → bf16

void pd_convert_to_bf16(const float *source, uint16_t *destination, size_t count) {
    for (size_t i = 0; i < count; i++) {
        uint32_t bits;
        memcpy(&bits, source + i, 4);
        if ((bits & 0x7FFFFFFFu) > 0x7F800000u) {
            destination[i] = (uint16_t)((bits >> 16) | 0x40);  // NaN stays a (quiet) NaN
        } else {
            destination[i] = (uint16_t)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
        }
    }
}

// ---- bf16 GEMM, outer-product form (as BLIS and oneDNN block it). For each panel of 48 output
// columns, the panel's weights are packed once so that one 64-byte load holds, for 16 columns,
// the pair (w[col][2p], w[col][2p+1]); a tile of 8 rows of a then keeps 8 × 3 accumulators of 16
// columns, and each step broadcasts one pair of a row to all lanes (VDPBF16PS sums the pair's two
// products into each lane). No sums across lanes; each output is written once.

enum { TILE_ROWS = 8, PANEL_VECTORS = 3, PANEL_COLUMNS = 16 * PANEL_VECTORS };

// packed(pairs, 48, 2) = w rows [first, first + columns) as column pairs, zero past the panel's
// columns and past k (an odd k's last pair). A whole panel of even k (every panel but a matrix's
// last, for the models here) goes 16 pairs at a time: one cache line of each of the 48 rows, used
// whole as soon as it is read, into a 3 KB block of the panel that stays in L1, each pair moved as
// one 32-bit word. (Reading one pair of every row in turn missed L1 on every load: rows 4 KB apart
// share a cache set. Whole rows in turn missed it on every store. The two took 10% and 6% of a bf16
// prefill's samples; this takes 3%.)
static void pack_panel(const uint16_t *w, size_t k, size_t first, size_t columns, uint16_t *packed) {
    const size_t pairs = (k + 1) / 2;
    if (columns == PANEL_COLUMNS && k % 2 == 0) {
        const uint16_t *panel = w + first * k;
        for (size_t p0 = 0; p0 < pairs; p0 += 16) {
            const size_t block = pairs - p0 < 16 ? pairs - p0 : 16;
            uint32_t *out = (uint32_t *)packed + p0 * PANEL_COLUMNS;  // (block, 48) pairs: 3 KB, stays in L1
            for (size_t j = 0; j < PANEL_COLUMNS; j++) {
                const uint16_t *line = panel + j * k + 2 * p0;  // one cache line of row j, used whole at once
                __builtin_prefetch(line + 4 * 32);
#pragma clang loop vectorize(disable)
                for (size_t q = 0; q < block; q++) memcpy(out + q * PANEL_COLUMNS + j, line + 2 * q, 4);
            }
        }
        return;
    }
    for (size_t p = 0; p < pairs; p++) {
        uint16_t *out = packed + p * 2 * PANEL_COLUMNS;
        for (size_t j = 0; j < PANEL_COLUMNS; j++) {
            const uint16_t *row = w + (first + j) * k;
            out[2 * j] = j < columns ? row[2 * p] : 0;
            out[2 * j + 1] = (j < columns && 2 * p + 1 < k) ? row[2 * p + 1] : 0;
        }
    }
}

static inline int32_t load_pair(const uint16_t *p) {
    int32_t pair;
    memcpy(&pair, p, 4);
    return pair;
}

// c(8, columns) = a(8, 2·pairs) · panel; a rows have stride lda (even, zero-padded past k).
AVX512_BF16_TARGET static void tile_8x48(size_t pairs, const uint16_t *a, size_t lda, const uint16_t *packed,
                                         float *c, size_t ldc, size_t columns) {
    __m512 acc[TILE_ROWS][PANEL_VECTORS];
    for (int i = 0; i < TILE_ROWS; i++)
        for (int v = 0; v < PANEL_VECTORS; v++) acc[i][v] = _mm512_setzero_ps();
    for (size_t p = 0; p < pairs; p++) {
        const uint16_t *panel = packed + p * 2 * PANEL_COLUMNS;
        const __m512bh w0 = (__m512bh)_mm512_loadu_si512((const void *)panel);
        const __m512bh w1 = (__m512bh)_mm512_loadu_si512((const void *)(panel + 32));
        const __m512bh w2 = (__m512bh)_mm512_loadu_si512((const void *)(panel + 64));
        for (int i = 0; i < TILE_ROWS; i++) {
            const __m512bh pair = (__m512bh)_mm512_set1_epi32(load_pair(a + i * lda + 2 * p));
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], pair, w0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], pair, w1);
            acc[i][2] = _mm512_dpbf16_ps(acc[i][2], pair, w2);
        }
    }
    for (int i = 0; i < TILE_ROWS; i++) {
        for (int v = 0; v < PANEL_VECTORS; v++) {
            const size_t first = (size_t)v * 16;
            if (first >= columns) break;
            const size_t count = columns - first < 16 ? columns - first : 16;
            _mm512_mask_storeu_ps(c + i * ldc + first, (__mmask16)((1u << count) - 1), acc[i][v]);
        }
    }
}

AVX512_BF16_TARGET static void gemm_bf16(size_t m, size_t n_begin, size_t n_end, size_t k, const uint16_t *a,
                                         size_t lda, const uint16_t *w, float *c, size_t ldc, uint16_t *packed,
                                         uint16_t *last_rows) {
    const size_t pairs = (k + 1) / 2;
    // Rows of a per pass over the panels: up to 8 MB of a (lda bf16 each), so that a pass's rows stay
    // in L3 while every panel multiplies them; a long prompt (LLaVA-NeXT's 2920 rows × 11008: 64 MB)
    // otherwise streams all of a from memory once per panel. Each pass packs its panels again.
    const size_t pass_rows_limit = (8u << 20) / (lda * 2) / TILE_ROWS * TILE_ROWS;
    const size_t pass_rows = pass_rows_limit > TILE_ROWS ? pass_rows_limit : TILE_ROWS;
    for (size_t m0 = 0; m0 < m; m0 += pass_rows) {
        const size_t m_end = m - m0 < pass_rows ? m : m0 + pass_rows;
        for (size_t n0 = n_begin; n0 < n_end; n0 += PANEL_COLUMNS) {
            const size_t columns = n_end - n0 < PANEL_COLUMNS ? n_end - n0 : PANEL_COLUMNS;
            pack_panel(w, k, n0, columns, packed);
            for (size_t i = m0; i < m_end; i += TILE_ROWS) {
                const size_t rows = m_end - i < TILE_ROWS ? m_end - i : TILE_ROWS;
                if (rows == TILE_ROWS) {
                    tile_8x48(pairs, a + i * lda, lda, packed, c + i * ldc + n0, ldc, columns);
                } else {
                    // The last rows: through a zero-padded tile, written back row by row.
                    float out[TILE_ROWS * PANEL_COLUMNS];
                    memset(last_rows, 0, TILE_ROWS * lda * 2);
                    memcpy(last_rows, a + i * lda, rows * lda * 2);
                    tile_8x48(pairs, last_rows, lda, packed, out, PANEL_COLUMNS, columns);
                    for (size_t r = 0; r < rows; r++) memcpy(c + (i + r) * ldc + n0, out + r * PANEL_COLUMNS, columns * 4);
                }
            }
        }
    }
}

int pd_gemm_bf16(size_t m, size_t n_begin, size_t n_end, size_t k, const uint16_t *a, size_t lda, const uint16_t *w,
                 float *c, size_t ldc) {
    if (!has_bf16_dot()) return -1;
    if (lda % 2 != 0 || lda < k) return -2;
    uint16_t *packed = malloc(((k + 1) / 2) * 2 * PANEL_COLUMNS * sizeof(uint16_t));
    uint16_t *last_rows = malloc(TILE_ROWS * lda * sizeof(uint16_t));
    if (!packed || !last_rows) {
        free(packed);
        free(last_rows);
        return -3;
    }
    gemm_bf16(m, n_begin, n_end, k, a, lda, w, c, ldc, packed, last_rows);
    free(packed);
    free(last_rows);
    return 0;
}

// ---- Q8_0 (GGUF's block format): blocks of 32 int8 values q with one fp16 scale d, value = d · q.
// Here the values of a matrix lie row-major in q and the scales in d, one per 32 consecutive
// values (columns are a multiple of 32, so the scale of element e is d[e / 32]).

#define Q8_0_BLOCK 32
#define AVX2_F16C_TARGET __attribute__((target("avx2,fma,f16c")))

static inline float half_to_float(uint16_t bits) {
    _Float16 half;
    memcpy(&half, &bits, 2);
    return (float)half;
}

void pd_quantize_q8_0(const float *x, size_t count, int8_t *q, uint16_t *d) {
    for (size_t b = 0; b < count / Q8_0_BLOCK; b++) {
        const float *block = x + b * Q8_0_BLOCK;
        float amax = 0;
        for (int j = 0; j < Q8_0_BLOCK; j++) {
            const float magnitude = fabsf(block[j]);
            if (magnitude > amax) amax = magnitude;
        }
        const float scale = amax / 127, inverse = scale != 0 ? 1.0f / scale : 0.0f;
        for (int j = 0; j < Q8_0_BLOCK; j++) q[b * Q8_0_BLOCK + j] = (int8_t)roundf(block[j] * inverse);
        const _Float16 half = (_Float16)scale;
        memcpy(d + b, &half, 2);
    }
}

// Whole blocks [first_block, end_block) of 32 values, 16 at a time.
AVX512_TARGET static void dequantize_q8_0_blocks_avx512(const int8_t *q, const uint16_t *d, size_t first_block,
                                                        size_t end_block, float *out) {
    for (size_t b = first_block; b < end_block; b++) {
        const __m512 scale = _mm512_set1_ps(half_to_float(d[b]));
        const int8_t *block = q + b * Q8_0_BLOCK;
        float *o = out + (b - first_block) * Q8_0_BLOCK;
        _mm512_storeu_ps(o, _mm512_mul_ps(scale, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)block)))));
        _mm512_storeu_ps(o + 16, _mm512_mul_ps(scale, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(block + 16))))));
    }
}

void pd_dequantize_q8_0(const int8_t *q, const uint16_t *d, size_t first, size_t count, float *out) {
    size_t e = first;
    const size_t end = first + count;
    if (pd_cpu_features() & PD_CPU_AVX512F) {
        // Up to the first block boundary one by one, then whole blocks in vectors, then the rest.
        for (; e < end && e % Q8_0_BLOCK != 0; e++) out[e - first] = half_to_float(d[e / Q8_0_BLOCK]) * (float)q[e];
        const size_t blocks = (end - e) / Q8_0_BLOCK;
        dequantize_q8_0_blocks_avx512(q, d, e / Q8_0_BLOCK, e / Q8_0_BLOCK + blocks, out + (e - first));
        e += blocks * Q8_0_BLOCK;
    }
    for (; e < end; e++) out[e - first] = half_to_float(d[e / Q8_0_BLOCK]) * (float)q[e];
}

// One row at a time, as the bf16 rows: per block, the 32 products summed, then scaled once; two
// accumulator chains (even and odd blocks).
AVX512_TARGET static void dot_rows_q8_0_avx512(const int8_t *q, const uint16_t *d, size_t first, size_t count,
                                               size_t columns, const float *x, size_t inputs, float *out,
                                               size_t out_stride) {
    const size_t blocks = columns / Q8_0_BLOCK;
#define Q8_0_WIDEN16(p) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p))))
#define Q8_0_BLOCK_AVX512(block, acc)                                                                                \
    do {                                                                                                             \
        const size_t c = (block) * Q8_0_BLOCK;                                                                       \
        const __m512 block_sum = _mm512_fmadd_ps(Q8_0_WIDEN16(qr + c + 16), _mm512_loadu_ps(xi + c + 16),           \
                                                 _mm512_mul_ps(Q8_0_WIDEN16(qr + c), _mm512_loadu_ps(xi + c)));      \
        acc = _mm512_fmadd_ps(block_sum, _mm512_set1_ps(half_to_float(dr[block])), acc);                            \
    } while (0)
    for (size_t r = first; r < first + count; r++) {
        const int8_t *qr = q + r * columns;
        const uint16_t *dr = d + r * blocks;
        for (size_t i = 0; i < inputs; i++) {
            const float *xi = x + i * columns;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0;
            size_t b = 0;
            for (; b + 2 <= blocks; b += 2) {
                Q8_0_BLOCK_AVX512(b, a0);
                Q8_0_BLOCK_AVX512(b + 1, a1);
            }
            if (b < blocks) Q8_0_BLOCK_AVX512(b, a0);
            out[i * out_stride + r] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        }
    }
#undef Q8_0_BLOCK_AVX512
#undef Q8_0_WIDEN16
}

AVX2_F16C_TARGET static inline __m256 widen8_q8_avx2(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

// Σ over one block of 32: four groups of 8 products, then scaled.
AVX2_F16C_TARGET static inline __m256 block_q8_0_avx2(const int8_t *qr, const float *xi, float scale, __m256 acc) {
    __m256 sum = _mm256_mul_ps(widen8_q8_avx2(qr), _mm256_loadu_ps(xi));
    sum = _mm256_fmadd_ps(widen8_q8_avx2(qr + 8), _mm256_loadu_ps(xi + 8), sum);
    sum = _mm256_fmadd_ps(widen8_q8_avx2(qr + 16), _mm256_loadu_ps(xi + 16), sum);
    sum = _mm256_fmadd_ps(widen8_q8_avx2(qr + 24), _mm256_loadu_ps(xi + 24), sum);
    return _mm256_fmadd_ps(sum, _mm256_set1_ps(scale), acc);
}

AVX2_F16C_TARGET static void dot_rows_q8_0_avx2(const int8_t *q, const uint16_t *d, size_t first, size_t count,
                                                size_t columns, const float *x, size_t inputs, float *out,
                                                size_t out_stride) {
    const size_t blocks = columns / Q8_0_BLOCK;
    for (size_t r = first; r < first + count; r++) {
        const int8_t *qr = q + r * columns;
        const uint16_t *dr = d + r * blocks;
        for (size_t i = 0; i < inputs; i++) {
            const float *xi = x + i * columns;
            __m256 a = _mm256_setzero_ps();
            for (size_t b = 0; b < blocks; b++)
                a = block_q8_0_avx2(qr + b * Q8_0_BLOCK, xi + b * Q8_0_BLOCK, half_to_float(dr[b]), a);
            out[i * out_stride + r] = sum8_avx2(a);
        }
    }
}

static void dot_rows_q8_0_scalar(const int8_t *q, const uint16_t *d, size_t first, size_t count, size_t columns,
                                 const float *x, size_t inputs, float *out, size_t out_stride) {
    const size_t blocks = columns / Q8_0_BLOCK;
    for (size_t r = first; r < first + count; r++)
        for (size_t i = 0; i < inputs; i++) {
            float total = 0;
            for (size_t b = 0; b < blocks; b++) {
                float sum = 0;
                for (size_t j = 0; j < Q8_0_BLOCK; j++) {
                    const size_t c = b * Q8_0_BLOCK + j;
                    sum += (float)q[r * columns + c] * x[i * columns + c];
                }
                total += sum * half_to_float(d[r * blocks + b]);
            }
            out[i * out_stride + r] = total;
        }
}

void pd_dot_rows_q8_0(const int8_t *q, const uint16_t *d, size_t first, size_t count, size_t columns,
                      const float *x, size_t inputs, float *out, size_t out_stride) {
    pd_dot_rows_q8_0_using(pd_cpu_features(), q, d, first, count, columns, x, inputs, out, out_stride);
}

void pd_dot_rows_q8_0_using(unsigned allowed, const int8_t *q, const uint16_t *d, size_t first, size_t count,
                            size_t columns, const float *x, size_t inputs, float *out, size_t out_stride) {
    const unsigned features = allowed & pd_cpu_features(), avx2 = PD_CPU_AVX2 | PD_CPU_FMA | PD_CPU_F16C;
    if (features & PD_CPU_AVX512F)
        dot_rows_q8_0_avx512(q, d, first, count, columns, x, inputs, out, out_stride);
    else if ((features & avx2) == avx2)
        dot_rows_q8_0_avx2(q, d, first, count, columns, x, inputs, out, out_stride);
    else
        dot_rows_q8_0_scalar(q, d, first, count, columns, x, inputs, out, out_stride);
}

// ---- Q8_0 weights × Q8_0 activations (llama.cpp's scheme for Q8_0 products): the input rows are
// quantized as the weights are (pd_quantize_q8_0), each block's 32 products summed exactly in
// int32, then scaled by d_weight · d_input. |q| ≤ 127 on both sides (the quantizer never gives
// -128), so u8 × s8 pairs cannot saturate.

#define VNNI_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni")))

// Σ over one block: |x| as unsigned bytes times q with x's sign, summed in 8 int32 lanes.
VNNI_TARGET static inline __m256i block_dot_vnni(__m256i q, __m256i x_magnitude, __m256i x) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), x_magnitude, _mm256_sign_epi8(q, x));
}

AVX2_F16C_TARGET static inline __m256i block_dot_avx2(__m256i q, __m256i x_magnitude, __m256i x) {
    const __m256i pairs = _mm256_maddubs_epi16(x_magnitude, _mm256_sign_epi8(q, x));  // 16 int16, ≤ 2 · 127²
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

#define Q8_0_Q8_ROWS(TARGET, NAME, BLOCK_DOT)                                                                        \
    TARGET static void NAME(const int8_t *q, const uint16_t *d, size_t first, size_t count, size_t columns,          \
                            const int8_t *xq, const float *xd, size_t inputs, float *out, size_t out_stride) {       \
        const size_t blocks = columns / Q8_0_BLOCK;                                                                  \
        for (size_t r = first; r < first + count; r++) {                                                              \
            const int8_t *qr = q + r * columns;                                                                       \
            const uint16_t *dr = d + r * blocks;                                                                      \
            for (size_t i = 0; i < inputs; i++) {                                                                     \
                const int8_t *xi = xq + i * columns;                                                                  \
                const float *xs = xd + i * blocks;                                                                    \
                __m256 a0 = _mm256_setzero_ps(), a1 = a0;                                                             \
                size_t b = 0;                                                                                         \
                for (; b + 2 <= blocks; b += 2) {                                                                     \
                    const __m256i x0 = _mm256_loadu_si256((const __m256i *)(xi + b * Q8_0_BLOCK));                   \
                    const __m256i x1 = _mm256_loadu_si256((const __m256i *)(xi + (b + 1) * Q8_0_BLOCK));             \
                    const __m256i s0 = BLOCK_DOT(_mm256_loadu_si256((const __m256i *)(qr + b * Q8_0_BLOCK)),         \
                                                 _mm256_sign_epi8(x0, x0), x0);                                      \
                    const __m256i s1 = BLOCK_DOT(_mm256_loadu_si256((const __m256i *)(qr + (b + 1) * Q8_0_BLOCK)),   \
                                                 _mm256_sign_epi8(x1, x1), x1);                                      \
                    a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_set1_ps(half_to_float(dr[b]) * xs[b]), a0);   \
                    a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_set1_ps(half_to_float(dr[b + 1]) * xs[b + 1]), a1); \
                }                                                                                                     \
                for (; b < blocks; b++) {                                                                             \
                    const __m256i x0 = _mm256_loadu_si256((const __m256i *)(xi + b * Q8_0_BLOCK));                   \
                    const __m256i s0 = BLOCK_DOT(_mm256_loadu_si256((const __m256i *)(qr + b * Q8_0_BLOCK)),         \
                                                 _mm256_sign_epi8(x0, x0), x0);                                      \
                    a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_set1_ps(half_to_float(dr[b]) * xs[b]), a0);   \
                }                                                                                                     \
                out[i * out_stride + r] = sum8_avx2(_mm256_add_ps(a0, a1));                                           \
            }                                                                                                         \
        }                                                                                                             \
    }

Q8_0_Q8_ROWS(VNNI_TARGET, dot_rows_q8_0_q8_vnni, block_dot_vnni)
Q8_0_Q8_ROWS(AVX2_F16C_TARGET, dot_rows_q8_0_q8_avx2, block_dot_avx2)

static void dot_rows_q8_0_q8_scalar(const int8_t *q, const uint16_t *d, size_t first, size_t count, size_t columns,
                                    const int8_t *xq, const float *xd, size_t inputs, float *out, size_t out_stride) {
    const size_t blocks = columns / Q8_0_BLOCK;
    for (size_t r = first; r < first + count; r++)
        for (size_t i = 0; i < inputs; i++) {
            float total = 0;
            for (size_t b = 0; b < blocks; b++) {
                int32_t sum = 0;
                for (size_t j = 0; j < Q8_0_BLOCK; j++)
                    sum += (int32_t)q[r * columns + b * Q8_0_BLOCK + j] * (int32_t)xq[i * columns + b * Q8_0_BLOCK + j];
                total += (float)sum * (half_to_float(d[r * blocks + b]) * xd[i * blocks + b]);
            }
            out[i * out_stride + r] = total;
        }
}

void pd_dot_rows_q8_0_q8(const int8_t *q, const uint16_t *d, size_t first, size_t count, size_t columns,
                         const int8_t *xq, const float *xd, size_t inputs, float *out, size_t out_stride) {
    pd_dot_rows_q8_0_q8_using(pd_cpu_features(), q, d, first, count, columns, xq, xd, inputs, out, out_stride);
}

void pd_dot_rows_q8_0_q8_using(unsigned allowed, const int8_t *q, const uint16_t *d, size_t first, size_t count,
                               size_t columns, const int8_t *xq, const float *xd, size_t inputs, float *out,
                               size_t out_stride) {
    const unsigned features = allowed & pd_cpu_features(), avx2 = PD_CPU_AVX2 | PD_CPU_FMA | PD_CPU_F16C;
    const unsigned vnni = avx2 | PD_CPU_AVX512F | PD_CPU_AVX512VL | PD_CPU_AVX512_VNNI;
    if ((features & vnni) == vnni)
        dot_rows_q8_0_q8_vnni(q, d, first, count, columns, xq, xd, inputs, out, out_stride);
    else if ((features & avx2) == avx2)
        dot_rows_q8_0_q8_avx2(q, d, first, count, columns, xq, xd, inputs, out, out_stride);
    else
        dot_rows_q8_0_q8_scalar(q, d, first, count, columns, xq, xd, inputs, out, out_stride);
}

// ---- Attention for many query rows, FlashAttention's online softmax on the CPU. A tile of up to
// 64 query rows of one head goes over the keys it sees in blocks of 64: the block's keys are
// transposed once, kᵀ (hd, 64); scores S = scale · q kᵀ come from register tiles of 4 rows × 64
// keys (16 accumulators; each step one broadcast of q per row and four loads of kᵀ); each row keeps
// its running maximum m and sum l, and its output O (rows, hd), rescaled by e^(m_old − m_new)
// when m grows; then O += P v in register tiles of 16 vectors (2 rows × 128 or 4 rows × 64). At
// the end out = O / l. Everything a tile touches (kᵀ, S, O, the block's v) stays in L1/L2, and
// blocks past every row's last visible key are never computed (the causal upper triangle).

#define ATTENTION_MAX_HD 128

size_t pd_attention_scratch_floats(size_t hd) {
    // kᵀ (hd, 64), S (64, 64), O (64, hd), m and l (64 each).
    return hd * PD_ATTENTION_KEYS + PD_ATTENTION_ROWS * PD_ATTENTION_KEYS + PD_ATTENTION_ROWS * hd + 2 * PD_ATTENTION_ROWS;
}

// e^x for 16 lanes: Cephes' expf as exp8 in Kernels.swift (x = n ln 2 + r, a degree-7 polynomial,
// 2^n in the exponent bits), inputs clamped to [-87, 88].
AVX512_TARGET static inline __m512 exp16_avx512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    const __m512 magic = _mm512_set1_ps(12582912.0f);  // 1.5 · 2²³
    const __m512 shifted = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), magic);
    const __m512 n = _mm512_sub_ps(shifted, magic);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
    const __m512i bits = _mm512_castps_si512(shifted);
    const __m512i two_n = _mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(bits, _mm512_set1_epi32(0x4B400000)),
                                                             _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(two_n));
}

// Lanes [16c, 16c + 16) of a 64-key block below `valid` keys.
static inline __mmask16 lanes_below(long valid, int c) {
    const long first = 16L * c;
    if (valid >= first + 16) return 0xFFFF;
    if (valid <= first) return 0;
    return (__mmask16)((1u << (valid - first)) - 1);
}

// The most keys any of rows [first, first + count) sees.
static inline long most_seen(const long *seen, size_t first, int count) {
    long most = 0;
    for (int r = 0; r < count; r++) most = seen[first + r] > most ? seen[first + r] : most;
    return most;
}

// hd_vectors = hd / 16, a constant where this is inlined (4 or 8), so the tiles live in registers.
AVX512_TARGET __attribute__((always_inline)) static inline void attention_tile_avx512(
    const float *q, size_t q_stride, size_t rows, const float *k, const float *v, size_t kv_stride,
    const int hd_vectors, const int32_t *visible, float scale, float *out, size_t out_stride, float *scratch) {
    enum { KEYS = PD_ATTENTION_KEYS, ROWS = PD_ATTENTION_ROWS };
    const size_t hd = (size_t)hd_vectors * 16;
    const int group = 16 / hd_vectors;                  // rows per O += P v register tile
    const size_t padded = (rows + 3) / 4 * 4;           // rows in whole tiles of 4 (and of `group`)
    float *kt = scratch;                                // (hd, 64) the block's keys, transposed
    float *s = kt + hd * KEYS;                          // (64, 64) scores, then probabilities
    float *o = s + ROWS * KEYS;                         // (64, hd) unnormalised output
    float *m = o + ROWS * hd;                           // (64) running maxima
    float *l = m + ROWS;                                // (64) running sums
    long seen[ROWS];                                    // (64) keys each row sees; 0 for padding rows
    long last_key = 0;
    for (size_t i = 0; i < padded; i++) {
        seen[i] = i < rows ? visible[i] : 0;
        if (seen[i] > last_key) last_key = seen[i];
        m[i] = -INFINITY;
        l[i] = 0;
    }
    memset(o, 0, padded * hd * sizeof(float));
    for (long kb = 0; kb < last_key; kb += KEYS) {
        const long n = last_key - kb < KEYS ? last_key - kb : KEYS;
        for (long j = 0; j < KEYS; j++) {
            const float *key = k + (size_t)(kb + j) * kv_stride;
            for (size_t d = 0; d < hd; d++) kt[d * KEYS + j] = j < n ? key[d] : 0.0f;
        }
        // S = scale · q kᵀ, masked; then each row's online softmax step.
        for (size_t r0 = 0; r0 < padded; r0 += 4) {
            if (most_seen(seen, r0, 4) <= kb) {  // no row of the tile sees a key of this block
                memset(s + r0 * KEYS, 0, 4 * KEYS * sizeof(float));
                continue;
            }
            __m512 acc[4][4];
            for (int r = 0; r < 4; r++)
                for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
            const float *q0 = q + (r0 < rows ? r0 : 0) * q_stride;
            const size_t live = rows - r0 < 4 ? rows - r0 : 4;  // padding rows read row r0 again; masked below
            for (size_t d = 0; d < hd; d++) {
                const __m512 k0 = _mm512_loadu_ps(kt + d * KEYS), k1 = _mm512_loadu_ps(kt + d * KEYS + 16);
                const __m512 k2 = _mm512_loadu_ps(kt + d * KEYS + 32), k3 = _mm512_loadu_ps(kt + d * KEYS + 48);
                for (int r = 0; r < 4; r++) {
                    const __m512 x = _mm512_set1_ps(q0[(r < (int)live ? r : 0) * q_stride + d]);
                    acc[r][0] = _mm512_fmadd_ps(x, k0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(x, k1, acc[r][1]);
                    acc[r][2] = _mm512_fmadd_ps(x, k2, acc[r][2]);
                    acc[r][3] = _mm512_fmadd_ps(x, k3, acc[r][3]);
                }
            }
            for (int r = 0; r < 4; r++) {
                const size_t row = r0 + r;
                const long valid = seen[row] - kb < n ? seen[row] - kb : n;
                float *p = s + row * KEYS;
                if (valid <= 0) {
                    memset(p, 0, KEYS * sizeof(float));
                    continue;
                }
                __m512 x[4];
                __m512 block_max = _mm512_set1_ps(-INFINITY);
                for (int c = 0; c < 4; c++) {
                    x[c] = _mm512_mask_blend_ps(lanes_below(valid, c), _mm512_set1_ps(-INFINITY),
                                                _mm512_mul_ps(acc[r][c], _mm512_set1_ps(scale)));
                    block_max = _mm512_max_ps(block_max, x[c]);
                }
                const float new_max = fmaxf(m[row], _mm512_reduce_max_ps(block_max));
                const float correction = expf(m[row] - new_max);  // 0 for the first block (m = -inf)
                __m512 sums = _mm512_setzero_ps();
                for (int c = 0; c < 4; c++) {
                    const __m512 e = _mm512_maskz_mov_ps(lanes_below(valid, c),
                                                         exp16_avx512(_mm512_sub_ps(x[c], _mm512_set1_ps(new_max))));
                    _mm512_storeu_ps(p + 16 * c, e);
                    sums = _mm512_add_ps(sums, e);
                }
                l[row] = l[row] * correction + _mm512_reduce_add_ps(sums);
                m[row] = new_max;
                if (correction != 1.0f) {
                    float *o_row = o + row * hd;
                    for (int c = 0; c < hd_vectors; c++)
                        _mm512_storeu_ps(o_row + 16 * c, _mm512_mul_ps(_mm512_loadu_ps(o_row + 16 * c), _mm512_set1_ps(correction)));
                }
            }
        }
        // O += P v over the block's n keys, `group` rows × hd at a time.
        for (size_t r0 = 0; r0 < padded; r0 += (size_t)group) {
            if (most_seen(seen, r0, group) <= kb) continue;
            __m512 acc[16];
            for (int r = 0; r < group; r++)
                for (int c = 0; c < hd_vectors; c++) acc[r * hd_vectors + c] = _mm512_loadu_ps(o + (r0 + r) * hd + 16 * c);
            for (long j = 0; j < n; j++) {
                const float *value = v + (size_t)(kb + j) * kv_stride;
                __m512 vv[ATTENTION_MAX_HD / 16];
                for (int c = 0; c < hd_vectors; c++) vv[c] = _mm512_loadu_ps(value + 16 * c);
                for (int r = 0; r < group; r++) {
                    const __m512 weight = _mm512_set1_ps(s[(r0 + r) * KEYS + j]);
                    for (int c = 0; c < hd_vectors; c++)
                        acc[r * hd_vectors + c] = _mm512_fmadd_ps(weight, vv[c], acc[r * hd_vectors + c]);
                }
            }
            for (int r = 0; r < group; r++)
                for (int c = 0; c < hd_vectors; c++) _mm512_storeu_ps(o + (r0 + r) * hd + 16 * c, acc[r * hd_vectors + c]);
        }
    }
    for (size_t i = 0; i < rows; i++) {
        const __m512 inverse = _mm512_set1_ps(l[i] > 0 ? 1.0f / l[i] : 0.0f);
        for (int c = 0; c < hd_vectors; c++)
            _mm512_storeu_ps(out + i * out_stride + 16 * c, _mm512_mul_ps(_mm512_loadu_ps(o + i * hd + 16 * c), inverse));
    }
}

AVX512_TARGET static void attention_tile_avx512_64(const float *q, size_t q_stride, size_t rows, const float *k,
                                                   const float *v, size_t kv_stride, const int32_t *visible, float scale,
                                                   float *out, size_t out_stride, float *scratch) {
    attention_tile_avx512(q, q_stride, rows, k, v, kv_stride, 4, visible, scale, out, out_stride, scratch);
}

AVX512_TARGET static void attention_tile_avx512_128(const float *q, size_t q_stride, size_t rows, const float *k,
                                                    const float *v, size_t kv_stride, const int32_t *visible, float scale,
                                                    float *out, size_t out_stride, float *scratch) {
    attention_tile_avx512(q, q_stride, rows, k, v, kv_stride, 8, visible, scale, out, out_stride, scratch);
}

int pd_attention_tile(const float *q, size_t q_stride, size_t rows, const float *k, const float *v, size_t kv_stride,
                      size_t hd, const int32_t *visible, float scale, float *out, size_t out_stride, float *scratch) {
    if (!(pd_cpu_features() & PD_CPU_AVX512F) || rows == 0 || rows > PD_ATTENTION_ROWS) return -1;
    if (hd == 64) {
        attention_tile_avx512_64(q, q_stride, rows, k, v, kv_stride, visible, scale, out, out_stride, scratch);
    } else if (hd == 128) {
        attention_tile_avx512_128(q, q_stride, rows, k, v, kv_stride, visible, scale, out, out_stride, scratch);
    } else {
        return -1;
    }
    return 0;
}

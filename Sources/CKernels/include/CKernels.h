// Kernels that need CPU instructions Swift cannot name (AVX-512 BF16 dot products), each chosen at
// run time from what the CPU reports, so one build runs on AVX-512 and on AVX2-only machines.
#ifndef PDROP_CKERNELS_H
#define PDROP_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

// Bits of pd_cpu_features(): instruction sets the CPU has and the OS saves the registers of.
enum {
    PD_CPU_AVX2 = 1 << 0,
    PD_CPU_FMA = 1 << 1,
    PD_CPU_F16C = 1 << 2,
    PD_CPU_AVX512F = 1 << 3,
    PD_CPU_AVX512BW = 1 << 4,
    PD_CPU_AVX512VL = 1 << 5,
    PD_CPU_AVX512_BF16 = 1 << 6,
    PD_CPU_AVX512_VNNI = 1 << 7,
};
unsigned pd_cpu_features(void);

// Peak loops: `iterations` rounds of independent multiply-adds on registers only (no memory),
// so the time they take is the core's arithmetic limit. Each returns the floating-point
// operations it did (2 per multiply-add) and writes a checksum so the work is not optimised away.
// pd_peak_fp32 uses 512-bit FMAs where the CPU has AVX-512, else 256-bit (AVX2 + FMA).
double pd_peak_fp32(long iterations, float *checksum);
// bf16 × bf16 → fp32 dot products (VDPBF16PS); 0 where the CPU lacks AVX512-BF16.
double pd_peak_bf16(long iterations, float *checksum);

// The sum of `count` floats, read with several independent vector accumulators: a streaming read
// limited by memory bandwidth rather than by the latency of one chain of additions.
float pd_stream_sum(const float *values, size_t count);

// out[i · out_stride + r] = Σ_c widen(w[r, c]) · x[i, c] for weight rows r in [first, first + count)
// and input rows i < inputs: bf16 weights (row stride columns) widened exactly to fp32 in
// registers, fp32 inputs (row stride columns), fp32 sums. The decode product: each weight byte is
// read once. AVX-512, else AVX2 + FMA, else plain C, chosen at run time.
void pd_dot_rows_bf16(const uint16_t *w, size_t first, size_t count, size_t columns,
                      const float *x, size_t inputs, float *out, size_t out_stride);
// The same with only the paths `allowed` (PD_CPU_* bits) permits, so tests can run the AVX2 and
// plain-C paths on an AVX-512 machine.
void pd_dot_rows_bf16_using(unsigned allowed, const uint16_t *w, size_t first, size_t count, size_t columns,
                            const float *x, size_t inputs, float *out, size_t out_stride);

// destination(count) = bf16 of source(count), rounded to nearest even (NaN stays NaN), as PyTorch.
void pd_convert_to_bf16(const float *source, uint16_t *destination, size_t count);

// c(m, n_end − n_begin) columns [n_begin, n_end) of a(m, k) · w(n, k)ᵀ, where a and w hold bf16
// (a row-major with an even row stride lda ≥ k, zero past k; w as a PyTorch weight, row stride k),
// products summed in fp32 (VDPBF16PS); c is row-major with row stride ldc. Callers split n across
// threads. Returns 0; -1 without writing when the CPU lacks AVX512-BF16 (pd_cpu_features), -2
// for an odd or short lda, -3 when memory for the packed panel is not there.
int pd_gemm_bf16(size_t m, size_t n_begin, size_t n_end, size_t k,
                 const uint16_t *a, size_t lda, const uint16_t *w, float *c, size_t ldc);

// Q8_0, GGUF's block format: blocks of 32 int8 values q with one fp16 scale d (raw bits), each value
// d · q. A (rows, columns) matrix keeps q(rows, columns) row-major and d(rows, columns / 32), so
// the scale of element e is d[e / 32]; columns must be a multiple of 32.
// pd_quantize_q8_0: count (a multiple of 32) values → q(count), d(count / 32), as ggml's
// quantize_row_q8_0_ref: d = max |x| / 127, q = roundf(x / d) (0 where d is 0), d rounded to fp16.
void pd_quantize_q8_0(const float *x, size_t count, int8_t *q, uint16_t *d);
// out(count) = d · q for elements [first, first + count).
void pd_dequantize_q8_0(const int8_t *q, const uint16_t *d, size_t first, size_t count, float *out);
// out[i · out_stride + r] = Σ_blocks d[r, b] · Σ_{c in b} q[r, c] · x[i, c] for rows r in
// [first, first + count) and inputs i: the decode product, int8 widened to fp32 in registers.
// AVX-512, else AVX2 + FMA + F16C, else plain C, chosen at run time; _using as pd_dot_rows_bf16_using.
void pd_dot_rows_q8_0(const int8_t *q, const uint16_t *d, size_t first, size_t count, size_t columns,
                      const float *x, size_t inputs, float *out, size_t out_stride);
void pd_dot_rows_q8_0_using(unsigned allowed, const int8_t *q, const uint16_t *d, size_t first, size_t count,
                            size_t columns, const float *x, size_t inputs, float *out, size_t out_stride);
// The same product with the input rows quantized too, as llama.cpp computes Q8_0 products: xq
// (inputs, columns) int8 and xd (inputs, columns / 32) fp32 scales from pd_quantize_q8_0 (scales
// widened); out = Σ_b d[r, b] · xd[i, b] · Σ_{c in b} q[r, c] · xq[i, c], block sums exact in int32.
// AVX-512 VNNI (256-bit VPDPBUSD), else AVX2 (VPMADDUBSW), else plain C.
void pd_dot_rows_q8_0_q8(const int8_t *q, const uint16_t *d, size_t first, size_t count, size_t columns,
                         const int8_t *xq, const float *xd, size_t inputs, float *out, size_t out_stride);
void pd_dot_rows_q8_0_q8_using(unsigned allowed, const int8_t *q, const uint16_t *d, size_t first, size_t count,
                               size_t columns, const int8_t *xq, const float *xd, size_t inputs, float *out,
                               size_t out_stride);

// Asks for the cache line holding `address` (a hint; no fault when it is out of bounds).
static inline void pd_prefetch(const void *address) { __builtin_prefetch(address); }

// ---- Attention for many query rows (prefill, the vision tower), in tiles that stay in cache.
// Query rows per tile and keys per block of pd_attention_tile.
enum { PD_ATTENTION_ROWS = 64, PD_ATTENTION_KEYS = 64 };
// Floats of scratch pd_attention_tile needs for a head dimension of hd.
size_t pd_attention_scratch_floats(size_t hd);
// One tile of `rows` (≤ 64) query rows of one head: out(rows, hd) = softmax(scale · q kᵀ) v where
// row i sees keys 0..<visible[i] (at least one), q rows at q_stride, k and v rows at kv_stride, out
// rows at out_stride; the online softmax over blocks of 64 keys (FlashAttention's), fp32
// throughout, e^x as Cephes' expf. Needs AVX-512 and hd 64 or 128; returns -1, writing nothing,
// otherwise (the caller then uses BLAS), 0 when done.
int pd_attention_tile(const float *q, size_t q_stride, size_t rows, const float *k, const float *v, size_t kv_stride,
                      size_t hd, const int32_t *visible, float scale, float *out, size_t out_stride, float *scratch);

#endif

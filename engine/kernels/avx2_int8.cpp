// uint8 x int8 matrix products for CPUs with AVX2 but no int8 dot-product instructions (no VNNI), and the
// per-row quantisation of their inputs (moodbot_quantize_rows, at the end).
//
// y[r, o] = row_scale[r] * (weight_scale[o] * sum_k x[r, k] * w[o, k] - zero_point[r] * column_sum[o]) + bias[o]
//
// x: uint8 activations (rows, in), each row quantised on its own with values in 0..127 (native.py, SEVEN_BIT_MAX,
// which the Python side passes to moodbot_quantize_rows on every CPU); w: int8 weights (out, in), row-major, as
// quantize_rows stores them; column_sum[o] is weight_scale[o] * sum_k w[o, k]. Seven-bit activations let
// vpmaddubsw add two products into int16 without saturating (2 * 127 * 128 < 32768), so every sum is exact in
// integers, as oneDNN's is. The output head of many chats takes signed eight-bit rows instead (moodbot_s8s8_matmul).
//
// Why it exists: on AVX2 oneDNN reads the weights of a one-row product at about half the memory bandwidth, and a
// reply's decode step is one row per layer. Here each thread streams its share of weight rows once; the rows of x
// (one token, or a prompt's few dozen) stay in cache, and a tile of up to 4 tokens x 2 weight rows keeps its
// partial sums in registers. Threads come from OpenMP: built against the libgomp torch loads, the same pool
// torch's own operators use, so the two never compete for the cores.

#include <immintrin.h>
#include <stdint.h>

namespace {

__attribute__((target("avx2"))) inline int32_t horizontal_sum(__m256i v) {
  __m128i sum = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, _MM_SHUFFLE(1, 0, 3, 2)));
  sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(sum);
}

// Integer dot products of ROWS rows of x with COLS weight rows starting at w, over the whole 32-byte blocks of the
// inner dimension, as eight-lane partial sums: acc[i][j] for row i . weight j.
// x holds uint8 values in 0..127, or with SIGNED int8 values in -127..127: then vpmaddubsw multiplies |x| by w with
// x's sign moved onto w (vpsignb), so every pair still fits int16 (2 * 127 * 127), as llama.cpp's AVX2 dot does.
template <int ROWS, int COLS, bool SIGNED>
__attribute__((target("avx2"))) inline void accumulate(const uint8_t* x, int64_t in, const int8_t* w,
                                                       __m256i (&acc)[ROWS][COLS]) {
  const __m256i ones = _mm256_set1_epi16(1);
  for (int i = 0; i < ROWS; ++i)
    for (int j = 0; j < COLS; ++j) acc[i][j] = _mm256_setzero_si256();
  const int64_t whole = in & ~int64_t(31);
  for (int64_t k = 0; k < whole; k += 32) {
    __m256i xv[ROWS];
    for (int i = 0; i < ROWS; ++i) xv[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i * in + k));
    for (int j = 0; j < COLS; ++j) {
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * in + k));
      for (int i = 0; i < ROWS; ++i) {
        const __m256i product =
            SIGNED ? _mm256_maddubs_epi16(_mm256_sign_epi8(xv[i], xv[i]), _mm256_sign_epi8(wv, xv[i]))
                   : _mm256_maddubs_epi16(xv[i], wv);
        acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(product, ones));
      }
    }
  }
}

// The whole dot products: sums[i][j] gets row i . weight j, the inner dimension's tail included.
template <int ROWS, int COLS, bool SIGNED>
__attribute__((target("avx2"))) inline void tile(const uint8_t* x, int64_t in, const int8_t* w, int32_t sums[4][2]) {
  __m256i acc[ROWS][COLS];
  accumulate<ROWS, COLS, SIGNED>(x, in, w, acc);
  const int64_t whole = in & ~int64_t(31);
  for (int i = 0; i < ROWS; ++i)
    for (int j = 0; j < COLS; ++j) {
      int32_t total = horizontal_sum(acc[i][j]);
      for (int64_t k = whole; k < in; ++k) {
        const int32_t value = SIGNED ? int32_t(int8_t(x[i * in + k])) : int32_t(x[i * in + k]);
        total += value * int32_t(w[j * in + k]);
      }
      sums[i][j] = total;
    }
}

// The scales, zero points and bias of one product: per row (arrays) or, for one row, two plain numbers.
struct Affine {
  const float* row_scales;   // (rows,) or null: then every row has scale / zero_point
  const float* zero_points;  // (rows,) or null
  float scale, zero_point;
  const float* weight_scales;  // (out,)
  const float* column_sums;    // (out,), or null when no row has a zero point (signed rows)
  const float* bias;           // (out,) or null
};

template <int ROWS, int COLS, bool SIGNED>
__attribute__((target("avx2"))) inline void tile_and_scale(
    const uint8_t* x, int64_t in, const int8_t* w, int64_t out, int64_t r, int64_t o, const Affine& a, float* y) {
  int32_t sums[4][2];
  tile<ROWS, COLS, SIGNED>(x + r * in, in, w + o * in, sums);
  for (int i = 0; i < ROWS; ++i) {
    const float row_scale = a.row_scales ? a.row_scales[r + i] : a.scale;
    const float zero_point = a.zero_points ? a.zero_points[r + i] : a.zero_point;
    for (int j = 0; j < COLS; ++j) {
      const float shift = a.column_sums ? zero_point * a.column_sums[o + j] : 0.0f;
      const float value = a.weight_scales[o + j] * float(sums[i][j]) - shift;
      y[(r + i) * out + o + j] = row_scale * value + (a.bias ? a.bias[o + j] : 0.0f);
    }
  }
}

// [p0, p1] repeated in every (row, weight) pair of lanes.
__attribute__((target("avx2"))) inline __m256 both_weights(const float* pair) {
  return _mm256_castpd_ps(_mm256_broadcast_sd(reinterpret_cast<const double*>(pair)));
}

// [v0, v0, v1, v1, v2, v2, v3, v3] for rows r..r+3 of values, or the fallback everywhere when there are none.
__attribute__((target("avx2"))) inline __m256 per_row(const float* values, int64_t r, float fallback) {
  if (!values) return _mm256_set1_ps(fallback);
  return _mm256_setr_ps(values[r], values[r], values[r + 1], values[r + 1], values[r + 2], values[r + 2],
                        values[r + 3], values[r + 3]);
}

// tile_and_scale for a full tile of 4 rows x 2 weight rows when the inner dimension has no tail (every layer of the
// usual models): the eight sums are reduced together (vphaddd) and scaled as one vector of (row, weight) lanes, where
// eight horizontal sums and sixteen scalar multiply-adds took a tenth of a short (896-wide) product's time.
template <bool SIGNED>
__attribute__((target("avx2,fma"))) inline void full_tile_and_scale(
    const uint8_t* x, int64_t in, const int8_t* w, int64_t out, int64_t r, int64_t o, const Affine& a, float* y) {
  __m256i acc[4][2];
  accumulate<4, 2, SIGNED>(x + r * in, in, w + o * in, acc);
  const __m256i pairs01 = _mm256_hadd_epi32(_mm256_hadd_epi32(acc[0][0], acc[0][1]),
                                            _mm256_hadd_epi32(acc[1][0], acc[1][1]));
  const __m256i pairs23 = _mm256_hadd_epi32(_mm256_hadd_epi32(acc[2][0], acc[2][1]),
                                            _mm256_hadd_epi32(acc[3][0], acc[3][1]));
  // Lanes (row, weight): (0,0) (0,1) (1,0) (1,1) (2,0) (2,1) (3,0) (3,1).
  const __m256 sums = _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_permute2x128_si256(pairs01, pairs23, 0x20),
                                                          _mm256_permute2x128_si256(pairs01, pairs23, 0x31)));
  __m256 value = _mm256_mul_ps(both_weights(a.weight_scales + o), sums);
  if (a.column_sums)
    value = _mm256_fnmadd_ps(per_row(a.zero_points, r, a.zero_point), both_weights(a.column_sums + o), value);
  value = _mm256_mul_ps(per_row(a.row_scales, r, a.scale), value);
  if (a.bias) value = _mm256_add_ps(value, both_weights(a.bias + o));
  const __m128 low = _mm256_castps256_ps128(value), high = _mm256_extractf128_ps(value, 1);
  _mm_storel_pi(reinterpret_cast<__m64*>(y + r * out + o), low);
  _mm_storeh_pi(reinterpret_cast<__m64*>(y + (r + 1) * out + o), low);
  _mm_storel_pi(reinterpret_cast<__m64*>(y + (r + 2) * out + o), high);
  _mm_storeh_pi(reinterpret_cast<__m64*>(y + (r + 3) * out + o), high);
}

template <int COLS, bool SIGNED = false>
__attribute__((target("avx2"))) void column_block(
    const uint8_t* x, int64_t rows, int64_t in, const int8_t* w, int64_t out, int64_t o, const Affine& a, float* y) {
  int64_t r = 0;
  if (COLS == 2 && in % 32 == 0) {
    for (; r + 4 <= rows; r += 4)
      full_tile_and_scale<SIGNED>(x, in, w, out, r, o, a, y);
  }
  for (; r + 4 <= rows; r += 4)
    tile_and_scale<4, COLS, SIGNED>(x, in, w, out, r, o, a, y);
  switch (rows - r) {
    case 3: tile_and_scale<3, COLS, SIGNED>(x, in, w, out, r, o, a, y); break;
    case 2: tile_and_scale<2, COLS, SIGNED>(x, in, w, out, r, o, a, y); break;
    case 1: tile_and_scale<1, COLS, SIGNED>(x, in, w, out, r, o, a, y); break;
    default: break;
  }
}

// ROWS float rows of x times COLS int8 weight rows (weight-only: the int8 weights
// become floats in registers); sums[i][j] gets row i . weight j.
template <int ROWS, int COLS>
__attribute__((target("avx2,fma"))) inline void float_tile(const float* x, int64_t in, const int8_t* w,
                                                           float sums[4][2]) {
  __m256 acc[ROWS][COLS];
  for (int i = 0; i < ROWS; ++i)
    for (int j = 0; j < COLS; ++j) acc[i][j] = _mm256_setzero_ps();
  const int64_t whole = in & ~int64_t(7);
  for (int64_t k = 0; k < whole; k += 8) {
    __m256 wv[COLS];
    for (int j = 0; j < COLS; ++j)
      wv[j] = _mm256_cvtepi32_ps(
          _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + j * in + k))));
    for (int i = 0; i < ROWS; ++i) {
      const __m256 xv = _mm256_loadu_ps(x + i * in + k);
      for (int j = 0; j < COLS; ++j) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < ROWS; ++i)
    for (int j = 0; j < COLS; ++j) {
      __m128 sum = _mm_add_ps(_mm256_castps256_ps128(acc[i][j]), _mm256_extractf128_ps(acc[i][j], 1));
      sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
      sum = _mm_add_ss(sum, _mm_movehdup_ps(sum));
      float total = _mm_cvtss_f32(sum);
      for (int64_t k = whole; k < in; ++k) total += x[i * in + k] * float(w[j * in + k]);
      sums[i][j] = total;
    }
}

// One float row of x times two int8 weight rows, with four partial sums per weight row: a single chain of fused
// multiply-adds would wait on its own latency at every step, and one row is the decode step's common case.
__attribute__((target("avx2,fma"))) inline void float_one_row(const float* x, int64_t in, const int8_t* w,
                                                              int cols, float sums[4][2]) {
  __m256 acc[2][4];
  for (int j = 0; j < 2; ++j)
    for (int u = 0; u < 4; ++u) acc[j][u] = _mm256_setzero_ps();
  const int64_t whole = in & ~int64_t(31);
  for (int64_t k = 0; k < whole; k += 32) {
    for (int u = 0; u < 4; ++u) {
      const __m256 xv = _mm256_loadu_ps(x + k + 8 * u);
      for (int j = 0; j < cols; ++j) {
        const __m256 wv = _mm256_cvtepi32_ps(
            _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + j * in + k + 8 * u))));
        acc[j][u] = _mm256_fmadd_ps(xv, wv, acc[j][u]);
      }
    }
  }
  for (int j = 0; j < cols; ++j) {
    const __m256 both = _mm256_add_ps(_mm256_add_ps(acc[j][0], acc[j][1]), _mm256_add_ps(acc[j][2], acc[j][3]));
    __m128 sum = _mm_add_ps(_mm256_castps256_ps128(both), _mm256_extractf128_ps(both, 1));
    sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
    sum = _mm_add_ss(sum, _mm_movehdup_ps(sum));
    float total = _mm_cvtss_f32(sum);
    for (int64_t k = whole; k < in; ++k) total += x[k] * float(w[j * in + k]);
    sums[0][j] = total;
  }
}

template <int ROWS>
__attribute__((target("avx2,fma"))) void float_rows(const float* x, int64_t in, const int8_t* w, int64_t out,
                                                    int64_t o, int cols, const float* weight_scales, float* y) {
  float sums[4][2];
  if (ROWS == 1) float_one_row(x, in, w + o * in, cols, sums);
  else if (cols == 2) float_tile<ROWS, 2>(x, in, w + o * in, sums);
  else float_tile<ROWS, 1>(x, in, w + o * in, sums);
  for (int i = 0; i < ROWS; ++i)
    for (int j = 0; j < cols; ++j) y[i * out + o + j] = weight_scales[o + j] * sums[i][j];
}


// Horizontal minimum, maximum and sum of eight floats.
__attribute__((target("avx2"))) inline float horizontal_min(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_min_ss(m, _mm_movehdup_ps(m)));
}

__attribute__((target("avx2"))) inline float horizontal_max(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

__attribute__((target("avx2"))) inline float horizontal_add(__m256 v) {
  __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_add_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
}

// One row of moodbot_quantize_rows (below): t = x * gain (or x), its range widened to include 0, then
// values = clamp(round(t / scale) + zero_point, 0, max_value). Rounding is to nearest even, as torch.round's.
__attribute__((target("avx2,fma"))) void quantize_row(const float* x, int64_t in, const float* gain, float eps,
                                                     float max_value, uint8_t* values, float* scale_out,
                                                     float* zero_point_out) {
  const int64_t whole = in & ~int64_t(7);
  __m256 low = _mm256_setzero_ps(), high = _mm256_setzero_ps(), squares = _mm256_setzero_ps();
  for (int64_t k = 0; k < whole; k += 8) {
    const __m256 xv = _mm256_loadu_ps(x + k);
    const __m256 t = gain ? _mm256_mul_ps(xv, _mm256_loadu_ps(gain + k)) : xv;
    squares = _mm256_fmadd_ps(xv, xv, squares);
    low = _mm256_min_ps(low, t);
    high = _mm256_max_ps(high, t);
  }
  float lo = horizontal_min(low), hi = horizontal_max(high), sum_squares = horizontal_add(squares);
  for (int64_t k = whole; k < in; ++k) {
    const float t = gain ? x[k] * gain[k] : x[k];
    sum_squares += x[k] * x[k];
    lo = t < lo ? t : lo;
    hi = t > hi ? t : hi;
  }
  float scale = (hi - lo) / max_value;
  scale = scale < 1e-12f ? 1e-12f : scale;
  const float inverse = 1.0f / scale;
  const float zero_point = __builtin_nearbyintf(-(lo * inverse));
  const __m256 inverse_v = _mm256_set1_ps(inverse), zero_v = _mm256_set1_ps(zero_point);
  const __m256 floor_v = _mm256_setzero_ps(), ceiling_v = _mm256_set1_ps(max_value);
  for (int64_t k = 0; k < whole; k += 8) {
    const __m256 xv = _mm256_loadu_ps(x + k);
    const __m256 t = gain ? _mm256_mul_ps(xv, _mm256_loadu_ps(gain + k)) : xv;
    __m256 q = _mm256_round_ps(_mm256_mul_ps(t, inverse_v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(q, zero_v), floor_v), ceiling_v);
    const __m256i as_int = _mm256_cvtps_epi32(q);  // 0..255 in each 32-bit lane: pack down to bytes
    const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(as_int), _mm256_extracti128_si256(as_int, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(values + k), _mm_packus_epi16(words, words));
  }
  for (int64_t k = whole; k < in; ++k) {
    const float t = gain ? x[k] * gain[k] : x[k];
    float q = __builtin_nearbyintf(t * inverse) + zero_point;
    q = q < 0.0f ? 0.0f : (q > max_value ? max_value : q);
    values[k] = uint8_t(q);
  }
  // With a gain, the row is RMSNorm(x) * gain: its 1 / rms is one number, which joins the scale.
  *scale_out = gain ? scale / __builtin_sqrtf(sum_squares / float(in) + eps) : scale;
  *zero_point_out = zero_point;
}

}  // namespace

extern "C" {

// 1 when this CPU can run moodbot_u8s8_matmul (AVX2), else 0.
int moodbot_avx2_supported(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") ? 1 : 0;
}

// The product described at the top of this file. row_scales and zero_points may be null (one scale and zero point
// for all rows: scale, zero_point), and bias too. Uses the calling process's OpenMP threads.
__attribute__((target("avx2"))) void moodbot_u8s8_matmul(
    const uint8_t* x, int64_t rows, int64_t in, const int8_t* w, int64_t out, const float* row_scales,
    const float* zero_points, float scale, float zero_point, const float* weight_scales, const float* column_sums,
    const float* bias, float* y) {
  const Affine a{row_scales, zero_points, scale, zero_point, weight_scales, column_sums, bias};
  // Two weight rows per block: small enough that a one-row product still splits into many blocks per thread.
  const int64_t pairs = out / 2;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < pairs; ++p)
    column_block<2>(x, rows, in, w, out, 2 * p, a, y);
  if (out % 2)
    column_block<1>(x, rows, in, w, out, out - 1, a, y);
}

// y[r, o] = weight_scale[o] * sum_k x[r, k] * w[o, k] for float32 x (rows, in) and int8 w (out, in): a weight-only
// product, for the output head (its input stays in floats: the logits are the most sensitive to rounding). The int8
// weights are widened to floats in registers; each pair of weight rows is read from memory once for all the rows of
// x (four at a time from cache), so many chats' heads cost little more than one's.
__attribute__((target("avx2,fma"))) int moodbot_f32s8_matmul(const float* x, int64_t rows, int64_t in,
                                                            const int8_t* w, int64_t out, const float* weight_scales,
                                                            float* y) {
  if (rows < 1) return 0;
  const int64_t pairs = (out + 1) / 2;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < pairs; ++p) {
    const int64_t o = 2 * p;
    const int cols = o + 1 < out ? 2 : 1;
    for (int64_t done = 0; done < rows; done += 4) {  // four rows at a time: their sums fill the registers
      const float* xs = x + done * in;
      float* ys = y + done * out;
      switch (rows - done) {
        case 1: float_rows<1>(xs, in, w, out, o, cols, weight_scales, ys); break;
        case 2: float_rows<2>(xs, in, w, out, o, cols, weight_scales, ys); break;
        case 3: float_rows<3>(xs, in, w, out, o, cols, weight_scales, ys); break;
        default: float_rows<4>(xs, in, w, out, o, cols, weight_scales, ys); break;
      }
    }
  }
  return 1;
}

// Asymmetric uint8 quantisation of each float32 row of x (rows, in) on its own, as engine/kernels/activations.py's
// quantize_rows_of_activations does in several tensor operations: values (rows, in) in 0..max_value, and per row
// a scale and a zero point with x[r] ~ scale[r] * (values[r] - zero_point[r]). With gain (in,) non-null, the row
// quantised is RMSNorm(x[r]) * gain (epsilon eps): x * gain is quantised and the row's 1 / rms joins its scale
// (engine.kernels.arithmetic.FoldedNorm). One pass to find the range, one to write: a few microseconds a row.
__attribute__((target("avx2,fma"))) void moodbot_quantize_rows(const float* x, int64_t rows, int64_t in,
                                                              const float* gain, float eps, float max_value,
                                                              uint8_t* values, float* scales, float* zero_points) {
#pragma omp parallel for schedule(static) if (rows >= 8)
  for (int64_t r = 0; r < rows; ++r)
    quantize_row(x + r * in, in, gain, eps, max_value, values + r * in, scales + r, zero_points + r);
}

// y[r, o] = row_scale[r] * weight_scale[o] * sum_k x[r, k] * w[o, k] for int8 x (rows, in) in -127..127, each row
// quantised symmetrically with its own scale, and int8 w (out, in): the output head when many chats decode
// together (eight-bit activations: the head is the most sensitive to their rounding, and seven bits moved the
// next-token distribution about twice as far).
__attribute__((target("avx2"))) void moodbot_s8s8_matmul(const int8_t* x, int64_t rows, int64_t in, const int8_t* w,
                                                        int64_t out, const float* row_scales,
                                                        const float* weight_scales, float* y) {
  const Affine a{row_scales, nullptr, 1.0f, 0.0f, weight_scales, nullptr, nullptr};
  const uint8_t* bytes = reinterpret_cast<const uint8_t*>(x);
  const int64_t pairs = out / 2;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < pairs; ++p)
    column_block<2, true>(bytes, rows, in, w, out, 2 * p, a, y);
  if (out % 2)
    column_block<1, true>(bytes, rows, in, w, out, out - 1, a, y);
}

}  // extern "C"

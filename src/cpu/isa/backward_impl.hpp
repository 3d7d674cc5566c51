// src/cpu/isa/backward_impl.hpp: the attention backward kernel (cpu/attention_kernel.hpp,
// BackwardTile), written once with GCC vector extensions and compiled per ISA.
//
// Not a normal header: each per-ISA file (isa/scalar.cpp, isa/avx2.cpp, isa/avx512.cpp,
// isa/neon.cpp) includes it inside its own namespace, after its target pragma and after the
// standard headers, having defined
//   HYPERATTN_BWD_W   fp32 lanes per vector (16 AVX-512, 8 AVX2, 4 baseline SSE2/NEON)
//   HYPERATTN_BWD_RB  rows (or keys) per register block (4 with 32 vector registers, 2 with 16)
// and optionally (defaults in brackets)
//   HYPERATTN_BWD_STRICT  1: leave every entry a row does not see (x = -inf: masked, a padded key,
//                         bias -inf; every entry of a row with LSE = +inf) out of the products
//                         instead of multiplying its P = 0 and dS = 0, so a NaN or Inf reaches only
//                         the rows and keys that meet it (the strict kernel, attention_kernel.hpp;
//                         a branch per weight in the inner loops, so only the scalar kernel sets
//                         it). Such entries are marked P = dS = -0, which no weight e^x takes. [0]
// and the tile and the register blocks of the three products:
//   HYPERATTN_BWD_RT      rows per tile, a multiple of HYPERATTN_BWD_ROWS_R            [8 * RB]
//   HYPERATTN_BWD_ROWS_R, HYPERATTN_BWD_ROWS_V   rows x vectors of the row-major products
//                         S = Q K^T, dP = dO V^T and dQ += dS K (V divides 4)          [RB, 4]
//   HYPERATTN_BWD_KEYS_R, HYPERATTN_BWD_KEYS_V   keys x vectors of dV += P^T dO and
//                         dK += dS^T Q (R divides the keys per tile)                   [RB, 4]
// A block's R * V accumulators, its V loaded vectors and a broadcast must fit the registers.
// Everything here has internal linkage (an unnamed namespace), so no copy compiled for one ISA can
// be shared with another (tests/cpu/check_isa_isolation.py).
//
// The recurrence (FlashAttention 2's backward, over the tile's visible key set):
//   s_ij = scale <q_i, k_j> + bias_j,  P_ij = e^{s_ij - L_i}    (L_i: the forward's final LSE)
//   dV_j += sum_i P_ij dO_i,           dP_ij = <dO_i, v_j>
//   dS_ij = P_ij (dP_ij - delta_i)     (delta_i = <dO_i, O_i> - dLSE_i, computed by the driver)
//   dQ_i += scale sum_j dS_ij k_j,     dK_j += scale sum_i dS_ij q_i
// Loop order: key tiles outside (their K, K^T, V^T packed once, dK/dV accumulated in scratch),
// row tiles inside. Tails are padded: padded keys have bias -inf, padded rows L = +inf (P = 0).
// Masked entries get P = 0 exactly; nothing is accumulated atomically, so the result depends only
// on the tile, never on the thread that runs it.
namespace {

constexpr int kBwdW = HYPERATTN_BWD_W;
constexpr int kBwdRB = HYPERATTN_BWD_RB;
constexpr int kBwdKV = 4;  // vectors of S per row of a tile
#ifdef HYPERATTN_BWD_RT
constexpr int kBwdRT = HYPERATTN_BWD_RT;
#else
constexpr int kBwdRT = 8 * kBwdRB;
#endif
#ifdef HYPERATTN_BWD_ROWS_R
constexpr int kBwdRowsR = HYPERATTN_BWD_ROWS_R, kBwdRowsV = HYPERATTN_BWD_ROWS_V;
#else
constexpr int kBwdRowsR = kBwdRB, kBwdRowsV = 4;
#endif
#ifdef HYPERATTN_BWD_KEYS_R
constexpr int kBwdKeysR = HYPERATTN_BWD_KEYS_R, kBwdKeysV = HYPERATTN_BWD_KEYS_V;
#else
constexpr int kBwdKeysR = kBwdRB, kBwdKeysV = 4;
#endif
constexpr int kBwdKT = kBwdKV * kBwdW;  // keys per tile
#ifdef HYPERATTN_BWD_STRICT
constexpr bool kBwdStrict = HYPERATTN_BWD_STRICT != 0;
#else
constexpr bool kBwdStrict = false;
#endif
static_assert(kBwdRT % kBwdRowsR == 0 && kBwdKV % kBwdRowsV == 0 && kBwdKT % kBwdKeysR == 0,
              "the register blocks tile the row and key tiles");
typedef float bwd_vf __attribute__((vector_size(kBwdW * 4)));
typedef int bwd_vi __attribute__((vector_size(kBwdW * 4)));

// A scalar operand of a vector operation is broadcast (one vbroadcastss; filling the lanes one by
// one would store to the stack and stall the load that follows).
inline bwd_vf bwd_splat(float x) { return x - bwd_vf{}; }
// HYPERATTN_BWD_STRICT's mark of an entry left out of the products: -0.
inline bool bwd_left_out(float w) {
  std::uint32_t u;
  __builtin_memcpy(&u, &w, sizeof u);
  return u == 0x80000000u;
}
inline bwd_vf bwd_load(const float* p) {
  bwd_vf v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
inline void bwd_store(float* p, bwd_vf v) { __builtin_memcpy(p, &v, sizeof v); }
// A vector loaded once for several FMAs, kept in its register: left alone, GCC folds the load into
// each FMA as a memory operand, loading it once per use (AVX2: 10 loads for 8 FMAs in S = Q K^T,
// the load ports' limit; 1.2x on the whole backward on Zen 4, 1.04x with AVX-512).
inline bwd_vf bwd_load_reg(const float* p) {
  bwd_vf v = bwd_load(p);
#if defined(__x86_64__)
  __asm__("" : "+x"(v));
#elif defined(__aarch64__)
  __asm__("" : "+w"(v));
#endif
  return v;
}

// e^x with x <= 88 (the kernel's arguments are <= ~0): 2^n 2^f, n = round(x log2 e), a degree-6
// polynomial for e^r, |r| <= ln2/2 (relative error < 2e-7); x < -87.3 gives exactly 0 (so does
// -inf); NaN stays NaN.
inline bwd_vf bwd_exp(bwd_vf x) {
  const bwd_vi dead = x < bwd_splat(-87.33f);
  x = dead ? bwd_splat(-87.33f) : x;
  const bwd_vf magic = bwd_splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const bwd_vf n = (x * bwd_splat(1.44269504088896341f) + magic) - magic;
  const bwd_vf r = (x - n * bwd_splat(0.693145751953125f)) - n * bwd_splat(1.42860682030941723e-6f);
  bwd_vf p = bwd_splat(1.0f / 720.0f);
  p = p * r + bwd_splat(1.0f / 120.0f);
  p = p * r + bwd_splat(1.0f / 24.0f);
  p = p * r + bwd_splat(1.0f / 6.0f);
  p = p * r + bwd_splat(0.5f);
  p = p * r + bwd_splat(1.0f);
  p = p * r + bwd_splat(1.0f);
  const bwd_vi e = (__builtin_convertvector(n, bwd_vi) + 127) << 23;
  bwd_vf two_n;
  __builtin_memcpy(&two_n, &e, sizeof two_n);
  const bwd_vf y = p * two_n;
  return dead ? bwd_splat(0.0f) : y;
}

inline void bwd_load_row(DType dtype, const void* base, std::int64_t row_stride, std::int64_t row, int d, float* dst) {
  if (dtype == DType::f32) {
    const float* src = static_cast<const float*>(base) + row * row_stride;
    for (int c = 0; c < d; ++c) dst[c] = src[c];
  } else {
    const std::uint16_t* src = static_cast<const std::uint16_t*>(base) + row * row_stride;
    for (int c = 0; c < d; ++c) {
      const std::uint32_t u = static_cast<std::uint32_t>(src[c]) << 16;
      __builtin_memcpy(dst + c, &u, 4);
    }
  }
}

struct BwdScratch {
  float *kt, *vt, *kr, *bias, *q, *dout, *lse, *delta, *p, *ds, *dk, *dv;
  std::int32_t* kpos;
};

// The scratch layout from the 64-byte aligned base; *total: the floats it spans.
inline BwdScratch bwd_layout(float* base, int d, std::size_t* total = nullptr) {
  BwdScratch s{};
  std::size_t at = 0;
  auto take = [&at, base](std::size_t n) {
    float* p = base == nullptr ? nullptr : base + at;
    at += (n + 15) / 16 * 16;
    return p;
  };
  s.kt = take(static_cast<std::size_t>(d) * kBwdKT);    // [d][KT]  K^T
  s.vt = take(static_cast<std::size_t>(d) * kBwdKT);    // [d][KT]  V^T
  s.kr = take(static_cast<std::size_t>(kBwdKT) * d);    // [KT][d]  K
  s.bias = take(kBwdKT);                                // [KT]
  s.kpos = reinterpret_cast<std::int32_t*>(take(kBwdKT));  // [KT] key positions (row windows)
  s.q = take(static_cast<std::size_t>(kBwdRT) * d);     // [RT][d]
  s.dout = take(static_cast<std::size_t>(kBwdRT) * d);  // [RT][d]
  s.lse = take(kBwdRT);                                 // [RT]
  s.delta = take(kBwdRT);                               // [RT]
  s.p = take(static_cast<std::size_t>(kBwdRT) * kBwdKT);   // [RT][KT]
  s.ds = take(static_cast<std::size_t>(kBwdRT) * kBwdKT);  // [RT][KT]
  s.dk = take(static_cast<std::size_t>(kBwdKT) * d);    // [KT][d]
  s.dv = take(static_cast<std::size_t>(kBwdKT) * d);    // [KT][d]
  if (total != nullptr) *total = at;
  return s;
}

std::size_t backward_scratch_floats(int head_dim) {
  std::size_t total = 0;
  bwd_layout(nullptr, head_dim, &total);
  return total + 16;
}

// C[RT][KT] = A[RT][d] B^T, with Bt = B^T [d][KT] (S = Q K^T, dP = dO V^T): blocks of
// kBwdRowsR rows x kBwdRowsV vectors of keys.
inline void bwd_mm_abt(const float* a, const float* bt, int d, float* c) {
  constexpr int R = kBwdRowsR, V = kBwdRowsV;
  for (int r0 = 0; r0 < kBwdRT; r0 += R)
    for (int v0 = 0; v0 < kBwdKV; v0 += V) {
      bwd_vf acc[R][V];
      for (int i = 0; i < R; ++i)
        for (int v = 0; v < V; ++v) acc[i][v] = bwd_splat(0.0f);
      for (int k = 0; k < d; ++k) {
        bwd_vf b[V];
        for (int v = 0; v < V; ++v) b[v] = bwd_load_reg(bt + k * kBwdKT + (v0 + v) * kBwdW);
        for (int i = 0; i < R; ++i) {
          const float x = a[(r0 + i) * d + k];
          for (int v = 0; v < V; ++v) acc[i][v] += x * b[v];
        }
      }
      for (int i = 0; i < R; ++i)
        for (int v = 0; v < V; ++v) bwd_store(c + (r0 + i) * kBwdKT + (v0 + v) * kBwdW, acc[i][v]);
    }
}

// Acc[KT][d] += A^T B with A [RT][KT], B [RT][d] (dV += P^T dO, dK += dS^T Q): blocks of kBwdKeysR
// keys x NV vectors of d (kBwdKeysV, fewer at the end of a row).
template <int NV>
inline void bwd_acc_atb_block(const float* a, const float* b, int d, int j0, int c0, float* acc_out) {
  constexpr int R = kBwdKeysR;
  bwd_vf acc[R][NV];
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = bwd_load(acc_out + (j0 + i) * d + c0 + v * kBwdW);
  for (int r = 0; r < kBwdRT; ++r) {
    bwd_vf x[NV];
    for (int v = 0; v < NV; ++v) x[v] = bwd_load_reg(b + r * d + c0 + v * kBwdW);
    for (int i = 0; i < R; ++i) {
      const float w = a[r * kBwdKT + j0 + i];
      if (kBwdStrict && bwd_left_out(w)) continue;
      for (int v = 0; v < NV; ++v) acc[i][v] += w * x[v];
    }
  }
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < NV; ++v) bwd_store(acc_out + (j0 + i) * d + c0 + v * kBwdW, acc[i][v]);
}

// Calls block(BwdVectors<nv>{}) for nv in [1, kMax] (a whole block, or the vectors left at the end
// of a row).
template <int N>
struct BwdVectors {
  static constexpr int value = N;
};
template <int kMax, class F>
inline void bwd_with_vectors(int nv, F&& block) {
  if constexpr (kMax >= 1) {
    if (nv == kMax) block(BwdVectors<kMax>{});
    else bwd_with_vectors<kMax - 1>(nv, block);
  }
}

inline void bwd_acc_atb(const float* a, const float* b, int d, float* acc_out) {
  constexpr int V = kBwdKeysV;
  for (int j0 = 0; j0 < kBwdKT; j0 += kBwdKeysR)
    for (int c0 = 0; c0 < d; c0 += V * kBwdW) {
      const int nv = d - c0 >= V * kBwdW ? V : (d - c0) / kBwdW;
      bwd_with_vectors<V>(nv, [&](auto n) { bwd_acc_atb_block<decltype(n)::value>(a, b, d, j0, c0, acc_out); });
    }
}

// out_r += scale * (A B)_r for the tile's real rows, A [RT][KT], B [KT][d] (dQ += scale dS K):
// blocks of kBwdRowsR rows x NV vectors of d (kBwdRowsV, fewer at the end of a row).
template <int NV>
inline void bwd_acc_ab_block(const float* a, const float* b, int d, float scale, std::int64_t rows, int r0, int c0,
                             float* const* out_rows) {
  constexpr int R = kBwdRowsR;
  bwd_vf acc[R][NV];
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = bwd_splat(0.0f);
  for (int j = 0; j < kBwdKT; ++j) {
    bwd_vf x[NV];
    for (int v = 0; v < NV; ++v) x[v] = bwd_load_reg(b + j * d + c0 + v * kBwdW);
    for (int i = 0; i < R; ++i) {
      const float w = a[(r0 + i) * kBwdKT + j];
      if (kBwdStrict && bwd_left_out(w)) continue;
      for (int v = 0; v < NV; ++v) acc[i][v] += w * x[v];
    }
  }
  const bwd_vf sc = bwd_splat(scale);
  for (int i = 0; i < R && r0 + i < rows; ++i)
    for (int v = 0; v < NV; ++v) {
      float* o = out_rows[r0 + i] + c0 + v * kBwdW;
      bwd_store(o, bwd_load(o) + sc * acc[i][v]);
    }
}

inline void bwd_acc_ab(const float* a, const float* b, int d, float scale, std::int64_t rows,
                       float* const* out_rows) {
  constexpr int V = kBwdRowsV;
  for (int r0 = 0; r0 < kBwdRT && r0 < rows; r0 += kBwdRowsR)
    for (int c0 = 0; c0 < d; c0 += V * kBwdW) {
      const int nv = d - c0 >= V * kBwdW ? V : (d - c0) / kBwdW;
      bwd_with_vectors<V>(nv, [&](auto n) { bwd_acc_ab_block<decltype(n)::value>(a, b, d, scale, rows, r0, c0, out_rows); });
    }
}

void backward(const BackwardTile& t) {
  const int d = t.head_dim;
  const BwdScratch s = bwd_layout(t.scratch, d);
  const bool masked_windows = t.row_window != nullptr;
  const bool causal = t.causal_diagonal != kNoCausalMask;
  float* dq_rows[kBwdRT];
  for (std::int64_t k0 = 0; k0 < t.keys; k0 += kBwdKT) {
    const std::int64_t nk = t.keys - k0 < kBwdKT ? t.keys - k0 : kBwdKT;
    // Causal: the first row that sees key k0 is k0 - diagonal; rows before it skip this tile.
    std::int64_t row_begin = 0;
    if (causal && k0 - t.causal_diagonal > 0) row_begin = (k0 - t.causal_diagonal) / kBwdRT * kBwdRT;
    if (row_begin >= t.rows) continue;
    // Pack K, K^T, V^T and the bias of the key tile (padded keys: zero rows, bias -inf).
    for (int j = 0; j < kBwdKT; ++j) {
      float* kr = s.kr + j * d;
      if (j < nk) {
        const std::int64_t pos = t.k_index ? t.k_index[k0 + j] : k0 + j;
        bwd_load_row(t.dtype, t.k, t.k_row_stride, pos, d, kr);
        float* vrow = s.dk;  // dk is free until the accumulators are cleared below
        bwd_load_row(t.dtype, t.v, t.v_row_stride, pos, d, vrow);
        for (int c = 0; c < d; ++c) {
          s.kt[c * kBwdKT + j] = kr[c];
          s.vt[c * kBwdKT + j] = vrow[c];
        }
        s.bias[j] = t.key_bias ? t.key_bias[k0 + j] : 0.0f;
        s.kpos[j] = static_cast<std::int32_t>(pos);
      } else {
        for (int c = 0; c < d; ++c) {
          kr[c] = 0.0f;
          s.kt[c * kBwdKT + j] = 0.0f;
          s.vt[c * kBwdKT + j] = 0.0f;
        }
        s.bias[j] = -__builtin_inff();
        s.kpos[j] = 0;
      }
    }
    if (t.dk != nullptr)
      for (int i = 0; i < kBwdKT * d; ++i) s.dk[i] = s.dv[i] = 0.0f;
    for (std::int64_t r0 = row_begin; r0 < t.rows; r0 += kBwdRT) {
      const std::int64_t nr = t.rows - r0 < kBwdRT ? t.rows - r0 : kBwdRT;
      // Pack the row tile: q, dO, L (+inf for padded rows and rows that see nothing), delta.
      for (int i = 0; i < kBwdRT; ++i) {
        float* q = s.q + i * d;
        float* o = s.dout + i * d;
        if (i < nr) {
          const std::int64_t row = t.q_index ? t.q_index[r0 + i] : r0 + i;
          bwd_load_row(t.dtype, t.q, t.q_row_stride, row, d, q);
          const float* g = t.d_out + row * t.d_out_row_stride;
          for (int c = 0; c < d; ++c) o[c] = g[c];
          s.lse[i] = t.lse[row];
          s.delta[i] = t.delta[row];
          if (t.dq != nullptr) dq_rows[i] = t.dq + row * t.dq_row_stride;
        } else {
          for (int c = 0; c < d; ++c) q[c] = o[c] = 0.0f;
          s.lse[i] = __builtin_inff();
          s.delta[i] = 0.0f;
        }
      }
      // S = Q K^T, then P = e^{scale S + bias - L} with the masks; dP = dO V^T; dS = P (dP - delta).
      bwd_mm_abt(s.q, s.kt, d, s.p);
      bwd_mm_abt(s.dout, s.vt, d, s.ds);
      const bwd_vf sc = bwd_splat(t.scale);
      // Causal tiles below the diagonal are fully visible: no mask.
      const bool mask_causal = causal && k0 + kBwdKT - 1 > r0 + t.causal_diagonal;
      for (int i = 0; i < kBwdRT; ++i) {
        if (kBwdStrict && s.lse[i] == __builtin_inff()) {  // padded, or saw no key: left out, whatever S is
          for (int j = 0; j < kBwdKT; ++j) s.p[i * kBwdKT + j] = s.ds[i * kBwdKT + j] = -0.0f;
          continue;
        }
        const bwd_vf l = bwd_splat(s.lse[i]), dl = bwd_splat(s.delta[i]);
        const std::int64_t row = r0 + i;
        for (int v = 0; v < kBwdKV; ++v) {
          float* pp = s.p + i * kBwdKT + v * kBwdW;
          float* dd = s.ds + i * kBwdKT + v * kBwdW;
          bwd_vf x = bwd_load(pp) * sc + bwd_load(s.bias + v * kBwdW) - l;
          if (mask_causal || (masked_windows && i < nr)) {
            bwd_vi slot;
            for (int e = 0; e < kBwdW; ++e) slot[e] = v * kBwdW + e;
            bwd_vi visible = slot >= 0;  // all lanes true
            if (mask_causal) {
              // key slot k0 + j visible iff k0 + j <= row + diagonal
              const std::int64_t limit = row + t.causal_diagonal - k0;
              const int lim = limit < -1 ? -1 : (limit > kBwdKT ? kBwdKT : static_cast<int>(limit));
              visible = visible & (slot <= lim);
            }
            if (masked_windows && i < nr) {
              const std::int32_t w0 = t.row_window[2 * (r0 + i)], w1 = t.row_window[2 * (r0 + i) + 1];
              bwd_vi pos;
              __builtin_memcpy(&pos, s.kpos + v * kBwdW, sizeof pos);
              const bwd_vi inside = (pos >= w0) & (pos < w1);
              bwd_vi from_window;
              for (int e = 0; e < kBwdW; ++e) from_window[e] = k0 + v * kBwdW + e >= t.window_from ? -1 : 0;
              visible = visible & (inside ^ ~from_window);  // (j < window_from) != inside
            }
            x = visible ? x : bwd_splat(-__builtin_inff());
          }
          const bwd_vf p = bwd_exp(x);
          if constexpr (kBwdStrict) {
            const bwd_vi left_out = x == bwd_splat(-__builtin_inff());
            bwd_store(pp, left_out ? bwd_splat(-0.0f) : p);
            bwd_store(dd, left_out ? bwd_splat(-0.0f) : p * (bwd_load(dd) - dl));
          } else {
            bwd_store(pp, p);
            bwd_store(dd, p * (bwd_load(dd) - dl));
          }
        }
      }
      if (t.dk != nullptr) {
        bwd_acc_atb(s.p, s.dout, d, s.dv);
        bwd_acc_atb(s.ds, s.q, d, s.dk);
      }
      if (t.dq != nullptr) bwd_acc_ab(s.ds, s.kr, d, t.scale, nr, dq_rows);
    }
    if (t.dk != nullptr)
      for (std::int64_t j = 0; j < nk; ++j) {
        float* dk = t.dk + (k0 + j) * t.dkv_row_stride;
        float* dv = t.dv + (k0 + j) * t.dkv_row_stride;
        for (int c = 0; c < d; ++c) {
          dk[c] += t.scale * s.dk[j * d + c];
          dv[c] += s.dv[j * d + c];
        }
      }
  }
}

}  // namespace

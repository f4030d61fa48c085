// Fused attention on tensor cores for fp16 and bf16, flash-attention-2 style:
// each warp owns 16 query rows and keeps them in registers as mma fragments;
// the block walks the keys 64 at a time through shared memory. S = Q K^T and
// O += P V are mma.sync m16n8k16 with float accumulators, the softmax is
// online in float (exp2 with log2(e) folded into the scale), and O is divided
// by the row sums once at the end. K and V tiles alternate on one buffer each:
// V of a tile copies in (cp.async) while its scores are computed, the next K
// while P V is. The head dim is compiled in, padded to 16 with zeros.
#include <sstream>

#include "codegen.h"

namespace kiln::codegen {

std::string attention_mma_source(DType dtype, int64_t head_dim, const std::optional<Params>& specialize, std::optional<DType> mask) {
  const char* type = dtype == DType::kBFloat16 ? "bf16" : "f16";
  std::ostringstream s;
  s << prelude() << params_constants<AttentionParams>(specialize);
  s << "#define KILN_D " << head_dim << "\n#define KILN_DP " << (head_dim + 15) / 16 * 16 << "\n";
  s << "#define KILN_MMA \"mma.sync.aligned.m16n8k16.row.col.f32." << type << "." << type << ".f32\"\n";
  s << "#define KILN_PACK \"cvt.rn." << type << "x2.f32\"\n";
  s << R"(#define KILN_BN 64             // keys per tile
#define KILN_LD (KILN_DP + 8)  // tile row pitch: 16 bytes past the row puts ldmatrix's 8 rows on distinct banks
#define KILN_NEG_INF (-1.0f / 0.0f)

__device__ __forceinline__ unsigned kiln_smem(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }
// Two floats rounded into one register, lo in the low half (the mma operand order).
__device__ __forceinline__ unsigned kiln_pack(float lo, float hi) {
  unsigned r;
  asm(KILN_PACK " %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
__device__ __forceinline__ float kiln_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
// c (16x8) += a (16x16, row-major) b (16x8, column-major).
__device__ __forceinline__ void kiln_mma(float* c, const unsigned* a, unsigned b0, unsigned b1) {
  asm(KILN_MMA " {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// Four 8x8 matrices of 16-bit values; lanes 8i..8i+7 give the row addresses of matrix i.
__device__ __forceinline__ void kiln_ldsm(unsigned* r, unsigned addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void kiln_ldsm_t(unsigned* r, unsigned addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
// 16 bytes global -> shared, asynchronous; bytes < 16 fills the rest with zeros.
__device__ __forceinline__ void kiln_copy16(unsigned dst, const void* src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void kiln_wait_copies() { asm volatile("cp.async.wait_all;" ::: "memory"); }

// Rows [row0, row0 + rows) of a [len, KILN_D] slice (row stride ss, element
// stride sd) into a tile of pitch KILN_LD, zeros past len and past the head
// dim. vec: 16-byte asynchronous copies (the host checked sd == 1 and the
// alignment; kiln_wait_copies before reading), else one element at a time.
__device__ __forceinline__ void kiln_load_tile(unsigned short* tile, const unsigned short* src, long long len, long long row0,
                                               int rows, long long ss, long long sd, bool vec, int threads) {
  if (vec) {
    for (int c = threadIdx.x; c < rows * (KILN_DP / 8); c += threads) {
      const int r = c / (KILN_DP / 8), col = c % (KILN_DP / 8) * 8;
      const bool in = row0 + r < len && col < KILN_D;
      kiln_copy16(kiln_smem(tile + r * KILN_LD + col), in ? src + (row0 + r) * ss + col : src, in ? 16 : 0);
    }
  } else {
    for (int e = threadIdx.x; e < rows * KILN_DP; e += threads) {
      const int r = e / KILN_DP, col = e % KILN_DP;
      tile[r * KILN_LD + col] = row0 + r < len && col < KILN_D ? src[(row0 + r) * ss + col * sd] : (unsigned short)0;
    }
  }
}

extern "C" __global__ void __launch_bounds__(128) kiln_kernel(unsigned short* __restrict__ out, const unsigned short* __restrict__ q,
                                                              const unsigned short* __restrict__ k,
                                                              const unsigned short* __restrict__ v, )";
  if (mask) s << "const " << c_type(*mask) << "* __restrict__ mask, ";
  s << "KParams p) {\n" << params_binding<AttentionParams>(specialize);
  if (mask == DType::kBool) s << "  const float mask_fill = (float)__longlong_as_double(prm.mask_fill_bits);\n";
  s << R"(  __shared__ __align__(16) unsigned short ks[KILN_BN * KILN_LD];
  __shared__ __align__(16) unsigned short vs[KILN_BN * KILN_LD];  // holds Q while an item starts
  const long long BH = prm.batch * prm.heads, Sq = prm.q_len, Sk = prm.kv_len;
  const float scale = (float)(__longlong_as_double(prm.scale_bits) * 1.4426950408889634);  // log2(e): scores in base 2
  const bool causal = prm.causal != 0;
  const long long vector_bits = prm.vector_bits;
  const bool vq = (vector_bits & 1) && ((unsigned long long)q & 15) == 0, vk = (vector_bits & 2) && ((unsigned long long)k & 15) == 0,
             vv = (vector_bits & 4) && ((unsigned long long)v & 15) == 0, vo = (vector_bits & 8) && ((unsigned long long)out & 3) == 0;
  const int warps = (int)prm.warps, threads = 32 * warps, rows = 16 * warps;
  const long long row_tiles = (Sq + rows - 1) / rows;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  // Each lane's ldmatrix row (in elements) for the A fragments of Q, the B
  // fragments of K (two key octets by two head-dim octets) and of V (transposed).
  const int q_lane = (warp * 16 + (lane & 15)) * KILN_LD + (lane >> 4) * 8;
  const int k_lane = ((lane & 7) + (lane >> 4) * 8) * KILN_LD + ((lane >> 3) & 1) * 8;
  const int v_lane = ((lane & 7) + ((lane >> 3) & 1) * 8) * KILN_LD + (lane >> 4) * 8;
  const unsigned ks0 = kiln_smem(ks), vs0 = kiln_smem(vs);
  for (long long item = blockIdx.x; item < prm.items; item += gridDim.x) {
    // The last row tiles first: under a causal mask they have the most keys.
    const long long bh = item % BH, b = bh / prm.heads, h = bh % prm.heads;
    const long long q0 = (row_tiles - 1 - item / BH) * rows, qw = q0 + warp * 16;
    const unsigned short* qp = q + prm.q_view[0] + b * prm.q_view[1] + h * prm.q_view[2];
    const unsigned short* kp = k + prm.k_view[0] + b * prm.k_view[1] + h * prm.k_view[2];
    const unsigned short* vp = v + prm.v_view[0] + b * prm.v_view[1] + h * prm.v_view[2];
)";
  if (mask) s << "    const long long mb = b * prm.mask_view[0] + h * prm.mask_view[1];\n";
  s << R"(
    long long key_tiles = (Sk + KILN_BN - 1) / KILN_BN;
    if (causal) {  // key j > query i is left out: no tile past the block's last row
      const long long last_row = (q0 + rows < Sq ? q0 + rows : Sq) - 1;
      key_tiles = key_tiles < last_row / KILN_BN + 1 ? key_tiles : last_row / KILN_BN + 1;
    }
    kiln_load_tile(vs, qp, Sq, q0, rows, prm.q_view[3], prm.q_view[4], vq, threads);
    kiln_load_tile(ks, kp, Sk, 0, KILN_BN, prm.k_view[3], prm.k_view[4], vk, threads);
    kiln_wait_copies();
    __syncthreads();
    unsigned qf[KILN_DP / 16][4];
    #pragma unroll
    for (int kk = 0; kk < KILN_DP / 16; ++kk) kiln_ldsm(qf[kk], vs0 + 2 * (q_lane + kk * 16));
    __syncthreads();  // Q is in registers: vs takes V from here on
    float o[KILN_DP / 8][4] = {};
    float m[2] = {KILN_NEG_INF, KILN_NEG_INF}, l[2] = {0.0f, 0.0f};  // rows g and g + 8 of the warp (l: this lane's part)
    for (long long tile = 0; tile < key_tiles; ++tile) {
      const long long n0 = tile * KILN_BN;
      kiln_load_tile(vs, vp, Sk, n0, KILN_BN, prm.v_view[3], prm.v_view[4], vv, threads);
      // Warp-uniform: rows past Sq, or (causal) rows all before the tile's first key, add nothing.
      const bool active = qw < Sq && !(causal && n0 > qw + 15);
      float sc[KILN_BN / 8][4] = {};
      if (active) {
        #pragma unroll
        for (int kk = 0; kk < KILN_DP / 16; ++kk)
          #pragma unroll
          for (int np = 0; np < KILN_BN / 16; ++np) {
            unsigned kf[4];
            kiln_ldsm(kf, ks0 + 2 * (k_lane + np * 16 * KILN_LD + kk * 16));
            kiln_mma(sc[2 * np], qf[kk], kf[0], kf[1]);
            kiln_mma(sc[2 * np + 1], qf[kk], kf[2], kf[3]);
          }
        // Lane (g, t) holds rows g, g + 8 and keys 8 nt + 2t, +1 of each 8-key column nt.
        const bool edge = n0 + KILN_BN > Sk || (causal && n0 + KILN_BN - 1 > qw);
        float top[2] = {m[0], m[1]};
        #pragma unroll
        for (int nt = 0; nt < KILN_BN / 8; ++nt)
          #pragma unroll
          for (int e = 0; e < 4; ++e) {
            float x = sc[nt][e] * scale;
)";
  if (mask)  // every score reads its mask element (in base 2, as the scores are)
    s << "            {\n              const long long key = n0 + nt * 8 + 2 * t + (e & 1), row = qw + g + (e >> 1) * 8;\n"
      << "              if (key < Sk && row < Sq) "
      << attention_mask_stmt(*mask, "x", "mb + row * prm.mask_view[2] + key * prm.mask_view[3]", "1.4426950408889634f") << "\n"
      << "            }\n";
  s << R"(            if (edge) {
              const long long key = n0 + nt * 8 + 2 * t + (e & 1), row = qw + g + (e >> 1) * 8;
              if (key >= Sk || (causal && key > row)) x = KILN_NEG_INF;
            }
            sc[nt][e] = x;
            top[e >> 1] = fmaxf(top[e >> 1], x);
          }
        #pragma unroll
        for (int r = 0; r < 2; ++r) {
          top[r] = fmaxf(top[r], __shfl_xor_sync(0xffffffffu, top[r], 1));
          top[r] = fmaxf(top[r], __shfl_xor_sync(0xffffffffu, top[r], 2));
          // A row whose keys so far are all left out keeps m = -inf; subtracting 0 then keeps its terms 0, not NaN.
          const float base = top[r] == KILN_NEG_INF ? 0.0f : top[r];
          const float correction = kiln_exp2(m[r] - base);
          m[r] = top[r];
          l[r] *= correction;
          #pragma unroll
          for (int nt = 0; nt < KILN_DP / 8; ++nt) {
            o[nt][2 * r] *= correction;
            o[nt][2 * r + 1] *= correction;
          }
          #pragma unroll
          for (int nt = 0; nt < KILN_BN / 8; ++nt) {
            sc[nt][2 * r] = kiln_exp2(sc[nt][2 * r] - base);
            sc[nt][2 * r + 1] = kiln_exp2(sc[nt][2 * r + 1] - base);
            l[r] += sc[nt][2 * r] + sc[nt][2 * r + 1];
          }
        }
      }
      kiln_wait_copies();
      __syncthreads();  // V is in; every warp is done with K
      if (tile + 1 < key_tiles) kiln_load_tile(ks, kp, Sk, n0 + KILN_BN, KILN_BN, prm.k_view[3], prm.k_view[4], vk, threads);
      if (active) {
        // The scores' accumulator layout is the A fragment layout of P: no shuffles.
        #pragma unroll
        for (int kk = 0; kk < KILN_BN / 16; ++kk) {
          const unsigned pf[4] = {kiln_pack(sc[2 * kk][0], sc[2 * kk][1]), kiln_pack(sc[2 * kk][2], sc[2 * kk][3]),
                                  kiln_pack(sc[2 * kk + 1][0], sc[2 * kk + 1][1]), kiln_pack(sc[2 * kk + 1][2], sc[2 * kk + 1][3])};
          #pragma unroll
          for (int dp = 0; dp < KILN_DP / 16; ++dp) {
            unsigned vf[4];
            kiln_ldsm_t(vf, vs0 + 2 * (v_lane + kk * 16 * KILN_LD + dp * 16));
            kiln_mma(o[2 * dp], pf, vf[0], vf[1]);
            kiln_mma(o[2 * dp + 1], pf, vf[2], vf[3]);
          }
        }
      }
      kiln_wait_copies();
      __syncthreads();  // the next K is in; every warp is done with V
    }
    float inv[2];
    #pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float sum = l[r] + __shfl_xor_sync(0xffffffffu, l[r], 1);
      const float total = sum + __shfl_xor_sync(0xffffffffu, sum, 2);
      inv[r] = total == 0.0f && prm.empty_rows_zero ? 0.0f : 1.0f / total;  // a row without keys: 0, where asked
    }
    #pragma unroll
    for (int r = 0; r < 2; ++r) {
      const long long row = qw + g + 8 * r;
      if (row >= Sq) continue;
      unsigned short* orow = out + prm.out_view[0] + b * prm.out_view[1] + h * prm.out_view[2] + row * prm.out_view[3];
      #pragma unroll
      for (int nt = 0; nt < KILN_DP / 8; ++nt) {
        const int col = nt * 8 + 2 * t;
        const float x0 = o[nt][2 * r] * inv[r], x1 = o[nt][2 * r + 1] * inv[r];
        if (vo) {  // the host checked an even head dim, contiguous and 4-byte aligned rows
          if (col < KILN_D) *(unsigned*)(orow + col) = kiln_pack(x0, x1);
        } else {
          if (col < KILN_D) )" << store_stmt(dtype, "orow", "col * prm.out_view[4]", "x0") << R"(
          if (col + 1 < KILN_D) )" << store_stmt(dtype, "orow", "(col + 1) * prm.out_view[4]", "x1") << R"(
        }
      }
    }
  }
}
)";
  return s.str();
}

}  // namespace kiln::codegen

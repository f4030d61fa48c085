// Fused attention for short sequences: one block per (batch, head, 16 query
// rows), four warps of four rows each. Keys and values pass through shared
// memory 32 at a time; each lane scores one key and the rows keep a running
// (online) softmax, so the scores never leave the chip. All math in float.
#include <sstream>

#include "codegen.h"

namespace kiln::codegen {

std::string attention_mask_stmt(DType mask, const std::string& x, const std::string& index, const std::string& factor) {
  std::string value = load_expr(mask, "mask", index);
  if (mask == DType::kBool) return x + " = " + value + " == (prm.mask_keep != 0) ? " + x + " : mask_fill * " + factor + ";";
  return x + " += " + value + " * " + factor + ";";
}

std::string attention_source(DType dtype, const std::optional<Params>& specialize, std::optional<DType> mask) {
  std::string ct = c_type(dtype);
  auto load = [&](const std::string& ptr, const std::string& index) { return load_expr(dtype, ptr, index); };
  std::ostringstream s;
  s << prelude() << params_constants<AttentionParams>(specialize);
  s << "#define KILN_CHUNK 32\n#define KILN_ROWS 4\n#define KILN_WARPS 4\n#define KILN_MAXD " << kAttentionMaxHeadDim << "\n";
  s << "extern \"C\" __global__ void __launch_bounds__(128) " << kEntry << "(" << ct << "* __restrict__ out, const " << ct
    << "* __restrict__ q, const " << ct << "* __restrict__ k, const " << ct << "* __restrict__ v, ";
  if (mask) s << "const " << c_type(*mask) << "* __restrict__ mask, ";
  s << "KParams p) {\n" << params_binding<AttentionParams>(specialize);
  if (mask == DType::kBool) s << "  const float mask_fill = (float)__longlong_as_double(prm.mask_fill_bits);\n";
  s << R"(  __shared__ float ks[KILN_CHUNK][KILN_MAXD + 1];
  __shared__ float vs[KILN_CHUNK][KILN_MAXD + 1];
  __shared__ float qs[KILN_WARPS][KILN_ROWS][KILN_MAXD];
  const long long H = prm.heads, Sq = prm.q_len, Sk = prm.kv_len, D = prm.head_dim;
  const float scale = (float)__longlong_as_double(prm.scale_bits);
  const bool causal = prm.causal != 0;
  const long long tiles = (Sq + KILN_WARPS * KILN_ROWS - 1) / (KILN_WARPS * KILN_ROWS);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (long long item = blockIdx.x; item < prm.items; item += gridDim.x) {
    const long long bh = item / tiles, b = bh / H, h = bh % H;
    const long long first_row = (item % tiles) * KILN_WARPS * KILN_ROWS + warp * KILN_ROWS;
    const long long qb = prm.q_view[0] + b * prm.q_view[1] + h * prm.q_view[2];
    const long long kb = prm.k_view[0] + b * prm.k_view[1] + h * prm.k_view[2];
    const long long vb = prm.v_view[0] + b * prm.v_view[1] + h * prm.v_view[2];
    const long long ob = prm.out_view[0] + b * prm.out_view[1] + h * prm.out_view[2];
    float m[KILN_ROWS], l[KILN_ROWS], acc[KILN_ROWS][KILN_MAXD / 32];
    for (int r = 0; r < KILN_ROWS; ++r) {
      m[r] = -1.0f / 0.0f;
      l[r] = 0.0f;
      for (int t = 0; t < KILN_MAXD / 32; ++t) acc[r][t] = 0.0f;
      const long long row = first_row + r;
      for (long long d = lane; d < D; d += 32)
        qs[warp][r][d] = row < Sq ? )" << load("q", "qb + row * prm.q_view[3] + d * prm.q_view[4]") << R"( * scale : 0.0f;
    }
    for (long long c0 = 0; c0 < Sk; c0 += KILN_CHUNK) {
      const int n = (int)(Sk - c0 < KILN_CHUNK ? Sk - c0 : KILN_CHUNK);
      __syncthreads();  // the previous tile is consumed
      for (long long e = threadIdx.x; e < (long long)n * D; e += blockDim.x) {
        const long long j = e / D, d = e % D;
        ks[j][d] = )" << load("k", "kb + (c0 + j) * prm.k_view[3] + d * prm.k_view[4]") << R"(;
        vs[j][d] = )" << load("v", "vb + (c0 + j) * prm.v_view[3] + d * prm.v_view[4]") << R"(;
      }
      __syncthreads();
      for (int r = 0; r < KILN_ROWS; ++r) {
        if (first_row + r >= Sq) break;  // warp-uniform
        float score = -1.0f / 0.0f;
        if (lane < n && !(causal && c0 + lane > first_row + r)) {
          score = 0.0f;
          for (long long d = 0; d < D; ++d) score += qs[warp][r][d] * ks[lane][d];
)";
  if (mask)
    s << "          " << attention_mask_stmt(*mask, "score", "b * prm.mask_view[0] + h * prm.mask_view[1] + (first_row + r) * prm.mask_view[2] + (c0 + lane) * prm.mask_view[3]", "1.0f") << "\n";
  s << R"(        }
        const float top = kiln_warp_max(score);
        const float m_new = m[r] > top ? m[r] : top;
        if (m_new == -1.0f / 0.0f) continue;  // every key so far left out (causal): nothing to add yet
        const float correction = expf(m[r] - m_new);
        const float prob = score == -1.0f / 0.0f ? 0.0f : expf(score - m_new);
        l[r] = l[r] * correction + kiln_warp_sum(prob);
        for (int t = 0; t < KILN_MAXD / 32; ++t) acc[r][t] *= correction;
        for (int j = 0; j < n; ++j) {
          const float pj = __shfl_sync(0xffffffffu, prob, j);
          for (int t = 0; t < KILN_MAXD / 32; ++t)
            if (lane + 32 * t < D) acc[r][t] += pj * vs[j][lane + 32 * t];
        }
        m[r] = m_new;
      }
    }
    for (int r = 0; r < KILN_ROWS; ++r) {
      const long long row = first_row + r;
      if (row >= Sq) break;
      for (int t = 0; t < KILN_MAXD / 32; ++t) {
        const long long d = lane + 32 * t;
        if (d < D) )" << store_stmt(dtype, "out", "ob + row * prm.out_view[3] + d * prm.out_view[4]", "(l[r] > 0.0f || !prm.empty_rows_zero ? acc[r][t] / l[r] : 0.0f)") << R"(
      }
    }
    __syncthreads();  // before the next item rewrites qs
  }
}
)";
  return s.str();
}

}  // namespace kiln::codegen

// Matrix products with few rows (batch 1-8 inference): cuBLASLt's tiles are
// mostly idle there, so one small kernel streams the weight once and applies
// bias, activation and residual before the single store. Einsum's generic
// kernel: a thread per output element. Det: a block per matrix.
#include <algorithm>
#include <cstring>
#include <sstream>

#include "codegen.h"
#include "kiln/error.h"

namespace kiln::codegen {

namespace {

std::string activation_expr(const std::string& act, const std::string& v) {
  if (act == "none") return v;
  if (act == "relu") return "(" + v + " < 0.0f ? 0.0f : " + v + ")";
  if (act == "sigmoid") return "(1.0f / (1.0f + expf(-" + v + ")))";
  if (act == "tanh") return "tanhf(" + v + ")";
  if (act == "gelu") return "(0.5f * " + v + " * (1.0f + erff(" + v + " * 0.70710678118654752f)))";
  if (act == "gelu_tanh")
    return "(0.5f * " + v + " * (1.0f + tanhf(0.79788456080286536f * (" + v + " + 0.044715f * " + v + " * " + v + " * " + v + "))))";
  fail(ErrorCode::kInternal, "codegen: unknown activation '", act, "'");
}

}  // namespace

std::string skinny_matmul_source(const SkinnySpec& spec) {
  if (spec.dtype == DType::kFloat64 || !is_floating(spec.dtype))
    fail(ErrorCode::kUnsupported, "skinny matmul in ", dtype_name(spec.dtype));
  std::string ct = c_type(spec.dtype);
  std::ostringstream s;
  s << prelude() << params_constants<SkinnyParams>(spec.specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, const " << ct
    << "* __restrict__ a, const " << ct << "* __restrict__ b";
  if (spec.has_bias) s << ", const " << ct << "* __restrict__ bias";
  if (spec.has_residual) s << ", const " << ct << "* __restrict__ residual";
  s << ", KParams p) {\n" << params_binding<SkinnyParams>(spec.specialize);
  s << "  const int M = (int)prm.rows;\n  const long long N = prm.cols, K = prm.depth;\n"
       "  const float alpha = (float)__longlong_as_double(prm.alpha_bits);\n";
  s << "  float acc[" << kSkinnyMaxRows << "];\n#pragma unroll\n  for (int m = 0; m < " << kSkinnyMaxRows << "; ++m) acc[m] = 0.0f;\n";
  if (spec.trans_b) {
    // A warp per output column: lanes stride along the contiguous row of B.
    s << "  const long long n = (long long)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);\n";
    s << "  const int lane = threadIdx.x & 31;\n  if (n >= N) return;\n";
    s << "  const " << ct << "* row = b + n * K;\n";
    s << "  for (long long k = lane; k < K; k += 32) {\n    const float w = " << load_expr(spec.dtype, "row", "k") << ";\n";
    s << "#pragma unroll\n    for (int m = 0; m < " << kSkinnyMaxRows << "; ++m) if (m < M) acc[m] += " << load_expr(spec.dtype, "a", "m * K + k")
      << " * w;\n  }\n";
    s << "#pragma unroll\n  for (int m = 0; m < " << kSkinnyMaxRows << "; ++m) acc[m] = kiln_warp_sum(acc[m]);\n";
    s << "  if (lane != 0) return;\n";
  } else {
    // 32 columns per block; 8 groups of 32 threads split K and meet in shared memory.
    s << "  __shared__ float part[8][" << kSkinnyMaxRows << "][32];\n";
    s << "  const int lane = threadIdx.x & 31, group = threadIdx.x >> 5;\n";
    s << "  const long long n = (long long)blockIdx.x * 32 + lane;\n";
    s << "  if (n < N)\n    for (long long k = group; k < K; k += 8) {\n      const float w = " << load_expr(spec.dtype, "b", "k * N + n")
      << ";\n";
    s << "#pragma unroll\n      for (int m = 0; m < " << kSkinnyMaxRows << "; ++m) if (m < M) acc[m] += "
      << load_expr(spec.dtype, "a", "m * K + k") << " * w;\n    }\n";
    s << "#pragma unroll\n  for (int m = 0; m < " << kSkinnyMaxRows << "; ++m) part[group][m][lane] = acc[m];\n";
    s << "  __syncthreads();\n  if (group != 0 || n >= N) return;\n";
    s << "#pragma unroll\n  for (int m = 0; m < " << kSkinnyMaxRows << "; ++m) {\n    float t = 0.0f;\n";
    s << "    for (int g = 0; g < 8; ++g) t += part[g][m][lane];\n    acc[m] = t;\n  }\n";
  }
  s << "#pragma unroll\n  for (int m = 0; m < " << kSkinnyMaxRows << "; ++m) {\n    if (m >= M) break;\n";
  s << "    float v = alpha * acc[m]" << (spec.has_bias ? " + " + load_expr(spec.dtype, "bias", "n") : "") << ";\n";
  s << "    v = " << activation_expr(spec.activation, "v") << ";\n";
  if (spec.has_residual) s << "    v += " << load_expr(spec.dtype, "residual", "m * N + n") << ";\n";
  s << "    " << store_stmt(spec.dtype, "out", "m * N + n", "v") << "\n  }\n}\n";
  return s.str();
}

std::string einsum_source(DType dtype, int operands, const std::optional<Params>& specialize) {
  if (dtype == DType::kBool) fail(ErrorCode::kUnsupported, "Einsum on bool tensors");
  if (operands < 1 || operands > kEinsumMaxOperands)
    fail(ErrorCode::kUnsupported, "Einsum with ", operands, " operands (the kernel takes 1 to ", kEinsumMaxOperands, ")");
  bool floating = is_floating(dtype);
  std::string ct = c_type(dtype), acc = floating ? compute_type(dtype) : "long long";
  auto each = [&](const std::string& text) {  // `text` once per operand, with # as its number
    std::string all;
    for (int t = 0; t < operands; ++t) {
      std::string one = text;
      for (size_t at = one.find('#'); at != std::string::npos; at = one.find('#', at)) one.replace(at, 1, std::to_string(t));
      all += one;
    }
    return all;
  };
  std::ostringstream s;
  s << prelude() << params_constants<EinsumParams>(specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out"
    << each(", const " + ct + "* __restrict__ in#") << ", KParams p) {\n" << params_binding<EinsumParams>(specialize);
  s << "  const long long n = prm.n, sum_count = prm.sum_count;\n  const int out_rank = (int)prm.out_rank, sum_rank = (int)prm.sum_rank;\n";
  s << "  for (long long o = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; o < n; o += (long long)gridDim.x * " << kBlock << ") {\n";
  s << "    long long rem = o" << each(", off# = 0") << ";\n";
  s << "#pragma unroll\n    for (int d = " << kMaxRank - 1 << "; d >= 0; --d) {\n      if (d >= out_rank) continue;\n"
    << "      const long long c = rem % prm.out_dims[d];\n      rem /= prm.out_dims[d];\n" << each("      off# += c * prm.out_strides[#][d];\n")
    << "    }\n";
  s << "    " << acc << " acc = 0;\n    long long idx[" << kMaxRank << "] = {0};\n";
  // The summed labels as an odometer: the last one moves fastest.
  std::string product;
  for (int t = 0; t < operands; ++t)
    product += (t ? " * " : "") + (floating ? load_expr(dtype, "in" + std::to_string(t), "off" + std::to_string(t))
                                             : "(long long)in" + std::to_string(t) + "[off" + std::to_string(t) + "]");
  s << "    for (long long i = 0; i < sum_count; ++i) {\n      acc += " << product << ";\n";
  s << "#pragma unroll\n      for (int d = " << kMaxRank - 1 << "; d >= 0; --d) {\n        if (d >= sum_rank) continue;\n"
    << "        if (++idx[d] < prm.sum_dims[d]) {\n" << each("          off# += prm.sum_strides[#][d];\n") << "          break;\n        }\n"
    << "        idx[d] = 0;\n" << each("        off# -= (prm.sum_dims[d] - 1) * prm.sum_strides[#][d];\n") << "      }\n    }\n";
  s << "    " << store_stmt(dtype, "out", "o", "acc") << "\n  }\n}\n";
  return s.str();
}

std::string det_source(DType dtype, const std::optional<Params>& specialize) {
  if (!is_floating(dtype)) fail(ErrorCode::kUnsupported, "Det of ", dtype_name(dtype));
  // A specialized variant claims only the shared memory its matrices need.
  long long size = kDetMaxSize;
  if (specialize) {
    DetParams q;
    std::memcpy(&q, specialize->v, sizeof q);
    size = std::max(1LL, q.size);
  }
  std::string ct = c_type(dtype);
  std::ostringstream s;
  s << prelude() << params_constants<DetParams>(specialize);
  // Column k at a time: one thread picks the pivot row (the largest magnitude,
  // the first of equals, as the reference), the block swaps it up and
  // eliminates below it. The determinant is the pivots' product, negated per swap.
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, const " << ct
    << "* __restrict__ x, KParams p) {\n" << params_binding<DetParams>(specialize);
  s << "  __shared__ double a[" << size * size << "];\n  __shared__ double det;\n  __shared__ long long pivot;\n";
  s << "  const long long n = prm.size, cells = n * n;\n";
  s << "  for (long long m = blockIdx.x; m < prm.n; m += gridDim.x) {\n";
  s << "    for (long long c = threadIdx.x; c < cells; c += blockDim.x) a[c] = (double)" << load_expr(dtype, "x", "m * cells + c") << ";\n";
  s << "    if (threadIdx.x == 0) det = 1;\n    __syncthreads();\n";
  s << "    for (long long k = 0; k < n; ++k) {\n";
  s << "      if (threadIdx.x == 0) {\n        long long best = k;\n"
       "        for (long long r = k + 1; r < n; ++r) if (fabs(a[r * n + k]) > fabs(a[best * n + k])) best = r;\n"
       "        pivot = best;\n        det = (best != k ? -det : det) * a[best * n + k];\n      }\n      __syncthreads();\n";
  s << "      if (det == 0) break;  // uniform: every thread reads it after the barrier\n";
  s << "      const long long pr = pivot;\n";
  s << "      if (pr != k) for (long long j = threadIdx.x; j < n; j += blockDim.x) {\n"
       "        const double t = a[k * n + j]; a[k * n + j] = a[pr * n + j]; a[pr * n + j] = t;\n      }\n      __syncthreads();\n";
  s << "      const long long rest = n - k - 1;\n";
  s << "      for (long long c = threadIdx.x; c < rest * rest; c += blockDim.x) {\n"
       "        const long long r = k + 1 + c / rest, j = k + 1 + c % rest;\n"
       "        a[r * n + j] -= a[r * n + k] / a[k * n + k] * a[k * n + j];\n      }\n      __syncthreads();\n    }\n";
  s << "    if (threadIdx.x == 0) " << store_stmt(dtype, "out", "m", "det") << "\n    __syncthreads();\n  }\n}\n";
  return s.str();
}

}  // namespace kiln::codegen

// Row kernels: one block per row of `len` elements spaced `inner` apart;
// softmax, log-softmax, hardmax and layer norm, all accumulating in float (double for float64).
// Instance and group norm on the same block-per-row layout; LRN a thread per element.
#include <limits>
#include <sstream>

#include "codegen.h"
#include "kiln/error.h"

namespace kiln::codegen {

std::string row_source(const RowSpec& spec) {
  std::string t = compute_type(spec.dtype), ct = c_type(spec.dtype);
  bool dbl = spec.dtype == DType::kFloat64;
  std::ostringstream s;
  s << prelude() << params_constants<RowParams>(spec.specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out";
  if (spec.has_stats) s << ", float* __restrict__ mean_out, float* __restrict__ inv_out";
  s << ", const " << ct << "* __restrict__ x";
  if (spec.op == RowOp::kLayerNorm && spec.has_scale) s << ", const " << ct << "* __restrict__ scale";
  if (spec.op == RowOp::kLayerNorm && spec.has_bias) s << ", const " << ct << "* __restrict__ bias";
  s << ", KParams p) {\n" << params_binding<RowParams>(spec.specialize);
  s << "  const long long rows = prm.rows, len = prm.len, inner = prm.inner;\n";
  s << "  for (long long row = blockIdx.x; row < rows; row += gridDim.x) {\n";
  s << "    const long long base = (row / inner) * len * inner + (row % inner);\n";
  auto at = [](const std::string& k) { return "base + (" + k + ") * inner"; };
  if (spec.op == RowOp::kLayerNorm) {
    // Two passes (mean, then squared deviations): no cancellation for rows far from zero.
    s << "    " << t << " sum = 0, sq = 0;\n";
    s << "    for (long long k = threadIdx.x; k < len; k += blockDim.x) sum += " << load_expr(spec.dtype, "x", at("k")) << ";\n";
    s << "    sum = kiln_block_sum(sum);\n";
    s << "    const " << t << " mean = sum / (" << t << ")len;\n";
    s << "    for (long long k = threadIdx.x; k < len; k += blockDim.x) { const " << t << " d = " << load_expr(spec.dtype, "x", at("k"))
      << " - mean; sq += d * d; }\n";
    s << "    __syncthreads();\n    sq = kiln_block_sum(sq);\n";
    s << "    const " << t << " var = sq / (" << t << ")len;\n";
    s << "    const " << t << " inv = (" << t << ")1 / " << (dbl ? "sqrt" : "sqrtf") << "(var + (" << t << ")" << spec.epsilon << ");\n";
    if (spec.has_stats) s << "    if (threadIdx.x == 0) { mean_out[row] = (float)mean; inv_out[row] = (float)inv; }\n";
    s << "    for (long long k = threadIdx.x; k < len; k += blockDim.x) {\n";
    s << "      " << t << " v = (" << load_expr(spec.dtype, "x", at("k")) << " - mean) * inv;\n";
    if (spec.has_scale) s << "      v *= " << load_expr(spec.dtype, "scale", "k") << ";\n";
    if (spec.has_bias) s << "      v += " << load_expr(spec.dtype, "bias", "k") << ";\n";
    s << "      " << store_stmt(spec.dtype, "out", at("k"), "v") << "\n    }\n";
  } else if (spec.op == RowOp::kHardmax) {  // 1 at the first maximum, 0 elsewhere
    s << "    " << t << " mx = -" << (dbl ? "1.0/0.0" : "1.0f/0.0f") << ";\n";
    s << "    for (long long k = threadIdx.x; k < len; k += blockDim.x) { const " << t << " v = "
      << load_expr(spec.dtype, "x", at("k")) << "; mx = v > mx ? v : mx; }\n";
    s << "    mx = kiln_block_max(mx);\n    __syncthreads();\n";
    s << "    long long first = -len;\n";
    s << "    for (long long k = threadIdx.x; k < len; k += blockDim.x) if (" << load_expr(spec.dtype, "x", at("k"))
      << " == mx && -k > first) first = -k;\n";
    s << "    first = -kiln_block_max(first);\n";
    s << "    for (long long k = threadIdx.x; k < len; k += blockDim.x) " << store_stmt(spec.dtype, "out", at("k"), "(k == first ? 1 : 0)")
      << "\n";
  } else {
    std::string ex = dbl ? "exp" : "expf", lg = dbl ? "log" : "logf";
    s << "    " << t << " mx = -" << (dbl ? "1.0/0.0" : "1.0f/0.0f") << ";\n";
    s << "    for (long long k = threadIdx.x; k < len; k += blockDim.x) { const " << t << " v = "
      << load_expr(spec.dtype, "x", at("k")) << "; mx = v > mx ? v : mx; }\n";
    s << "    mx = kiln_block_max(mx);\n    __syncthreads();\n";
    s << "    " << t << " sum = 0;\n";
    s << "    for (long long k = threadIdx.x; k < len; k += blockDim.x) sum += " << ex << "("
      << load_expr(spec.dtype, "x", at("k")) << " - mx);\n";
    s << "    sum = kiln_block_sum(sum);\n";
    s << "    for (long long k = threadIdx.x; k < len; k += blockDim.x) {\n";
    s << "      const " << t << " v = " << load_expr(spec.dtype, "x", at("k")) << " - mx;\n";
    s << "      " << store_stmt(spec.dtype, "out", at("k"), spec.op == RowOp::kLogSoftmax ? "v - " + lg + "(sum)" : ex + "(v) / sum") << "\n";
    s << "    }\n";
  }
  s << "    __syncthreads();\n  }\n}\n";
  return s.str();
}

namespace {

// A double attribute compiled into source, exactly (no precision lost in printing).
std::string literal(double v, bool dbl) {
  std::ostringstream out;
  out.precision(std::numeric_limits<double>::max_digits10);
  out << v;
  return (dbl ? "(double)" : "(float)") + out.str();
}

}  // namespace

std::string group_norm_source(const GroupNormSpec& spec) {
  std::string t = compute_type(spec.dtype), ct = c_type(spec.dtype);
  bool dbl = spec.dtype == DType::kFloat64;
  std::ostringstream s;
  s << prelude() << params_constants<GroupNormParams>(spec.specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, const " << ct
    << "* __restrict__ x, const " << ct << "* __restrict__ scale, const " << ct << "* __restrict__ bias, KParams p) {\n";
  s << params_binding<GroupNormParams>(spec.specialize);
  s << "  const long long rows = prm.rows, len = prm.len, spatial = prm.spatial;\n";
  s << "  for (long long row = blockIdx.x; row < rows; row += gridDim.x) {\n";
  s << "    const long long base = row * len, first_channel = (row % prm.groups) * (len / spatial);\n";
  // Two passes (mean, then squared deviations), as layer norm: no cancellation for rows far from zero.
  s << "    " << t << " sum = 0, sq = 0;\n";
  s << "    for (long long k = threadIdx.x; k < len; k += blockDim.x) sum += " << load_expr(spec.dtype, "x", "base + k") << ";\n";
  s << "    sum = kiln_block_sum(sum);\n";
  s << "    const " << t << " mean = sum / (" << t << ")len;\n";
  s << "    for (long long k = threadIdx.x; k < len; k += blockDim.x) { const " << t << " d = "
    << load_expr(spec.dtype, "x", "base + k") << " - mean; sq += d * d; }\n";
  s << "    __syncthreads();\n    sq = kiln_block_sum(sq);\n";
  s << "    const " << t << " inv = (" << t << ")1 / " << (dbl ? "sqrt" : "sqrtf") << "(sq / (" << t << ")len + "
    << literal(spec.epsilon, dbl) << ");\n";
  s << "    for (long long k = threadIdx.x; k < len; k += blockDim.x) {\n";
  s << "      const long long c = first_channel + k / spatial;\n";
  s << "      const " << t << " v = (" << load_expr(spec.dtype, "x", "base + k") << " - mean) * inv * "
    << load_expr(spec.dtype, "scale", "c") << " + " << load_expr(spec.dtype, "bias", "c") << ";\n";
  s << "      " << store_stmt(spec.dtype, "out", "base + k", "v") << "\n    }\n";
  s << "    __syncthreads();\n  }\n}\n";
  return s.str();
}

std::string lrn_source(const LrnSpec& spec) {
  std::string t = compute_type(spec.dtype), ct = c_type(spec.dtype);
  bool dbl = spec.dtype == DType::kFloat64;
  int64_t before = (spec.size - 1) / 2, after = spec.size - 1 - before;
  std::ostringstream s;
  s << prelude() << params_constants<LrnParams>(spec.specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, const " << ct
    << "* __restrict__ x, KParams p) {\n";
  s << params_binding<LrnParams>(spec.specialize);
  s << "  const long long n = prm.n, channels = prm.channels, spatial = prm.spatial;\n";
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < n; i += (long long)gridDim.x * " << kBlock
    << ") {\n";
  s << "    const long long c = (i / spatial) % channels, at = i - c * spatial;  // at: element i in channel 0\n";
  s << "    const long long lo = c - " << before << "LL < 0 ? 0 : c - " << before << "LL;\n";
  s << "    const long long hi = c + " << after << "LL >= channels ? channels - 1 : c + " << after << "LL;\n";
  s << "    " << t << " sq = 0;\n";
  s << "    for (long long j = lo; j <= hi; ++j) { const " << t << " v = " << load_expr(spec.dtype, "x", "at + j * spatial")
    << "; sq += v * v; }\n";
  s << "    const " << t << " d = " << (dbl ? "pow" : "powf") << "(" << literal(spec.bias, dbl) << " + "
    << literal(spec.alpha / double(spec.size), dbl) << " * sq, " << literal(spec.beta, dbl) << ");\n";
  s << "    " << store_stmt(spec.dtype, "out", "i", load_expr(spec.dtype, "x", "i") + " / d") << "\n  }\n}\n";
  return s.str();
}

}  // namespace kiln::codegen

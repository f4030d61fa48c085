// Row kernels: softmax, log-softmax, hardmax, layer norm and Lp norm over rows of `len`
// elements spaced `inner` apart, all accumulating in float (double for float64).
// Contiguous rows up to kRowSpan * kBlock elements live in registers (a group of
// lanes or a block per row; see RowPath); others take a block per row and one
// pass over memory per statistic. Instance and group norm on the same
// block-per-row layout; LRN a thread per element.
#include <limits>
#include <sstream>

#include "codegen.h"
#include "kiln/error.h"

namespace kiln::codegen {

namespace {

// Elements per 16-byte access.
int64_t vector_width(DType dtype) { return 16 / int64_t(dtype_size(dtype)); }

// The register paths' helpers: storage <-> compute conversion, W-element
// accesses (one 16-byte access for the vector width) and reductions over a
// row's threads (shuffles within a group of lanes, or the whole block).
std::string register_helpers(DType dtype) {
  bool half = dtype == DType::kFloat16, bf16 = dtype == DType::kBFloat16;
  std::ostringstream s;
  s << "#define KILN_SPAN " << kRowSpan << "\n#define KILN_VEC " << vector_width(dtype) << "\n";
  s << "typedef " << c_type(dtype) << " kiln_s;\ntypedef " << compute_type(dtype) << " kiln_t;\n";
  s << "__device__ __forceinline__ kiln_t kiln_in(kiln_s v) { return " << (half ? "kiln_h2f(v)" : bf16 ? "kiln_bf2f(v)" : "v")
    << "; }\n";
  s << "__device__ __forceinline__ kiln_s kiln_out(kiln_t v) { return " << (half ? "kiln_f2h(v)" : bf16 ? "kiln_f2bf(v)" : "v")
    << "; }\n";
  s << R"(template <int W> struct alignas(W * sizeof(kiln_s)) kiln_pack { kiln_s e[W]; };
template <int W> __device__ __forceinline__ void kiln_load(const kiln_s* p, kiln_t* r) {
  const kiln_pack<W> q = *reinterpret_cast<const kiln_pack<W>*>(p);
  #pragma unroll
  for (int i = 0; i < W; ++i) r[i] = kiln_in(q.e[i]);
}
template <int W> __device__ __forceinline__ void kiln_store(kiln_s* p, const kiln_t* r) {
  kiln_pack<W> q;
  #pragma unroll
  for (int i = 0; i < W; ++i) q.e[i] = kiln_out(r[i]);
  *reinterpret_cast<kiln_pack<W>*>(p) = q;
}
// Groups of `lanes` (a power of two) are aligned within the warp: xor offsets below lanes stay in the group.
template <bool BLOCK> __device__ __forceinline__ kiln_t kiln_row_sum(kiln_t v, int lanes) {
  if constexpr (BLOCK) {
    return kiln_block_sum(v);
  } else {
    for (int o = lanes >> 1; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
  }
}
template <bool BLOCK> __device__ __forceinline__ kiln_t kiln_row_max(kiln_t v, int lanes) {
  if constexpr (BLOCK) {
    return kiln_block_max(v);
  } else {
    for (int o = lanes >> 1; o > 0; o >>= 1) { const kiln_t w = __shfl_xor_sync(0xffffffffu, v, o); v = w > v ? w : v; }
    return v;
  }
}
)";
  return s.str();
}

// `body` for each chunk of W elements the thread holds (chunk j, values
// v[j * W + i]); `at_k` names the chunk's first element in the row, k.
// `elements` wraps a body in a loop over i.
std::string each_chunk(const std::string& body, bool at_k = false) {
  return str("  #pragma unroll\n  for (int j = 0; j < KILN_SPAN / W; ++j)\n    if (in(j)) {\n",
             at_k ? "      const int k = (j * lanes + g) * W;\n" : "", body, "    }\n");
}
std::string elements(const std::string& body) {
  return "      #pragma unroll\n      for (int i = 0; i < W; ++i) { kiln_t& e = v[j * W + i]; " + body + " }\n";
}

// One row held in registers: thread g of the row's `lanes` loads chunks g,
// g + lanes, ... of W elements once, reduces, and writes the row back. Rows a
// group of a warp has past the end (`active` false) still join the shuffles.
std::string register_row(const RowSpec& spec, const std::string& params, const std::string& eps) {
  bool dbl = spec.dtype == DType::kFloat64;
  std::string ex = dbl ? "exp" : "expf", lg = dbl ? "log" : "logf", root = dbl ? "sqrt" : "sqrtf";
  std::ostringstream s;
  s << "template <int W, bool BLOCK>\n__device__ __forceinline__ void kiln_row(" << params
    << ", long long row, long long len, int g, int lanes, bool active) {\n";
  s << "  const long long base = row * len;\n";
  s << "  auto in = [&](int j) { return active && (j * lanes + g) * W < len; };\n";
  s << "  kiln_t v[KILN_SPAN];\n";
  s << each_chunk("      kiln_load<W>(x + base + k, v + j * W);\n", true);
  if (spec.op == RowOp::kLayerNorm) {
    // Two passes over the registers (mean, then squared deviations): no cancellation for rows far from zero.
    s << "  kiln_t sum = 0, sq = 0;\n" << each_chunk(elements("sum += e;"));
    s << "  const kiln_t mean = kiln_row_sum<BLOCK>(sum, lanes) / (kiln_t)len;\n";
    s << each_chunk(elements("const kiln_t d = e - mean; sq += d * d;"));
    s << "  const kiln_t inv = (kiln_t)1 / " << root << "(kiln_row_sum<BLOCK>(sq, lanes) / (kiln_t)len + " << eps << ");\n";
    if (spec.has_stats) s << "  if (active && g == 0) { mean_out[row] = (float)mean; inv_out[row] = (float)inv; }\n";
    std::string body = str("      kiln_t y[W]", spec.has_scale ? ", s[W]" : "", spec.has_bias ? ", b[W]" : "", ";\n");
    if (spec.has_scale) body += "      kiln_load<W>(scale + k, s);\n";
    if (spec.has_bias) body += "      kiln_load<W>(bias + k, b);\n";
    body += "      #pragma unroll\n      for (int i = 0; i < W; ++i) {\n        y[i] = (v[j * W + i] - mean) * inv;\n";
    if (spec.has_scale) body += "        y[i] *= s[i];\n";
    if (spec.has_bias) body += "        y[i] += b[i];\n";
    body += "      }\n      kiln_store<W>(out + base + k, y);\n";
    s << each_chunk(body, true);
  } else if (spec.op == RowOp::kLpNorm) {
    s << "  kiln_t sum = 0;\n" << each_chunk(elements(spec.p == 1 ? "sum += e < 0 ? -e : e;" : "sum += e * e;"));
    s << "  sum = kiln_row_sum<BLOCK>(sum, lanes);\n";
    s << "  const kiln_t norm = " << (spec.p == 1 ? "sum" : root + "(sum)") << ";\n";
    s << each_chunk("      kiln_t y[W];\n      #pragma unroll\n      for (int i = 0; i < W; ++i) y[i] = norm == 0 ? (kiln_t)0 : v[j * W + i] / norm;\n"
                    "      kiln_store<W>(out + base + k, y);\n",
                    true);
  } else {
    bool log = spec.op == RowOp::kLogSoftmax;
    s << "  kiln_t mx = -" << (dbl ? "1.0/0.0" : "1.0f/0.0f") << ", sum = 0;\n" << each_chunk(elements("mx = e > mx ? e : mx;"));
    s << "  mx = kiln_row_max<BLOCK>(mx, lanes);\n";
    // Softmax keeps the exponentials (one exp an element); log-softmax keeps x.
    s << each_chunk(elements(log ? "sum += " + ex + "(e - mx);" : "e = " + ex + "(e - mx); sum += e;"));
    s << "  sum = kiln_row_sum<BLOCK>(sum, lanes);\n";
    if (log) s << "  const kiln_t lse = " << lg << "(sum);\n";
    s << each_chunk("      kiln_t y[W];\n      #pragma unroll\n      for (int i = 0; i < W; ++i) y[i] = " +
                    std::string(log ? "(v[j * W + i] - mx) - lse" : "v[j * W + i] / sum") + ";\n      kiln_store<W>(out + base + k, y);\n",
                    true);
  }
  s << "}\n";
  return s.str();
}

// The block-per-row path over memory: a pass over the row for each statistic, elements `inner` apart.
std::string strided_rows(const RowSpec& spec, const std::string& eps) {
  std::string t = compute_type(spec.dtype);
  bool dbl = spec.dtype == DType::kFloat64;
  std::ostringstream s;
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
    s << "    const " << t << " inv = (" << t << ")1 / " << (dbl ? "sqrt" : "sqrtf") << "(var + " << eps << ");\n";
    if (spec.has_stats) s << "    if (threadIdx.x == 0) { mean_out[row] = (float)mean; inv_out[row] = (float)inv; }\n";
    s << "    for (long long k = threadIdx.x; k < len; k += blockDim.x) {\n";
    s << "      " << t << " v = (" << load_expr(spec.dtype, "x", at("k")) << " - mean) * inv;\n";
    if (spec.has_scale) s << "      v *= " << load_expr(spec.dtype, "scale", "k") << ";\n";
    if (spec.has_bias) s << "      v += " << load_expr(spec.dtype, "bias", "k") << ";\n";
    s << "      " << store_stmt(spec.dtype, "out", at("k"), "v") << "\n    }\n";
  } else if (spec.op == RowOp::kLpNorm) {  // x / ||x||_p, 0 where the norm is 0
    s << "    " << t << " sum = 0;\n";
    s << "    for (long long k = threadIdx.x; k < len; k += blockDim.x) { const " << t << " v = " << load_expr(spec.dtype, "x", at("k"))
      << "; sum += " << (spec.p == 1 ? "(v < 0 ? -v : v)" : "v * v") << "; }\n";
    s << "    sum = kiln_block_sum(sum);\n";
    s << "    const " << t << " norm = " << (spec.p == 1 ? "sum" : str(dbl ? "sqrt" : "sqrtf", "(sum)")) << ";\n";
    s << "    for (long long k = threadIdx.x; k < len; k += blockDim.x) "
      << store_stmt(spec.dtype, "out", at("k"), "(norm == 0 ? (" + t + ")0 : " + load_expr(spec.dtype, "x", at("k")) + " / norm)") << "\n";
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
  s << "    __syncthreads();\n  }\n";
  return s.str();
}

}  // namespace

RowParams row_params(RowOp op, DType dtype, int64_t rows, int64_t len, int64_t inner) {
  RowParams p{len == 0 ? 0 : rows, len, inner, int64_t(RowPath::kStrided), kBlock, 1};
  if (op == RowOp::kHardmax || inner != 1 || len > int64_t(kRowSpan) * kBlock) return p;
  // 16-byte accesses need rows of whole vectors (then every row starts aligned when the tensor does).
  p.vec = len % vector_width(dtype) == 0 ? vector_width(dtype) : 1;
  if (len > int64_t(kRowSpan) * 32) {
    p.path = int64_t(RowPath::kBlock);
    return p;
  }
  // The fewest lanes that hold the row: each thread keeps up to kRowSpan elements,
  // a warp takes 32 / lanes rows, so short rows keep every lane busy.
  p.path = int64_t(RowPath::kLanes);
  p.lanes = 1;
  while (p.lanes * kRowSpan < len) p.lanes *= 2;
  return p;
}

int64_t row_blocks(const RowParams& p) { return (p.rows * p.lanes + kBlock - 1) / kBlock; }

std::string row_source(const RowSpec& spec) {
  std::string ct = c_type(spec.dtype), eps = literal(spec.epsilon, spec.dtype == DType::kFloat64);
  bool ln = spec.op == RowOp::kLayerNorm;
  // The pointer parameters, for the kernel and the register-path helper.
  std::string params = ct + "* __restrict__ out", args = "out";
  if (spec.has_stats) params += ", float* __restrict__ mean_out, float* __restrict__ inv_out", args += ", mean_out, inv_out";
  params += ", const " + ct + "* __restrict__ x", args += ", x";
  if (ln && spec.has_scale) params += ", const " + ct + "* __restrict__ scale", args += ", scale";
  if (ln && spec.has_bias) params += ", const " + ct + "* __restrict__ bias", args += ", bias";
  bool registers = spec.op != RowOp::kHardmax;  // hardmax takes the strided path only
  std::ostringstream s;
  s << prelude() << params_constants<RowParams>(spec.specialize);
  if (registers) s << register_helpers(spec.dtype) << register_row(spec, params, eps);
  // The generic kernel holds every path and would take 154 registers a thread (fp16 layer norm,
  // sm_90, ptxas -v): one block an SM. Asking for two caps it at 128 (20 bytes spilled). A
  // specialized kernel holds one path and takes 64 or fewer without the cap, up to 128 with it.
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << (spec.specialize ? "" : ", 2") << ") " << kEntry << "("
    << params << ", KParams p) {\n";
  s << params_binding<RowParams>(spec.specialize);
  s << "  const long long rows = prm.rows, len = prm.len, inner = prm.inner;\n";
  if (registers) {
    // Alignment is known only now (an input may be any address): a uniform branch.
    std::string addresses = "(unsigned long long)out | (unsigned long long)x";
    if (ln && spec.has_scale) addresses += " | (unsigned long long)scale";
    if (ln && spec.has_bias) addresses += " | (unsigned long long)bias";
    s << "  const bool vec = prm.vec > 1 && ((" << addresses << ") & 15) == 0;\n";
    s << "  if (prm.path == " << int(RowPath::kLanes) << ") {\n";
    s << "    const int lanes = (int)prm.lanes, lane = threadIdx.x & 31, g = lane & (lanes - 1), per_warp = 32 / lanes;\n";
    s << "    const long long warp = (long long)blockIdx.x * " << kBlock / 32 << " + (threadIdx.x >> 5);\n";
    s << "    for (long long first = warp * per_warp; first < rows; first += (long long)gridDim.x * " << kBlock / 32 << " * per_warp) {\n";
    s << "      const long long row = first + lane / lanes;\n";
    s << "      if (vec) kiln_row<KILN_VEC, false>(" << args << ", row, len, g, lanes, row < rows);\n";
    s << "      else kiln_row<1, false>(" << args << ", row, len, g, lanes, row < rows);\n";
    s << "    }\n";
    s << "  } else if (prm.path == " << int(RowPath::kBlock) << ") {\n";
    s << "    for (long long row = blockIdx.x; row < rows; row += gridDim.x)\n";
    s << "      if (vec) kiln_row<KILN_VEC, true>(" << args << ", row, len, threadIdx.x, " << kBlock << ", true);\n";
    s << "      else kiln_row<1, true>(" << args << ", row, len, threadIdx.x, " << kBlock << ", true);\n";
    s << "  } else {\n" << strided_rows(spec, eps) << "  }\n}\n";
  } else {
    s << strided_rows(spec, eps) << "}\n";
  }
  return s.str();
}

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

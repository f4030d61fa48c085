// Reductions: over any set of axes (a warp per output), along one axis per
// line (argmax/argmin, cumulative sum and product), and TopK (a block per row).
#include <sstream>

#include "codegen.h"
#include "kiln/error.h"

namespace kiln::codegen {

namespace {

// The kernel both reductions share, up to its per-output work: one warp per
// output (lanes stride over the reduced elements), `base` the output's first
// input element.
std::string reduce_frame(const ReduceSpec& spec) {
  std::string ct = c_type(spec.dtype);
  std::ostringstream s;
  s << prelude() << params_constants<ReduceParams>(spec.specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, const "
    << ct << "* __restrict__ x, KParams p) {\n" << params_binding<ReduceParams>(spec.specialize);
  s << "  const long long outputs = prm.outputs, count = prm.reduced;\n  const int kept_rank = (int)prm.kept_rank, red_rank = (int)prm.reduced_rank;\n";
  s << "  const int lane = threadIdx.x & 31;\n";
  s << "  for (long long o = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; o < outputs; o += ((long long)gridDim.x * blockDim.x) >> 5) {\n";
  s << "    long long base = 0, rem = o;\n";
  s << "#pragma unroll\n    for (int d = " << kMaxRank - 1 << "; d >= 0; --d) { if (d >= kept_rank) continue; base += (rem % prm.kept_dims[d]) * prm.kept_strides[d]; rem /= prm.kept_dims[d]; }\n";
  return s.str();
}

// A lane's loop over its reduced elements: `stmt` on each, loaded as `v` of type `t`.
std::string reduce_walk(const std::string& t, const std::string& load, const std::string& stmt) {
  return "    for (long long r = lane; r < count; r += 32) {\n      long long off = base, rr = r;\n"
         "#pragma unroll\n      for (int d = " + std::to_string(kMaxRank - 1) +
         "; d >= 0; --d) { if (d >= red_rank) continue; off += (rr % prm.reduced_dims[d]) * prm.reduced_strides[d]; rr /= prm.reduced_dims[d]; }\n"
         "      const " + t + " v = " + load + ";\n      " + stmt + "\n    }\n";
}

// A reduction of integers or bools: the sums, products, extremes and their
// kin exact in 64 bits (wrapping through unsigned arithmetic), the rest
// (kMean's quotient, the roots and logarithms) in double; stored as the
// reference stores its float64 results: truncated, saturated, NaN as 0.
std::string integer_reduce_source(const ReduceSpec& spec) {
  auto [lo, hi] = integer_limits(spec.dtype);
  bool exact = spec.op == ReduceOp::kSum || spec.op == ReduceOp::kMean || spec.op == ReduceOp::kMax || spec.op == ReduceOp::kMin ||
               spec.op == ReduceOp::kProd || spec.op == ReduceOp::kL1 || spec.op == ReduceOp::kSumSquare;
  std::string t = exact ? "long long" : "double", u = "(unsigned long long)";
  auto wrap = [&](const std::string& x, const char* op, const std::string& y) { return "(long long)(" + u + x + " " + op + " " + u + y + ")"; };
  std::string init = "0", acc, merge = wrap("a", "+", "w"), finish;
  switch (spec.op) {
    case ReduceOp::kSum: case ReduceOp::kMean: acc = "a = " + wrap("a", "+", "v") + ";"; break;
    case ReduceOp::kProd: init = "1"; acc = "a = " + wrap("a", "*", "v") + ";"; merge = wrap("a", "*", "w"); break;
    case ReduceOp::kMax: init = lo; acc = "a = v > a ? v : a;"; merge = "w > a ? w : a"; break;
    case ReduceOp::kMin: init = hi; acc = "a = v < a ? v : a;"; merge = "w < a ? w : a"; break;
    case ReduceOp::kL1: acc = "a = " + wrap("a", "+", "(v < 0 ? " + wrap("0", "-", "v") + " : v)") + ";"; break;
    case ReduceOp::kSumSquare: acc = "a = " + wrap("a", "+", wrap("v", "*", "v")) + ";"; break;
    case ReduceOp::kL2: acc = "a += v * v;"; merge = "a + w"; finish = "sqrt(a)"; break;
    case ReduceOp::kLogSum: acc = "a += v;"; merge = "a + w"; finish = "log(a)"; break;
    case ReduceOp::kLogSumExp: acc = "a += exp(v - peak);"; merge = "a + w"; finish = "log(a) + peak"; break;
    case ReduceOp::kLp:
      acc = "a += pow(fabs(v), " + std::to_string(spec.p) + ".0);";
      merge = "a + w";
      finish = "pow(a, 1.0 / " + std::to_string(spec.p) + ".0)";
      break;
  }
  if (spec.op == ReduceOp::kMean) finish = "floor((double)a / (double)count)";
  std::string ct = c_type(spec.dtype), load = spec.dtype == DType::kBool ? "(" + t + ")(x[off] != 0)" : "(" + t + ")x[off]";
  std::string store = spec.dtype == DType::kBool ? "out[o] = r != 0;"
                                                 : "out[o] = (" + ct + ")(r <= " + lo + " ? " + lo + " : r >= " + hi + " ? " + hi + " : (long long)r);";
  std::ostringstream s;
  s << reduce_frame(spec);
  auto walk = [&](const std::string& stmt) { return reduce_walk(t, load, stmt); };
  s << "    double peak = 0;\n";
  if (spec.op == ReduceOp::kLogSumExp) s << "    { double a = -1.0/0.0;\n" << walk("a = v > a ? v : a;") << "      peak = kiln_warp_max(a); }\n";
  s << "    " << t << " a = " << init << ";\n" << walk(acc);
  s << "    for (int sh = 16; sh > 0; sh >>= 1) { const " << t << " w = __shfl_xor_sync(0xffffffffu, a, sh); a = " << merge << "; }\n";
  s << "    if (lane == 0) {\n";
  if (finish.empty()) s << "      const long long r = a;\n      " << store << "\n";
  else s << "      const double f = " << finish << ";\n      const double r = f != f ? 0.0 : trunc(f);\n      " << store << "\n";
  s << "    }\n  }\n}\n";
  return s.str();
}

}  // namespace

std::string reduce_source(const ReduceSpec& spec) {
  if (!is_floating(spec.dtype)) return integer_reduce_source(spec);
  std::string t = compute_type(spec.dtype);
  bool dbl = spec.dtype == DType::kFloat64;
  auto f = [&](const char* name) { return std::string(name) + (dbl ? "" : "f"); };
  std::string init = "0", acc, finish = "a";
  switch (spec.op) {
    case ReduceOp::kSum: case ReduceOp::kMean: case ReduceOp::kLogSum: acc = "a += v;"; break;
    case ReduceOp::kMax: init = dbl ? "-1.0/0.0" : "-1.0f/0.0f"; acc = "a = (v != v || a != a) ? v + a : (v > a ? v : a);"; break;
    case ReduceOp::kMin: init = dbl ? "1.0/0.0" : "1.0f/0.0f"; acc = "a = (v != v || a != a) ? v + a : (v < a ? v : a);"; break;
    case ReduceOp::kProd: init = "1"; acc = "a *= v;"; break;
    case ReduceOp::kL1: acc = "a += " + f("fabs") + "(v);"; break;
    case ReduceOp::kL2: case ReduceOp::kSumSquare: acc = "a += v * v;"; break;
    case ReduceOp::kLogSumExp: acc = "a += " + f("exp") + "(v - peak);"; break;
    case ReduceOp::kLp: acc = "a += " + f("pow") + "(" + f("fabs") + "(v), (" + t + ")" + std::to_string(spec.p) + ");"; break;
  }
  if (spec.op == ReduceOp::kMean) finish = "a / (" + t + ")count";
  if (spec.op == ReduceOp::kL2) finish = f("sqrt") + "(a)";
  if (spec.op == ReduceOp::kLogSum) finish = f("log") + "(a)";
  if (spec.op == ReduceOp::kLogSumExp) finish = f("log") + "(a) + peak";
  if (spec.op == ReduceOp::kLp) finish = f("pow") + "(a, (" + t + ")1 / (" + t + ")" + std::to_string(spec.p) + ")";
  std::ostringstream s;
  s << reduce_frame(spec);
  const std::string load = load_expr(spec.dtype, "x", "off");
  auto walk = [&](const std::string& stmt) { return reduce_walk(t, load, stmt); };
  s << "    " << t << " peak = 0;\n";
  if (spec.op == ReduceOp::kLogSumExp) {
    s << "    { " << t << " a = " << (dbl ? "-1.0/0.0" : "-1.0f/0.0f") << ";\n" << walk("a = v > a ? v : a;");
    s << "      peak = kiln_warp_max(a); }\n";
  }
  s << "    " << t << " a = " << init << ";\n" << walk(acc);
  if (spec.op == ReduceOp::kMax || spec.op == ReduceOp::kMin) {
    const char* cmp = spec.op == ReduceOp::kMax ? ">" : "<";
    s << "    for (int sh = 16; sh > 0; sh >>= 1) { const " << t << " w = __shfl_xor_sync(0xffffffffu, a, sh); a = (w != w || a != a) ? w + a : (w "
      << cmp << " a ? w : a); }\n";
  } else if (spec.op == ReduceOp::kProd) {
    s << "    for (int sh = 16; sh > 0; sh >>= 1) a *= __shfl_xor_sync(0xffffffffu, a, sh);\n";
  } else {
    s << "    a = kiln_warp_sum(a);\n";
  }
  s << "    if (lane == 0) " << store_stmt(spec.dtype, "out", "o", finish) << "\n  }\n}\n";
  return s.str();
}

std::string line_source(LineOp op, DType dtype, const std::optional<Params>& specialize, DType axis_dtype) {
  // Integers widen to long long, uint64 (beyond it) to unsigned long long.
  std::string integer = dtype == DType::kUInt64 ? "unsigned long long" : "long long";
  std::string t = is_floating(dtype) ? compute_type(dtype) : integer, ct = c_type(dtype);
  auto load = [&](const std::string& idx) { return is_floating(dtype) ? load_expr(dtype, "x", idx) : "(" + integer + ")x[" + idx + "]"; };
  bool scan = op == LineOp::kCumSum || op == LineOp::kCumProd;
  std::ostringstream s;
  s << prelude() << params_constants<LineParams>(specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "("
    << (scan ? ct : std::string("long long")) << "* __restrict__ out, const " << ct << "* __restrict__ x, ";
  if (scan) s << "const " << c_type(axis_dtype) << "* __restrict__ axis_value, ";
  s << "KParams p) {\n" << params_binding<LineParams>(specialize);
  if (scan) {
    // The axis from the device: the view around it from the dims (`lines` holds the element count).
    s << "  long long lines = prm.lines, len = prm.len, inner = prm.inner;\n";
    s << "  if (axis_value) {\n    const int rank = (int)prm.rank;\n    long long axis = (long long)*axis_value;\n";
    s << "    if (axis < 0) axis += rank;\n    axis = axis < 0 ? 0 : (axis >= rank ? rank - 1 : axis);\n";
    s << "    len = prm.dims[axis];\n    inner = 1;\n";
    s << "    for (int d = " << kMaxRank - 1 << "; d > 0; --d)\n      if (d > axis && d < rank) inner *= prm.dims[d];\n";
    s << "    lines = len == 0 ? 0 : prm.lines / len;\n  }\n";
  } else {
    s << "  const long long lines = prm.lines, len = prm.len, inner = prm.inner;\n";
  }
  s << "  for (long long line = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; line < lines; line += (long long)gridDim.x * "
    << kBlock << ") {\n";
  s << "    const long long base = (line / inner) * len * inner + (line % inner);\n";
  if (scan) {
    // Integer products wrap as unsigned (signed overflow is undefined), as the reference's do.
    bool product = op == LineOp::kCumProd;
    std::string combine = !product ? "acc += v;" : is_floating(dtype) ? "acc *= v;"
                                                 : "acc = (" + integer + ")((unsigned long long)acc * (unsigned long long)v);";
    std::string store = is_floating(dtype) ? store_stmt(dtype, "out", "base + k * inner", "acc") : "out[base + k * inner] = (" + ct + ")acc;";
    s << "    " << t << " acc = " << (product ? "1" : "0") << ";\n";
    s << "    for (long long step = 0; step < len; ++step) {\n";
    s << "      const long long k = prm.reverse ? len - 1 - step : step;\n";
    s << "      const " << t << " v = " << load("base + k * inner") << ";\n";
    s << "      if (prm.exclusive) { " << store << " " << combine << " } else { " << combine << " " << store << " }\n";
    s << "    }\n";
  } else {
    const char* better = op == LineOp::kArgMax ? ">" : "<";
    s << "    long long best = 0;\n    " << t << " bv = " << load("base") << ";\n";
    s << "    for (long long k = 1; k < len; ++k) {\n      const " << t << " v = " << load("base + k * inner") << ";\n";
    s << "      if (v " << better << " bv || (prm.select_last_index && v == bv)) { bv = v; best = k; }\n    }\n";
    s << "    out[line] = best;\n";
  }
  s << "  }\n}\n";
  return s.str();
}

namespace {

// Device code for TopK's keys: an unsigned integer per element whose order is
// the order TopK wants (the best key smallest), `bits` wide.
std::string topk_key_source(DType dtype, int& bits) {
  std::string ct = c_type(dtype);
  std::ostringstream s;
  s << "__device__ __forceinline__ unsigned long long kiln_topk_key(const " << ct << " raw, const bool largest) {\n";
  switch (dtype) {
    case DType::kFloat64:
      bits = 64;
      s << "  const double v = raw == 0.0 ? 0.0 : raw;  // -0 ties with +0, as the reference compares them\n"
        << "  const unsigned long long u = (unsigned long long)__double_as_longlong(v);\n"
        << "  const unsigned long long ord = (u >> 63) ? ~u : (u | 0x8000000000000000ULL);  // ascending with v\n"
        << "  return largest ? ~ord : ord;\n";
      break;
    case DType::kInt64: case DType::kUInt64:
      bits = 64;
      s << "  const unsigned long long ord = (unsigned long long)raw" << (dtype == DType::kInt64 ? " ^ 0x8000000000000000ULL" : "")
        << ";\n  return largest ? ~ord : ord;\n";
      break;
    case DType::kFloat32: case DType::kFloat16: case DType::kBFloat16:
      bits = 32;
      s << "  float v = " << (dtype == DType::kFloat16 ? "kiln_h2f(raw)" : dtype == DType::kBFloat16 ? "kiln_bf2f(raw)" : "raw") << ";\n"
        << "  if (v == 0.0f) v = 0.0f;  // -0 ties with +0, as the reference compares them\n"
        << "  const unsigned int u = __float_as_uint(v);\n"
        << "  const unsigned int ord = (u >> 31) ? ~u : (u | 0x80000000u);  // ascending with v\n"
        << "  return largest ? (unsigned long long)(~ord) : (unsigned long long)ord;\n";
      break;
    case DType::kInt32: case DType::kInt16: case DType::kInt8: case DType::kUInt32: case DType::kUInt16: case DType::kUInt8:
      bits = 32;
      s << "  const unsigned int ord = " << (is_unsigned_integer(dtype) ? "(unsigned int)raw" : "(unsigned int)(int)raw ^ 0x80000000u") << ";\n"
        << "  return largest ? (unsigned long long)(~ord) : (unsigned long long)ord;\n";
      break;
    case DType::kBool: fail(ErrorCode::kUnsupported, "TopK on bool tensors");
    case DType::kString: fail_not_numeric(dtype);
    default: fail(ErrorCode::kUnsupported, "TopK on ", dtype_name(dtype), " tensors");  // the narrow types: shape inference refuses them
  }
  s << "}\n";
  return s.str();
}

}  // namespace

std::string topk_source(DType dtype, const std::optional<Params>& specialize) {
  int bits = 0;
  std::string key = topk_key_source(dtype, bits), ct = c_type(dtype);
  std::ostringstream s;
  s << prelude() << params_constants<TopkParams>(specialize) << key;
  // Slots i < j of a row's outputs in (key, index) order.
  s << "__device__ __forceinline__ void kiln_topk_order(" << ct << "* values, long long* indices, const long long a, const long long b, "
    << "const bool largest) {\n"
    << "  const " << ct << " va = values[a], vb = values[b];\n  const long long ia = indices[a], ib = indices[b];\n"
    << "  const unsigned long long ka = kiln_topk_key(va, largest), kb = kiln_topk_key(vb, largest);\n"
    << "  if (kb < ka || (kb == ka && ib < ia)) { values[a] = vb; values[b] = va; indices[a] = ib; indices[b] = ia; }\n}\n";
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* values, long long* indices, const "
    << ct << "* __restrict__ x, KParams p) {\n" << params_binding<TopkParams>(specialize);
  s << "  const long long rows = prm.rows, len = prm.len, inner = prm.inner, k = prm.k;\n  const bool largest = prm.largest != 0;\n";
  s << "  __shared__ unsigned int hist[256];\n  __shared__ unsigned int warp_less[32], warp_eq[32];\n"
    << "  __shared__ unsigned long long s_prefix;\n  __shared__ long long s_need, s_less_at, s_eq_at;\n";
  s << "  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, warps = blockDim.x >> 5;\n";
  s << "  for (long long row = blockIdx.x; row < rows; row += gridDim.x) {\n";
  s << "    const long long base = (row / inner) * len * inner + row % inner, obase = (row / inner) * k * inner + row % inner;\n";
  // 1. Radix select, 8 bits a pass from the top: the k-th best key and how many
  //    elements with exactly that key belong to the k best (`need`).
  s << "    unsigned long long prefix = 0, mask = 0;\n    long long need = k;\n";
  s << "    for (int shift = " << bits - 8 << "; shift >= 0; shift -= 8) {\n";
  s << "      for (int b = tid; b < 256; b += blockDim.x) hist[b] = 0;\n      __syncthreads();\n";
  s << "      for (long long i = tid; i < len; i += blockDim.x) {\n"
    << "        const unsigned long long key = kiln_topk_key(x[base + i * inner], largest);\n"
    << "        if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255], 1u);\n      }\n      __syncthreads();\n";
  s << "      if (tid == 0) {\n        long long before = 0;\n        int d = 0;\n"
    << "        for (; d < 255 && before + (long long)hist[d] < need; ++d) before += hist[d];\n"
    << "        s_prefix = prefix | ((unsigned long long)d << shift);\n        s_need = need - before;\n      }\n      __syncthreads();\n";
  s << "      prefix = s_prefix;\n      need = s_need;\n      mask |= 255ULL << shift;\n      __syncthreads();\n    }\n";
  // 2. The keys better than it into slots [0, k - need), the first `need` equal
  //    ones into [k - need, k), each in index order (a block-wide count per chunk).
  s << "    if (tid == 0) { s_less_at = 0; s_eq_at = 0; }\n    __syncthreads();\n";
  s << "    for (long long c = 0; c < len; c += blockDim.x) {\n"
    << "      const long long i = c + tid;\n"
    << "      const unsigned long long key = i < len ? kiln_topk_key(x[base + i * inner], largest) : 0ULL;\n"
    << "      const bool less = i < len && key < prefix, eq = i < len && key == prefix;\n"
    << "      const unsigned int bl = __ballot_sync(0xffffffffu, less), be = __ballot_sync(0xffffffffu, eq);\n"
    << "      if (lane == 0) { warp_less[warp] = __popc(bl); warp_eq[warp] = __popc(be); }\n      __syncthreads();\n"
    << "      long long lo = s_less_at, eo = s_eq_at;\n"
    << "      for (int w = 0; w < warp; ++w) { lo += warp_less[w]; eo += warp_eq[w]; }\n"
    << "      const unsigned int below = (1u << lane) - 1u;\n      lo += __popc(bl & below);\n      eo += __popc(be & below);\n"
    << "      if (less) { values[obase + lo * inner] = x[base + i * inner]; indices[obase + lo * inner] = i; }\n"
    << "      if (eq && eo < need) { const long long at = obase + (k - need + eo) * inner; values[at] = x[base + i * inner]; indices[at] = i; }\n"
    << "      __syncthreads();\n"
    << "      if (tid == 0) for (int w = 0; w < warps; ++w) { s_less_at += warp_less[w]; s_eq_at += warp_eq[w]; }\n"
    << "      __syncthreads();\n    }\n";
  // 3. Bitonic sort of the k slots in place (the form without alternating
  //    directions: slots past k act as the worst keys and never move).
  s << "    long long span = 1;\n    while (span < k) span <<= 1;\n";
  s << "    for (long long size = 2; size <= span; size <<= 1) {\n"
    << "      const long long half = size >> 1;\n"
    << "      for (long long t = tid; t < span / 2; t += blockDim.x) {\n"
    << "        const long long start = (t / half) * size, r = t % half, j = start + size - 1 - r;\n"
    << "        if (j < k) kiln_topk_order(values, indices, obase + (start + r) * inner, obase + j * inner, largest);\n      }\n"
    << "      __syncthreads();\n"
    << "      for (long long stride = size >> 2; stride > 0; stride >>= 1) {\n"
    << "        for (long long t = tid; t < span / 2; t += blockDim.x) {\n"
    << "          const long long i = (t / stride) * 2 * stride + t % stride, j = i + stride;\n"
    << "          if (j < k) kiln_topk_order(values, indices, obase + i * inner, obase + j * inner, largest);\n        }\n"
    << "        __syncthreads();\n      }\n    }\n";
  s << "  }\n}\n";
  return s.str();
}

}  // namespace kiln::codegen

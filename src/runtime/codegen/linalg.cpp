// Matrix products with few rows (batch 1-8 inference): cuBLASLt's tiles are
// mostly idle there, so one small kernel streams the weight once and applies
// bias, activation and residual before the single store. Einsum's generic
// kernel, the integer (quantized) products, DFT and STFT: a thread per output
// element. LinearAttention's recurrence. Det: a block per matrix.
#include <algorithm>
#include <cstring>
#include <sstream>

#include "codegen.h"
#include "kiln/error.h"
#include "kiln/ir/quantization.h"

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
  // Integers wrap at 64 bits (unsigned arithmetic, no overflow), then at the output's width as they are stored.
  std::string ct = c_type(dtype), acc = floating ? compute_type(dtype) : "unsigned long long";
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
                                             : "(unsigned long long)(long long)in" + std::to_string(t) + "[off" + std::to_string(t) + "]");
  s << "    for (long long i = 0; i < sum_count; ++i) {\n      acc += " << product << ";\n";
  s << "#pragma unroll\n      for (int d = " << kMaxRank - 1 << "; d >= 0; --d) {\n        if (d >= sum_rank) continue;\n"
    << "        if (++idx[d] < prm.sum_dims[d]) {\n" << each("          off# += prm.sum_strides[#][d];\n") << "          break;\n        }\n"
    << "        idx[d] = 0;\n" << each("        off# -= (prm.sum_dims[d] - 1) * prm.sum_strides[#][d];\n") << "      }\n    }\n";
  s << "    " << store_stmt(dtype, "out", "o", "acc") << "\n  }\n}\n";
  return s.str();
}

std::string integer_matmul_source(const IntegerMatMulSpec& spec) {
  for (DType d : {spec.a, spec.b})
    if (d != DType::kInt8 && d != DType::kUInt8) fail(ErrorCode::kUnsupported, "an integer matmul of ", dtype_name(d), " operands");
  std::string st = c_type(spec.scale);
  std::ostringstream s;
  s << prelude() << params_constants<IntegerMatMulParams>(spec.specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << c_type(spec.out)
    << "* __restrict__ out, const " << c_type(spec.a) << "* __restrict__ a, const " << c_type(spec.b) << "* __restrict__ b";
  if (spec.a_zero) s << ", const " << c_type(spec.a) << "* __restrict__ a_zero";
  if (spec.b_zero) s << ", const " << c_type(spec.b) << "* __restrict__ b_zero";
  if (spec.requantize)
    s << ", const " << st << "* __restrict__ a_scale, const " << st << "* __restrict__ b_scale, const " << st
      << "* __restrict__ y_scale, const " << c_type(spec.out) << "* __restrict__ y_zero";
  s << ", KParams p) {\n" << params_binding<IntegerMatMulParams>(spec.specialize);
  s << "  const int outermost = 8 - (int)prm.rank;\n";
  s << "  for (long long o = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; o < prm.n; o += (long long)gridDim.x * " << kBlock
    << ") {\n";
  s << "    long long rem = o, off[6] = {0, 0, 0, 0, 0, 0};\n";
  s << "#pragma unroll\n    for (int d = 7; d >= 0; --d) {\n      if (d < outermost) break;\n"
       "      const long long c = rem % prm.out_dims[d];\n      rem /= prm.out_dims[d];\n"
       "#pragma unroll\n      for (int t = 0; t < 6; ++t) off[t] += c * prm.strides[t][d];\n    }\n";
  s << "    const int za = " << (spec.a_zero ? "(int)a_zero[off[2]]" : "0") << ", zb = " << (spec.b_zero ? "(int)b_zero[off[3]]" : "0")
    << ";\n";
  // Unsigned: the sum wraps at 32 bits (defined behaviour), as ONNX allows.
  s << "    unsigned int acc = 0u;\n    const " << c_type(spec.a) << "* ap = a + off[0];\n    const " << c_type(spec.b)
    << "* bp = b + off[1];\n";
  s << "    for (long long k = 0; k < prm.depth; ++k)\n"
       "      acc += (unsigned int)(((int)ap[k * prm.a_depth_stride] - za) * ((int)bp[k * prm.b_depth_stride] - zb));\n";
  if (!spec.requantize) {
    s << "    out[o] = (int)acc;\n  }\n}\n";
    return s.str();
  }
  ir::QuantRange range = ir::quant_range(spec.out);
  auto scale = [&](const std::string& name, const std::string& at) { return load_expr(spec.scale, name, at); };
  s << "    const float scale = " << rounded_to(spec.scale, "__fdiv_rn(" + rounded_to(spec.scale, "__fmul_rn(" + scale("a_scale", "off[4]") + ", " + scale("b_scale", "off[5]") + ")") + ", " + scale("y_scale", "0") + ")") << ";\n";
  s << "    const double r = rint(__dadd_rn(__dmul_rn((double)(int)acc, (double)scale), (double)y_zero[0]));\n";
  s << "    out[o] = (" << c_type(spec.out) << ")(r != r ? " << range.lo << ".0 : fmin(fmax(r, " << range.lo << ".0), " << range.hi
    << ".0));\n  }\n}\n";
  return s.str();
}

namespace {

// The twiddle factor e^(sign 2 pi i m / n) into (c, s), for the angle index
// m = k t mod n, which the loops advance by k (< n) each step.
std::string twiddle(DType dtype, const char* sign, const char* m, const char* n, const char* indent) {
  if (dtype == DType::kFloat64)
    return str("double s, c;\n", indent, "sincospi(", sign, " * 2.0 * (double)", m, " / (double)", n, ", &s, &c);\n");
  return str("float s, c;\n", indent, "sincospif(", sign, " * 2.0f * (float)", m, " / (float)", n, ", &s, &c);\n");
}

}  // namespace

std::string dft_source(DType dtype, const std::optional<Params>& specialize) {
  if (!is_floating(dtype)) fail(ErrorCode::kUnsupported, "DFT of ", dtype_name(dtype));
  std::string ct = c_type(dtype), acc = compute_type(dtype);
  std::ostringstream s;
  s << prelude() << params_constants<DftParams>(specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, const " << ct
    << "* __restrict__ x, KParams p) {\n" << params_binding<DftParams>(specialize);
  s << "  const long long out_len = prm.out_len, inner = prm.inner, in_len = prm.in_len, N = prm.dft_len, mode = prm.mode;\n";
  s << "  const long long parts = prm.in_complex + 1, pitch = inner * parts;\n";
  s << "  const " << acc << " sign = mode == 0 ? -1 : 1, scale = mode == 0 ? (" << acc << ")1 : (" << acc << ")1 / (" << acc << ")N;\n";
  s << "  for (long long w = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; w < prm.n; w += (long long)gridDim.x * " << kBlock
    << ") {\n";
  s << "    const long long i = w % inner, k = (w / inner) % out_len, o = w / (inner * out_len);\n";
  s << "    const " << ct << "* line = x + (o * in_len * inner + i) * parts;\n";
  s << "    " << acc << " re = 0, im = 0;\n    long long m = 0;\n";
  // Mode 2 sums the whole spectrum, its upper half the conjugate mirror of the lower.
  s << "    const long long terms = mode == 2 ? N : (in_len < N ? in_len : N);\n";
  s << "    for (long long t = 0; t < terms; ++t) {\n";
  s << "      const bool upper = mode == 2 && t > N / 2;\n      const long long at = upper ? N - t : t;\n";
  s << "      if (at < in_len) {\n";
  s << "        const " << acc << " xr = " << load_expr(dtype, "line", "at * pitch") << ";\n";
  s << "        const " << acc << " xi = parts == 2 ? (upper ? -" << load_expr(dtype, "line", "at * pitch + 1") << " : "
    << load_expr(dtype, "line", "at * pitch + 1") << ") : (" << acc << ")0;\n";
  s << "        " << twiddle(dtype, "sign", "m", "N", "        ");
  s << "        re += xr * c - xi * s;\n        im += xr * s + xi * c;\n      }\n";
  s << "      m += k;\n      if (m >= N) m -= N;\n    }\n";
  s << "    if (mode == 2) {\n      " << store_stmt(dtype, "out", "w", "re * scale") << "\n    } else {\n";
  s << "      " << store_stmt(dtype, "out", "2 * w", "re * scale") << "\n      " << store_stmt(dtype, "out", "2 * w + 1", "im * scale")
    << "\n    }\n  }\n}\n";
  return s.str();
}

std::string stft_source(DType dtype, bool has_window, const std::optional<Params>& specialize) {
  if (!is_floating(dtype)) fail(ErrorCode::kUnsupported, "STFT of ", dtype_name(dtype));
  std::string ct = c_type(dtype), acc = compute_type(dtype);
  std::ostringstream s;
  s << prelude() << params_constants<StftParams>(specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, const " << ct
    << "* __restrict__ signal";
  if (has_window) s << ", const " << ct << "* __restrict__ window";
  s << ", KParams p) {\n" << params_binding<StftParams>(specialize);
  s << "  const long long frames = prm.frames, bins = prm.bins, L = prm.frame_len, parts = prm.in_complex + 1;\n";
  s << "  for (long long w = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; w < prm.n; w += (long long)gridDim.x * " << kBlock
    << ") {\n";
  s << "    const long long k = w % bins, f = (w / bins) % frames, b = w / (bins * frames);\n";
  s << "    const " << ct << "* frame = signal + (b * prm.signal_len + f * prm.step) * parts;\n";
  s << "    " << acc << " re = 0, im = 0;\n    long long m = 0;\n";
  s << "    for (long long t = 0; t < L; ++t) {\n";
  s << "      " << acc << " xr = " << load_expr(dtype, "frame", "t * parts") << ", xi = parts == 2 ? "
    << load_expr(dtype, "frame", "t * parts + 1") << " : (" << acc << ")0;\n";
  if (has_window) s << "      const " << acc << " weight = " << load_expr(dtype, "window", "t") << ";\n      xr *= weight;\n      xi *= weight;\n";
  s << "      " << twiddle(dtype, "-1", "m", "L", "      ");
  s << "      re += xr * c - xi * s;\n      im += xr * s + xi * c;\n";
  s << "      m += k;\n      if (m >= L) m -= L;\n    }\n";
  s << "    " << store_stmt(dtype, "out", "2 * w", "re") << "\n    " << store_stmt(dtype, "out", "2 * w + 1", "im") << "\n  }\n}\n";
  return s.str();
}

// The columns of a state S [d_k, d_v] evolve apart: every step reads column j
// only to update column j and to form output element j. So a warp owns one
// column for the whole sequence, its d_k rows spread over the lanes in
// registers, and the sums over d_k (S^T k for the delta rule, q^T S for the
// output) are warp sums. No shared memory and no block barrier.
std::string linear_attention_source(const LinearAttentionSpec& spec) {
  DType dt = spec.dtype, st = spec.state_dtype;
  std::string ct = c_type(dt), sct = c_type(st);
  std::string a = dt == DType::kFloat64 || st == DType::kFloat64 ? "double" : "float";
  const int rows = kLinearAttentionRowsPerLane;
  std::ostringstream s;
  s << prelude() << params_constants<LinearAttentionParams>(spec.specialize);
  s << "typedef " << a << " A;\n";
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, ";
  if (spec.has_present) s << sct << "* __restrict__ present, ";
  s << "const " << ct << "* __restrict__ q, const " << ct << "* __restrict__ k, const " << ct << "* __restrict__ v";
  if (spec.has_past) s << ", const " << sct << "* __restrict__ past";
  if (spec.gated) s << ", const " << ct << "* __restrict__ decay";
  if (spec.delta) s << ", const " << ct << "* __restrict__ beta";
  s << ", KParams p) {\n" << params_binding<LinearAttentionParams>(spec.specialize);
  s << "  const int lane = threadIdx.x & 31;\n";
  s << "  const long long dk = prm.key_dim, dv = prm.value_dim, hk = prm.kv_heads, group = prm.group, hq = hk * group;\n";
  s << "  const A scale = (A)__longlong_as_double(prm.scale_bits);\n";
  s << "  for (long long wid = ((long long)blockIdx.x * " << kBlock << " + threadIdx.x) >> 5; wid < prm.threads >> 5; wid += (long long)gridDim.x * "
    << kBlock / 32 << ") {\n";
  s << "    const long long j = wid % dv, h = wid / dv % hk, b = wid / dv / hk;\n";
  s << "    const long long column = (b * hk + h) * dk * dv + j;  // S[0][j] of this state; row d is d * dv further\n";
  s << "    A s[" << rows << "];\n";
  s << "#pragma unroll\n    for (int r = 0; r < " << rows << "; ++r) {\n";
  s << "      const long long d = lane + 32 * r;\n";
  s << "      s[r] = " << (spec.has_past ? str("d < dk ? (A)", load_expr(st, "past", "column + d * dv"), " : (A)0") : "(A)0") << ";\n    }\n";
  s << "    for (long long t = 0; t < prm.steps; ++t) {\n";
  s << "      const long long row = b * prm.steps + t;\n";
  s << "      const " << ct << "* kt = k + (row * hk + h) * dk;\n";
  s << "      A kr[" << rows << "];\n";
  s << "#pragma unroll\n      for (int r = 0; r < " << rows << "; ++r) {\n";
  s << "        const long long d = lane + 32 * r;\n";
  s << "        kr[r] = d < dk ? (A)" << load_expr(dt, "kt", "d") << " : (A)0;\n";
  if (spec.gated) {
    s << "        if (d < dk) {\n";
    s << "          const long long g = row * prm.decay_width + (prm.decay_width == hk ? h : h * dk + d);\n";
    s << "          s[r] *= " << (a == "double" ? "exp" : "expf") << "((A)" << load_expr(dt, "decay", "g") << ");\n        }\n";
  }
  s << "      }\n";
  s << "      A written = (A)" << load_expr(dt, "v", "(row * hk + h) * dv + j") << ";\n";
  if (spec.delta) {
    s << "      A recalled = 0;\n";
    s << "#pragma unroll\n      for (int r = 0; r < " << rows << "; ++r) recalled += s[r] * kr[r];\n";
    s << "      recalled = kiln_warp_sum(recalled);\n";
    s << "      written = (A)" << load_expr(dt, "beta", "row * prm.beta_width + (prm.beta_width == 1 ? 0 : h)") << " * (written - recalled);\n";
  }
  s << "#pragma unroll\n      for (int r = 0; r < " << rows << "; ++r) s[r] += kr[r] * written;\n";
  s << "      for (long long head = h * group; head < (h + 1) * group; ++head) {\n";
  s << "        const " << ct << "* qt = q + (row * hq + head) * dk;\n";
  s << "        A acc = 0;\n";
  s << "#pragma unroll\n        for (int r = 0; r < " << rows << "; ++r) {\n";
  s << "          const long long d = lane + 32 * r;\n";
  s << "          if (d < dk) acc += (A)" << load_expr(dt, "qt", "d") << " * s[r];\n        }\n";
  s << "        acc = kiln_warp_sum(acc);\n";
  s << "        if (lane == 0) " << store_stmt(dt, "out", "(row * hq + head) * dv + j", "scale * acc") << "\n";
  s << "      }\n    }\n";
  if (spec.has_present) {
    s << "#pragma unroll\n    for (int r = 0; r < " << rows << "; ++r) {\n";
    s << "      const long long d = lane + 32 * r;\n";
    s << "      if (d < dk) " << store_stmt(st, "present", "column + d * dv", "s[r]") << "\n    }\n";
  }
  s << "  }\n}\n";
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

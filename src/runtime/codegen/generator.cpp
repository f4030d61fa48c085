// Values known on the host (shape arithmetic) written into device memory;
// Range, OneHot, the signal windows, MelWeightMatrix and the random ops, a
// thread per output element.
#include <sstream>

#include "codegen.h"
#include "kiln/error.h"

namespace kiln::codegen {

std::string constants_source() {
  std::ostringstream s;
  s << prelude();
  s << "extern \"C\" __global__ void " << kEntry << "(unsigned char* __restrict__ out, KParams p) {\n"
    << params_binding<ConstantsParams>(std::nullopt);
  s << "  const long long n = prm.n, elem = prm.elem;\n";
  s << "  for (long long i = threadIdx.x; i < n; i += blockDim.x) {\n";
  s << "    const long long v = prm.values[i];\n";
  s << "    for (long long b = 0; b < elem; ++b) out[i * elem + b] = (unsigned char)((v >> (8 * b)) & 0xff);  // little-endian\n";
  s << "  }\n}\n";
  return s.str();
}

std::string range_source(DType dtype, const std::optional<Params>& specialize) {
  if (dtype == DType::kBool) fail(ErrorCode::kUnsupported, "Range of bool");
  std::string ct = c_type(dtype);
  std::ostringstream s;
  s << prelude() << params_constants<RangeParams>(specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, const " << ct
    << "* __restrict__ start, const " << ct << "* __restrict__ delta, KParams p) {\n" << params_binding<RangeParams>(specialize);
  // As the reference: integers exactly, floating types in double, rounded once.
  if (is_floating(dtype))
    s << "  const double s0 = (double)" << load_expr(dtype, "start", "0") << ", d = (double)" << load_expr(dtype, "delta", "0") << ";\n";
  else
    s << "  const long long s0 = (long long)start[0], d = (long long)delta[0];\n";
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < prm.n; i += (long long)gridDim.x * " << kBlock
    << ") {\n    " << store_stmt(dtype, "out", "i", is_floating(dtype) ? "s0 + (double)i * d" : "s0 + i * d") << "\n  }\n}\n";
  return s.str();
}

std::string onehot_source(DType dtype, DType index_dtype, const std::optional<Params>& specialize) {
  if (index_dtype == DType::kBool) fail(ErrorCode::kUnsupported, "OneHot with bool indices");
  std::string ct = c_type(dtype);
  std::ostringstream s;
  s << prelude() << params_constants<OneHotParams>(specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, const "
    << c_type(index_dtype) << "* __restrict__ indices, const " << ct << "* __restrict__ values, KParams p) {\n"
    << params_binding<OneHotParams>(specialize);
  s << "  const long long n = prm.n, depth = prm.depth, inner = prm.inner;\n";
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < n; i += (long long)gridDim.x * " << kBlock
    << ") {\n";
  s << "    const long long in = i % inner, at = (i / inner) % depth, outer = i / (inner * depth);\n";
  // Floating indices truncate toward zero, as the reference's conversion does.
  s << "    long long t = (long long)"
    << (is_floating(index_dtype) ? "(" + load_expr(index_dtype, "indices", "outer * inner + in") + ")" : "indices[outer * inner + in]")
    << ";\n";
  s << "    if (t < 0) t += depth;  // out of range either way: an all-off line\n";
  s << "    out[i] = values[t == at ? 1 : 0];\n  }\n}\n";
  return s.str();
}

std::string signal_window_source(DType dtype, const std::optional<Params>& specialize) {
  if (dtype == DType::kBool) fail(ErrorCode::kUnsupported, "a signal window of bool");
  std::ostringstream s;
  s << prelude() << params_constants<SignalWindowParams>(specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << c_type(dtype)
    << "* __restrict__ out, KParams p) {\n" << params_binding<SignalWindowParams>(specialize);
  s << "  const double a0 = __longlong_as_double(prm.a0_bits), a1 = __longlong_as_double(prm.a1_bits), "
       "a2 = __longlong_as_double(prm.a2_bits);\n";
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < prm.n; i += (long long)gridDim.x * " << kBlock
    << ") {\n";
  // As the reference, in double; a symmetric window of one point divides by 0 (NaN, as ONNX's).
  s << "    const double angle = 2.0 * 3.14159265358979323846 * (double)i / (double)prm.denom;\n";
  s << "    " << store_stmt(dtype, "out", "i", "a0 - a1 * cos(angle) + a2 * cos(2.0 * angle)") << "\n  }\n}\n";
  return s.str();
}

std::string mel_weight_matrix_source(DType dtype, DType size_dtype, DType hertz_dtype, const std::optional<Params>& specialize) {
  if (dtype == DType::kBool || !is_integer(size_dtype) || !is_floating(hertz_dtype))
    fail(ErrorCode::kUnsupported, "MelWeightMatrix of ", dtype_name(dtype), " from ", dtype_name(size_dtype), " sizes and ",
         dtype_name(hertz_dtype), " frequencies");
  std::string st = c_type(size_dtype), ht = c_type(hertz_dtype);
  std::ostringstream s;
  s << prelude() << params_constants<MelParams>(specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << c_type(dtype)
    << "* __restrict__ out, const " << st << "* __restrict__ dft_length, const " << st << "* __restrict__ sample_rate, const " << ht
    << "* __restrict__ lower_edge, const " << ht << "* __restrict__ upper_edge, KParams p) {\n" << params_binding<MelParams>(specialize);
  // The reference's steps (reference/generator.cpp), in double.
  s << "  const long long mels = prm.mel_bins;\n";
  s << "  const double len = (double)dft_length[0], rate = (double)sample_rate[0], ln10 = log(10.0);\n";
  s << "  const double low = 2595.0 * log1p((double)" << load_expr(hertz_dtype, "lower_edge", "0") << " / 700.0) / ln10;\n";
  s << "  const double step = (2595.0 * log1p((double)" << load_expr(hertz_dtype, "upper_edge", "0")
    << " / 700.0) / ln10 - low) / (double)(mels + 2);\n";
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < prm.n; i += (long long)gridDim.x * " << kBlock
    << ") {\n";
  s << "    const long long m = i % mels;\n    const double x = (double)(i / mels);\n    double e[3];\n";
  s << "    for (int q = 0; q < 3; ++q) e[q] = floor((len + 1.0) * (700.0 * expm1(((double)(m + q) * step + low) / 2595.0 * ln10)) / rate);\n";
  // Edges outside the bins cut the triangle there (the reference calls them an error).
  s << "    double v = 0.0;\n";
  s << "    if (e[1] < e[2] && x >= e[1] && x < e[2]) v = (e[2] - x) / (e[2] - e[1]);\n";
  s << "    else if (e[0] == e[1] && x == e[1]) v = 1.0;\n";
  s << "    else if (e[0] < e[1] && x >= e[0] && x <= e[1]) v = (x - e[0]) / (e[1] - e[0]);\n";
  s << "    " << store_stmt(dtype, "out", "i", "v") << "\n  }\n}\n";
  return s.str();
}

std::string eye_like_source(DType dtype, const std::optional<Params>& specialize) {
  std::ostringstream s;
  s << prelude() << params_constants<EyeLikeParams>(specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << c_type(dtype)
    << "* __restrict__ out, KParams p) {\n" << params_binding<EyeLikeParams>(specialize);
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < prm.n; i += (long long)gridDim.x * " << kBlock
    << ") {\n";
  s << "    " << store_stmt(dtype, "out", "i", "(i % prm.cols - i / prm.cols == prm.k ? 1 : 0)") << "\n  }\n}\n";
  return s.str();
}

std::string random_source(const RandomSpec& spec) {
  bool floats_out = spec.kind == RandomKind::kUniform || spec.kind == RandomKind::kNormal;
  if ((floats_out && !is_floating(spec.out)) || (!floats_out && !is_floating(spec.in)) ||
      (spec.kind == RandomKind::kMultinomial && spec.out != DType::kInt32 && spec.out != DType::kInt64))
    fail(ErrorCode::kUnsupported, "a random kernel from ", dtype_name(spec.in), " to ", dtype_name(spec.out));
  std::ostringstream s;
  s << prelude() << "#define KILN_RANDOM_FN __device__ __forceinline__\n" << random_math_source()
    << params_constants<RandomParams>(spec.specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << c_type(spec.out) << "* __restrict__ out";
  if (!floats_out) s << ", const " << c_type(spec.in) << "* __restrict__ in";
  s << ", KParams p) {\n" << params_binding<RandomParams>(spec.specialize);
  s << "  const unsigned long long key = (unsigned long long)prm.key;\n";
  s << "  const double a = __longlong_as_double(prm.a_bits), b = __longlong_as_double(prm.b_bits);\n";
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < prm.n; i += (long long)gridDim.x * " << kBlock
    << ") {\n";
  switch (spec.kind) {
    case RandomKind::kUniform: {
      // Rounded to the output's type as the store will, so a value that rounds up to high is drawn again.
      std::string rounded = spec.out == DType::kFloat64 ? "v" : spec.out == DType::kFloat32 ? "(double)(float)v"
                                                                                          : "(double)" + rounded_to(spec.out, "(float)v");
      s << "    const double v = kiln_random_uniform(key, (unsigned long long)i, a, b, [](double v) { return " << rounded << "; });\n";
      break;
    }
    case RandomKind::kNormal: s << "    const double v = fma(b, kiln_random_normal(key, (unsigned long long)i), a);\n"; break;
    case RandomKind::kBernoulli:
      s << "    const double v = kiln_random_unit(key, (unsigned long long)i, 0) < (double)" << load_expr(spec.in, "in", "i")
        << " ? 1.0 : 0.0;\n";
      break;
    case RandomKind::kMultinomial:
      s << "    const " << c_type(spec.in) << "* __restrict__ logits = in + i / prm.samples * prm.classes;\n";
      s << "    const long long v = kiln_random_class(key, (unsigned long long)i, prm.classes, [logits](long long j) { return (double)"
        << load_expr(spec.in, "logits", "j") << "; });\n";
      break;
  }
  s << "    " << store_stmt(spec.out, "out", "i", "v") << "\n  }\n}\n";
  return s.str();
}

}  // namespace kiln::codegen

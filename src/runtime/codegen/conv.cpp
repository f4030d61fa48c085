// Window kernels (NCHW, 1-3 spatial dims): direct convolution and transposed
// convolution, and the pooling of the pool family, which walks the same windows.
#include <sstream>

#include "codegen.h"
#include "kiln/error.h"

namespace kiln::codegen {

std::string window_source(const WindowSpec& spec) {
  std::string t = compute_type(spec.dtype), ct = c_type(spec.dtype);
  bool dbl = spec.dtype == DType::kFloat64;
  std::ostringstream s;
  s << prelude() << params_macro(spec.specialize);
  // The input offset (within one channel) that kernel tap kk of output position o reads; false in padding.
  // Forward windows read o*stride - pad + k*dil; a transposed conv reads (o + pad - k*dil) / stride when exact.
  s << R"(__device__ __forceinline__ bool kiln_tap(const KParams& p, int sr, const long long* o, long long kk, bool transposed,
                                         long long* offset) {
  long long r = kk, off = 0, stride = 1;
  for (int d = sr - 1; d >= 0; --d) {
    const long long kd = r % P(14 + d);
    r /= P(14 + d);
    long long q = o[d] * P(17 + d) - P(23 + d) + kd * P(20 + d);
    if (transposed) {
      const long long num = o[d] + P(23 + d) - kd * P(20 + d);
      if (num < 0 || num % P(17 + d) != 0) return false;
      q = num / P(17 + d);
    }
    if (q < 0 || q >= P(8 + d)) return false;
    off += q * stride;
    stride *= P(8 + d);
  }
  *offset = off;
  return true;
}
)";
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, const "
    << ct << "* __restrict__ x";
  bool conv = spec.op == WindowOp::kConv || spec.op == WindowOp::kConvTranspose;
  bool transposed = spec.op == WindowOp::kConvTranspose;
  if (conv) s << ", const " << ct << "* __restrict__ w" << (spec.has_bias ? str(", const ", ct, "* __restrict__ bias") : "");
  s << ", KParams p) {\n";
  s << "  const long long n = P(0);\n  const int sr = (int)P(1);\n  const long long cin = P(2), cout = P(3), group = P(4);\n";
  s << "  long long in_vol = 1, out_vol = 1, k_vol = 1;\n";
  s << "  for (int d = 0; d < sr; ++d) { in_vol *= P(8 + d); out_vol *= P(11 + d); k_vol *= P(14 + d); }\n";
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < n; i += (long long)gridDim.x * " << kBlock
    << ") {\n";
  s << "    const long long pos = i % out_vol, ch = (i / out_vol) % cout, b = i / (out_vol * cout);\n";
  s << "    long long o[3] = {0, 0, 0};\n    { long long r = pos; for (int d = sr - 1; d >= 0; --d) { o[d] = r % P(11 + d); r /= P(11 + d); } }\n";
  if (conv) {
    // Conv weights are [cout, cin/group, k...]; ConvTranspose weights [cin, cout/group, k...].
    s << "    const long long cg = cin / group, mg = cout / group, g = ch / mg;\n";
    s << "    " << t << " acc = " << (spec.has_bias ? load_expr(spec.dtype, "bias", "ch") : "0") << ";\n";
    s << "    for (long long c = 0; c < cg; ++c) {\n";
    s << "      const " << ct << "* xc = x + (b * cin + g * cg + c) * in_vol;\n";
    s << "      const " << ct << "* wc = w + " << (transposed ? "((g * cg + c) * mg + ch % mg)" : "(ch * cg + c)") << " * k_vol;\n";
    s << "      for (long long kk = 0; kk < k_vol; ++kk) {\n        long long off;\n";
    s << "        if (kiln_tap(p, sr, o, kk, " << (transposed ? "true" : "false") << ", &off)) acc += "
      << load_expr(spec.dtype, "xc", "off") << " * " << load_expr(spec.dtype, "wc", "kk") << ";\n";
    s << "      }\n    }\n";
  } else {
    bool is_max = spec.op == WindowOp::kMaxPool;
    s << "    const " << ct << "* xc = x + (b * cin + ch) * in_vol;\n";
    s << "    " << t << " acc = " << (is_max ? (dbl ? "-1.0/0.0" : "-1.0f/0.0f") : "0") << ";\n";
    s << "    long long count = 0, padded = 1;  // window taps inside input + explicit pads (count_include_pad)\n";
    s << "    for (int d = 0; d < sr; ++d) {\n      long long cnt = 0;\n";
    s << "      for (long long k = 0; k < P(14 + d); ++k) { const long long q = o[d] * P(17 + d) - P(23 + d) + k * P(20 + d);"
         " if (q >= -P(23 + d) && q < P(8 + d) + P(26 + d)) ++cnt; }\n";
    s << "      padded *= cnt;\n    }\n";
    s << "    for (long long kk = 0; kk < k_vol; ++kk) {\n      long long off;\n";
    s << "      if (!kiln_tap(p, sr, o, kk, false, &off)) continue;\n";
    s << "      const " << t << " v = " << load_expr(spec.dtype, "xc", "off") << ";\n      ++count;\n";
    s << "      " << (is_max ? "acc = (v > acc || v != v) ? v : acc;" : "acc += v;") << "\n    }\n";
    if (!is_max) s << "    acc /= (" << t << ")(P(5) ? padded : count);\n";
  }
  s << "    " << store_stmt(spec.dtype, "out", "i", "acc") << "\n";
  s << "  }\n}\n";
  return s.str();
}

}  // namespace kiln::codegen

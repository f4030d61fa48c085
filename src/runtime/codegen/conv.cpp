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
  s << prelude() << params_constants<WindowParams>(spec.specialize);
  // The input offset (within one channel) that kernel tap kk of output position o reads; false in padding.
  // Forward windows read o*stride - pad + k*dil; a transposed conv reads (o + pad - k*dil) / stride when exact.
  s << R"(__device__ __forceinline__ bool kiln_tap(const WindowParams& prm, int sr, const long long* o, long long kk, bool transposed,
                                         long long* offset) {
  long long r = kk, off = 0, stride = 1;
  for (int d = sr - 1; d >= 0; --d) {
    const long long kd = r % prm.kernel[d];
    r /= prm.kernel[d];
    long long q = o[d] * prm.strides[d] - prm.pads_begin[d] + kd * prm.dilations[d];
    if (transposed) {
      const long long num = o[d] + prm.pads_begin[d] - kd * prm.dilations[d];
      if (num < 0 || num % prm.strides[d] != 0) return false;
      q = num / prm.strides[d];
    }
    if (q < 0 || q >= prm.in_size[d]) return false;
    off += q * stride;
    stride *= prm.in_size[d];
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
  s << ", KParams p) {\n" << params_binding<WindowParams>(spec.specialize);
  s << "  const long long n = prm.n;\n  const int sr = (int)prm.spatial_rank;\n"
       "  const long long cin = prm.channels, cout = prm.out_channels, group = prm.group;\n";
  s << "  long long in_vol = 1, out_vol = 1, k_vol = 1;\n";
  s << "  for (int d = 0; d < sr; ++d) { in_vol *= prm.in_size[d]; out_vol *= prm.out_size[d]; k_vol *= prm.kernel[d]; }\n";
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < n; i += (long long)gridDim.x * " << kBlock
    << ") {\n";
  s << "    const long long pos = i % out_vol, ch = (i / out_vol) % cout, b = i / (out_vol * cout);\n";
  s << "    long long o[3] = {0, 0, 0};\n    { long long r = pos; for (int d = sr - 1; d >= 0; --d) { o[d] = r % prm.out_size[d]; r /= prm.out_size[d]; } }\n";
  if (conv) {
    // Conv weights are [cout, cin/group, k...]; ConvTranspose weights [cin, cout/group, k...].
    s << "    const long long cg = cin / group, mg = cout / group, g = ch / mg;\n";
    s << "    " << t << " acc = " << (spec.has_bias ? load_expr(spec.dtype, "bias", "ch") : "0") << ";\n";
    s << "    for (long long c = 0; c < cg; ++c) {\n";
    s << "      const " << ct << "* xc = x + (b * cin + g * cg + c) * in_vol;\n";
    s << "      const " << ct << "* wc = w + " << (transposed ? "((g * cg + c) * mg + ch % mg)" : "(ch * cg + c)") << " * k_vol;\n";
    s << "      for (long long kk = 0; kk < k_vol; ++kk) {\n        long long off;\n";
    s << "        if (kiln_tap(prm, sr, o, kk, " << (transposed ? "true" : "false") << ", &off)) acc += "
      << load_expr(spec.dtype, "xc", "off") << " * " << load_expr(spec.dtype, "wc", "kk") << ";\n";
    s << "      }\n    }\n";
  } else {
    bool is_max = spec.op == WindowOp::kMaxPool;
    s << "    const " << ct << "* xc = x + (b * cin + ch) * in_vol;\n";
    s << "    " << t << " acc = " << (is_max ? (dbl ? "-1.0/0.0" : "-1.0f/0.0f") : "0") << ";\n";
    s << "    long long count = 0, padded = 1;  // window taps inside input + explicit pads (count_include_pad)\n";
    s << "    for (int d = 0; d < sr; ++d) {\n      long long cnt = 0;\n";
    s << "      for (long long k = 0; k < prm.kernel[d]; ++k) { const long long q = o[d] * prm.strides[d] - prm.pads_begin[d] + k * prm.dilations[d];"
         " if (q >= -prm.pads_begin[d] && q < prm.in_size[d] + prm.pads_end[d]) ++cnt; }\n";
    s << "      padded *= cnt;\n    }\n";
    s << "    for (long long kk = 0; kk < k_vol; ++kk) {\n      long long off;\n";
    s << "      if (!kiln_tap(prm, sr, o, kk, false, &off)) continue;\n";
    s << "      const " << t << " v = " << load_expr(spec.dtype, "xc", "off") << ";\n      ++count;\n";
    s << "      " << (is_max ? "acc = (v > acc || v != v) ? v : acc;" : "acc += v;") << "\n    }\n";
    if (!is_max) s << "    acc /= (" << t << ")(prm.count_include_pad ? padded : count);\n";
  }
  s << "    " << store_stmt(spec.dtype, "out", "i", "acc") << "\n";
  s << "  }\n}\n";
  return s.str();
}

}  // namespace kiln::codegen

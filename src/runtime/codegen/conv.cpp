// Window kernels (NCHW, 1-3 spatial dims): direct convolution and transposed
// convolution, and the pooling of the pool family (max, average, Lp), which walks the same windows;
// the integer (quantized) convolutions; the tiled kernel of 2-D depthwise
// convolutions; CausalConvWithState's; and DeformConv's.
#include <algorithm>
#include <cstring>
#include <sstream>

#include "codegen.h"
#include "kiln/error.h"
#include "kiln/ir/quantization.h"

namespace kiln::codegen {

namespace {

// The input offset (within one channel) that kernel tap kk of output position o reads; false in padding.
// Forward windows read o*stride - pad + k*dil; a transposed conv reads (o + pad - k*dil) / stride when exact.
const char* const kTapFunction = R"(__device__ __forceinline__ bool kiln_tap(const WindowParams& prm, int sr, const long long* o, long long kk, bool transposed,
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

}  // namespace

std::string window_source(const WindowSpec& spec) {
  bool is_max = spec.op == WindowOp::kMaxPool, integral = !is_floating(spec.dtype);
  if ((integral && !is_max) || spec.dtype == DType::kBool)
    fail(ErrorCode::kUnsupported, "a window kernel of ", dtype_name(spec.dtype), " tensors");
  std::string t = integral ? "long long" : compute_type(spec.dtype), ct = c_type(spec.dtype);
  bool dbl = spec.dtype == DType::kFloat64;
  std::ostringstream s;
  s << prelude() << params_constants<WindowParams>(spec.specialize);
  s << kTapFunction;
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, "
    << (spec.indices ? "long long* __restrict__ indices, " : "") << "const " << ct << "* __restrict__ x";
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
    bool is_lp = spec.op == WindowOp::kLpPool;
    std::string power = "(" + t + ")" + std::to_string(spec.p);
    std::string lowest = integral ? integer_limits(spec.dtype).lo : dbl ? "-1.0/0.0" : "-1.0f/0.0f";
    s << "    const " << ct << "* xc = x + (b * cin + ch) * in_vol;\n";
    s << "    " << t << " acc = " << (is_max ? lowest : "0") << ";\n";
    // The first maximum's offset in its plane (-1: no tap inside the input); a NaN wins, the first one.
    if (is_max) s << "    long long best = -1;\n";
    s << "    long long count = 0, padded = 1;  // window taps inside input + explicit pads (count_include_pad)\n";
    s << "    for (int d = 0; d < sr; ++d) {\n      long long cnt = 0;\n";
    s << "      for (long long k = 0; k < prm.kernel[d]; ++k) { const long long q = o[d] * prm.strides[d] - prm.pads_begin[d] + k * prm.dilations[d];"
         " if (q >= -prm.pads_begin[d] && q < prm.in_size[d] + prm.pads_end[d]) ++cnt; }\n";
    s << "      padded *= cnt;\n    }\n";
    s << "    for (long long kk = 0; kk < k_vol; ++kk) {\n      long long off;\n";
    s << "      if (!kiln_tap(prm, sr, o, kk, false, &off)) continue;\n";
    s << "      const " << t << " v = " << (integral ? "(long long)xc[off]" : load_expr(spec.dtype, "xc", "off")) << ";\n      ++count;\n";
    s << "      " << (is_max ? "if (best < 0 || v > acc || (v != v && acc == acc)) { acc = v; best = off; }"
                      : is_lp ? str("acc += ", dbl ? "pow(fabs(v), " : "powf(fabsf(v), ", power, ");")
                              : "acc += v;")
      << "\n    }\n";
    if (is_lp) s << "    acc = " << (dbl ? "pow" : "powf") << "(acc, (" << t << ")1 / " << power << ");\n";
    else if (!is_max) s << "    acc /= (" << t << ")(prm.count_include_pad ? padded : count);\n";
    if (spec.indices) {
      if (spec.column_major)  // the same position, its spatial dims numbered first-fastest
        s << "    if (best >= 0) {\n      long long r = best, inner = in_vol, step = 1, col = 0;\n"
             "      for (int d = 0; d < sr; ++d) { inner /= prm.in_size[d]; col += (r / inner) * step; r %= inner; step *= prm.in_size[d]; }\n"
             "      best = col;\n    }\n";
      s << "    indices[i] = (b * cin + ch) * in_vol + best;\n";
    }
  }
  s << "    " << (integral ? "out[i] = (" + ct + ")acc;" : store_stmt(spec.dtype, "out", "i", "acc")) << "\n";
  s << "  }\n}\n";
  return s.str();
}

std::string integer_conv_source(const IntegerConvSpec& spec) {
  for (DType d : {spec.x, spec.w})
    if (d != DType::kInt8 && d != DType::kUInt8) fail(ErrorCode::kUnsupported, "an integer convolution of ", dtype_name(d), " operands");
  std::string xt = c_type(spec.x), wt = c_type(spec.w);
  std::ostringstream s;
  s << prelude() << params_constants<WindowParams>(spec.specialize) << kTapFunction;
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << c_type(spec.out)
    << "* __restrict__ out, const " << xt << "* __restrict__ x, const " << wt << "* __restrict__ w";
  if (spec.x_zero) s << ", const " << xt << "* __restrict__ x_zero";
  if (spec.w_zero) s << ", const " << wt << "* __restrict__ w_zero";
  if (spec.requantize)
    s << ", const float* __restrict__ x_scale, const float* __restrict__ w_scale, const float* __restrict__ y_scale, const "
      << c_type(spec.out) << "* __restrict__ y_zero";
  if (spec.has_bias) s << ", const int* __restrict__ bias";
  s << ", KParams p) {\n" << params_binding<WindowParams>(spec.specialize);
  s << "  const int sr = (int)prm.spatial_rank;\n"
       "  const long long cin = prm.channels, cout = prm.out_channels, cg = cin / prm.group, mg = cout / prm.group;\n";
  s << "  long long in_vol = 1, out_vol = 1, k_vol = 1;\n";
  s << "  for (int d = 0; d < sr; ++d) { in_vol *= prm.in_size[d]; out_vol *= prm.out_size[d]; k_vol *= prm.kernel[d]; }\n";
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < prm.n; i += (long long)gridDim.x * " << kBlock
    << ") {\n";
  s << "    const long long pos = i % out_vol, ch = (i / out_vol) % cout, b = i / (out_vol * cout), g = ch / mg;\n";
  s << "    long long o[3] = {0, 0, 0};\n    { long long r = pos; for (int d = sr - 1; d >= 0; --d) { o[d] = r % prm.out_size[d]; r /= prm.out_size[d]; } }\n";
  s << "    const int xz = " << (spec.x_zero ? "(int)x_zero[0]" : "0") << ", wz = "
    << (spec.w_zero ? str("(int)w_zero[", spec.w_zero_per_channel ? "ch" : "0", "]") : std::string("0")) << ";\n";
  // Unsigned: the sum wraps at 32 bits (defined behaviour), as ONNX allows. Padding adds nothing.
  s << "    unsigned int acc = 0u;\n";
  s << "    for (long long c = 0; c < cg; ++c) {\n";
  s << "      const " << xt << "* xc = x + (b * cin + g * cg + c) * in_vol;\n";
  s << "      const " << wt << "* wc = w + (ch * cg + c) * k_vol;\n";
  s << "      for (long long kk = 0; kk < k_vol; ++kk) {\n        long long off;\n";
  s << "        if (kiln_tap(prm, sr, o, kk, false, &off)) acc += (unsigned int)(((int)xc[off] - xz) * ((int)wc[kk] - wz));\n";
  s << "      }\n    }\n";
  if (!spec.requantize) {
    s << "    out[i] = (int)acc;\n  }\n}\n";
    return s.str();
  }
  if (spec.has_bias) s << "    acc += (unsigned int)bias[ch];\n";
  ir::QuantRange range = ir::quant_range(spec.out);
  s << "    const float scale = __fdiv_rn(__fmul_rn(x_scale[0], w_scale[" << (spec.w_scale_per_channel ? "ch" : "0") << "]), y_scale[0]);\n";
  s << "    const double r = rint(__dadd_rn(__dmul_rn((double)(int)acc, (double)scale), (double)y_zero[0]));\n";
  s << "    out[i] = (" << c_type(spec.out) << ")(r != r ? " << range.lo << ".0 : fmin(fmax(r, " << range.lo << ".0), " << range.hi
    << ".0));\n  }\n}\n";
  return s.str();
}

namespace {

// Depthwise pieces. `T` is the compute type (shared memory holds it: a tap
// converts nothing), `ST` the storage type.

// Stages one item's taps and input tile (zeros where it reads padding),
// coalesced along W. The tile's origin and the global offsets are 64-bit, so
// any plane size works; everything the tap loop indexes is 32-bit.
std::string depthwise_stage(DType dtype) {
  std::ostringstream s;
  s << "    __syncthreads();  // the previous item's taps are read\n";
  s << "    for (int i = threadIdx.x; i < taps; i += " << kBlock << ") ws[i] = " << load_expr(dtype, "wc", "i") << ";\n";
  s << "    for (int r = ty; r < smem_h; r += block_rows) {\n";
  s << "      const long long iy = iy0 + r;\n";
  s << "      const bool row_in = iy >= 0 && iy < prm.in_h;\n";
  s << "      for (int c = tx; c < smem_w; c += tile_w) {\n";
  s << "        const long long ix = ix0 + c;\n";
  s << "        tile[r * smem_w + c] = row_in && ix >= 0 && ix < prm.in_w ? " << load_expr(dtype, "xc", "iy * prm.in_w + ix")
    << " : (T)0;\n";
  s << "      }\n    }\n    __syncthreads();\n";
  return s.str();
}

// Each thread's `rows` outputs of one column: a tap's weight is read once for
// all of them. Specialized, the loops unroll into constant shared-memory
// offsets, so the rows' overlapping windows (stride 1) share their loads.
std::string depthwise_taps() {
  std::ostringstream s;
  s << "    const T* at = tile + ty * rows * (int)prm.stride_h * smem_w + tx * (int)prm.stride_w;\n";
  s << "#pragma unroll\n    for (int ky = 0; ky < kh; ++ky) {\n";
  s << "#pragma unroll\n      for (int kx = 0; kx < kw; ++kx) {\n";
  s << "        const T wv = ws[ky * kw + kx];\n";
  s << "        const T* src = at + ky * (int)prm.dilation_h * smem_w + kx * (int)prm.dilation_w;\n";
  s << "#pragma unroll\n        for (int q = 0; q < " << kDepthwiseMaxRows << "; ++q)\n";
  s << "          if (q < rows) acc[q] += wv * src[q * (int)prm.stride_h * smem_w];\n";
  s << "      }\n    }\n";
  return s.str();
}

}  // namespace

std::string depthwise_source(const DepthwiseSpec& spec) {
  std::string t = compute_type(spec.dtype), ct = c_type(spec.dtype);
  size_t elem = spec.dtype == DType::kFloat64 ? 8 : 4;
  // A specialized variant claims only the shared memory its shape uses, which lets more blocks share an SM.
  long long smem = kDepthwiseSmemBytes / static_cast<long long>(elem);
  if (spec.specialize) {
    DepthwiseParams q;
    std::memcpy(&q, spec.specialize->v, sizeof q);
    smem = std::max(1LL, q.kernel_h * q.kernel_w + q.smem_h * q.smem_w);
  }
  std::ostringstream s;
  s << prelude() << params_constants<DepthwiseParams>(spec.specialize);
  s << "typedef " << t << " T;\n";
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, const "
    << ct << "* __restrict__ x, const " << ct << "* __restrict__ w"
    << (spec.has_bias ? str(", const ", ct, "* __restrict__ bias") : "") << ", KParams p) {\n";
  s << params_binding<DepthwiseParams>(spec.specialize);
  s << "  __shared__ T smem[" << smem << "];\n";
  s << "  const int kh = (int)prm.kernel_h, kw = (int)prm.kernel_w, taps = kh * kw;\n";
  s << "  const int tile_w = (int)prm.tile_w, block_rows = " << kBlock << " / tile_w, rows = (int)prm.rows;\n";
  s << "  const int smem_h = (int)prm.smem_h, smem_w = (int)prm.smem_w;\n";
  s << "  const int tx = threadIdx.x % tile_w, ty = threadIdx.x / tile_w;\n";
  s << "  T* ws = smem;\n  T* tile = smem + taps;\n";
  s << "  for (long long item = blockIdx.x; item < prm.blocks; item += gridDim.x) {\n";
  s << "    const long long bx = item % prm.tiles_w, by = item / prm.tiles_w % prm.tiles_h, plane = item / prm.tiles_w / prm.tiles_h;\n";
  s << "    const long long oc = plane % prm.channels, b = plane / prm.channels;\n";
  s << "    const " << ct << "* xc = x + (b * (prm.channels / prm.multiplier) + oc / prm.multiplier) * (prm.in_h * prm.in_w);\n";
  s << "    const " << ct << "* wc = w + oc * taps;\n";
  s << "    const long long ox0 = bx * tile_w, oy0 = by * block_rows * rows;\n";
  s << "    const long long ix0 = ox0 * prm.stride_w - prm.pad_left, iy0 = oy0 * prm.stride_h - prm.pad_top;\n";
  s << depthwise_stage(spec.dtype);
  s << "    T acc[" << kDepthwiseMaxRows << "];\n";
  s << "#pragma unroll\n    for (int q = 0; q < " << kDepthwiseMaxRows << "; ++q) acc[q] = "
    << (spec.has_bias ? load_expr(spec.dtype, "bias", "oc") : "(T)0") << ";\n";
  s << depthwise_taps();
  s << "    const long long ox = ox0 + tx;\n";
  s << "#pragma unroll\n    for (int q = 0; q < " << kDepthwiseMaxRows << "; ++q) {\n";
  s << "      const long long oy = oy0 + ty * rows + q;\n";
  s << "      if (q < rows && ox < prm.out_w && oy < prm.out_h) "
    << store_stmt(spec.dtype, "out", "(plane * prm.out_h + oy) * prm.out_w + ox", "acc[q]") << "\n";
  s << "    }\n  }\n}\n";
  return s.str();
}

std::string causal_conv_source(const CausalConvSpec& spec) {
  std::string t = compute_type(spec.dtype), ct = c_type(spec.dtype);
  bool dbl = spec.dtype == DType::kFloat64;
  std::ostringstream s;
  s << prelude() << params_constants<CausalConvParams>(spec.specialize);
  // Position j of a row's sequence: past_state (zeros without it) for j < keep, then the input.
  s << "__device__ __forceinline__ " << ct << " kiln_seq(const " << ct << "* __restrict__ x, const " << ct
    << "* __restrict__ past, long long row, long long j, long long len, long long keep) {\n";
  s << "  return j >= keep ? x[row * len + j - keep] : " << (spec.has_past ? "past[row * keep + j]" : str("(", ct, ")0")) << ";\n}\n";
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, " << ct
    << "* __restrict__ present, const " << ct << "* __restrict__ x, const " << ct << "* __restrict__ w";
  if (spec.has_bias) s << ", const " << ct << "* __restrict__ bias";
  if (spec.has_past) s << ", const " << ct << "* __restrict__ past";
  s << ", KParams p) {\n" << params_binding<CausalConvParams>(spec.specialize);
  if (!spec.has_past) s << "  const " << ct << "* past = nullptr;\n";
  s << "  const long long len = prm.length, k = prm.kernel, keep = prm.kernel - 1;\n";
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < prm.n; i += (long long)gridDim.x * " << kBlock
    << ") {\n";
  s << "    if (i >= prm.outputs) {  // present_state: the sequence's last keep positions, copied as they are\n";
  s << "      const long long e = i - prm.outputs;\n";
  s << "      present[e] = kiln_seq(x, past, e / keep, len + e % keep, len, keep);\n";
  s << "      continue;\n    }\n";
  s << "    const long long row = i / len, pos = i % len, ch = row % prm.channels;\n";
  s << "    " << t << " acc = " << (spec.has_bias ? load_expr(spec.dtype, "bias", "ch") : "0") << ";\n";
  s << "    for (long long tap = 0; tap < k; ++tap) {\n";
  s << "      const " << ct << " v = kiln_seq(x, past, row, pos + tap, len, keep);\n";
  s << "      acc += " << load_expr(spec.dtype, "w", "ch * k + tap") << " * " << load_expr(spec.dtype, "(&v)", "0") << ";\n";
  s << "    }\n";
  if (spec.silu) s << "    acc = acc / (1 + " << (dbl ? "exp" : "expf") << "(-acc));\n";
  s << "    " << store_stmt(spec.dtype, "out", "i", "acc") << "\n";
  s << "  }\n}\n";
  return s.str();
}

std::string deform_conv_source(const DeformConvSpec& spec) {
  if (!is_floating(spec.dtype)) fail(ErrorCode::kUnsupported, "DeformConv of ", dtype_name(spec.dtype));
  std::string t = compute_type(spec.dtype), ct = c_type(spec.dtype);
  const char* floor_fn = spec.dtype == DType::kFloat64 ? "floor" : "floorf";
  auto load = [&](const std::string& ptr, const std::string& index) { return load_expr(spec.dtype, ptr, index); };
  std::ostringstream s;
  s << prelude() << params_constants<DeformConvParams>(spec.specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, const " << ct
    << "* __restrict__ x, const " << ct << "* __restrict__ w, const " << ct << "* __restrict__ offset";
  if (spec.has_bias) s << ", const " << ct << "* __restrict__ bias";
  if (spec.has_mask) s << ", const " << ct << "* __restrict__ mask";
  s << ", KParams p) {\n" << params_binding<DeformConvParams>(spec.specialize);
  s << "  const long long oh = prm.out_h, ow = prm.out_w, ih = prm.in_h, iw = prm.in_w, kh = prm.kernel_h, kw = prm.kernel_w;\n";
  s << "  const long long cg = prm.channels / prm.group, mg = prm.out_channels / prm.group, per_offset_group = prm.channels / prm.offset_group;\n";
  s << "  const long long taps = prm.offset_group * kh * kw, plane = oh * ow;\n";
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < prm.n; i += (long long)gridDim.x * " << kBlock
    << ") {\n";
  s << "    const long long col = i % ow, row = i / ow % oh, oc = i / plane % prm.out_channels, b = i / (plane * prm.out_channels);\n";
  s << "    " << t << " acc = " << (spec.has_bias ? load("bias", "oc") : "0") << ";\n";
  s << "    for (long long ci = 0; ci < cg; ++ci) {\n";
  s << "      const long long ic = oc / mg * cg + ci, group_of_offsets = ic / per_offset_group;\n";
  s << "      const " << ct << "* __restrict__ xc = x + (b * prm.channels + ic) * ih * iw;\n";
  s << "      for (long long ki = 0; ki < kh; ++ki)\n";
  s << "        for (long long kj = 0; kj < kw; ++kj) {\n";
  s << "          const long long tap = b * taps + (group_of_offsets * kh + ki) * kw + kj, at = (tap * 2 * oh + row) * ow + col;\n";
  s << "          const " << t << " y = (" << t << ")(row * prm.stride_h - prm.pad_top + ki * prm.dilation_h) + " << load("offset", "at")
    << ";\n";
  s << "          const " << t << " xs = (" << t << ")(col * prm.stride_w - prm.pad_left + kj * prm.dilation_w) + "
    << load("offset", "at + plane") << ";\n";
  // Bilinear, corners outside X reading 0; NaN coordinates fail every bound, as on the CPU.
  s << "          const " << t << " y0 = " << floor_fn << "(y), x0 = " << floor_fn << "(xs), ly = y - y0, lx = xs - x0;\n";
  s << "          " << t << " v = 0;\n";
  s << "          for (int dy = 0; dy < 2; ++dy)\n";
  s << "            for (int dx = 0; dx < 2; ++dx) {\n";
  s << "              const " << t << " r = y0 + dy, c = x0 + dx;\n";
  s << "              if (!(r >= 0 && r < (" << t << ")ih && c >= 0 && c < (" << t << ")iw)) continue;\n";
  s << "              v += (dy ? ly : 1 - ly) * (dx ? lx : 1 - lx) * " << load("xc", "(long long)r * iw + (long long)c") << ";\n";
  s << "            }\n";
  if (spec.has_mask) s << "          v *= " << load("mask", "(tap * oh + row) * ow + col") << ";\n";
  s << "          acc += " << load("w", "((oc * cg + ci) * kh + ki) * kw + kj") << " * v;\n";
  s << "        }\n    }\n";
  s << "    " << store_stmt(spec.dtype, "out", "i", "acc") << "\n";
  s << "  }\n}\n";
  return s.str();
}

}  // namespace kiln::codegen

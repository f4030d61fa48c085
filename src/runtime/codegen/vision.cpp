// GridSample, RoiAlign, AffineGrid and Col2Im: a thread per output element
// (per grid point for AffineGrid), every coordinate and sum in double, step
// for step as the reference kernels (src/reference/vision.cpp), so that
// nearest-pixel choices and the samples an edge keeps or drops agree with them.
#include <sstream>

#include "codegen.h"
#include "kiln/error.h"
#include "kiln/ir/vision.h"

namespace kiln::codegen {

namespace {

std::string entry(const std::string& args) {
  return str("extern \"C\" __global__ void __launch_bounds__(", kBlock, ") ", kEntry, "(", args, ", KParams p) {\n");
}

std::string grid_stride_loop() {
  return str("  for (long long e = (long long)blockIdx.x * ", kBlock, " + threadIdx.x; e < prm.n; e += (long long)gridDim.x * ",
             kBlock, ") {\n");
}

}  // namespace

std::string grid_sample_source(const GridSampleSpec& spec) {
  std::string ct = c_type(spec.dtype), gt = c_type(spec.grid_dtype);
  std::ostringstream s;
  s << prelude() << params_constants<GridSampleParams>(spec.specialize);
  s << R"(__device__ double kiln_reflect(double x, double lo, double hi) {
  const double range = hi - lo;
  if (range <= 0) return lo;
  if (x >= lo && x <= hi) return x;
  const bool below = x < lo;
  const double dx = below ? lo - x : x - hi, flips = floor(dx / range), r = dx - flips * range;
  const double y = below == (fmod(flips, 2.0) == 0) ? lo + r : hi - r;
  return y < lo ? lo : (y > hi ? hi : y);
}
// The taps of one dim of `size` at normalized coordinate v: indices (-1: zero padding) and weights.
__device__ int kiln_taps(int mode, int padding, bool align, double v, long long size, long long* idx, double* w) {
  double x = align ? (v + 1) / 2 * (double)(size - 1) : ((v + 1) * (double)size - 1) / 2;
  if (mode == 1) x = rint(x);
  const double lo = align ? 0.0 : -0.5, hi = align ? (double)(size - 1) : (double)size - 0.5;
  if (x < lo || x > hi) {
    if (padding == 1) x = x < 0 ? 0 : (x > (double)(size - 1) ? (double)(size - 1) : x);
    else if (padding == 2) x = kiln_reflect(x, lo, hi);
  }
  if (!(fabs(x) <= 1e9)) x = -100;  // NaN and far-off points read as padding
  const double base = floor(x), t = x - base;
  const int taps = mode == 1 ? 1 : (mode == 0 ? 2 : 4);
  const long long first = (long long)base - (mode == 2 ? 1 : 0);
  if (mode == 1) {
    w[0] = 1;
  } else if (mode == 0) {
    w[0] = 1 - t; w[1] = t;
  } else {
    const double a = -0.75, s0 = t + 1, s3 = 2 - t, u = 1 - t;
    w[0] = ((a * s0 - 5 * a) * s0 + 8 * a) * s0 - 4 * a;
    w[1] = ((a + 2) * t - (a + 3)) * t * t + 1;
    w[2] = ((a + 2) * u - (a + 3)) * u * u + 1;
    w[3] = ((a * s3 - 5 * a) * s3 + 8 * a) * s3 - 4 * a;
  }
  for (int k = 0; k < taps; ++k) {
    long long j = first + k;
    if (padding == 0) j = j >= 0 && j < size ? j : -1;
    else if (padding == 2) j = (long long)kiln_reflect((double)j, lo, hi);
    if (padding != 0) j = j < 0 ? 0 : (j >= size ? size - 1 : j);
    idx[k] = j;
  }
  return taps;
}
)";
  s << entry(str(ct, "* __restrict__ out, const ", ct, "* __restrict__ x, const ", gt, "* __restrict__ grid"));
  s << params_binding<GridSampleParams>(spec.specialize);
  s << R"(  const int rank = (int)prm.rank, mode = (int)prm.mode, padding = (int)prm.padding;
  const bool align = prm.align_corners != 0;
  long long points = 1, volume = 1;
  for (int d = 0; d < rank; ++d) points *= prm.out_dims[d], volume *= prm.in_dims[d];
)" << grid_stride_loop();
  s << R"(    const long long o = e % points, plane = e / points, b = plane / prm.channels;
    long long idx[3][4];
    double w[3][4];
    int taps[3];
    for (int d = 0; d < rank; ++d) {  // the grid's first coordinate addresses the last dim
      const double v = (double))" << load_expr(spec.grid_dtype, "grid", "(b * points + o) * rank + (rank - 1 - d)") << R"(;
      taps[d] = kiln_taps(mode, padding, align, v, prm.in_dims[d], idx[d], w[d]);
    }
    const )" << ct << R"(* src = x + plane * volume;
    double acc = 0;
    int k[3] = {0, 0, 0};
    for (;;) {
      double weight = 1;
      long long off = 0;
      bool inside = true;
      for (int d = 0; d < rank; ++d) {
        const long long j = idx[d][k[d]];
        inside = inside && j >= 0;
        weight *= w[d][k[d]];
        off = off * prm.in_dims[d] + j;
      }
      if (inside) acc += weight * (double))" << load_expr(spec.dtype, "src", "off") << R"(;
      int d = rank - 1;
      while (d >= 0 && ++k[d] == taps[d]) k[d--] = 0;
      if (d < 0) break;
    }
    )" << store_stmt(spec.dtype, "out", "e", "acc") << "\n  }\n}\n";
  return s.str();
}

std::string roi_align_source(DType dtype, const std::optional<Params>& specialize) {
  std::string ct = c_type(dtype);
  std::ostringstream s;
  s << prelude() << params_constants<RoiAlignParams>(specialize);
  s << entry(str(ct, "* __restrict__ out, const ", ct, "* __restrict__ x, const ", ct,
                 "* __restrict__ rois, const long long* __restrict__ batch_indices"));
  s << params_binding<RoiAlignParams>(specialize);
  s << R"(  const long long h = prm.height, w = prm.width, ph = prm.pooled_h, pw = prm.pooled_w;
  const bool half_pixel = prm.half_pixel != 0, is_max = prm.max_mode != 0;
  const double scale = __longlong_as_double(prm.scale_bits), offset = half_pixel ? 0.5 : 0.0;
)" << grid_stride_loop();
  s << R"(    const long long px = e % pw, py = (e / pw) % ph, c = (e / (pw * ph)) % prm.channels, i = e / (pw * ph * prm.channels);
    const long long b = batch_indices[i];
    if (b < 0 || b >= prm.batch) {  // out of range: nothing to read (the reference fails)
      )" << store_stmt(dtype, "out", "e", "0.0") << R"(
      continue;
    }
    const double x0 = (double))" << load_expr(dtype, "rois", "4 * i") << R"( * scale - offset;
    const double y0 = (double))" << load_expr(dtype, "rois", "4 * i + 1") << R"( * scale - offset;
    double rw = (double))" << load_expr(dtype, "rois", "4 * i + 2") << R"( * scale - offset - x0;
    double rh = (double))" << load_expr(dtype, "rois", "4 * i + 3") << R"( * scale - offset - y0;
    if (!half_pixel) { rw = rw > 1.0 ? rw : 1.0; rh = rh > 1.0 ? rh : 1.0; }  // malformed RoIs become 1x1
    const double bin_h = rh / (double)ph, bin_w = rw / (double)pw;
    long long gh = prm.sampling_ratio, gw = prm.sampling_ratio;
    if (gh <= 0) {
      gh = bin_h > 0 ? (long long)fmin(ceil(bin_h), )" << ir::kRoiAlignMaxGrid << R"(.0) : 0;
      gw = bin_w > 0 ? (long long)fmin(ceil(bin_w), )" << ir::kRoiAlignMaxGrid << R"(.0) : 0;
    }
    const )" << ct << R"(* plane = x + (b * prm.channels + c) * h * w;
    double acc = 0;
    bool any = false;
    for (long long iy = 0; iy < gh; ++iy) {
      const double sy = y0 + (double)py * bin_h + ((double)iy + 0.5) * bin_h / (double)gh;
      for (long long ix = 0; ix < gw; ++ix) {
        double y = sy, xx = x0 + (double)px * bin_w + ((double)ix + 0.5) * bin_w / (double)gw;
        double v[4] = {0, 0, 0, 0};
        if (y >= -1.0 && y <= (double)h && xx >= -1.0 && xx <= (double)w) {  // else (or NaN) a sample of 0
          y = y > 0 ? y : 0;
          xx = xx > 0 ? xx : 0;
          long long ylo = (long long)y, xlo = (long long)xx, yhi, xhi;
          if (ylo >= h - 1) { ylo = yhi = h - 1; y = (double)ylo; } else yhi = ylo + 1;
          if (xlo >= w - 1) { xlo = xhi = w - 1; xx = (double)xlo; } else xhi = xlo + 1;
          const double ly = y - (double)ylo, lx = xx - (double)xlo, hy = 1 - ly, hx = 1 - lx;
          v[0] = hy * hx * (double))" << load_expr(dtype, "plane", "ylo * w + xlo") << R"(;
          v[1] = hy * lx * (double))" << load_expr(dtype, "plane", "ylo * w + xhi") << R"(;
          v[2] = ly * hx * (double))" << load_expr(dtype, "plane", "yhi * w + xlo") << R"(;
          v[3] = ly * lx * (double))" << load_expr(dtype, "plane", "yhi * w + xhi") << R"(;
        }
        if (is_max) {  // ONNX's max: the largest weighted corner value of any sample
          const double best = fmax(fmax(v[0], v[1]), fmax(v[2], v[3]));
          acc = any ? fmax(acc, best) : best;
          any = true;
        } else {
          acc += v[0] + v[1] + v[2] + v[3];
        }
      }
    }
    if (!is_max) { const long long count = gh * gw; acc /= (double)(count > 1 ? count : 1); }
    )" << store_stmt(dtype, "out", "e", "acc") << "\n  }\n}\n";
  return s.str();
}

std::string affine_grid_source(DType dtype, const std::optional<Params>& specialize) {
  std::string ct = c_type(dtype);
  std::ostringstream s;
  s << prelude() << params_constants<AffineGridParams>(specialize);
  s << entry(str(ct, "* __restrict__ out, const ", ct, "* __restrict__ theta"));
  s << params_binding<AffineGridParams>(specialize);
  s << R"(  const int rank = (int)prm.rank;
  const bool align = prm.align_corners != 0;
  long long points = 1;
  for (int d = 0; d < rank; ++d) points *= prm.dims[d];
)" << grid_stride_loop();
  s << R"(    const long long b = e / points;
    long long rem = e % points;
    double base[4];  // x (the last dim), y, [z], 1
    for (int d = rank - 1; d >= 0; --d) {
      const long long size = prm.dims[d], i = rem % size;
      rem /= size;
      base[rank - 1 - d] = align ? (size > 1 ? -1 + 2 * (double)i / (double)(size - 1) : -1.0) : -1 + (2 * (double)i + 1) / (double)size;
    }
    base[rank] = 1;
    const )" << ct << R"(* t = theta + b * rank * (rank + 1);
    for (int row = 0; row < rank; ++row) {
      double v = 0;
      for (int k = 0; k <= rank; ++k) v += (double))" << load_expr(dtype, "t", "row * (rank + 1) + k") << R"( * base[k];
      )" << store_stmt(dtype, "out", "e * rank + row", "v") << R"(
    }
  }
}
)";
  return s.str();
}

std::string col2im_source(DType dtype, const std::optional<Params>& specialize) {
  std::string ct = c_type(dtype);
  std::ostringstream s;
  s << prelude() << params_constants<Col2ImParams>(specialize);
  s << entry(str(ct, "* __restrict__ out, const ", ct, "* __restrict__ x"));
  s << params_binding<Col2ImParams>(specialize);
  s << R"(  const int rank = (int)prm.rank;
  long long pixels = 1;
  for (int d = 0; d < rank; ++d) pixels *= prm.image[d];
)" << grid_stride_loop();
  // Gathers rather than scatters: block element k covers this pixel from the
  // block position (pos + pad - k * dilation) / stride, where that divides and lies inside.
  s << R"(    const long long plane = e / pixels;
    long long pos[3], rem = e % pixels;
    for (int d = rank - 1; d >= 0; --d) { pos[d] = rem % prm.image[d]; rem /= prm.image[d]; }
    double acc = 0;
    for (long long k = 0; k < prm.block_volume; ++k) {
      long long kr = k, l[3];
      bool covers = true;
      for (int d = rank - 1; d >= 0; --d) {  // k's block element, from the last dim
        const long long t = pos[d] + prm.pads[d] - (kr % prm.block[d]) * prm.dilations[d];
        kr /= prm.block[d];
        l[d] = t / prm.strides[d];
        covers = covers && t >= 0 && t % prm.strides[d] == 0 && l[d] < prm.blocks[d];
      }
      if (!covers) continue;
      long long column = 0;
      for (int d = 0; d < rank; ++d) column = column * prm.blocks[d] + l[d];
      acc += (double))" << load_expr(dtype, "x", "(plane * prm.block_volume + k) * prm.columns + column") << R"(;
    }
    )" << store_stmt(dtype, "out", "e", "acc") << "\n  }\n}\n";
  return s.str();
}

}  // namespace kiln::codegen

// GridSample, RoiAlign, AffineGrid, Col2Im and MaxRoiPool: a thread per
// output element (per grid point for AffineGrid), every coordinate and sum in
// double (MaxRoiPool's bins in float, as ONNX Runtime), step for step as the
// reference kernels (src/reference/vision.cpp), so that nearest-pixel choices
// and the samples an edge keeps or drops agree with them. NonMaxSuppression:
// a block per batch and class, then one block that lists the kept boxes.
#include <sstream>

#include "codegen.h"
#include "kiln/error.h"
#include "kiln/ir/vision.h"

namespace kiln::codegen {

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
  s << kernel_entry(str(ct, "* __restrict__ out, const ", ct, "* __restrict__ x, const ", gt, "* __restrict__ grid"));
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
  s << kernel_entry(str(ct, "* __restrict__ out, const ", ct, "* __restrict__ x, const ", ct,
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

std::string max_roi_pool_source(DType dtype, const std::optional<Params>& specialize) {
  std::string ct = c_type(dtype);
  auto corner = [&](int i) { return str("(long long)roundf((float)", load_expr(dtype, "roi", str(i)), " * scale)"); };
  std::ostringstream s;
  s << prelude() << params_constants<MaxRoiPoolParams>(specialize);
  s << kernel_entry(str(ct, "* __restrict__ out, const ", ct, "* __restrict__ x, const ", ct, "* __restrict__ rois"));
  s << params_binding<MaxRoiPoolParams>(specialize);
  s << R"(  const long long h = prm.height, w = prm.width, ph = prm.pooled_h, pw = prm.pooled_w;
  const float scale = (float)__longlong_as_double(prm.scale_bits);
)" << grid_stride_loop();
  s << R"(    const long long px = e % pw, py = (e / pw) % ph, c = (e / (pw * ph)) % prm.channels, r = e / (pw * ph * prm.channels);
    const )" << ct << R"(* roi = rois + 5 * r;
    const double batch = (double))" << load_expr(dtype, "roi", "0") << R"(;
    if (!(batch >= 0 && batch < (double)prm.batch)) {  // out of range: nothing to read (the reference fails)
      )" << store_stmt(dtype, "out", "e", "0.0") << R"(
      continue;
    }
    const long long x1 = )" << corner(1) << ", y1 = " << corner(2) << ", x2 = " << corner(3) << ", y2 = " << corner(4) << R"(;
    const float bin_h = (float)(y2 - y1 + 1 > 1 ? y2 - y1 + 1 : 1) / (float)ph;
    const float bin_w = (float)(x2 - x1 + 1 > 1 ? x2 - x1 + 1 : 1) / (float)pw;
    long long h0 = (long long)floorf((float)py * bin_h) + y1, h1 = (long long)ceilf((float)(py + 1) * bin_h) + y1;
    long long w0 = (long long)floorf((float)px * bin_w) + x1, w1 = (long long)ceilf((float)(px + 1) * bin_w) + x1;
    h0 = h0 < 0 ? 0 : (h0 > h ? h : h0); h1 = h1 < 0 ? 0 : (h1 > h ? h : h1);
    w0 = w0 < 0 ? 0 : (w0 > w ? w : w0); w1 = w1 < 0 ? 0 : (w1 > w ? w : w1);
    const )" << ct << R"(* plane = x + ((long long)batch * prm.channels + c) * h * w;
    double best = h1 <= h0 || w1 <= w0 ? 0.0 : -(double)__int_as_float(0x7f800000);  // an empty bin is 0
    for (long long yy = h0; yy < h1; ++yy)
      for (long long xx = w0; xx < w1; ++xx) {
        const double v = (double))" << load_expr(dtype, "plane", "yy * w + xx") << R"(;
        if (best < v) best = v;  // NaN never wins
      }
    )" << store_stmt(dtype, "out", "e", "best") << "\n  }\n}\n";
  return s.str();
}

std::string non_max_suppression_source(const NmsSpec& spec) {
  std::string bt = c_type(spec.boxes);
  std::ostringstream s;
  s << prelude();
  if (spec.kernel == NmsKernel::kList) {
    s << block_scan_source() << kernel_entry("long long* __restrict__ out, long long* __restrict__ count, const long long* __restrict__ work")
      << params_binding<NmsParams>(std::nullopt) << "  __shared__ long long scan[" << kBlock << "];\n"
      << R"(  const long long* kept = work;
  const long long* selected = work + prm.n;
  const int t = threadIdx.x;
  long long total = 0;
  for (long long first = 0; first < prm.n; first += )" << kBlock << R"() {
    kiln_block_scan(first + t < prm.n ? kept[first + t] : 0, scan);
    total += scan[)" << kBlock - 1 << R"(];
    __syncthreads();
  }
  if (t == 0) *count = total;
  if (total > prm.cap) return;  // the host reports it; nothing is written past the bound
  long long base = 0;
  for (long long first = 0; first < prm.n; first += )" << kBlock << R"() {
    const long long bc = first + t, k = bc < prm.n ? kept[bc] : 0;
    const long long at = base + kiln_block_scan(k, scan) - k;
    for (long long q = 0; q < k; ++q) {
      out[(at + q) * 3] = bc / prm.classes;
      out[(at + q) * 3 + 1] = bc % prm.classes;
      out[(at + q) * 3 + 2] = selected[bc * prm.boxes + q];
    }
    base += scan[)" << kBlock - 1 << R"(];
    __syncthreads();
  }
}
)";
    return s.str();
  }
  // The candidates' order: the higher score first, a NaN score after every
  // number, ties by index; the empty slots (-1) last.
  s << "__device__ bool kiln_first(const " << bt << R"(* s, const long long a, const long long c) {
  if (a < 0 || c < 0) return a >= 0 && c < 0;
  const double sa = (double))" << load_expr(spec.boxes, "s", "a") << ", sc = (double)" << load_expr(spec.boxes, "s", "c") << R"(;
  const bool na = sa != sa, nc = sc != sc;
  if (na || nc) return na != nc ? nc : a < c;
  return sa > sc || (sa == sc && a < c);
}
// One axis of a box: corners in either order, or a center and a size.
__device__ void kiln_extent(const )" << bt << R"(* box, const bool center, const int axis, double& lo, double& hi) {
  const double a = (double))" << load_expr(spec.boxes, "box", "axis") << ", b = (double)" << load_expr(spec.boxes, "box", "axis + 2") << R"(;
  if (center) { lo = a - b / 2; hi = a + b / 2; }
  else { lo = b < a ? b : a; hi = a < b ? b : a; }
}
// Whether kept box p suppresses box q, as the reference (products unfused).
__device__ bool kiln_suppresses(const )" << bt << R"(* boxes, const long long p, const long long q, const bool center, const double threshold) {
  const int xi = center ? 0 : 1, yi = center ? 1 : 0;
  double ax0, ax1, bx0, bx1, ay0, ay1, by0, by1;
  kiln_extent(boxes + 4 * p, center, xi, ax0, ax1); kiln_extent(boxes + 4 * q, center, xi, bx0, bx1);
  kiln_extent(boxes + 4 * p, center, yi, ay0, ay1); kiln_extent(boxes + 4 * q, center, yi, by0, by1);
  const double ix0 = ax0 < bx0 ? bx0 : ax0, ix1 = bx1 < ax1 ? bx1 : ax1, iy0 = ay0 < by0 ? by0 : ay0, iy1 = by1 < ay1 ? by1 : ay1;
  if (ix1 <= ix0 || iy1 <= iy0) return false;
  const double inter = __dmul_rn(ix1 - ix0, iy1 - iy0);
  const double area_a = __dmul_rn(ax1 - ax0, ay1 - ay0), area_b = __dmul_rn(bx1 - bx0, by1 - by0), uni = area_a + area_b - inter;
  if (inter <= 0 || area_a <= 0 || area_b <= 0 || uni <= 0) return false;
  return inter / uni > threshold;
}
)";
  s << kernel_entry(str("long long* __restrict__ work, const ", bt, "* __restrict__ boxes, const ", bt,
                 "* __restrict__ scores, const long long* __restrict__ max_output, const ", c_type(spec.iou),
                 "* __restrict__ iou, const ", c_type(spec.score_threshold), "* __restrict__ score_threshold"))
    << params_binding<NmsParams>(std::nullopt) << "  __shared__ unsigned long long candidates;\n";
  s << R"(  const int t = threadIdx.x;
  const long long bc = blockIdx.x, n = prm.boxes;
  long long* kept = work;
  long long* selected = work + prm.n + bc * n;
  long long* order = work + prm.n + prm.n * n + bc * prm.pow2;
  const )" << bt << "* s = scores + bc * n;\n  const " << bt << R"(* box = boxes + bc / prm.classes * n * 4;
  const long long most = prm.has_max_output && max_output[0] > 0 ? max_output[0] : 0;
  const double threshold = prm.has_iou ? (double))" << load_expr(spec.iou, "iou", "0") << R"( : 0.0;
  const double least = prm.has_score ? (double))" << load_expr(spec.score_threshold, "score_threshold", "0") << R"( : 0.0;
  if (t == 0) candidates = 0;
  __syncthreads();
  unsigned long long mine = 0;
  for (long long i = t; i < prm.pow2; i += )" << kBlock << R"() {
    const bool in = i < n && (!prm.has_score || (double))" << load_expr(spec.boxes, "s", "i") << R"( > least);
    order[i] = in ? i : -1;
    mine += in;
  }
  atomicAdd(&candidates, mine);
  __syncthreads();
  for (long long k = 2; k <= prm.pow2; k <<= 1)
    for (long long j = k >> 1; j > 0; j >>= 1) {
      for (long long i = t; i < prm.pow2; i += )" << kBlock << R"() {
        const long long l = i ^ j;
        if (l <= i) continue;
        const long long a = order[i], c = order[l];
        if ((i & k) == 0 ? kiln_first(s, c, a) : kiln_first(s, a, c)) { order[i] = c; order[l] = a; }
      }
      __syncthreads();
    }
  // Greedy: each candidate in order is kept unless a kept box suppressed it.
  const long long total = (long long)candidates;
  long long count = 0;
  for (long long i = 0; i < total && count < most; ++i) {
    const long long a = order[i];
    if (a < 0) continue;
    if (t == 0) selected[count] = a;
    ++count;
    for (long long j = i + 1 + t; j < total; j += )" << kBlock << R"() {
      const long long c = order[j];
      if (c >= 0 && kiln_suppresses(box, a, c, prm.center_point_box != 0, threshold)) order[j] = -1;
    }
    __syncthreads();
  }
  if (t == 0) kept[bc] = count;
}
)";
  return s.str();
}

std::string affine_grid_source(DType dtype, const std::optional<Params>& specialize) {
  std::string ct = c_type(dtype);
  std::ostringstream s;
  s << prelude() << params_constants<AffineGridParams>(specialize);
  s << kernel_entry(str(ct, "* __restrict__ out, const ", ct, "* __restrict__ theta"));
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
  s << kernel_entry(str(ct, "* __restrict__ out, const ", ct, "* __restrict__ x"));
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

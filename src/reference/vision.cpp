// The vision family: GridSample, RoiAlign, AffineGrid, Col2Im, MaxRoiPool and
// NonMaxSuppression, as ONNX defines them (onnx.reference's implementations;
// ONNX Runtime's for MaxRoiPool, which onnx.reference lacks), in float64.
// The GPU kernels (src/runtime/codegen/vision.cpp) follow these step by step.
// ImageDecoder decodes with src/image, which the GPU runtime uses too.
#include <algorithm>
#include <cmath>

#include "image/image_decoder.h"
#include "kernels.h"
#include "kiln/ir/vision.h"

namespace kiln::reference {

using ir::OpKind;

namespace {

// ---- GridSample ------------------------------------------------------------------

// Reflects x into [lo, hi] by its near border until it lies inside; a
// degenerate range (one pixel with align_corners) reflects to lo, as PyTorch.
double reflect(double x, double lo, double hi) {
  double range = hi - lo;
  if (range <= 0) return lo;
  if (x >= lo && x <= hi) return x;
  bool below = x < lo;
  double dx = below ? lo - x : x - hi, flips = std::floor(dx / range), r = dx - flips * range;
  bool even = std::fmod(flips, 2.0) == 0;
  double y = below == even ? lo + r : hi - r;
  return std::clamp(y, lo, hi);  // r can leave [0, range] by rounding when dx is huge
}

// Keys' cubic convolution weights (A = -0.75) of the 4 taps floor(x) - 1 .. floor(x) + 2, t = x - floor(x).
void cubic_weights(double t, double w[4]) {
  const double a = -0.75;
  auto near = [&](double s) { return ((a + 2) * s - (a + 3)) * s * s + 1; };
  auto far = [&](double s) { return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a; };
  w[0] = far(t + 1), w[1] = near(t), w[2] = near(1 - t), w[3] = far(2 - t);
}

struct GridSampleSetup {
  int mode;     // 0 linear, 1 nearest, 2 cubic
  int padding;  // 0 zeros, 1 border, 2 reflection
  bool align;
};

// The taps of one spatial dim of `size` for normalized coordinate v: indices
// (-1 where zero padding reads nothing) and weights; returns the tap count.
int dim_taps(const GridSampleSetup& s, double v, int64_t size, int64_t idx[4], double w[4]) {
  double x = s.align ? (v + 1) / 2 * double(size - 1) : ((v + 1) * double(size) - 1) / 2;
  if (s.mode == 1) x = std::nearbyint(x);  // half to even, as PyTorch and ONNX
  double lo = s.align ? 0.0 : -0.5, hi = s.align ? double(size - 1) : double(size) - 0.5;
  if (x < lo || x > hi) {
    if (s.padding == 1) x = std::clamp(x, 0.0, double(size - 1));
    else if (s.padding == 2) x = reflect(x, lo, hi);
  }
  if (!(std::fabs(x) <= 1e9)) x = -100;  // NaN and far-off points: PyTorch's safe index, read as padding
  double base = std::floor(x), t = x - base;
  int taps = s.mode == 1 ? 1 : s.mode == 0 ? 2 : 4;
  int64_t first = int64_t(base) - (s.mode == 2 ? 1 : 0);
  if (s.mode == 1) w[0] = 1;
  else if (s.mode == 0) w[0] = 1 - t, w[1] = t;
  else cubic_weights(t, w);
  for (int k = 0; k < taps; ++k) {
    int64_t j = first + k;
    if (s.padding == 0) idx[k] = j >= 0 && j < size ? j : -1;
    else if (s.padding == 1) idx[k] = std::clamp<int64_t>(j, 0, size - 1);
    else idx[k] = std::clamp<int64_t>(int64_t(reflect(double(j), lo, hi)), 0, size - 1);
  }
  return taps;
}

Tensor run_grid_sample(const KernelContext& c) {
  const Tensor &tx = c.in(0), &tg = c.in(1);
  std::string mode = c.attrs().get_string("mode", "linear"), padding = c.attrs().get_string("padding_mode", "zeros");
  GridSampleSetup s{mode == "linear" ? 0 : mode == "nearest" ? 1 : 2, padding == "zeros" ? 0 : padding == "border" ? 1 : 2,
                    c.attrs().get_int("align_corners", 0) != 0};
  std::vector<int64_t> dims = c.out_dims(0), in_sp = spatial_of(tx.dims), out_sp = spatial_of(dims);
  size_t r = in_sp.size();
  int64_t n = dims[0], ch = dims[1], ivol = ir::checked_numel(in_sp), ovol = ir::checked_numel(out_sp);
  std::vector<double> x = to_doubles(tx), grid = to_doubles(tg), y(size_t(ir::checked_numel(dims)));
  if (ivol == 0) {  // nothing to sample from: fine only for an empty output
    if (!y.empty()) c.error(ErrorCode::kShapeError, "X of shape ", ir::shape_to_string(ir::shape_of(tx.dims)), " has no pixels to sample");
    return from_doubles(c.out_dtype(0), dims, y);
  }
  auto in_strides = strides_of(in_sp);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t o = 0; o < ovol; ++o) {
      int64_t idx[3][4];
      double w[3][4];
      int taps[3];
      const double* point = grid.data() + (b * ovol + o) * int64_t(r);
      for (size_t d = 0; d < r; ++d) taps[d] = dim_taps(s, point[r - 1 - d], in_sp[d], idx[d], w[d]);  // x first: the last dim
      for (int64_t k = 0; k < ch; ++k) {
        const double* plane = x.data() + (b * ch + k) * ivol;
        double acc = 0;
        for_each_index(std::vector<int64_t>(taps, taps + r), [&](const std::vector<int64_t>& t) {
          double weight = 1;
          int64_t off = 0;
          for (size_t d = 0; d < r; ++d) {
            if (idx[d][t[d]] < 0) return;  // zero padding
            weight *= w[d][t[d]];
            off += idx[d][t[d]] * in_strides[d];
          }
          acc += weight * plane[off];
        });
        y[size_t((b * ch + k) * ovol + o)] = acc;
      }
    }
  return from_doubles(c.out_dtype(0), dims, y);
}

// ---- RoiAlign --------------------------------------------------------------------

// One bilinear sample at (y, x) of an H x W plane, as ONNX Runtime: its 4
// corner values times their weights, which avg sums and max takes the largest
// of; all 0 outside [-1, H] x [-1, W] (or at NaN).
void roi_sample(const double* plane, double y, double x, int64_t h, int64_t w, double v[4]) {
  std::fill(v, v + 4, 0.0);
  if (!(y >= -1.0 && y <= double(h) && x >= -1.0 && x <= double(w))) return;
  y = std::max(y, 0.0), x = std::max(x, 0.0);
  int64_t y0 = int64_t(y), x0 = int64_t(x), y1, x1;
  if (y0 >= h - 1) y0 = y1 = h - 1, y = double(y0);
  else y1 = y0 + 1;
  if (x0 >= w - 1) x0 = x1 = w - 1, x = double(x0);
  else x1 = x0 + 1;
  double ly = y - double(y0), lx = x - double(x0), hy = 1 - ly, hx = 1 - lx;
  v[0] = hy * hx * plane[y0 * w + x0], v[1] = hy * lx * plane[y0 * w + x1];
  v[2] = ly * hx * plane[y1 * w + x0], v[3] = ly * lx * plane[y1 * w + x1];
}

Tensor run_roi_align(const KernelContext& c) {
  const Tensor &tx = c.in(0), &trois = c.in(1);
  std::vector<double> x = to_doubles(tx), rois = to_doubles(trois), y;
  std::vector<int64_t> batch = to_ints(c.in(2)), dims = c.out_dims(0);
  int64_t n = tx.dims[0], ch = tx.dims[1], h = tx.dims[2], w = tx.dims[3], ph = dims[2], pw = dims[3];
  bool half_pixel = c.attrs().get_string("coordinate_transformation_mode", "half_pixel") == "half_pixel";
  bool is_max = c.attrs().get_string("mode", "avg") == "max";
  int64_t ratio = c.attrs().get_int("sampling_ratio", 0);
  double scale = c.attrs().get_float("spatial_scale", 1.0), offset = half_pixel ? 0.5 : 0.0;
  if (h * w == 0 && dims[0] * ch > 0)
    c.error(ErrorCode::kShapeError, "X of shape ", ir::shape_to_string(ir::shape_of(tx.dims)), " has no pixels to sample");
  y.reserve(size_t(ir::checked_numel(dims)));
  for (int64_t i = 0; i < dims[0]; ++i) {
    if (batch[size_t(i)] < 0 || batch[size_t(i)] >= n)
      c.error(ErrorCode::kShapeError, "batch_indices[", i, "] = ", batch[size_t(i)], " is out of range for X's batch of ", n);
    const double* roi = rois.data() + 4 * i;
    double x0 = roi[0] * scale - offset, y0 = roi[1] * scale - offset;
    double rw = roi[2] * scale - offset - x0, rh = roi[3] * scale - offset - y0;
    if (!half_pixel) rw = std::max(rw, 1.0), rh = std::max(rh, 1.0);  // malformed RoIs become 1x1
    double bin_h = rh / double(ph), bin_w = rw / double(pw);
    auto grid_of = [&](double bin) -> int64_t {  // an empty, negative or NaN bin takes no samples
      if (ratio > 0) return ratio;
      return bin > 0 ? int64_t(std::min(std::ceil(bin), double(ir::kRoiAlignMaxGrid))) : 0;
    };
    int64_t gh = grid_of(bin_h), gw = grid_of(bin_w), count = std::max<int64_t>(gh * gw, 1);
    for (int64_t k = 0; k < ch; ++k) {
      const double* plane = x.data() + (batch[size_t(i)] * ch + k) * h * w;
      for (int64_t py = 0; py < ph; ++py)
        for (int64_t px = 0; px < pw; ++px) {
          double acc = 0;
          bool any = false;
          for (int64_t iy = 0; iy < gh; ++iy)
            for (int64_t ix = 0; ix < gw; ++ix) {
              double v[4];
              roi_sample(plane, y0 + double(py) * bin_h + (double(iy) + 0.5) * bin_h / double(gh),
                         x0 + double(px) * bin_w + (double(ix) + 0.5) * bin_w / double(gw), h, w, v);
              if (!is_max) {
                acc += v[0] + v[1] + v[2] + v[3];
                continue;
              }
              // ONNX's max mode: the largest weighted corner value of any sample.
              double best = std::max(std::max(v[0], v[1]), std::max(v[2], v[3]));
              acc = any ? std::max(acc, best) : best;
              any = true;
            }
          y.push_back(is_max ? acc : acc / double(count));
        }
    }
  }
  return from_doubles(c.out_dtype(0), dims, y);
}

// ---- AffineGrid ------------------------------------------------------------------

// The normalized coordinate of position i of n along a dim.
double base_coordinate(int64_t i, int64_t n, bool align) {
  if (align) return n > 1 ? -1 + 2 * double(i) / double(n - 1) : -1.0;
  return -1 + (2 * double(i) + 1) / double(n);
}

Tensor run_affine_grid(const KernelContext& c) {
  std::vector<double> theta = to_doubles(c.in(0));
  std::vector<int64_t> dims = c.out_dims(0);
  int64_t r = dims.back();
  bool align = c.attrs().get_int("align_corners", 0) != 0;
  std::vector<int64_t> sp(dims.begin() + 1, dims.end() - 1);
  std::vector<double> y;
  y.reserve(size_t(ir::checked_numel(dims)));
  for (int64_t b = 0; b < dims[0]; ++b) {
    const double* t = theta.data() + b * r * (r + 1);
    for_each_index(sp, [&](const std::vector<int64_t>& idx) {
      double base[4];  // x (the last dim), y, [z], 1
      for (int64_t d = 0; d < r; ++d) base[d] = base_coordinate(idx[size_t(r - 1 - d)], sp[size_t(r - 1 - d)], align);
      base[r] = 1;
      for (int64_t row = 0; row < r; ++row) {
        double v = 0;
        for (int64_t k = 0; k <= r; ++k) v += t[row * (r + 1) + k] * base[k];
        y.push_back(v);
      }
    });
  }
  return from_doubles(c.out_dtype(0), dims, y);
}

// ---- Col2Im ----------------------------------------------------------------------

// Each column l of row (c, k) is the block element k at block position l:
// added into the image where that lands inside it.
Tensor run_col2im(const KernelContext& c) {
  const Tensor& tx = c.in(0);
  std::vector<int64_t> image = to_ints(c.in(1)), dims = c.out_dims(0);
  ir::Col2ImGeometry g = ir::col2im_geometry(c.node, to_ints(c.in(2)));
  size_t r = image.size();
  std::vector<int64_t> blocks(r);
  for (size_t d = 0; d < r; ++d) blocks[d] = ir::col2im_blocks(g, int64_t(d), image[d]);
  int64_t volume = ir::checked_numel(g.block), columns = ir::checked_numel(blocks), pixels = ir::checked_numel(image);
  std::vector<double> x = to_doubles(tx), y(size_t(ir::checked_numel(dims)), 0.0);
  auto image_strides = strides_of(image);
  for (int64_t plane = 0; plane < dims[0] * dims[1]; ++plane) {
    int64_t k = 0;
    for_each_index(g.block, [&](const std::vector<int64_t>& kk) {
      int64_t l = 0;
      for_each_index(blocks, [&](const std::vector<int64_t>& ll) {
        int64_t at = 0;
        bool inside = true;
        for (size_t d = 0; d < r; ++d) {
          int64_t pos = ll[d] * g.strides[d] - g.pads[d] + kk[d] * g.dilations[d];
          inside = inside && pos >= 0 && pos < image[d];
          at += pos * image_strides[d];
        }
        if (inside) y[size_t(plane * pixels + at)] += x[size_t((plane * volume + k) * columns + l)];
        ++l;
      });
      ++k;
    });
  }
  return from_doubles(c.out_dtype(0), dims, y);
}

// ---- MaxRoiPool -------------------------------------------------------------------

// The largest value of each bin of each RoI, as ONNX Runtime (Caffe's RoI
// pooling): corners rounded to pixels after scaling, bins of the RoI's size
// over the pooled size, their geometry in float32 as there; an empty bin is 0.
Tensor run_max_roi_pool(const KernelContext& c) {
  const Tensor &tx = c.in(0), &trois = c.in(1);
  std::vector<double> x = to_doubles(tx), rois = to_doubles(trois);
  std::vector<int64_t> dims = c.out_dims(0);
  int64_t n = tx.dims[0], ch = tx.dims[1], h = tx.dims[2], w = tx.dims[3], ph = dims[2], pw = dims[3];
  float scale = float(c.attrs().get_float("spatial_scale", 1.0));
  std::vector<double> y(size_t(ir::checked_numel(dims)));
  for (int64_t r = 0; r < dims[0]; ++r) {
    const double* roi = rois.data() + r * 5;
    int64_t b = int64_t(roi[0]);
    if (!(roi[0] >= 0 && roi[0] < double(n)))
      c.error(ErrorCode::kInvalidArgument, "RoI ", r, " has batch index ", roi[0], ", outside [0, ", n, ")");
    int64_t x1 = int64_t(std::round(float(roi[1]) * scale)), y1 = int64_t(std::round(float(roi[2]) * scale));
    int64_t x2 = int64_t(std::round(float(roi[3]) * scale)), y2 = int64_t(std::round(float(roi[4]) * scale));
    float bin_h = float(std::max<int64_t>(y2 - y1 + 1, 1)) / float(ph), bin_w = float(std::max<int64_t>(x2 - x1 + 1, 1)) / float(pw);
    for (int64_t k = 0; k < ch; ++k) {
      const double* plane = x.data() + (b * ch + k) * h * w;
      for (int64_t i = 0; i < ph; ++i)
        for (int64_t j = 0; j < pw; ++j) {
          int64_t h0 = std::clamp<int64_t>(int64_t(std::floor(float(i) * bin_h)) + y1, 0, h);
          int64_t h1 = std::clamp<int64_t>(int64_t(std::ceil(float(i + 1) * bin_h)) + y1, 0, h);
          int64_t w0 = std::clamp<int64_t>(int64_t(std::floor(float(j) * bin_w)) + x1, 0, w);
          int64_t w1 = std::clamp<int64_t>(int64_t(std::ceil(float(j + 1) * bin_w)) + x1, 0, w);
          double best = h1 <= h0 || w1 <= w0 ? 0.0 : -INFINITY;
          for (int64_t yy = h0; yy < h1; ++yy)
            for (int64_t xx = w0; xx < w1; ++xx) best = std::max(best, plane[yy * w + xx]);  // NaN never wins
          y[size_t(((r * ch + k) * ph + i) * pw + j)] = best;
        }
    }
  }
  return from_doubles(c.out_dtype(0), dims, y);
}

// ---- NonMaxSuppression ---------------------------------------------------------------

// Whether box a suppresses box b (their IoU above the threshold), as ONNX's
// reference: corners [y1, x1, y2, x2] in either order, or [x_center,
// y_center, width, height]; boxes without area suppress nothing.
bool suppresses(const double* a, const double* b, bool center, double iou_threshold) {
  auto extent = [&](const double* box, int axis, double& lo, double& hi) {
    if (center) {
      lo = box[axis] - box[axis + 2] / 2, hi = box[axis] + box[axis + 2] / 2;
    } else {
      lo = std::min(box[axis], box[axis + 2]), hi = std::max(box[axis], box[axis + 2]);
    }
  };
  // Corner boxes hold y first, center boxes x first.
  int xi = center ? 0 : 1, yi = center ? 1 : 0;
  double ax0, ax1, bx0, bx1, ay0, ay1, by0, by1;
  extent(a, xi, ax0, ax1), extent(b, xi, bx0, bx1), extent(a, yi, ay0, ay1), extent(b, yi, by0, by1);
  double ix0 = std::max(ax0, bx0), ix1 = std::min(ax1, bx1), iy0 = std::max(ay0, by0), iy1 = std::min(ay1, by1);
  if (ix1 <= ix0 || iy1 <= iy0) return false;
  double inter = (ix1 - ix0) * (iy1 - iy0);
  double area_a = (ax1 - ax0) * (ay1 - ay0), area_b = (bx1 - bx0) * (by1 - by0), uni = area_a + area_b - inter;
  if (inter <= 0 || area_a <= 0 || area_b <= 0 || uni <= 0) return false;
  return inter / uni > iou_threshold;
}

// Per batch and class: the boxes above the score threshold by score (the
// higher first, ties by index, NaN last), each kept unless a kept one
// suppresses it, at most max_output_boxes_per_class. An omitted or empty
// optional input counts as absent: no boxes, IoU threshold 0, no score threshold.
Tensor run_non_max_suppression(const KernelContext& c) {
  const Tensor &tb = c.in(0), &ts = c.in(1);
  std::vector<double> boxes = to_doubles(tb), scores = to_doubles(ts);
  auto given = [&](size_t i) { return c.has(i) && c.in(i).numel() > 0; };
  int64_t most = given(2) ? std::max<int64_t>(to_ints(c.in(2))[0], 0) : 0;
  double iou = given(3) ? to_doubles(c.in(3))[0] : 0.0;
  bool thresholded = given(4);
  double score_threshold = thresholded ? to_doubles(c.in(4))[0] : 0.0;
  bool center = c.attrs().get_int("center_point_box", 0) != 0;
  int64_t batches = tb.dims[0], n = tb.dims[1], classes = ts.dims[1];
  std::vector<int64_t> out;
  for (int64_t b = 0; b < batches; ++b)
    for (int64_t k = 0; k < classes; ++k) {
      const double* s = scores.data() + (b * classes + k) * n;
      std::vector<int64_t> order;
      for (int64_t i = 0; i < n; ++i)
        if (!thresholded || s[i] > score_threshold) order.push_back(i);
      auto key = [&](int64_t i) { return std::isnan(s[i]) ? -INFINITY : s[i]; };
      std::stable_sort(order.begin(), order.end(), [&](int64_t p, int64_t q) {
        return key(p) > key(q) || (key(p) == key(q) && std::isnan(s[q]) && !std::isnan(s[p]));
      });
      std::vector<int64_t> kept;
      for (int64_t i : order) {
        if (int64_t(kept.size()) >= most) break;
        bool keep = std::none_of(kept.begin(), kept.end(), [&](int64_t j) {
          return suppresses(boxes.data() + (b * n + j) * 4, boxes.data() + (b * n + i) * 4, center, iou);
        });
        if (!keep) continue;
        kept.push_back(i);
        out.insert(out.end(), {b, k, i});
      }
    }
  return from_ints(DType::kInt64, {int64_t(out.size() / 3), 3}, out);
}

// ---- ImageDecoder ----------------------------------------------------------------

Tensor run_image_decoder(const KernelContext& c) {
  image::PixelFormat format = image::PixelFormat::kRgb;
  std::string name = c.attrs().get_string("pixel_format", "RGB");
  if (!image::parse_pixel_format(name, format)) c.error(ErrorCode::kInvalidModel, "pixel_format '", name, "' is not RGB, BGR or Grayscale");
  const Tensor& in = c.in(0);
  image::Image decoded;
  try {
    decoded = image::decode({reinterpret_cast<const uint8_t*>(in.data.data()), in.data.size()}, format);
  } catch (const Error& e) {
    c.error(e.code(), "input 0: ", e.what());
  }
  Tensor t;
  t.dtype = DType::kUInt8;
  t.dims = {decoded.height, decoded.width, decoded.channels};
  t.data = Buffer::copy_of(decoded.pixels.data(), decoded.pixels.size());
  return t;
}

}  // namespace

Kernel vision_kernel(OpKind op) {
  switch (op) {
    case OpKind::kGridSample: return one_output<run_grid_sample>;
    case OpKind::kRoiAlign: return one_output<run_roi_align>;
    case OpKind::kAffineGrid: return one_output<run_affine_grid>;
    case OpKind::kCol2Im: return one_output<run_col2im>;
    case OpKind::kMaxRoiPool: return one_output<run_max_roi_pool>;
    case OpKind::kNonMaxSuppression: return one_output<run_non_max_suppression>;
    case OpKind::kImageDecoder: return one_output<run_image_decoder>;
    default: return nullptr;
  }
}

}  // namespace kiln::reference

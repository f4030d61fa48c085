// Sliding windows, shared by the conv and pool families: output size and
// padding per spatial dim, and the channels-last layouts cuDNN runs them in.
#include "kiln/ir/window.h"

#include "family.h"

namespace kiln::ir {

WindowDims window_dims(const Ctx& c, const Shape& in, const std::vector<int64_t>& kernel, bool transpose,
                       const Shape* explicit_output) {
  size_t n = kernel.size();
  const Attributes& a = c.attrs();
  std::vector<int64_t> strides = a.get_ints("strides", std::vector<int64_t>(n, 1));
  std::vector<int64_t> dil = a.get_ints("dilations", std::vector<int64_t>(n, 1));
  std::vector<int64_t> pads = a.get_ints("pads", std::vector<int64_t>(2 * n, 0));
  std::string auto_pad = a.get_string("auto_pad", "NOTSET");
  bool ceil_mode = a.get_int("ceil_mode", 0) != 0;
  if (strides.size() != n || dil.size() != n || pads.size() != 2 * n)
    c.error(ErrorCode::kInvalidModel, "strides/dilations/pads do not fit ", n, " spatial dims");
  for (size_t i = 0; i < n; ++i) {
    if (strides[i] < 1 || dil[i] < 1 || kernel[i] < 1)
      c.error(ErrorCode::kInvalidModel, "strides, dilations and kernel sizes must be positive");
    if (pads[i] < 0 || pads[n + i] < 0) c.error(ErrorCode::kInvalidModel, "pads must be non-negative");
  }
  if (auto_pad != "NOTSET" && auto_pad != "SAME_UPPER" && auto_pad != "SAME_LOWER" && auto_pad != "VALID")
    c.error(ErrorCode::kInvalidModel, "auto_pad '", auto_pad, "' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID");
  std::vector<int64_t> out_pad = a.get_ints("output_padding", std::vector<int64_t>(n, 0));
  if (out_pad.size() != n) c.error(ErrorCode::kInvalidModel, "output_padding does not fit ", n, " spatial dims");
  WindowDims w;
  for (size_t i = 0; i < n; ++i) {
    Dim extent = Dim(dil[i] * (kernel[i] - 1) + 1);
    Dim pb = pads[i], pe = pads[n + i], out;
    if (!transpose) {
      if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
        out = ceil_div(in[i], strides[i]);
        Dim total = dim_max(Dim(0), (out - 1) * strides[i] + extent - in[i]);
        Dim small = floor_div(total, 2);
        pb = auto_pad == "SAME_UPPER" ? small : total - small;
        pe = total - pb;
      } else {
        if (auto_pad == "VALID") pb = pe = 0;
        Dim span = in[i] + pb + pe - extent;
        out = (ceil_mode ? ceil_div(span, strides[i]) : floor_div(span, strides[i])) + 1;
        if (ceil_mode && out.is_constant() && (out.constant() - 1) * strides[i] >= (in[i] + pb).constant())
          out = out - 1;  // the last window would start in the end padding
      }
    } else {
      Dim full = Dim(strides[i]) * (in[i] - 1) + out_pad[i] + extent;
      if (explicit_output) {
        out = (*explicit_output)[i];
        Dim total = dim_max(Dim(0), full - out);
        Dim small = floor_div(total, 2);
        pb = auto_pad == "SAME_UPPER" ? small : total - small;
        pe = total - pb;
      } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
        out = in[i] * strides[i];
        Dim total = dim_max(Dim(0), full - out);
        Dim small = floor_div(total, 2);
        pb = auto_pad == "SAME_UPPER" ? small : total - small;
        pe = total - pb;
      } else {
        if (auto_pad == "VALID") pb = pe = 0;
        out = full - pb - pe;
      }
    }
    if (out.is_constant() && out.constant() < 1)
      c.error(ErrorCode::kShapeError, "spatial dim ", i, " of size ", in[i].to_string(), " gives output size ",
              out.constant(), " (window too large?)");
    w.pads_begin.push_back(pb);
    w.pads_end.push_back(pe);
    w.output.push_back(out);
  }
  return w;
}

WindowGeometry window_geometry(const Node& node, const std::vector<int64_t>& input_spatial,
                               const std::vector<int64_t>& kernel_spatial) {
  std::vector<InferInput> none;
  std::function<Dim()> fresh = [] { return Dim(0); };
  Ctx c(node, none, fresh);
  size_t n = kernel_spatial.size();
  bool transpose = node.op == OpKind::kConvTranspose;
  Shape explicit_out;
  auto os = node.attrs.get_ints("output_shape");
  if (transpose && !os.empty()) {
    if (os.size() == n + 2) os.erase(os.begin(), os.begin() + 2);
    explicit_out = shape_of(os);
  }
  WindowDims w = window_dims(c, shape_of(input_spatial), kernel_spatial, transpose,
                             explicit_out.empty() ? nullptr : &explicit_out);
  WindowGeometry g;
  g.kernel = kernel_spatial;
  g.strides = node.attrs.get_ints("strides", std::vector<int64_t>(n, 1));
  g.dilations = node.attrs.get_ints("dilations", std::vector<int64_t>(n, 1));
  g.pads_begin = shape_constants(w.pads_begin);
  g.pads_end = shape_constants(w.pads_end);
  g.output = shape_constants(w.output);
  return g;
}

std::vector<int64_t> to_channels_last_perm(size_t rank) {
  std::vector<int64_t> perm{0};
  for (size_t i = 2; i < rank; ++i) perm.push_back(int64_t(i));
  perm.push_back(1);
  return perm;
}

std::vector<int64_t> to_channels_first_perm(size_t rank) {
  std::vector<int64_t> perm{0, int64_t(rank) - 1};
  for (size_t i = 1; i + 1 < rank; ++i) perm.push_back(int64_t(i));
  return perm;
}

bool has_symmetric_explicit_pads(const Node& node) {
  std::string auto_pad = node.attrs.get_string("auto_pad", "NOTSET");
  if (auto_pad == "VALID") return true;
  if (auto_pad != "NOTSET") return false;  // SAME_*: the split of an odd total is decided per shape
  auto pads = node.attrs.get_ints("pads");
  for (size_t i = 0; i < pads.size() / 2; ++i)
    if (pads[i] != pads[i + pads.size() / 2]) return false;
  return true;
}

bool is_plain_pool_window(const Node& node) {
  auto dilations = node.attrs.get_ints("dilations");
  return has_symmetric_explicit_pads(node) && node.attrs.get_int("ceil_mode", 0) == 0 &&
         std::all_of(dilations.begin(), dilations.end(), [](int64_t d) { return d == 1; });
}

}  // namespace kiln::ir

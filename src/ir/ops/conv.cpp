// The conv family: Conv, ConvTranspose, CausalConvWithState, DeformConv and
// the builder's ConvChannelsLast (window geometry: window.cpp).
#include "kiln/ir/window.h"
#include "family.h"

namespace kiln::ir {

namespace {

std::vector<int64_t> kernel_from_weight(const Ctx& c, const Shape& w) {
  std::vector<int64_t> k;
  for (size_t i = 2; i < w.size(); ++i) {
    if (!w[i].is_constant()) c.error(ErrorCode::kShapeError, "kernel dims must be constant");
    k.push_back(w[i].constant());
  }
  auto attr = c.attrs().get_ints("kernel_shape", k);
  if (attr != k) c.error(ErrorCode::kShapeError, "kernel_shape attribute does not match the weight shape");
  return k;
}

// The output shape of a convolution of input ix by weight iw (channels first).
// ConvChannelsLast is Conv with its input, weight and output seen through the
// channels-first permutation.
Shape conv_output_shape(Ctx& c, size_t ix, size_t iw, bool transpose, bool channels_last = false) {
  c.require_rank(ix, 3);
  Shape x = c.shape(ix), w = c.shape(iw);
  if (channels_last) {
    if (w.size() != x.size())
      c.error(ErrorCode::kShapeError, "weight rank ", w.size(), " does not match input rank ", x.size());
    x = permuted(x, to_channels_first_perm(x.size()));
    w = permuted(w, to_channels_first_perm(w.size()));
  }
  if (w.size() != x.size())
    c.error(ErrorCode::kShapeError, "weight rank ", w.size(), " does not match input rank ", x.size());
  int64_t group = c.attrs().get_int("group", 1);
  if (group < 1) c.error(ErrorCode::kInvalidModel, "group must be >= 1");
  std::vector<int64_t> kernel = kernel_from_weight(c, w);
  Shape spatial(x.begin() + 2, x.end());
  Dim out_channels;
  if (!transpose) {
    check_equal_dims(c, x[1], w[1] * group, "input channels and weight channels * group");
    out_channels = w[0];
  } else {
    check_equal_dims(c, x[1], w[0], "input channels and weight dim 0");
    out_channels = w[1] * group;
  }
  if (w[0].is_constant() && w[0].constant() % group != 0)
    c.error(ErrorCode::kShapeError, "weight dim 0 (", w[0].constant(), ") is not divisible by group ", group);
  Shape explicit_out;
  auto os = c.attrs().get_ints("output_shape");
  if (transpose && !os.empty()) {
    if (os.size() == spatial.size() + 2) os.erase(os.begin(), os.begin() + 2);
    if (os.size() != spatial.size()) c.error(ErrorCode::kInvalidModel, "output_shape does not fit the spatial rank");
    explicit_out = shape_of(os);
  }
  WindowDims wd = window_dims(c, spatial, kernel, transpose, explicit_out.empty() ? nullptr : &explicit_out);
  Shape out{x[0], out_channels};
  out.insert(out.end(), wd.output.begin(), wd.output.end());
  return channels_last ? permuted(out, to_channels_last_perm(out.size())) : out;
}

// A bias (input i): one value per output channel of `out`.
void check_bias(Ctx& c, size_t i, const Shape& out, bool channels_last) {
  if (!c.has(i)) return;
  c.require_rank(i, 1, 1);
  check_equal_dims(c, c.shape(i)[0], out[channels_last ? out.size() - 1 : 1], "bias length and output channels");
}

void infer_conv_op(Ctx& c, bool transpose, bool channels_last = false) {
  c.require_float(0);
  c.require_same_dtype(0, 1);
  Shape out = conv_output_shape(c, 0, 1, transpose, channels_last);
  check_bias(c, 2, out, channels_last);
  c.set(0, c.dtype(0), out);
}

// A zero point or scale (input i) of a quantized convolution: one value, or
// (where per_channel) one per output channel.
void check_conv_param(Ctx& c, size_t i, const Shape& out, bool per_channel) {
  const Shape& p = c.shape(i);
  if (std::all_of(p.begin(), p.end(), [](const Dim& d) { return d == Dim(1); })) return;
  if (!per_channel || p.size() != 1)
    c.error(ErrorCode::kShapeError, c.input_name(i), " has shape ", shape_to_string(p), "; expected one value",
            per_channel ? " or one per output channel" : "");
  check_equal_dims(c, p[0], out[1], "the per-channel parameter's length and the output channels");
}

// ConvInteger (x, w, x_zero_point?, w_zero_point?): int32 convolution of (x - x_zero_point) by (w - w_zero_point).
void infer_conv_integer(Ctx& c) {
  c.require_dtype(0, {DType::kInt8, DType::kUInt8});
  c.require_dtype(1, {DType::kInt8, DType::kUInt8});
  Shape out = conv_output_shape(c, 0, 1, false);
  for (size_t i : {size_t(2), size_t(3)})
    if (c.has(i)) {
      c.require_same_dtype(i - 2, i);
      check_conv_param(c, i, out, i == 3);
    }
  c.set(0, DType::kInt32, out);
}

// QLinearConv (x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale,
// y_zero_point, B?): the integer convolution plus the int32 bias, requantized
// to y's scale and zero point. w's scale and zero point may be per output channel.
void infer_qlinear_conv(Ctx& c) {
  c.require_dtype(0, {DType::kInt8, DType::kUInt8});
  c.require_dtype(3, {DType::kInt8, DType::kUInt8});
  c.require_dtype(7, {DType::kInt8, DType::kUInt8});
  c.require_same_dtype(0, 2);
  c.require_same_dtype(3, 5);
  for (size_t i : {size_t(1), size_t(4), size_t(6)}) c.require_dtype(i, {DType::kFloat32});
  Shape out = conv_output_shape(c, 0, 3, false);
  for (size_t i = 1; i < 8; ++i)
    if (i != 3) check_conv_param(c, i, out, i == 4 || i == 5);
  if (c.has(8)) c.require_dtype(8, {DType::kInt32});
  check_bias(c, 8, out, false);
  c.set(0, c.dtype(7), out);
}

// Input [B, C, L], weight [C, 1, k], bias [C], past_state [B, C, k - 1]:
// output [B, C, L], present_state [B, C, k - 1].
void infer_causal_conv(Ctx& c) {
  c.require_float(0);
  c.require_rank(0, 3, 3);
  c.require_same_dtype(0, 1);
  c.require_rank(1, 3, 3);
  const Shape &x = c.shape(0), &w = c.shape(1);
  std::string activation = c.attrs().get_string("activation", "none");
  if (activation != "none" && activation != "silu" && activation != "swish")
    c.error(ErrorCode::kInvalidModel, "activation '", activation, "' is not one of none, silu, swish");
  if (!w[2].is_constant()) c.error(ErrorCode::kShapeError, "the kernel size (weight dim 2) must be a constant");
  int64_t k = w[2].constant();
  if (k < 1) c.error(ErrorCode::kShapeError, "weight of shape ", shape_to_string(w), " has no taps; k must be >= 1");
  check_equal_dims(c, w[0], x[1], "weight dim 0 and input channels");
  if (w[1].is_constant() && w[1].constant() != 1)
    c.error(ErrorCode::kShapeError, "weight of shape ", shape_to_string(w), " is not depthwise; expected [channels, 1, k]");
  Shape state{x[0], x[1], Dim(k - 1)};
  if (c.has(2)) {
    c.require_same_dtype(0, 2);
    c.require_rank(2, 1, 1);
    check_equal_dims(c, c.shape(2)[0], x[1], "bias length and input channels");
  }
  if (c.has(3)) {
    c.require_same_dtype(0, 3);
    c.require_rank(3, 3, 3);
    for (size_t d = 0; d < 3; ++d)
      check_equal_dims(c, c.shape(3)[d], state[d], "past_state and [batch, channels, k - 1]");
  }
  c.set(0, c.dtype(0), x);
  c.set(1, c.dtype(0), state);
}

// DeformConv (X, W, offset, B?, mask?), 2-D: a Conv whose taps each sample X
// at their own offset. offset [N, offset_group * kH * kW * 2, oH, oW] (per
// tap a dy, then a dx), mask [N, offset_group * kH * kW, oH, oW].
void infer_deform_conv(Ctx& c) {
  c.require_float(0);
  if (c.rank(0) != 4)
    c.error(ErrorCode::kUnsupported, "input 0 has shape ", shape_to_string(c.shape(0)),
            "; kiln runs DeformConv over 2 spatial dims (N, C, H, W)");
  c.require_same_dtype(0, 1);
  c.require_same_dtype(0, 2);
  Shape out = conv_output_shape(c, 0, 1, false);
  check_bias(c, 3, out, false);
  int64_t offset_group = c.attrs().get_int("offset_group", 1);
  if (offset_group < 1) c.error(ErrorCode::kInvalidModel, "offset_group ", offset_group, " must be >= 1");
  const Dim& channels = c.shape(0)[1];
  if (channels.is_constant() && channels.constant() % offset_group != 0)
    c.error(ErrorCode::kShapeError, "input channels (", channels.constant(), ") are not divisible by offset_group ", offset_group);
  const Shape& w = c.shape(1);
  int64_t taps = offset_group * w[2].constant() * w[3].constant();  // kernel dims are constants (conv_output_shape)
  auto check_per_tap = [&](size_t i, int64_t per_tap, const char* what) {
    c.require_same_dtype(0, i);
    c.require_rank(i, 4, 4);
    const Shape& t = c.shape(i);
    Shape want{out[0], Dim(taps * per_tap), out[2], out[3]};
    for (size_t d = 0; d < 4; ++d)
      if (!(t[d] == want[d]) && t[d].is_constant() && want[d].is_constant())
        c.error(ErrorCode::kShapeError, c.input_name(i), " has shape ", shape_to_string(t), "; expected ", shape_to_string(want),
                " (", what, ")");
  };
  check_per_tap(2, 2, "batch, offset_group * kernel taps * 2, output height, output width");
  if (c.has(4)) check_per_tap(4, 1, "batch, offset_group * kernel taps, output height, output width");
  c.set(0, c.dtype(0), out);
}

}  // namespace

OpSchema conv_schema(OpKind op) {
  using T = AttrType;
  switch (op) {
    case OpKind::kConv:
    case OpKind::kConvChannelsLast:  // Conv on [N, spatial..., C] with weight [M, kernel..., C/group]
      return {2, 3, 1, 1,
              {{"auto_pad", T::kString}, {"dilations", T::kInts}, {"group", T::kInt}, {"kernel_shape", T::kInts},
               {"pads", T::kInts}, {"strides", T::kInts}}};
    case OpKind::kConvTranspose:
      return {2, 3, 1, 1,
              {{"auto_pad", T::kString}, {"dilations", T::kInts}, {"group", T::kInt}, {"kernel_shape", T::kInts},
               {"pads", T::kInts}, {"strides", T::kInts}, {"output_padding", T::kInts}, {"output_shape", T::kInts}}};
    case OpKind::kConvInteger:
      return {2, 4, 1, 1,
              {{"auto_pad", T::kString}, {"dilations", T::kInts}, {"group", T::kInt}, {"kernel_shape", T::kInts},
               {"pads", T::kInts}, {"strides", T::kInts}}};
    case OpKind::kQLinearConv:
      return {8, 9, 1, 1,
              {{"auto_pad", T::kString}, {"dilations", T::kInts}, {"group", T::kInt}, {"kernel_shape", T::kInts},
               {"pads", T::kInts}, {"strides", T::kInts}}};
    case OpKind::kCausalConvWithState: return {2, 4, 1, 2, {{"activation", T::kString}}};
    case OpKind::kDeformConv:
      return {3, 5, 1, 1,
              {{"dilations", T::kInts}, {"group", T::kInt}, {"kernel_shape", T::kInts}, {"offset_group", T::kInt},
               {"pads", T::kInts}, {"strides", T::kInts}}};
    default: return {0, 0, 0, 0, {}, false};
  }
}

void infer_conv(Ctx& c) {
  switch (c.node().op) {
    case OpKind::kConv: infer_conv_op(c, false); break;
    case OpKind::kConvTranspose: infer_conv_op(c, true); break;
    case OpKind::kConvChannelsLast: infer_conv_op(c, false, true); break;
    case OpKind::kConvInteger: infer_conv_integer(c); break;
    case OpKind::kQLinearConv: infer_qlinear_conv(c); break;
    case OpKind::kCausalConvWithState: infer_causal_conv(c); break;
    case OpKind::kDeformConv: infer_deform_conv(c); break;
    default: no_inference(c);
  }
}

}  // namespace kiln::ir

// The vision family: ops that sample their input at computed coordinates
// (GridSample at a grid's points, RoiAlign and MaxRoiPool over regions of
// interest), AffineGrid, which makes such a grid, Col2Im, which sums sliding
// blocks (im2col's columns) back into an image, NonMaxSuppression, which
// selects detection boxes, and ImageDecoder, which decodes an encoded image.
#include <cmath>

#include "family.h"
#include "image/image_decoder.h"
#include "kiln/ir/vision.h"

namespace kiln::ir {

namespace {

// Spatial dims a grid may address: the GPU kernel keeps every dim's taps in registers.
constexpr int64_t kMaxSpatial = 3;

void require_one_of(const Ctx& c, const char* attr, const std::string& value, std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (value == a) return;
    list += str(list.empty() ? "" : ", ", a);
  }
  c.error(ErrorCode::kInvalidModel, attr, " '", value, "' is not one of ", list);
}

void require_flag(const Ctx& c, const char* attr) {
  int64_t v = c.attrs().get_int(attr, 0);
  if (v != 0 && v != 1) c.error(ErrorCode::kInvalidModel, attr, " ", v, " is not 0 or 1");
}

// X [N, C, D1..Dr], grid [N, D1_out..Dr_out, r] -> [N, C, D1_out..Dr_out].
void infer_grid_sample(Ctx& c) {
  c.require_float(0);
  c.require_float(1);
  c.require_rank(0, 3, 2 + kMaxSpatial);
  int64_t r = c.rank(0) - 2;
  const Shape &x = c.shape(0), &grid = c.shape(1);
  if (c.rank(1) != r + 2)
    c.error(ErrorCode::kShapeError, "the grid, ", c.input_name(1), ", has shape ", shape_to_string(grid), "; expected rank ", r + 2,
            " for X of shape ", shape_to_string(x));
  if (grid.back().is_constant() && grid.back().constant() != r)
    c.error(ErrorCode::kShapeError, "the grid, ", c.input_name(1), ", has ", grid.back().constant(), " coordinates a point; expected ", r,
            " for X of shape ", shape_to_string(x));
  check_equal_dims(c, x[0], grid[0], "the batch dims of X and grid");
  require_one_of(c, "mode", c.attrs().get_string("mode", "linear"), {"linear", "nearest", "cubic"});
  require_one_of(c, "padding_mode", c.attrs().get_string("padding_mode", "zeros"), {"zeros", "border", "reflection"});
  require_flag(c, "align_corners");
  Shape out{x[0], x[1]};
  out.insert(out.end(), grid.begin() + 1, grid.end() - 1);
  c.set(0, c.dtype(0), out);
}

// X [N, C, H, W], rois [R, 4] of X's type, batch_indices [R] int64 -> [R, C, output_height, output_width].
void infer_roi_align(Ctx& c) {
  c.require_float(0);
  c.require_rank(0, 4, 4);
  c.require_same_dtype(0, 1);
  c.require_rank(1, 2, 2);
  c.require_dtype(2, {DType::kInt64});
  c.require_rank(2, 1, 1);
  const Shape& rois = c.shape(1);
  if (rois[1].is_constant() && rois[1].constant() != 4)
    c.error(ErrorCode::kShapeError, "rois, ", c.input_name(1), ", has shape ", shape_to_string(rois), "; expected [num_rois, 4]");
  check_equal_dims(c, rois[0], c.shape(2)[0], "the RoI counts of rois and batch_indices");
  require_one_of(c, "mode", c.attrs().get_string("mode", "avg"), {"avg", "max"});
  require_one_of(c, "coordinate_transformation_mode", c.attrs().get_string("coordinate_transformation_mode", "half_pixel"),
                 {"half_pixel", "output_half_pixel"});
  int64_t height = c.attrs().get_int("output_height", 1), width = c.attrs().get_int("output_width", 1);
  if (height < 1 || width < 1) c.error(ErrorCode::kInvalidModel, "output_height ", height, " and output_width ", width, " must be >= 1");
  int64_t ratio = c.attrs().get_int("sampling_ratio", 0);
  if (ratio < 0) c.error(ErrorCode::kInvalidModel, "sampling_ratio ", ratio, " must be >= 0");
  if (ratio > kRoiAlignMaxGrid)
    c.error(ErrorCode::kUnsupported, "sampling_ratio ", ratio, " is more than kiln's ", kRoiAlignMaxGrid, " samples a bin side");
  c.set(0, c.dtype(0), {rois[0], c.shape(0)[1], Dim(height), Dim(width)});
}

// X [N, C, H, W], rois [R, 5] of X's type (batch index, x1, y1, x2, y2) -> [R, C, pooled_h, pooled_w].
void infer_max_roi_pool(Ctx& c) {
  c.require_float(0);
  c.require_rank(0, 4, 4);
  c.require_same_dtype(0, 1);
  c.require_rank(1, 2, 2);
  const Shape& rois = c.shape(1);
  if (rois[1].is_constant() && rois[1].constant() != 5)
    c.error(ErrorCode::kShapeError, "rois, ", c.input_name(1), ", has shape ", shape_to_string(rois),
            "; expected [num_rois, 5] (batch index, x1, y1, x2, y2)");
  if (!c.attrs().has("pooled_shape")) c.error(ErrorCode::kInvalidModel, "the attribute pooled_shape is required");
  std::vector<int64_t> pooled = c.attrs().get_ints("pooled_shape");
  if (pooled.size() != 2 || pooled[0] < 1 || pooled[1] < 1)
    c.error(ErrorCode::kInvalidModel, "pooled_shape must be two sizes >= 1 (height, width)");
  c.set(0, c.dtype(0), {rois[0], c.shape(0)[1], Dim(pooled[0]), Dim(pooled[1])});
}

// boxes [B, N, 4], scores [B, C, N], then optional single values:
// max_output_boxes_per_class (int64), iou_threshold, score_threshold ->
// selected [S, 3] (batch, class, box), S depending on the data; 0 when no
// max_output_boxes_per_class is given or it is a constant <= 0.
void infer_non_max_suppression(Ctx& c) {
  c.require_float(0);
  c.require_same_dtype(0, 1);
  c.require_rank(0, 3, 3);
  c.require_rank(1, 3, 3);
  const Shape &boxes = c.shape(0), &scores = c.shape(1);
  if (boxes[2].is_constant() && boxes[2].constant() != 4)
    c.error(ErrorCode::kShapeError, "boxes, ", c.input_name(0), ", has shape ", shape_to_string(boxes),
            "; expected [batches, boxes, 4]");
  check_equal_dims(c, boxes[0], scores[0], "the batches of boxes and scores");
  check_equal_dims(c, boxes[1], scores[2], "the boxes of boxes and scores");
  for (size_t i = 2; i < 5; ++i) {
    if (!c.has(i)) continue;
    if (i == 2) c.require_dtype(i, {DType::kInt64});
    else c.require_float(i);
    c.require_rank(i, 0, 1);
    if (c.rank(i) == 1 && c.shape(i)[0].is_constant() && c.shape(i)[0].constant() > 1)
      c.error(ErrorCode::kShapeError, c.input_name(i), " has shape ", shape_to_string(c.shape(i)), "; expected a single value");
  }
  require_flag(c, "center_point_box");
  std::optional<std::vector<int64_t>> most = c.has(2) ? c.const_ints(2) : std::vector<int64_t>{};
  bool none = most && (most->empty() || most->front() <= 0);
  c.set(0, DType::kInt64, {none ? Dim(0) : c.fresh(), Dim(3)});
}

// theta [N, 2, 3] with size (N, C, H, W) -> [N, H, W, 2]; theta [N, 3, 4] with size (N, C, D, H, W) -> [N, D, H, W, 3].
void infer_affine_grid(Ctx& c) {
  c.require_float(0);
  c.require_rank(0, 3, 3);
  c.require_dtype(1, {DType::kInt64});
  c.require_rank(1, 1, 1);
  require_flag(c, "align_corners");
  const Shape& theta = c.shape(0);
  const Dim& len = c.shape(1)[0];
  if (!len.is_constant()) c.error(ErrorCode::kUnsupported, "size, ", c.input_name(1), ", of unknown length");
  int64_t r = len.constant() - 2;
  if (r != 2 && r != 3)
    c.error(ErrorCode::kShapeError, "size, ", c.input_name(1), ", has ", len.constant(),
            " entries; expected 4 (N, C, H, W) or 5 (N, C, D, H, W)");
  if ((theta[1].is_constant() && theta[1].constant() != r) || (theta[2].is_constant() && theta[2].constant() != r + 1))
    c.error(ErrorCode::kShapeError, "theta, ", c.input_name(0), ", has shape ", shape_to_string(theta), "; expected [N, ", r, ", ", r + 1,
            "] for a size of ", len.constant(), " entries");
  Shape out{theta[0]};
  if (auto size = c.ints(1)) {
    check_equal_dims(c, theta[0], (*size)[0], "the batch dims of theta and size");
    for (int64_t i = 2; i < r + 2; ++i) {
      const Dim& d = (*size)[size_t(i)];
      if (d.is_constant() && d.constant() < 0) c.error(ErrorCode::kShapeError, "size has a negative entry ", d.constant());
      out.push_back(d);
    }
  } else {
    for (int64_t i = 0; i < r; ++i) out.push_back(c.fresh());
  }
  out.push_back(Dim(r));
  c.set(0, c.dtype(0), out);
}

// input [N, C * prod(block_shape), L], image_shape and block_shape (int64, r
// entries) -> [N, C, image_shape...]; L must be the number of block positions.
void infer_col2im(Ctx& c) {
  c.require_float(0);
  c.require_rank(0, 3, 3);
  for (size_t i : {1, 2}) {
    c.require_dtype(i, {DType::kInt64});
    c.require_rank(i, 1, 1);
  }
  const Dim& len = c.shape(2)[0];
  if (!len.is_constant()) c.error(ErrorCode::kUnsupported, "block_shape, ", c.input_name(2), ", of unknown length");
  int64_t r = len.constant();
  if (r < 1 || r > kMaxSpatial) c.error(ErrorCode::kUnsupported, "block_shape has ", r, " entries; kiln takes 1 to ", kMaxSpatial);
  check_equal_dims(c, c.shape(1)[0], Dim(r), "the lengths of image_shape and block_shape");
  // Tensors the model computes (not constants) leave the channels and the image unknown until the run.
  auto block = c.const_ints(2);
  Col2ImGeometry geometry = col2im_geometry(c.node(), block ? *block : std::vector<int64_t>(size_t(r), 1));
  const Shape& x = c.shape(0);
  Shape out{x[0], c.fresh()};
  if (block) {
    int64_t volume = 1;
    for (int64_t b : *block) {
      if (b < 1) c.error(ErrorCode::kInvalidModel, "block_shape has an entry ", b, "; each must be >= 1");
      volume *= b;
    }
    if (x[1].is_constant() && x[1].constant() % volume != 0)
      c.error(ErrorCode::kShapeError, "input 0 has ", x[1].constant(), " rows, not a multiple of the block's ", volume, " elements");
    if (x[1].is_constant()) out[1] = Dim(x[1].constant() / volume);
  }
  auto image = c.const_ints(1);
  int64_t positions = 1;
  for (int64_t d = 0; d < r; ++d) {
    out.push_back(image ? Dim((*image)[size_t(d)]) : c.fresh());
    if (!image || !block) continue;
    int64_t blocks = col2im_blocks(geometry, d, (*image)[size_t(d)]);
    if (blocks < 1)
      c.error(ErrorCode::kShapeError, "image_shape ", (*image)[size_t(d)], " of dim ", d, " holds no block of ", (*block)[size_t(d)]);
    positions *= blocks;
  }
  if (image && block && x[2].is_constant() && x[2].constant() != positions)
    c.error(ErrorCode::kShapeError, "input 0 has ", x[2].constant(), " columns; the image and block shapes make ", positions);
  c.set(0, c.dtype(0), out);
}

// encoded_stream [bytes] uint8 -> [height, width, 3] (RGB, BGR) or [height,
// width, 1] (Grayscale) uint8. The image's dims are in the stream: known
// where inference sees it (a weight, or the reference interpreter's real
// input, which is decoded here to find them), else two data-dependent sizes,
// each a fresh symbol of its own, which the GPU runtime's host decode binds.
void infer_image_decoder(Ctx& c) {
  c.require_dtype(0, {DType::kUInt8});
  c.require_rank(0, 1, 1);
  std::string name = c.attrs().get_string("pixel_format", "RGB");
  image::PixelFormat format = image::PixelFormat::kRgb;
  if (!image::parse_pixel_format(name, format))
    c.error(ErrorCode::kInvalidModel, "pixel_format '", name, "' is not one of RGB, BGR, Grayscale");
  Dim channels(image::channels_of(format));
  const TensorData* data = c.input(0).data;
  if (!data) return c.set(0, DType::kUInt8, {c.fresh(), c.fresh(), channels});
  image::Image decoded;
  try {
    decoded = image::decode({reinterpret_cast<const uint8_t*>(data->data.data()), data->data.size()}, format);
  } catch (const Error& e) {
    c.error(e.code(), c.input_name(0), ": ", e.what());
  }
  c.set(0, DType::kUInt8, {Dim(decoded.height), Dim(decoded.width), channels});
}

}  // namespace

Col2ImGeometry col2im_geometry(const Node& node, const std::vector<int64_t>& block) {
  size_t r = block.size();
  auto where = [&] { return str("node '", node.name, "' (Col2Im): "); };
  Col2ImGeometry g{block, node.attrs.get_ints("dilations", std::vector<int64_t>(r, 1)),
                   node.attrs.get_ints("pads", std::vector<int64_t>(2 * r, 0)),
                   node.attrs.get_ints("strides", std::vector<int64_t>(r, 1))};
  if (g.dilations.size() != r || g.strides.size() != r || g.pads.size() != 2 * r)
    fail(ErrorCode::kInvalidModel, where(), "dilations, strides and pads need ", r, ", ", r, " and ", 2 * r, " entries for ", r,
         " spatial dims");
  for (size_t d = 0; d < r; ++d)
    if (g.dilations[d] < 1 || g.strides[d] < 1 || g.pads[d] < 0 || g.pads[d + r] < 0)
      fail(ErrorCode::kInvalidModel, where(), "dilations and strides must be >= 1 and pads >= 0");
  return g;
}

int64_t col2im_blocks(const Col2ImGeometry& g, int64_t d, int64_t image) {
  size_t r = g.block.size(), i = size_t(d);
  int64_t span = g.dilations[i] * (g.block[i] - 1) + 1, padded = image + g.pads[i] + g.pads[i + r];
  return padded < span ? 0 : (padded - span) / g.strides[i] + 1;
}

OpSchema vision_schema(OpKind op) {
  using T = AttrType;
  switch (op) {
    case OpKind::kGridSample:
      return {2, 2, 1, 1, {{"align_corners", T::kInt}, {"mode", T::kString}, {"padding_mode", T::kString}}};
    case OpKind::kRoiAlign:
      return {3, 3, 1, 1, {{"coordinate_transformation_mode", T::kString}, {"mode", T::kString}, {"output_height", T::kInt},
                           {"output_width", T::kInt}, {"sampling_ratio", T::kInt}, {"spatial_scale", T::kFloat}}};
    case OpKind::kAffineGrid: return {2, 2, 1, 1, {{"align_corners", T::kInt}}};
    case OpKind::kCol2Im: return {3, 3, 1, 1, {{"dilations", T::kInts}, {"pads", T::kInts}, {"strides", T::kInts}}};
    case OpKind::kMaxRoiPool: return {2, 2, 1, 1, {{"pooled_shape", T::kInts}, {"spatial_scale", T::kFloat}}};
    case OpKind::kNonMaxSuppression: return {2, 5, 1, 1, {{"center_point_box", T::kInt}}};
    case OpKind::kImageDecoder: return {1, 1, 1, 1, {{"pixel_format", T::kString}}};
    default: return {0, 0, 0, 0, {}, false};
  }
}

void infer_vision(Ctx& c) {
  switch (c.node().op) {
    case OpKind::kGridSample: infer_grid_sample(c); break;
    case OpKind::kRoiAlign: infer_roi_align(c); break;
    case OpKind::kAffineGrid: infer_affine_grid(c); break;
    case OpKind::kCol2Im: infer_col2im(c); break;
    case OpKind::kMaxRoiPool: infer_max_roi_pool(c); break;
    case OpKind::kNonMaxSuppression: infer_non_max_suppression(c); break;
    case OpKind::kImageDecoder: infer_image_decoder(c); break;
    default: no_inference(c);
  }
}

}  // namespace kiln::ir

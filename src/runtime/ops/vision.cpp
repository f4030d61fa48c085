// The vision family on the GPU: GridSample, RoiAlign, AffineGrid, Col2Im and
// MaxRoiPool, each a generated kernel of a thread per output element,
// NonMaxSuppression, a block per batch and class (codegen/vision.cpp), and
// ImageDecoder, which enqueue decodes on the host (readback.cpp).
#include <algorithm>

#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/ir/vision.h"
#include "kiln/runtime.h"
#include "ops.h"

namespace kiln::runtime {

using ir::OpKind;

namespace {

int64_t index_in(const std::string& value, std::initializer_list<const char*> names) {
  int64_t i = 0;
  for (const char* name : names) {
    if (value == name) return i;
    ++i;
  }
  return -1;  // shape inference refused it before
}

// NonMaxSuppression: a block per (batch, class) keeps its boxes in the node's
// work area; one block lists them in ONNX's order and writes their count.
class NonMaxSuppressionOp : public Op {
 public:
  NonMaxSuppressionOp(const plan::Plan& plan, const ir::Node& node, const KernelStore& store, int select, int list)
      : plan_(plan), node_(node), store_(store), select_(select), list_(list) {}
  void prepare(PrepareContext& ctx) const override {
    ir::ValueId out = node_.outputs[0];
    if (plan_.network.value(out).shape[0].is_constant()) return;  // nothing selected whatever the data (no maximum)
    const auto &boxes = ctx.shapes.of(node_.inputs[0]), &scores = ctx.shapes.of(node_.inputs[1]);
    auto given = [&](size_t i) {
      return i < node_.inputs.size() && node_.inputs[i] != ir::kNoValue && ir::checked_numel(ctx.shapes.of(node_.inputs[i])) > 0;
    };
    codegen::NmsParams q{ir::checked_numel({boxes[0], scores[1]}), boxes[0], scores[1], boxes[1], next_pow2(boxes[1]),
                         data_dependent_bound(plan_, out), node_.attrs.get_int("center_point_box", 0),
                         given(2), given(3), given(4)};
    ScratchSlot slot = readback_scratch_slot(plan_, node_);
    PtrRef count{kReadbackScratch, slot.offset}, work{kReadbackScratch, slot.offset + int64_t(sizeof(int64_t))};
    auto launch = [&](int kernel, unsigned grid, std::vector<PtrRef> args) {
      KernelLaunch k{store_.kernel(kernel), grid, codegen::kBlock, std::move(args), codegen::pack(q), &node_, kernel};
      k.specializable = false;  // the work follows the data
      ctx.steps.push_back(std::move(k));
    };
    if (q.n > 0) {
      std::vector<PtrRef> args{work, {node_.inputs[0], 0}, {node_.inputs[1], 0}};
      for (size_t i = 2; i < 5; ++i) args.push_back({given(i) ? node_.inputs[i] : ir::kNoValue, 0});
      if (q.n > int64_t(INT32_MAX)) fail(ErrorCode::kUnsupported, "node '", node_.name, "': ", q.n, " batches times classes");
      launch(select_, unsigned(q.n), std::move(args));
    }
    launch(list_, 1, {{out, 0}, count, work});
  }

 private:
  const plan::Plan& plan_;
  const ir::Node& node_;
  const KernelStore& store_;
  int select_, list_;
};

// ImageDecoder: enqueue runs it at its readback point (decode_on_host in
// readback.cpp): the codecs are host libraries. It prepares no launches.
class HostDecodedOp : public Op {
 public:
  void prepare(PrepareContext&) const override {}
};

}  // namespace

std::unique_ptr<Op> make_vision(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why,
                                int /*arch*/) {
  DType dtype = output_dtype(plan, node);
  const ir::Node* n = &node;
  if (node.op == OpKind::kImageDecoder) return std::make_unique<HostDecodedOp>();
  if (node.op == OpKind::kNonMaxSuppression) {
    auto dtype_of = [&](size_t i) {
      bool given = i < node.inputs.size() && node.inputs[i] != ir::kNoValue;
      return given ? plan.network.value(node.inputs[i]).dtype : DType::kFloat32;
    };
    codegen::NmsSpec select{codegen::NmsKernel::kSelect, dtype_of(0), dtype_of(3), dtype_of(4)}, list = select;
    list.kernel = codegen::NmsKernel::kList;
    int select_kernel = store.add(node.name, [select](const auto&) { return codegen::non_max_suppression_source(select); });
    int list_kernel = store.add(node.name, [list](const auto&) { return codegen::non_max_suppression_source(list); });
    return std::make_unique<NonMaxSuppressionOp>(plan, node, store, select_kernel, list_kernel);
  }
  if (!is_floating(dtype)) return nullptr;

  switch (node.op) {
    case OpKind::kGridSample: {
      codegen::GridSampleSpec spec{dtype, plan.network.value(node.inputs[1]).dtype, std::nullopt};
      int64_t mode = index_in(node.attrs.get_string("mode", "linear"), {"linear", "nearest", "cubic"});
      int64_t padding = index_in(node.attrs.get_string("padding_mode", "zeros"), {"zeros", "border", "reflection"});
      int64_t align = node.attrs.get_int("align_corners", 0);
      int kernel = store.add(node.name, specializing_generator(spec, codegen::grid_sample_source));
      return std::make_unique<SimpleOp>(node, store, kernel, [n, mode, padding, align](const ShapeEnv& s, KernelLaunch& k) {
        const auto &x = s.of(n->inputs[0]), &out = s.of(n->outputs[0]);
        codegen::GridSampleParams q{ir::checked_numel(out), int64_t(x.size()) - 2, x[1], mode, padding, align, {}, {}};
        for (size_t d = 2; d < x.size(); ++d) q.in_dims[d - 2] = x[d], q.out_dims[d - 2] = out[d];
        if (q.n > 0 && ir::checked_numel({x.begin() + 2, x.end()}) == 0)
          fail(ErrorCode::kShapeError, "node '", n->name, "' (GridSample): X of shape ", ir::shape_to_string(ir::shape_of(x)),
               " has no pixels to sample");
        k.params = codegen::pack(q);
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}, {n->inputs[1], 0}};
      });
    }

    case OpKind::kRoiAlign: {
      bool half_pixel = node.attrs.get_string("coordinate_transformation_mode", "half_pixel") == "half_pixel";
      bool max_mode = node.attrs.get_string("mode", "avg") == "max";
      int64_t ratio = node.attrs.get_int("sampling_ratio", 0);
      int64_t scale_bits = codegen::double_bits(node.attrs.get_float("spatial_scale", 1.0));
      int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::roi_align_source(dtype, params); });
      return std::make_unique<SimpleOp>(node, store, kernel, [=](const ShapeEnv& s, KernelLaunch& k) {
        const auto &x = s.of(n->inputs[0]), &out = s.of(n->outputs[0]);
        codegen::RoiAlignParams q{ir::checked_numel(out), x[0], x[1], x[2], x[3], out[2], out[3],
                                  ratio, half_pixel, max_mode, scale_bits};
        if (q.n > 0 && x[2] * x[3] == 0)
          fail(ErrorCode::kShapeError, "node '", n->name, "' (RoiAlign): X of shape ", ir::shape_to_string(ir::shape_of(x)),
               " has no pixels to sample");
        k.params = codegen::pack(q);
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}, {n->inputs[1], 0}, {n->inputs[2], 0}};
      });
    }

    case OpKind::kMaxRoiPool: {
      std::vector<int64_t> pooled = node.attrs.get_ints("pooled_shape");
      int64_t scale_bits = codegen::double_bits(node.attrs.get_float("spatial_scale", 1.0));
      int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::max_roi_pool_source(dtype, params); });
      return std::make_unique<SimpleOp>(node, store, kernel, [=](const ShapeEnv& s, KernelLaunch& k) {
        const auto &x = s.of(n->inputs[0]), &out = s.of(n->outputs[0]);
        k.params = codegen::pack(
            codegen::MaxRoiPoolParams{ir::checked_numel(out), x[0], x[1], x[2], x[3], pooled.at(0), pooled.at(1), scale_bits});
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}, {n->inputs[1], 0}};
      });
    }

    case OpKind::kAffineGrid: {
      int64_t align = node.attrs.get_int("align_corners", 0);
      int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::affine_grid_source(dtype, params); });
      return std::make_unique<SimpleOp>(node, store, kernel, [n, align](const ShapeEnv& s, KernelLaunch& k) {
        const auto& out = s.of(n->outputs[0]);
        int64_t rank = out.back();
        codegen::AffineGridParams q{ir::checked_numel(out) / std::max<int64_t>(rank, 1), rank, align, {}};
        for (int64_t d = 0; d < rank; ++d) q.dims[d] = out[size_t(d + 1)];
        k.params = codegen::pack(q);
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}};
      });
    }

    case OpKind::kCol2Im: {
      // The image follows from the output's shape. A block_shape that is tensor data sizes the output's channels, so
      // enqueue reads it back before the node (with image_shape).
      const plan::Plan* p = &plan;
      int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::col2im_source(dtype, params); });
      return std::make_unique<SimpleOp>(node, store, kernel, [n, p](const ShapeEnv& s, KernelLaunch& k) {
        const auto &x = s.of(n->inputs[0]), &out = s.of(n->outputs[0]);
        ir::Col2ImGeometry g = ir::col2im_geometry(*n, ints_of(*p, n->inputs[2], s, "Col2Im block_shape"));
        int64_t r = int64_t(g.block.size());
        codegen::Col2ImParams q{ir::checked_numel(out), r, ir::checked_numel(g.block), x[2], {}, {}, {}, {}, {}, {}};
        for (int64_t d = 0; d < r; ++d) {
          size_t i = size_t(d);
          q.image[i] = out[i + 2], q.block[i] = g.block[i], q.blocks[i] = ir::col2im_blocks(g, d, out[i + 2]);
          q.strides[i] = g.strides[i], q.dilations[i] = g.dilations[i], q.pads[i] = g.pads[i];
        }
        k.params = codegen::pack(q);
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}};
      });
    }

    default: break;
  }
  return nullptr;
}

GpuLowering describe_vision(OpKind op) {
  using K = GpuLowering::Kind;
  switch (op) {
    case OpKind::kGridSample:
      return {K::kKernel, "a thread per output element; floating types (X and grid each); 1 to 3 spatial dims"};
    case OpKind::kRoiAlign:
      return {K::kKernel, "a thread per output element; floating types; a batch index out of range writes zeros (an error on "
                          "the CPU)"};
    case OpKind::kAffineGrid: return {K::kKernel, "a thread per grid point; floating types; 2-D and 3-D"};
    case OpKind::kCol2Im:
      return {K::kKernel, "a thread per image element, gathering its blocks' columns; floating types; 1 to 3 spatial dims; "
                          "image_shape and block_shape that are tensor data read back by enqueue (which waits for them)"};
    case OpKind::kMaxRoiPool:
      return {K::kKernel, "a thread per output element; floating types; a batch index out of range writes zeros (an error on "
                          "the CPU)"};
    case OpKind::kNonMaxSuppression:
      return {K::kKernel, "a block per batch and class sorts its scores and keeps boxes greedily (IoU in double), one block "
                          "lists them and counts them (read back by enqueue, which waits for it); floating types; at most "
                          "the bound `kiln build` plans for"};
    case OpKind::kImageDecoder:
      return {K::kKernel, "decoded on the host: enqueue copies the encoded stream back, waits for it, decodes it and copies the "
                          "pixels to the device (no CUDA graphs); height and width at most the bound `kiln build` plans for "
                          "(--data-dependent-bound)"};
    default: return {};
  }
}

int64_t vision_count_work_bytes(const plan::Plan& plan, const ir::Node& node, const ir::SymbolBindings& largest) {
  if (node.op != OpKind::kNonMaxSuppression)
    fail(ErrorCode::kInternal, "node '", node.name, "' (", ir::op_name(node.op), ") is not counted on the device");
  // Per (batch, class): its kept count, its kept boxes and its candidates' order.
  std::vector<int64_t> boxes = dims_at(plan, node.inputs[0], largest), scores = dims_at(plan, node.inputs[1], largest);
  int64_t classes = ir::checked_numel({boxes[0], scores[1]});
  return int64_t(sizeof(int64_t)) * ir::checked_numel({classes, 1 + boxes[1] + next_pow2(boxes[1])});
}

}  // namespace kiln::runtime

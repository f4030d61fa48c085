// The vision family on the GPU: GridSample, RoiAlign, AffineGrid and Col2Im,
// each a generated kernel of a thread per output element (codegen/vision.cpp).
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

}  // namespace

std::unique_ptr<Op> make_vision(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why,
                                int /*arch*/) {
  DType dtype = output_dtype(plan, node);
  const ir::Node* n = &node;
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
      // The image follows from the output's shape; the block must be known before the run.
      const ir::Value& block = plan.network.value(node.inputs[2]);
      if (!block.weight && !block.known) {
        why = str("Col2Im block_shape '", block.name, "' depends on tensor data, which the GPU runtime does not read back");
        return nullptr;
      }
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
                          "block_shape a constant"};
    default: return {};
  }
}

}  // namespace kiln::runtime

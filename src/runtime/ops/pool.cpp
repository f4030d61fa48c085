// The pool family on the GPU: MaxPool, AveragePool and LpPool on the window
// kernel (ops/conv.cpp), global pools as reductions (ops/reduce.cpp),
// channels-last max pooling through cuDNN, MaxUnpool as zeros and a scatter
// (the indexed kernel of the movement family).
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/runtime.h"
#include "ops.h"

namespace kiln::runtime {

using ir::OpKind;

namespace {

// MaxUnpool: the output zeroed (a fill), then X's elements placed by their
// flat indices into the unpooled size at the output's origin.
std::unique_ptr<Op> make_max_unpool(const plan::Plan& plan, const ir::Node& node, KernelStore& store) {
  DType dtype = output_dtype(plan, node);
  if (!is_floating(dtype) || plan.network.value(node.outputs[0]).shape.size() > size_t(codegen::kMaxRank)) return nullptr;
  const ir::Node* n = &node;
  std::vector<std::unique_ptr<Op>> parts;
  parts.push_back(make_remap_op(node, store, dtype, [n](const ShapeEnv& s) {
    RemapPiece zeros;  // every element lies outside a 0-sized source: all fill (0 bits)
    zeros.src = zeros.dst = n->outputs[0];
    zeros.dims = {ir::checked_numel(s.of(n->outputs[0]))};
    zeros.src_strides = zeros.dst_strides = {1};
    zeros.src_dims = {0};
    zeros.mode = codegen::PadMode::kConstant;
    return std::vector<RemapPiece>{zeros};
  }));
  codegen::IndexedSpec spec{codegen::IndexedOp::kMaxUnpool, dtype, DType::kInt64, codegen::ScatterReduction::kNone, std::nullopt};
  int kernel = store.add(node.name, specializing_generator(spec, codegen::indexed_source));
  parts.push_back(std::make_unique<SimpleOp>(node, store, kernel, [n](const ShapeEnv& s, KernelLaunch& k) {
    const auto& x = s.of(n->inputs[0]);
    const auto& out = s.of(n->outputs[0]);
    if (s.of(n->inputs[1]) != x)
      fail(ErrorCode::kShapeError, "node '", n->name, "' (MaxUnpool): indices ", ir::shape_to_string(ir::shape_of(s.of(n->inputs[1]))),
           " must have X's shape ", ir::shape_to_string(ir::shape_of(x)));
    size_t sr = x.size() - 2;
    auto kernel_shape = n->attrs.get_ints("kernel_shape");
    auto strides = n->attrs.get_ints("strides", std::vector<int64_t>(sr, 1));
    auto pads = n->attrs.get_ints("pads", std::vector<int64_t>(2 * sr, 0));
    std::vector<int64_t> unpooled{x[0], x[1]};
    for (size_t d = 0; d < sr; ++d) unpooled.push_back((x[d + 2] - 1) * strides[d] - pads[d] - pads[sr + d] + kernel_shape[d]);
    for (size_t d = 0; d < out.size(); ++d)
      if (out[d] < unpooled[d])
        fail(ErrorCode::kShapeError, "node '", n->name, "' (MaxUnpool): output_shape ", ir::shape_to_string(ir::shape_of(out)),
             " is smaller than the unpooled size ", ir::shape_to_string(ir::shape_of(unpooled)));
    auto out_strides = strides_of(out);
    codegen::IndexedParams q{};
    q.n = ir::checked_numel(x);
    q.rank = int64_t(out.size());
    q.axis_size = ir::checked_numel(unpooled);
    for (size_t d = 0; d < out.size(); ++d) q.dims[d] = unpooled[d], q.strides[d] = out_strides[d];
    k.params = codegen::pack(q);
    k.args = {{n->outputs[0], 0}, {n->inputs[1], 0}, {n->inputs[0], 0}};
  }));
  return std::make_unique<SequenceOp>(std::move(parts));
}

}  // namespace

std::unique_ptr<Op> make_pool(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int /*arch*/) {
  switch (node.op) {
    case OpKind::kMaxPoolChannelsLast:
      if (auto op = make_cudnn_max_pool_op(plan, node)) return op;
      why = "a channels-last MaxPool that cuDNN does not run (rank 4 or 5, floating types, no dilation or ceil_mode, symmetric pads)";
      return nullptr;
    case OpKind::kMaxPool: case OpKind::kAveragePool: case OpKind::kLpPool: return make_window_op(plan, node, store);
    case OpKind::kGlobalAveragePool: case OpKind::kGlobalMaxPool: case OpKind::kGlobalLpPool:
      return is_floating(output_dtype(plan, node)) ? make_reduction_op(plan, node, store) : nullptr;
    case OpKind::kMaxUnpool: return make_max_unpool(plan, node, store);
    default: return nullptr;
  }
}

GpuLowering describe_pool(OpKind op) {
  using K = GpuLowering::Kind;
  switch (op) {
    case OpKind::kMaxPool:
      return {K::kKernel, "window kernel; any type but bool and uint64, rank 5 at most; the Indices output (either storage_order) from the same kernel"};
    case OpKind::kAveragePool: case OpKind::kLpPool: return {K::kKernel, "window kernel; floating types, rank 5 at most"};
    case OpKind::kGlobalAveragePool: case OpKind::kGlobalMaxPool: case OpKind::kGlobalLpPool:
      return {K::kKernel, "reduction kernel; floating types"};
    case OpKind::kMaxPoolChannelsLast:
      return {K::kKernel, "cuDNN; rank 4 or 5, floating types, no dilation or ceil_mode, symmetric pads"};
    case OpKind::kMaxUnpool:
      return {K::kKernel, "zeros, then a scatter kernel of one thread per element of X; floating types; which of duplicate "
                          "indices lands is unspecified; out-of-range indices are skipped (an error on the CPU)"};
    default: return {};
  }
}

}  // namespace kiln::runtime

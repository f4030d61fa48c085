// The pool family on the GPU: MaxPool and AveragePool on the window kernel
// (ops/conv.cpp), global pools as reductions (ops/reduce.cpp), channels-last
// max pooling through cuDNN.
#include "kiln/runtime.h"
#include "ops.h"

namespace kiln::runtime {

using ir::OpKind;

std::unique_ptr<Op> make_pool(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int /*arch*/) {
  switch (node.op) {
    case OpKind::kMaxPoolChannelsLast:
      if (auto op = make_cudnn_max_pool_op(plan, node)) return op;
      why = "a channels-last MaxPool that cuDNN does not run (rank 4 or 5, floating types, no dilation or ceil_mode, symmetric pads)";
      return nullptr;
    case OpKind::kMaxPool: case OpKind::kAveragePool: return make_window_op(plan, node, store, why);
    case OpKind::kGlobalAveragePool: case OpKind::kGlobalMaxPool: return make_reduction_op(plan, node, store);
    default: return nullptr;
  }
}

GpuLowering describe_pool(OpKind op) {
  using K = GpuLowering::Kind;
  switch (op) {
    case OpKind::kMaxPool: return {K::kKernel, "window kernel; floating types, rank 5 at most; not the Indices output"};
    case OpKind::kAveragePool: return {K::kKernel, "window kernel; floating types, rank 5 at most"};
    case OpKind::kGlobalAveragePool: case OpKind::kGlobalMaxPool: return {K::kKernel, "reduction kernel; floating types"};
    case OpKind::kMaxPoolChannelsLast:
      return {K::kKernel, "cuDNN; rank 4 or 5, floating types, no dilation or ceil_mode, symmetric pads"};
    default: return {};
  }
}

}  // namespace kiln::runtime

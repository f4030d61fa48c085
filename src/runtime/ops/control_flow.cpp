// The control-flow family on the GPU: If, Loop and Scan have no GPU lowering
// of their own. `kiln build` replaces an If whose condition it can tell by its
// branch and unrolls a Loop or Scan whose iterations it can count
// (builder/passes_control_flow.cpp), so those run as ordinary kernels inside
// CUDA graphs; a node left after that needs the data it decides on, which a
// capturable enqueue cannot read, and runs on the CPU device.
#include "kiln/error.h"
#include "ops.h"

namespace kiln::runtime {

using ir::OpKind;

std::unique_ptr<Op> make_control_flow(const plan::Plan& /*plan*/, const ir::Node& node, KernelStore& /*store*/, std::string& why,
                                      int /*arch*/) {
  why = describe_control_flow(node.op).detail;
  return nullptr;
}

GpuLowering describe_control_flow(OpKind op) {
  using K = GpuLowering::Kind;
  switch (op) {
    case OpKind::kIf:
      return {K::kNone, "no GPU kernel: `kiln build` replaces an If whose condition it can tell (a constant, a comparison of "
                        "static shapes) by its branch; an If that decides on data runs on the CPU device only"};
    case OpKind::kLoop:
    case OpKind::kScan:
      return {K::kNone, str("no GPU kernel: `kiln build` unrolls a ", ir::op_name(op),
                            " whose iteration count it can tell (at most 64); one that runs a count only data tells runs on "
                            "the CPU device only")};
    default: return {};
  }
}

}  // namespace kiln::runtime

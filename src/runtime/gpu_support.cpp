// Which nodes and op kinds the GPU runtime runs, known on the host: make_op
// only generates kernel sources and builds descriptions (cuDNN and cuBLASLt
// descriptors are made in Op::prepare), so asking it needs no device.
#include "kiln/error.h"
#include "kiln/runtime.h"
#include "ops.h"

namespace kiln::runtime {

std::vector<NodeSupport> gpu_support(const plan::Plan& plan) {
  KernelStore store;  // sources are generated into it, never compiled or loaded
  std::vector<NodeSupport> nodes;
  for (const ir::Node& node : plan.network.nodes()) {
    NodeSupport s{node.name, node.op, true, "", ""};
    try {
      s.supported = make_op(plan, node, store, s.reason, 0) != nullptr;
    } catch (const Error& e) {  // Engine::create would fail on this node with the same error
      s.supported = false;
      s.reason = e.what();
    }
    if (s.supported) {
      s.reason.clear();
      s.host_note = host_step_note(plan, node);
    }
    nodes.push_back(std::move(s));
  }
  return nodes;
}

}  // namespace kiln::runtime

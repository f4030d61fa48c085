// The text family on the GPU: none of it runs there. String tensors live on
// the host only (a kString TensorData holds std::strings, which have no
// device form), and TfIdfVectorizer's n-gram matching walks a table built on
// the host; a plan holding these ops runs on the CPU device.
#include "kiln/error.h"
#include "ops.h"

namespace kiln::runtime {

using ir::OpKind;

std::unique_ptr<Op> make_text(const plan::Plan& /*plan*/, const ir::Node& node, KernelStore& /*store*/, std::string& why,
                              int /*arch*/) {
  why = describe_text(node.op).detail;
  return nullptr;
}

GpuLowering describe_text(OpKind op) {
  using K = GpuLowering::Kind;
  switch (op) {
    case OpKind::kStringConcat:
    case OpKind::kStringSplit:
    case OpKind::kStringNormalizer:
    case OpKind::kRegexFullMatch:
      return {K::kNone, "no GPU kernel: string tensors live on the host only; runs on the CPU device"};
    case OpKind::kTfIdfVectorizer:
      return {K::kNone, "no GPU kernel: its n-gram pool is matched on the host (strings or integers); runs on the CPU device"};
    default: return {};
  }
}

}  // namespace kiln::runtime

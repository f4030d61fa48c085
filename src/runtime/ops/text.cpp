// The text family on the GPU: none of it runs as kernels. String tensors
// live in host memory (a kString TensorData holds std::strings, which have
// no device form): make_op runs every node on them as a host step of the
// GPU engine (ops/families.cpp). TfIdfVectorizer's n-gram matching walks a
// table built on the host.
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
      return {K::kHost, "runs on the host inside the GPU engine: string tensors live in host memory (the reference kernel runs between the launches)"};
    case OpKind::kTfIdfVectorizer:
      return {K::kNone, "no GPU kernel: its n-gram pool is matched on the host (strings or integers); runs on the CPU device"};
    default: return {};
  }
}

}  // namespace kiln::runtime

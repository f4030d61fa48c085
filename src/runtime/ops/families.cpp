// The table from op family to its lowering: make_op and gpu_lowering look an
// op's family up here, and each family's file (ops/<family>.cpp) decides for
// the ops of its family. No per-op switch lives outside the family files.
#include <iterator>

#include "kiln/error.h"
#include "ops.h"

namespace kiln::runtime {

namespace {

using ir::OpFamily;

constexpr FamilyLowering kLowerings[] = {
    {OpFamily::kElementwise, make_elementwise, describe_elementwise},
    {OpFamily::kLinalg, make_linalg, describe_linalg},
    {OpFamily::kConv, make_conv, describe_conv},
    {OpFamily::kPool, make_pool, describe_pool},
    {OpFamily::kNormalization, make_normalization, describe_normalization},
    {OpFamily::kReduce, make_reduce, describe_reduce},
    {OpFamily::kMovement, make_movement, describe_movement},
    {OpFamily::kGenerator, make_generator, describe_generator},
    {OpFamily::kVision, make_vision, describe_vision},
    {OpFamily::kRecurrent, make_recurrent, describe_recurrent},
    {OpFamily::kControlFlow, make_control_flow, describe_control_flow},
    {OpFamily::kText, make_text, describe_text},
    {OpFamily::kMl, make_ml, describe_ml},
};
static_assert(std::size(kLowerings) == size_t(ir::kOpFamilyCount), "a family without a lowering");
constexpr bool in_family_order() {
  for (size_t i = 0; i < std::size(kLowerings); ++i)
    if (size_t(kLowerings[i].family) != i) return false;
  return true;
}
static_assert(in_family_order(), "kLowerings must be indexed by ir::OpFamily");

const FamilyLowering& lowering_of(ir::OpKind op) { return kLowerings[size_t(ir::family_of(op))]; }

bool all_outputs_known(const plan::Plan& plan, const ir::Node& node) {
  for (ir::ValueId v : node.outputs)
    if (v != ir::kNoValue && !plan.network.value(v).known) return false;
  return !node.outputs.empty();
}

// The first string tensor the node reads or writes, "" when none: strings live on the host only.
std::string string_tensor_of(const plan::Plan& plan, const ir::Node& node) {
  for (size_t i = 0; i < node.inputs.size(); ++i)
    if (node.inputs[i] != ir::kNoValue && is_string(plan.network.value(node.inputs[i]).dtype))
      return str("input ", i, " ('", plan.network.value(node.inputs[i]).name, "')");
  for (size_t i = 0; i < node.outputs.size(); ++i)
    if (node.outputs[i] != ir::kNoValue && is_string(plan.network.value(node.outputs[i]).dtype))
      return str("output ", i, " ('", plan.network.value(node.outputs[i]).name, "')");
  return "";
}

}  // namespace

std::string host_step_note(const plan::Plan& plan, const ir::Node& node) {
  std::string tensor = string_tensor_of(plan, node);
  if (tensor.empty()) return "";
  return str("runs on the host inside the GPU engine: ", tensor,
             " is a string tensor, and string tensors live in host memory (the reference kernel runs between the launches)");
}

std::unique_ptr<Op> make_op(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int arch) {
  // Outputs the host knows (shape arithmetic) are written as constants, whatever the op.
  if (all_outputs_known(plan, node)) return make_host_value_op(plan, node, store);
  if (!string_tensor_of(plan, node).empty()) return std::make_unique<HostStepOp>();
  const FamilyLowering& family = lowering_of(node.op);
  GpuLowering lowering = family.describe(node.op);
  if (lowering.kind != GpuLowering::kKernel) {
    why = lowering.kind == GpuLowering::kByBuilder ? str("no GPU kernel of its own; ", lowering.detail)
          : !lowering.detail.empty()               ? lowering.detail
                                                   : "no GPU kernel";
    return nullptr;
  }
  std::unique_ptr<Op> op = family.make(plan, node, store, why, arch);
  if (!op && why.empty()) why = str("dtype ", dtype_name(output_dtype(plan, node)));
  return op;
}

GpuLowering gpu_lowering(ir::OpKind op) { return lowering_of(op).describe(op); }

}  // namespace kiln::runtime

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

}  // namespace

std::unique_ptr<Op> make_op(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int arch) {
  // Outputs the host knows (shape arithmetic) are written as constants, whatever the op.
  if (all_outputs_known(plan, node)) return make_host_value_op(plan, node, store);
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

// Helpers the family files share: launch grids, the one-kernel op, and the
// integers of values known on the host.
#include <algorithm>
#include <set>

#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "ops.h"

namespace kiln::runtime {

unsigned grid_for(int64_t n, int sm_count) {
  int64_t blocks = (n + codegen::kBlock - 1) / codegen::kBlock;
  return unsigned(std::clamp<int64_t>(blocks, 1, int64_t(sm_count) * 32));
}

int64_t next_pow2(int64_t n) {
  int64_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

void SimpleOp::prepare(PrepareContext& ctx) const {
  KernelLaunch k{store_.kernel(kernel_), 1, codegen::kBlock, {}, {}, &node_, kernel_};
  fill_(ctx.shapes, k);
  if (k.params.v[0] == 0) return;  // nothing to compute
  k.grid = k.grid > 1 ? k.grid : grid_for(k.params.v[0], ctx.sm_count);
  ctx.steps.push_back(std::move(k));
}

DType output_dtype(const plan::Plan& plan, const ir::Node& node) {
  bool has_output = !node.outputs.empty() && node.outputs[0] != ir::kNoValue;
  return has_output ? plan.network.value(node.outputs[0]).dtype : DType::kFloat32;
}

std::optional<std::vector<int64_t>> known_now(const ir::Value& v, const ShapeEnv& shapes) {
  if (!v.known) return std::nullopt;
  return ir::evaluate_dims(*v.known, shapes.bindings);
}

std::optional<std::vector<int64_t>> host_ints(const plan::Plan& plan, ir::ValueId v, const ShapeEnv& shapes) {
  const ir::Value& val = plan.network.value(v);
  if (val.weight) return ir::read_ints(*val.weight);
  if (auto k = known_now(val, shapes)) return k;
  if (auto it = shapes.read.find(v); it != shapes.read.end()) return it->second;
  return std::nullopt;
}

std::vector<int64_t> ints_of(const plan::Plan& plan, ir::ValueId v, const ShapeEnv& shapes, const char* what) {
  if (auto ints = host_ints(plan, v, shapes)) return *ints;
  fail(ErrorCode::kUnsupported, what, " '", plan.network.value(v).name, "' depends on tensor data that enqueue did not read back");
}

void require_input_dims(const ir::Node& node, const ShapeEnv& shapes, size_t input, const std::vector<int64_t>& want) {
  const std::vector<int64_t>& have = shapes.of(node.inputs[input]);
  if (have != want)
    fail(ErrorCode::kShapeError, "node '", node.name, "' (", ir::op_name(node.op), "): input ", input, " has shape ",
         ir::shape_to_string(ir::shape_of(have)), "; expected ", ir::shape_to_string(ir::shape_of(want)));
}

int64_t data_dependent_bound(const plan::Plan& plan, ir::ValueId v) {
  const ir::Value& val = plan.network.value(v);
  std::set<std::string> symbols;
  for (const ir::Dim& d : val.shape) d.collect_symbols(symbols);
  int64_t bound = -1;
  for (const std::string& s : symbols)
    if (plan.network.data_dependent_symbols().count(s)) {
      auto it = plan.network.dim_ranges().find(s);
      if (it == plan.network.dim_ranges().end())
        fail(ErrorCode::kInvalidArgument, "tensor '", val.name, "' has a data-dependent size without a bound in the plan; build it "
             "again with this kiln (`kiln build`)");
      bound = std::max(bound, it->second.max);
    }
  if (bound < 0) fail(ErrorCode::kInternal, "tensor '", val.name, "' has no data-dependent size");
  return bound;
}

bool counted_on_device(ir::OpKind op) {
  return op == ir::OpKind::kNonZero || op == ir::OpKind::kCompress || op == ir::OpKind::kUnique ||
         op == ir::OpKind::kNonMaxSuppression;
}

std::vector<int64_t> dims_at(const plan::Plan& plan, ir::ValueId v, const ir::SymbolBindings& bindings) {
  const ir::Value& val = plan.network.value(v);
  auto dims = ir::evaluate_dims(val.shape, bindings);
  if (!dims)
    fail(ErrorCode::kInvalidArgument, "tensor '", val.name, "' ", ir::shape_to_string(val.shape),
         " has a size without a bound in the plan; build it again with this kiln (`kiln build`)");
  return *dims;
}

namespace {

int64_t count_work_bytes(const plan::Plan& plan, const ir::Node& node, const ir::SymbolBindings& largest) {
  switch (ir::family_of(node.op)) {
    case ir::OpFamily::kMovement: return movement_count_work_bytes(plan, node, largest);
    case ir::OpFamily::kVision: return vision_count_work_bytes(plan, node, largest);
    default: fail(ErrorCode::kInternal, "node '", node.name, "' (", ir::op_name(node.op), ") is not counted on the device");
  }
}

// Walks the slots up to `node` (every slot for nullptr).
ScratchSlot walk_slots(const plan::Plan& plan, const ir::Node* node) {
  ir::SymbolBindings largest;
  for (auto& [s, r] : plan.network.dim_ranges()) largest[s] = r.max;
  ScratchSlot slot;
  for (const ir::Node& other : plan.network.nodes()) {
    if (!counted_on_device(other.op)) continue;
    slot.work_bytes = count_work_bytes(plan, other, largest);
    if (&other == node) return slot;
    slot.offset += int64_t(sizeof(int64_t)) + slot.work_bytes;
  }
  if (node) fail(ErrorCode::kInternal, "node '", node->name, "' is not a counted node of the plan");
  return slot;
}

}  // namespace

ScratchSlot readback_scratch_slot(const plan::Plan& plan, const ir::Node& node) { return walk_slots(plan, &node); }

int64_t readback_scratch_bytes(const plan::Plan& plan) { return walk_slots(plan, nullptr).offset; }

int64_t output_capacity(const plan::Plan& plan, const ShapeEnv& shapes, ir::ValueId v, size_t d) {
  bool pending = size_t(v) < shapes.pending.size() && shapes.pending[size_t(v)];
  if (!pending) return shapes.of(v).at(d);
  return data_dependent_bound(plan, v);
}

}  // namespace kiln::runtime

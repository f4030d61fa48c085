// Op names, families, and the check of a node against its op's schema (arity,
// attribute names and types), which each family's file defines (src/ir/ops/).
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "kiln/error.h"
#include "ops/family.h"

namespace kiln::ir {

namespace {

constexpr std::string_view kOpNames[] = {
#define KILN_OP_NAME(name) #name,
    KILN_OPS(KILN_OP_NAME)
#undef KILN_OP_NAME
};

OpSchema schema_of(OpKind op) {
  switch (family_of(op)) {
    case OpFamily::kElementwise: return elementwise_schema(op);
    case OpFamily::kLinalg: return linalg_schema(op);
    case OpFamily::kConv: return conv_schema(op);
    case OpFamily::kPool: return pool_schema(op);
    case OpFamily::kNormalization: return normalization_schema(op);
    case OpFamily::kReduce: return reduce_schema(op);
    case OpFamily::kMovement: return movement_schema(op);
    case OpFamily::kGenerator: return generator_schema(op);
    case OpFamily::kVision: return vision_schema(op);
    case OpFamily::kRecurrent: return recurrent_schema(op);
    case OpFamily::kControlFlow: return control_flow_schema(op);
    case OpFamily::kText: return text_schema(op);
    case OpFamily::kMl: return ml_schema(op);
  }
  return {0, 0, 0, 0, {}, false};
}

const OpSchema& schema(OpKind op) {
  static const std::vector<OpSchema> table = [] {
    std::vector<OpSchema> t;
    for (int i = 0; i < op_count(); ++i) t.push_back(schema_of(OpKind(i)));
    return t;
  }();
  return table.at(size_t(op));
}

}  // namespace

std::string_view op_name(OpKind op) { return kOpNames[size_t(op)]; }
int op_count() { return int(std::size(kOpNames)); }

bool is_builder_op(OpKind op) {
  switch (op) {
#define KILN_BUILDER_OP_CASE(name) case OpKind::k##name:
    KILN_BUILDER_OPS(KILN_BUILDER_OP_CASE)
#undef KILN_BUILDER_OP_CASE
    return true;
    default: return false;
  }
}

OpFamily family_of(OpKind op) {
#define KILN_FAMILY_CASE(name) case OpKind::k##name:
  switch (op) {
    KILN_ELEMENTWISE_OPS(KILN_FAMILY_CASE, KILN_FAMILY_CASE) return OpFamily::kElementwise;
    KILN_LINALG_OPS(KILN_FAMILY_CASE, KILN_FAMILY_CASE) return OpFamily::kLinalg;
    KILN_CONV_OPS(KILN_FAMILY_CASE, KILN_FAMILY_CASE) return OpFamily::kConv;
    KILN_POOL_OPS(KILN_FAMILY_CASE, KILN_FAMILY_CASE) return OpFamily::kPool;
    KILN_NORMALIZATION_OPS(KILN_FAMILY_CASE, KILN_FAMILY_CASE) return OpFamily::kNormalization;
    KILN_REDUCE_OPS(KILN_FAMILY_CASE, KILN_FAMILY_CASE) return OpFamily::kReduce;
    KILN_MOVEMENT_OPS(KILN_FAMILY_CASE, KILN_FAMILY_CASE) return OpFamily::kMovement;
    KILN_GENERATOR_OPS(KILN_FAMILY_CASE, KILN_FAMILY_CASE) return OpFamily::kGenerator;
    KILN_VISION_OPS(KILN_FAMILY_CASE, KILN_FAMILY_CASE) return OpFamily::kVision;
    KILN_RECURRENT_OPS(KILN_FAMILY_CASE, KILN_FAMILY_CASE) return OpFamily::kRecurrent;
    KILN_CONTROL_FLOW_OPS(KILN_FAMILY_CASE, KILN_FAMILY_CASE) return OpFamily::kControlFlow;
    KILN_TEXT_OPS(KILN_FAMILY_CASE, KILN_FAMILY_CASE) return OpFamily::kText;
    KILN_ML_OPS(KILN_FAMILY_CASE, KILN_FAMILY_CASE) return OpFamily::kMl;
  }
#undef KILN_FAMILY_CASE
  fail(ErrorCode::kInternal, "op kind ", int(op), " is in no family");
}

std::string_view family_name(OpFamily family) {
  switch (family) {
    case OpFamily::kElementwise: return "elementwise";
    case OpFamily::kLinalg: return "linalg";
    case OpFamily::kConv: return "conv";
    case OpFamily::kPool: return "pool";
    case OpFamily::kNormalization: return "normalization";
    case OpFamily::kReduce: return "reduce";
    case OpFamily::kMovement: return "movement";
    case OpFamily::kGenerator: return "generator";
    case OpFamily::kVision: return "vision";
    case OpFamily::kRecurrent: return "recurrent";
    case OpFamily::kControlFlow: return "control_flow";
    case OpFamily::kText: return "text";
    case OpFamily::kMl: return "ml";
  }
  return "?";
}

std::optional<OpKind> op_from_name(std::string_view name) {
  for (size_t i = 0; i < std::size(kOpNames); ++i)
    if (kOpNames[i] == name) return OpKind(i);
  return std::nullopt;
}

void check_node_schema(const Node& node) {
  auto where = [&] { return str("node '", node.name, "' (", op_name(node.op), ")"); };
  const OpSchema& s = schema(node.op);
  if (!s.defined) fail(ErrorCode::kInternal, where(), ": kiln has no schema for this op (", family_file(node.op), ")");
  int n_in = int(node.inputs.size());
  if (n_in < s.min_inputs || (s.max_inputs >= 0 && n_in > s.max_inputs))
    fail(ErrorCode::kInvalidModel, where(), " has ", n_in, " inputs; expected ", s.min_inputs,
         s.max_inputs < 0 ? " or more" : str(" to ", s.max_inputs));
  int n_out = int(node.outputs.size());
  if (n_out < s.min_outputs || (s.max_outputs >= 0 && n_out > s.max_outputs))
    fail(ErrorCode::kInvalidModel, where(), " has ", n_out, " outputs; expected ", s.min_outputs,
         s.max_outputs < 0 ? " or more" : str(" to ", s.max_outputs));
  for (auto& [name, value] : node.attrs.all()) {
    const AttrSpec* spec = nullptr;
    for (auto& a : s.attrs)
      if (name == a.name) spec = &a;
    if (!spec) fail(ErrorCode::kUnsupported, where(), " has attribute '", name, "' which kiln does not support");
    if (attr_type_of(value) != spec->type)
      fail(ErrorCode::kInvalidModel, where(), " attribute '", name, "' is ", attr_type_name(attr_type_of(value)),
           "; expected ", attr_type_name(spec->type));
    std::vector<double> floats;
    if (spec->type == AttrType::kFloat) floats.push_back(std::get<double>(value));
    if (spec->type == AttrType::kFloats) floats = std::get<std::vector<double>>(value);
    for (size_t i = 0; i < floats.size(); ++i)
      if (!spec->any_value && (std::isnan(floats[i]) || (std::isinf(floats[i]) && !spec->may_be_infinite)))
        fail(ErrorCode::kInvalidModel, where(), " attribute '", name, "'", spec->type == AttrType::kFloats ? str(" entry ", i) : "",
             " is ", floats[i], "; it must be ", spec->may_be_infinite ? "a number" : "finite");
  }
}

}  // namespace kiln::ir

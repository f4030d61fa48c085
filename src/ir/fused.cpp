#include "kiln/ir/fused.h"

#include "kiln/error.h"

namespace kiln::ir {

bool is_fusable_elementwise(OpKind op) {
  switch (op) {
    case OpKind::kAbs: case OpKind::kNeg: case OpKind::kSqrt: case OpKind::kReciprocal: case OpKind::kExp:
    case OpKind::kLog: case OpKind::kFloor: case OpKind::kCeil: case OpKind::kRelu: case OpKind::kSigmoid:
    case OpKind::kTanh: case OpKind::kErf: case OpKind::kSoftplus: case OpKind::kSoftsign: case OpKind::kSin:
    case OpKind::kCos: case OpKind::kLeakyRelu: case OpKind::kElu: case OpKind::kSelu: case OpKind::kCelu:
    case OpKind::kHardSigmoid: case OpKind::kHardSwish: case OpKind::kGelu: case OpKind::kThresholdedRelu:
    case OpKind::kAdd: case OpKind::kSub: case OpKind::kMul: case OpKind::kDiv: case OpKind::kPow:
    case OpKind::kPRelu: case OpKind::kMin: case OpKind::kMax: case OpKind::kWhere: case OpKind::kClip:
      return true;
    default: return false;
  }
}

bool is_elementwise(OpKind op) {
  if (is_fusable_elementwise(op)) return true;
  switch (op) {
    case OpKind::kRound: case OpKind::kSign: case OpKind::kTan: case OpKind::kAsin: case OpKind::kAcos: case OpKind::kAtan:
    case OpKind::kSinh: case OpKind::kCosh: case OpKind::kAsinh: case OpKind::kAcosh: case OpKind::kAtanh:
    case OpKind::kShrink: case OpKind::kIsNaN: case OpKind::kIsInf: case OpKind::kNot: case OpKind::kEqual:
    case OpKind::kLess: case OpKind::kLessOrEqual: case OpKind::kGreater: case OpKind::kGreaterOrEqual: case OpKind::kAnd:
    case OpKind::kOr: case OpKind::kXor: case OpKind::kMod: case OpKind::kSum: case OpKind::kMean:
    case OpKind::kBitShift: case OpKind::kBitwiseAnd: case OpKind::kBitwiseOr: case OpKind::kBitwiseXor:
    case OpKind::kBitwiseNot:
      return true;
    default: return false;
  }
}

FusedInstruction instruction_from_node(const Node& node) {
  FusedInstruction in;
  in.op = node.op;
  auto names = fused_param_names(node.op);
  for (size_t i = 0; i < names.size(); ++i) {
    if (node.op == OpKind::kGelu) in.params[i] = node.attrs.get_string("approximate", "none") == "tanh" ? 1.0 : 0.0;
    else if (node.op == OpKind::kBitShift) in.params[i] = node.attrs.get_string("direction", "") == "LEFT" ? 1.0 : 0.0;
    else if (names[i].integer) in.params[i] = double(node.attrs.get_int(names[i].name, int64_t(names[i].fallback)));
    else in.params[i] = node.attrs.get_float(names[i].name, names[i].fallback);
  }
  return in;
}

std::vector<FusedParam> fused_param_names(OpKind op) {
  switch (op) {
    case OpKind::kLeakyRelu: return {{"alpha", 0.01}};
    case OpKind::kElu: case OpKind::kCelu: case OpKind::kThresholdedRelu: return {{"alpha", 1.0}};
    case OpKind::kSelu: return {{"alpha", 1.67326319217681884765625}, {"gamma", 1.05070102214813232421875}};
    case OpKind::kHardSigmoid: return {{"alpha", 0.2}, {"beta", 0.5}};
    case OpKind::kGelu: return {{"approximate_tanh", 0.0}};  // 1 for approximate="tanh"
    case OpKind::kBitShift: return {{"direction_left", 0.0}};  // 1 for direction="LEFT"
    case OpKind::kShrink: return {{"bias", 0.0}, {"lambd", 0.5}};
    case OpKind::kMod: return {{"fmod", 0, true}};
    case OpKind::kIsInf: return {{"detect_negative", 1, true}, {"detect_positive", 1, true}};
    default: return {};
  }
}

Attributes fused_instruction_attrs(const FusedInstruction& in) {
  Attributes attrs;
  auto names = fused_param_names(in.op);
  for (size_t i = 0; i < names.size(); ++i) {
    if (in.op == OpKind::kGelu) attrs.set("approximate", std::string(in.params[0] != 0 ? "tanh" : "none"));
    else if (in.op == OpKind::kBitShift) attrs.set("direction", std::string(in.params[0] != 0 ? "LEFT" : "RIGHT"));
    else if (names[i].integer) attrs.set(names[i].name, int64_t(in.params[i]));
    else attrs.set(names[i].name, in.params[i]);
  }
  return attrs;
}

std::vector<FusedInstruction> decode_fused_program(const Node& node) {
  auto ops = node.attrs.get_strings("ops");
  auto args = node.attrs.get_ints("args");
  auto params = node.attrs.get_floats("params");
  if (ops.empty() || args.size() != ops.size() * kFusedMaxArgs || params.size() != ops.size() * kFusedMaxParams)
    fail(ErrorCode::kInvalidModel, "node '", node.name, "' (FusedElementwise) has a malformed program");
  int64_t inputs = int64_t(node.inputs.size());
  std::vector<FusedInstruction> program(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    std::optional<OpKind> op = op_from_name(ops[i]);
    if (!op || !is_fusable_elementwise(*op))
      fail(ErrorCode::kInvalidModel, "node '", node.name, "' (FusedElementwise) instruction ", i, " has op '", ops[i],
           "', which is not an elementwise op kiln fuses");
    program[i].op = *op;
    for (int a = 0; a < kFusedMaxArgs; ++a) {
      int64_t r = args[i * kFusedMaxArgs + size_t(a)];
      if (r < -1 || r >= inputs + int64_t(i))
        fail(ErrorCode::kInvalidModel, "node '", node.name, "' (FusedElementwise) instruction ", i, " reads operand ", r,
             " which is not defined before it");
      program[i].args[a] = int(r);
    }
    for (int p = 0; p < kFusedMaxParams; ++p) program[i].params[p] = params[i * kFusedMaxParams + size_t(p)];
  }
  return program;
}

void encode_fused_program(const std::vector<FusedInstruction>& program, Attributes& attrs) {
  std::vector<std::string> ops;  // by name, like plans store ops
  std::vector<int64_t> args;
  std::vector<double> params;
  for (auto& in : program) {
    ops.emplace_back(op_name(in.op));
    for (int a : in.args) args.push_back(a);
    for (double p : in.params) params.push_back(p);
  }
  attrs.set("ops", ops);
  attrs.set("args", args);
  attrs.set("params", params);
}

}  // namespace kiln::ir

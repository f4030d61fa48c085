// Op names, arity and the attributes each op accepts (with their types).
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"

namespace kiln::ir {

namespace {

constexpr std::string_view kOpNames[] = {
#define KILN_OP_NAME(name) #name,
    KILN_OPS(KILN_OP_NAME)
#undef KILN_OP_NAME
};

struct AttrSpec {
  const char* name;
  AttrType type;
  // Float attributes must be finite (kernels print them into generated source
  // and compute with them); a few bounds may be infinite. NaN never.
  bool may_be_infinite = false;
};

struct OpSchema {
  int min_inputs = 1, max_inputs = 1;  // max -1: variadic
  int min_outputs = 1, max_outputs = 1;
  std::vector<AttrSpec> attrs;
  bool defined = true;  // false: the op kind has no case in schema_of
};

using T = AttrType;

// Every op kind has a case here (no default: a new op without a schema is a
// compiler warning, and check_node_schema refuses its nodes).
OpSchema schema_of(OpKind op) {
  switch (op) {
    case OpKind::kAbs: case OpKind::kNeg: case OpKind::kSqrt: case OpKind::kReciprocal: case OpKind::kExp:
    case OpKind::kLog: case OpKind::kFloor: case OpKind::kCeil: case OpKind::kRound: case OpKind::kSign:
    case OpKind::kRelu: case OpKind::kSigmoid: case OpKind::kTanh: case OpKind::kErf: case OpKind::kSoftplus:
    case OpKind::kSoftsign: case OpKind::kSin: case OpKind::kCos: case OpKind::kTan: case OpKind::kAsin:
    case OpKind::kAcos: case OpKind::kAtan: case OpKind::kSinh: case OpKind::kCosh: case OpKind::kAsinh:
    case OpKind::kAcosh: case OpKind::kAtanh: case OpKind::kHardSwish: case OpKind::kNot: case OpKind::kIsNaN:
    case OpKind::kIdentity: case OpKind::kGlobalAveragePool: case OpKind::kGlobalMaxPool: case OpKind::kSize:
      return OpSchema{};  // one input, one output, no attributes
    case OpKind::kLeakyRelu:
    case OpKind::kElu:
    case OpKind::kCelu:
    case OpKind::kThresholdedRelu: return {1, 1, 1, 1, {{"alpha", T::kFloat}}};
    case OpKind::kSelu: return {1, 1, 1, 1, {{"alpha", T::kFloat}, {"gamma", T::kFloat}}};
    case OpKind::kHardSigmoid: return {1, 1, 1, 1, {{"alpha", T::kFloat}, {"beta", T::kFloat}}};
    case OpKind::kGelu: return {1, 1, 1, 1, {{"approximate", T::kString}}};
    case OpKind::kShrink: return {1, 1, 1, 1, {{"bias", T::kFloat}, {"lambd", T::kFloat}}};
    case OpKind::kClip: return {1, 3, 1, 1, {{"min", T::kFloat, true}, {"max", T::kFloat, true}}};  // attrs: opset < 11 form
    case OpKind::kIsInf: return {1, 1, 1, 1, {{"detect_negative", T::kInt}, {"detect_positive", T::kInt}}};
    case OpKind::kCast: return {1, 1, 1, 1, {{"to", T::kInt}, {"saturate", T::kInt}}};
    case OpKind::kCastLike: return {2, 2, 1, 1, {{"saturate", T::kInt}}};
    case OpKind::kDropout: return {1, 3, 1, 2, {{"seed", T::kInt}}};
    case OpKind::kAdd:
    case OpKind::kSub:
    case OpKind::kMul:
    case OpKind::kDiv:
    case OpKind::kPow:
    case OpKind::kPRelu:
    case OpKind::kEqual:
    case OpKind::kLess:
    case OpKind::kLessOrEqual:
    case OpKind::kGreater:
    case OpKind::kGreaterOrEqual:
    case OpKind::kAnd:
    case OpKind::kOr:
    case OpKind::kXor:
    case OpKind::kMatMul: return {2, 2, 1, 1, {}};
    case OpKind::kMod: return {2, 2, 1, 1, {{"fmod", T::kInt}}};
    case OpKind::kMin:
    case OpKind::kMax:
    case OpKind::kMean:
    case OpKind::kSum: return {1, -1, 1, 1, {}};
    case OpKind::kWhere: return {3, 3, 1, 1, {}};
    case OpKind::kGemm:
      return {2, 3, 1, 1, {{"alpha", T::kFloat}, {"beta", T::kFloat}, {"transA", T::kInt}, {"transB", T::kInt}}};
    case OpKind::kEinsum: return {1, -1, 1, 1, {{"equation", T::kString}}};
    case OpKind::kConv:
    case OpKind::kConvChannelsLast:  // Conv on [N, spatial..., C] with weight [M, kernel..., C/group]
      return {2, 3, 1, 1,
              {{"auto_pad", T::kString}, {"dilations", T::kInts}, {"group", T::kInt}, {"kernel_shape", T::kInts},
               {"pads", T::kInts}, {"strides", T::kInts}}};
    case OpKind::kConvTranspose:
      return {2, 3, 1, 1,
              {{"auto_pad", T::kString}, {"dilations", T::kInts}, {"group", T::kInt}, {"kernel_shape", T::kInts},
               {"pads", T::kInts}, {"strides", T::kInts}, {"output_padding", T::kInts}, {"output_shape", T::kInts}}};
    case OpKind::kBatchNormalization: return {5, 5, 1, 1, {{"epsilon", T::kFloat}, {"momentum", T::kFloat}}};
    case OpKind::kInstanceNormalization: return {3, 3, 1, 1, {{"epsilon", T::kFloat}}};
    case OpKind::kLayerNormalization:
      return {2, 3, 1, 3, {{"axis", T::kInt}, {"epsilon", T::kFloat}, {"stash_type", T::kInt}}};
    case OpKind::kGroupNormalization:
      return {3, 3, 1, 1, {{"epsilon", T::kFloat}, {"num_groups", T::kInt}, {"stash_type", T::kInt}}};
    case OpKind::kMaxPool:
      return {1, 1, 1, 2,
              {{"auto_pad", T::kString}, {"ceil_mode", T::kInt}, {"dilations", T::kInts}, {"kernel_shape", T::kInts},
               {"pads", T::kInts}, {"storage_order", T::kInt}, {"strides", T::kInts}}};
    case OpKind::kMaxPoolChannelsLast:  // MaxPool on [N, spatial..., C], no Indices output
      return {1, 1, 1, 1,
              {{"auto_pad", T::kString}, {"ceil_mode", T::kInt}, {"dilations", T::kInts}, {"kernel_shape", T::kInts},
               {"pads", T::kInts}, {"strides", T::kInts}}};
    case OpKind::kAveragePool:
      return {1, 1, 1, 1,
              {{"auto_pad", T::kString}, {"ceil_mode", T::kInt}, {"count_include_pad", T::kInt},
               {"dilations", T::kInts}, {"kernel_shape", T::kInts}, {"pads", T::kInts}, {"strides", T::kInts}}};
    case OpKind::kSoftmax:
    case OpKind::kLogSoftmax:
    case OpKind::kHardmax: return {1, 1, 1, 1, {{"axis", T::kInt}}};
    case OpKind::kReduceMean:
    case OpKind::kReduceSum:
    case OpKind::kReduceMax:
    case OpKind::kReduceMin:
    case OpKind::kReduceProd:
    case OpKind::kReduceL1:
    case OpKind::kReduceL2:
    case OpKind::kReduceLogSum:
    case OpKind::kReduceLogSumExp:
    case OpKind::kReduceSumSquare:
      return {1, 2, 1, 1, {{"keepdims", T::kInt}, {"noop_with_empty_axes", T::kInt}}};
    case OpKind::kArgMax:
    case OpKind::kArgMin: return {1, 1, 1, 1, {{"axis", T::kInt}, {"keepdims", T::kInt}, {"select_last_index", T::kInt}}};
    case OpKind::kCumSum: return {2, 2, 1, 1, {{"exclusive", T::kInt}, {"reverse", T::kInt}}};
    case OpKind::kTopK: return {2, 2, 2, 2, {{"axis", T::kInt}, {"largest", T::kInt}, {"sorted", T::kInt}}};
    case OpKind::kReshape: return {2, 2, 1, 1, {{"allowzero", T::kInt}}};
    case OpKind::kFlatten: return {1, 1, 1, 1, {{"axis", T::kInt}}};
    case OpKind::kSqueeze: return {1, 2, 1, 1, {}};
    case OpKind::kUnsqueeze: return {2, 2, 1, 1, {}};
    case OpKind::kTranspose: return {1, 1, 1, 1, {{"perm", T::kInts}}};
    case OpKind::kConcat: return {1, -1, 1, 1, {{"axis", T::kInt}}};
    case OpKind::kSplit: return {1, 2, 1, -1, {{"axis", T::kInt}, {"num_outputs", T::kInt}}};
    case OpKind::kSlice: return {3, 5, 1, 1, {}};
    case OpKind::kGather:
    case OpKind::kGatherElements: return {2, 2, 1, 1, {{"axis", T::kInt}}};
    case OpKind::kExpand:
    case OpKind::kTile: return {2, 2, 1, 1, {}};
    case OpKind::kPad: return {2, 4, 1, 1, {{"mode", T::kString}}};
    case OpKind::kShape: return {1, 1, 1, 1, {{"start", T::kInt}, {"end", T::kInt}}};
    case OpKind::kConstantOfShape: return {1, 1, 1, 1, {{"value", T::kTensor}}};
    case OpKind::kRange: return {3, 3, 1, 1, {}};
    case OpKind::kTrilu: return {1, 2, 1, 1, {{"upper", T::kInt}}};
    case OpKind::kResize:
      return {1, 4, 1, 1,
              {{"antialias", T::kInt}, {"axes", T::kInts}, {"coordinate_transformation_mode", T::kString},
               {"cubic_coeff_a", T::kFloat}, {"exclude_outside", T::kInt}, {"extrapolation_value", T::kFloat, true},
               {"keep_aspect_ratio_policy", T::kString}, {"mode", T::kString}, {"nearest_mode", T::kString}}};
    case OpKind::kDepthToSpace: return {1, 1, 1, 1, {{"blocksize", T::kInt}, {"mode", T::kString}}};
    case OpKind::kSpaceToDepth: return {1, 1, 1, 1, {{"blocksize", T::kInt}}};
    case OpKind::kOneHot: return {3, 3, 1, 1, {{"axis", T::kInt}}};
    case OpKind::kFusedMatMul:  // act(alpha * A @ op(B) + bias) + residual; inputs A, B, bias?, residual?
      return {2, 4, 1, 1, {{"trans_b", T::kInt}, {"activation", T::kString}, {"alpha", T::kFloat}}};
    case OpKind::kAttention:  // softmax(scale * Q K^T) V over views of its inputs (see AttentionGeometry)
      return {3, 3, 1, 1,
              {{"q_view", T::kInts}, {"k_view", T::kInts}, {"v_view", T::kInts}, {"k_transposed", T::kInt}, {"out_perm", T::kInts},
               {"scale", T::kFloat}, {"causal", T::kInt}}};
    case OpKind::kFusedElementwise:  // a straight-line program of elementwise ops over broadcast inputs
      return {1, -1, 1, 1, {{"ops", T::kStrings}, {"args", T::kInts}, {"params", T::kFloats}}};
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
  if (!s.defined) fail(ErrorCode::kInternal, where(), ": kiln has no schema for this op (src/ir/schema.cpp)");
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
      if (std::isnan(floats[i]) || (std::isinf(floats[i]) && !spec->may_be_infinite))
        fail(ErrorCode::kInvalidModel, where(), " attribute '", name, "'", spec->type == AttrType::kFloats ? str(" entry ", i) : "",
             " is ", floats[i], "; it must be ", spec->may_be_infinite ? "a number" : "finite");
  }
}

}  // namespace kiln::ir

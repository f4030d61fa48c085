// Type and shape inference for every op. Works on symbolic Dims; with concrete
// dims and real data (the reference interpreter) it yields concrete shapes.
// Each op family's rules are in src/ir/ops/<family>.cpp.
#include "kiln/ir/shape_inference.h"

#include "ops/family.h"

namespace kiln::ir {

namespace {

void infer_any(Ctx& c) {
  switch (family_of(c.node().op)) {
    case OpFamily::kElementwise: return infer_elementwise(c);
    case OpFamily::kLinalg: return infer_linalg(c);
    case OpFamily::kConv: return infer_conv(c);
    case OpFamily::kPool: return infer_pool(c);
    case OpFamily::kNormalization: return infer_normalization(c);
    case OpFamily::kReduce: return infer_reduce(c);
    case OpFamily::kMovement: return infer_movement(c);
    case OpFamily::kGenerator: return infer_generator(c);
    case OpFamily::kVision: return infer_vision(c);
    case OpFamily::kRecurrent: return infer_recurrent(c);
    case OpFamily::kControlFlow: return infer_control_flow(c);
    case OpFamily::kText: return infer_text(c);
    case OpFamily::kMl: return infer_ml(c);
  }
  no_inference(c);
}

// ONNX stores, moves, casts and (de)quantizes the narrow types (float8, int4,
// ...) but computes nothing else in them; other ops refuse them by name.
void check_narrow_inputs(Ctx& c) {
  switch (c.node().op) {
    case OpKind::kCast: case OpKind::kCastLike: case OpKind::kQuantizeLinear: case OpKind::kDequantizeLinear:
    case OpKind::kIdentity: case OpKind::kDropout: case OpKind::kReshape: case OpKind::kFlatten: case OpKind::kSqueeze:
    case OpKind::kUnsqueeze: case OpKind::kTranspose: case OpKind::kPad: case OpKind::kShape: case OpKind::kSize:
    case OpKind::kIf: case OpKind::kLoop: case OpKind::kScan:
      return;
    default: break;
  }
  for (size_t i = 0; i < c.num_inputs(); ++i)
    if (c.has(i) && is_narrow(c.dtype(i)))
      c.error(ErrorCode::kTypeError, c.input_name(i), " has dtype ", dtype_name(c.dtype(i)), "; ", op_name(c.node().op),
              " does not take it (the narrow types are only cast, quantized, dequantized and moved)");
}

// String tensors live on the host and reach only the ops that move, compare,
// convert or read strings: any other op would read their elements as numbers.
bool takes_strings(OpKind op) {
  switch (family_of(op)) {
    case OpFamily::kText:
    case OpFamily::kMl: return true;  // their files check which inputs may be strings
    default: break;
  }
  switch (op) {
    case OpKind::kIdentity: case OpKind::kCast: case OpKind::kCastLike: case OpKind::kEqual: case OpKind::kWhere:
    case OpKind::kReshape: case OpKind::kFlatten: case OpKind::kSqueeze: case OpKind::kUnsqueeze: case OpKind::kTranspose:
    case OpKind::kConcat: case OpKind::kSplit: case OpKind::kSlice: case OpKind::kGather: case OpKind::kGatherElements:
    case OpKind::kGatherND: case OpKind::kExpand: case OpKind::kTile: case OpKind::kCompress: case OpKind::kReverseSequence:
    case OpKind::kShape: case OpKind::kSize: return true;
    default: return false;
  }
}

void check_string_inputs(const Ctx& c) {
  if (takes_strings(c.node().op)) return;
  for (size_t i = 0; i < c.num_inputs(); ++i)
    if (c.has(i) && is_string(c.dtype(i)))
      c.error(ErrorCode::kTypeError, c.input_name(i), " is a string tensor; ", op_name(c.node().op),
              " takes numbers only (string tensors go to Identity, Cast, Equal, Where, the movement ops that copy "
              "elements, and the text and ai.onnx.ml ops)");
}

}  // namespace

std::vector<InferOutput> infer_node(const Node& node, const std::vector<InferInput>& inputs,
                                    const std::function<Dim()>& fresh_dim) {
  Ctx c(node, inputs, fresh_dim);
  try {
    check_narrow_inputs(c);
    check_string_inputs(c);
    infer_any(c);
    if (!c.inferred()) no_inference(c);
  } catch (const Error& e) {  // dim arithmetic and size checks do not know the node; name it
    std::string_view what = e.what();
    if (what.rfind("node '", 0) == 0) throw;
    c.error(e.code(), what);
  }
  return c.take();
}

}  // namespace kiln::ir

// One ONNX NodeProto -> IR node(s). Older opsets are rewritten into the form
// of the newest opset (attributes that became inputs, changed defaults).
#include "importer.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"

namespace kiln::onnx {

using ::onnx::AttributeProto;
using ir::OpKind;

namespace {

// ONNX op types translated into an op of another name (besides Constant, which becomes a weight).
constexpr std::pair<std::string_view, OpKind> kAliases[] = {{"Upsample", OpKind::kResize}};

// The op an ONNX op type (default domain) becomes: the model op of the same
// name, or an alias's. Builder ops share names with ONNX ops of other meanings
// (Attention) and are never taken from a model.
std::optional<OpKind> op_for_onnx_type(std::string_view op_type) {
  for (auto& [alias, op] : kAliases)
    if (op_type == alias) return op;
  std::optional<OpKind> op = ir::op_from_name(op_type);
  if (op && ir::is_builder_op(*op)) return std::nullopt;
  return op;
}

}  // namespace

bool is_supported_op(const std::string& op_type) { return op_type == "Constant" || op_for_onnx_type(op_type).has_value(); }

std::vector<std::string> onnx_op_types(OpKind op) {
  std::vector<std::string> types;
  if (!ir::is_builder_op(op)) types.emplace_back(ir::op_name(op));
  for (auto& [alias, target] : kAliases)
    if (target == op) types.emplace_back(alias);
  return types;
}

namespace {

ir::AttrValue convert_attribute(GraphBuilder& b, AttributeProto& a, const std::string& where) {
  if (!a.ref_attr_name().empty())
    fail(ErrorCode::kUnsupported, where, ": attribute '", a.name(), "' refers to a function attribute");
  auto type = a.type();
  if (type == AttributeProto::UNDEFINED) {  // very old writers leave the type out
    if (a.has_f()) type = AttributeProto::FLOAT;
    else if (a.has_i()) type = AttributeProto::INT;
    else if (a.has_s()) type = AttributeProto::STRING;
    else if (a.has_t()) type = AttributeProto::TENSOR;
    else if (a.floats_size()) type = AttributeProto::FLOATS;
    else if (a.ints_size()) type = AttributeProto::INTS;
    else if (a.strings_size()) type = AttributeProto::STRINGS;
  }
  switch (type) {
    case AttributeProto::FLOAT: return double(a.f());
    case AttributeProto::INT: return int64_t(a.i());
    case AttributeProto::STRING: return a.s();
    case AttributeProto::FLOATS: return std::vector<double>(a.floats().begin(), a.floats().end());
    case AttributeProto::INTS: return std::vector<int64_t>(a.ints().begin(), a.ints().end());
    case AttributeProto::STRINGS: return std::vector<std::string>(a.strings().begin(), a.strings().end());
    case AttributeProto::TENSOR: return tensor_from_proto(*a.mutable_t(), b.base_dir());
    default:
      fail(ErrorCode::kUnsupported, where, ": attribute '", a.name(), "' has type ",
           AttributeProto::AttributeType_Name(type), " (graphs and sparse tensors are not supported)");
  }
}

// Moves an ints attribute into input slot `slot` as an int64 constant (padding with empty slots).
void attr_to_input(GraphBuilder& b, ir::Node& node, const char* attr, size_t slot) {
  if (!node.attrs.has(attr)) return;
  auto values = node.attrs.get_ints(attr);
  node.attrs.erase(attr);
  if (node.inputs.size() <= slot) node.inputs.resize(slot + 1, ir::kNoValue);
  node.inputs[slot] = b.const_ints(node.name + "_" + attr, values);
}

bool is_false_constant(GraphBuilder& b, ir::ValueId id) {
  const ir::Value& v = b.net().value(id);
  if (!v.weight) return false;
  for (int64_t x : ir::read_ints(*v.weight))
    if (x) return false;
  return true;
}

void translate_constant(GraphBuilder& b, ::onnx::NodeProto& p, const std::string& where) {
  if (p.output_size() != 1) fail(ErrorCode::kInvalidModel, where, " must have one output");
  ir::TensorData t;
  for (auto& a : *p.mutable_attribute()) {
    const std::string& n = a.name();
    if (n == "value") {
      t = tensor_from_proto(*a.mutable_t(), b.base_dir());
    } else if (n == "value_float" || n == "value_floats") {
      std::vector<float> v = n == "value_float" ? std::vector<float>{a.f()} : std::vector<float>(a.floats().begin(), a.floats().end());
      t.dtype = DType::kFloat32;
      if (n == "value_floats") t.dims = {int64_t(v.size())};
      t.data = Buffer::copy_of(v.data(), v.size() * sizeof(float));
    } else if (n == "value_int" || n == "value_ints") {
      std::vector<int64_t> v = n == "value_int" ? std::vector<int64_t>{a.i()} : std::vector<int64_t>(a.ints().begin(), a.ints().end());
      t.dtype = DType::kInt64;
      if (n == "value_ints") t.dims = {int64_t(v.size())};
      t.data = Buffer::copy_of(v.data(), v.size() * sizeof(int64_t));
    } else {
      fail(ErrorCode::kUnsupported, where, ": Constant attribute '", n, "' is not supported");
    }
  }
  if (p.attribute_size() != 1) fail(ErrorCode::kInvalidModel, where, " must have exactly one value attribute");
  b.net().add_weight(p.output(0), std::move(t));
}

// Softmax-family before opset 13 works on the input flattened to 2-D at `axis`.
void translate_legacy_softmax(GraphBuilder& b, ir::Node node) {
  auto& net = b.net();
  int64_t axis = node.attrs.get_int("axis", 1);
  ir::ValueId x = node.inputs.at(0);
  ir::Attributes flat_attrs;
  flat_attrs.set("axis", axis);
  ir::ValueId flat = net.add_op1(OpKind::kFlatten, {x}, flat_attrs, node.name + "_flatten");
  ir::Attributes sm_attrs;
  sm_attrs.set("axis", int64_t(1));
  ir::ValueId sm = net.add_op1(node.op, {flat}, sm_attrs, node.name + "_2d");
  ir::ValueId shape = net.add_op1(OpKind::kShape, {x}, {}, node.name + "_shape");
  node.op = OpKind::kReshape;
  node.inputs = {sm, shape};
  node.attrs = {};
  net.add_node(std::move(node));
}

}  // namespace

void translate_node(GraphBuilder& b, ::onnx::NodeProto& p, int index) {
  const std::string& type = p.op_type();
  std::string name = p.name().empty() ? str(type, "_", index) : p.name();
  std::string where = str("node '", name, "' (", type, ")");
  if (type == "Constant") return translate_constant(b, p, where);

  ir::Node node;
  node.name = name;
  node.op = *op_for_onnx_type(type);  // import_model checked every op type first
  for (auto& a : *p.mutable_attribute()) node.attrs.set(a.name(), convert_attribute(b, a, where));
  for (const auto& in : p.input()) node.inputs.push_back(b.value(in));
  for (const auto& out : p.output()) node.outputs.push_back(out.empty() ? ir::kNoValue : b.value(out));
  while (!node.inputs.empty() && node.inputs.back() == ir::kNoValue) node.inputs.pop_back();
  while (!node.outputs.empty() && node.outputs.back() == ir::kNoValue) node.outputs.pop_back();
  int opset = b.opset();

  switch (node.op) {
    case OpKind::kSoftmax:
    case OpKind::kLogSoftmax:
    case OpKind::kHardmax:
      if (opset < 13) return translate_legacy_softmax(b, std::move(node));
      break;
    case OpKind::kReduceSum:
      if (opset < 13) attr_to_input(b, node, "axes", 1);
      break;
    case OpKind::kReduceMean: case OpKind::kReduceMax: case OpKind::kReduceMin: case OpKind::kReduceProd:
    case OpKind::kReduceL1: case OpKind::kReduceL2: case OpKind::kReduceLogSum: case OpKind::kReduceLogSumExp:
    case OpKind::kReduceSumSquare:
      if (opset < 18) attr_to_input(b, node, "axes", 1);
      break;
    case OpKind::kSqueeze:
    case OpKind::kUnsqueeze:
      if (opset < 13) attr_to_input(b, node, "axes", 1);
      break;
    case OpKind::kSplit:
      if (opset < 13) attr_to_input(b, node, "split", 1);
      break;
    case OpKind::kSlice:
      if (opset < 10) {
        bool has_axes = node.attrs.has("axes");
        attr_to_input(b, node, "starts", 1);
        attr_to_input(b, node, "ends", 2);
        if (has_axes) attr_to_input(b, node, "axes", 3);
      }
      break;
    case OpKind::kPad:
      if (opset < 11) {
        double value = node.attrs.get_float("value", 0.0);
        node.attrs.erase("value");
        attr_to_input(b, node, "pads", 1);
        node.inputs.push_back(b.const_float(name + "_value", float(value)));
      }
      break;
    case OpKind::kTopK:
      if (opset < 10) {
        int64_t k = node.attrs.get_int("k", -1);
        node.attrs.erase("k");
        node.inputs.push_back(b.const_ints(name + "_k", {k}));
      }
      break;
    case OpKind::kBatchNormalization: {
      if (node.attrs.get_int("spatial", 1) != 1) fail(ErrorCode::kUnsupported, where, ": spatial=0 is not supported");
      if (node.attrs.get_int("training_mode", 0) != 0 || node.outputs.size() > 1)
        fail(ErrorCode::kUnsupported, where, ": training mode (running statistics outputs) is not supported");
      node.attrs.erase("spatial");
      node.attrs.erase("training_mode");
      break;
    }
    case OpKind::kDropout:
      node.attrs.erase("ratio");
      node.attrs.erase("is_test");
      if (node.inputs.size() > 2 && node.inputs[2] != ir::kNoValue && !is_false_constant(b, node.inputs[2]))
        fail(ErrorCode::kUnsupported, where, ": training mode is not supported (inference only)");
      node.inputs.resize(1);
      break;
    case OpKind::kCast: {
      int64_t code = node.attrs.get_int("to", -1);
      auto dtype = dtype_from_onnx(int32_t(code));
      if (!dtype) fail(ErrorCode::kUnsupported, where, ": cast to ", onnx_dtype_name(int32_t(code)), " is not supported");
      node.attrs.set("to", int64_t(*dtype));
      node.attrs.erase("saturate");
      break;
    }
    case OpKind::kCastLike: node.attrs.erase("saturate"); break;
    case OpKind::kResize:
      if (type == "Upsample" || opset < 11) {  // (X, scales) with asymmetric coordinates
        ir::ValueId scales;
        if (node.attrs.has("scales")) {
          auto s = node.attrs.get_floats("scales");
          ir::TensorData t;
          t.dtype = DType::kFloat32;
          t.dims = {int64_t(s.size())};
          std::vector<float> f(s.begin(), s.end());
          t.data = Buffer::copy_of(f.data(), f.size() * sizeof(float));
          scales = b.net().add_weight(name + "_scales", std::move(t));
          node.attrs.erase("scales");
        } else {
          if (node.inputs.size() != 2) fail(ErrorCode::kInvalidModel, where, " needs inputs X and scales");
          scales = node.inputs[1];
        }
        node.inputs = {node.inputs.empty() ? ir::kNoValue : node.inputs[0], ir::kNoValue, scales};
        std::string mode = node.attrs.get_string("mode", "nearest");
        if (mode == "bilinear") mode = "linear";
        node.attrs.set("mode", mode);
        node.attrs.set("coordinate_transformation_mode", std::string("asymmetric"));
        if (mode == "nearest") node.attrs.set("nearest_mode", std::string("floor"));
      }
      break;
    case OpKind::kGroupNormalization:
      if (opset < 21)
        fail(ErrorCode::kUnsupported, where, ": GroupNormalization before opset 21 (per-group scale and bias) is not supported");
      break;
    default: break;
  }
  b.net().add_node(std::move(node));
}

}  // namespace kiln::onnx

// One ONNX NodeProto -> IR node(s). Each op is read in the version of its
// definition that the model's opset selects: older versions are rewritten into
// the form of the newest (attributes that became inputs, changed defaults),
// newer forms kiln cannot express are refused, naming the form.
#include <algorithm>
#include <cmath>

#include "importer.h"
#include "kiln/error.h"
#include "kiln/ir/recurrent.h"
#include "kiln/ir/shape_inference.h"

namespace kiln::onnx {

using ::onnx::AttributeProto;
using ir::OpKind;

namespace {

// Every ONNX op type the importer reads and the opsets that define a new
// version of it (ONNX's since_version), up to kMaxOpset. The translation of
// each version below was checked against ONNX's definition; the test
// OnnxOpVersions.MatchTheOnnxPackage compares this table with the op history
// of the installed onnx package, so a version kiln has not looked at fails it.
// Versions that only admit more element types (bfloat16, float8, int4, ...)
// need no translation: tensors of a type kiln lacks are refused where they
// appear (graph inputs, weights, Cast targets).
const std::vector<std::pair<std::string_view, std::vector<int>>> kOnnxOpVersions = {
    {"Abs", {1, 6, 13}}, {"Acos", {7, 22}}, {"Acosh", {9, 22}}, {"Add", {1, 6, 7, 13, 14}}, {"And", {1, 7}},
    {"ArgMax", {1, 11, 12, 13}}, {"ArgMin", {1, 11, 12, 13}}, {"Asin", {7, 22}}, {"Asinh", {9, 22}},
    {"Atan", {7, 22}}, {"Atanh", {9, 22}}, {"Attention", {23, 24, 25}}, {"AveragePool", {1, 7, 10, 11, 19, 22}},
    {"BatchNormalization", {1, 6, 7, 9, 14, 15}}, {"Cast", {1, 6, 9, 13, 19, 21, 23, 24, 25, 28}},
    {"CastLike", {15, 19, 21, 23, 24, 25}}, {"Ceil", {1, 6, 13}}, {"Celu", {12, 28}}, {"Clip", {1, 6, 11, 12, 13}},
    {"Concat", {1, 4, 11, 13}}, {"Constant", {1, 9, 11, 12, 13, 19, 21, 23, 24, 25}},
    {"ConstantOfShape", {9, 20, 21, 23, 24, 25}}, {"Conv", {1, 11, 22}}, {"ConvTranspose", {1, 11, 22}},
    {"Cos", {7, 22}}, {"Cosh", {9, 22}}, {"CumSum", {11, 14}}, {"DepthToSpace", {1, 11, 13, 28}},
    {"Div", {1, 6, 7, 13, 14}}, {"Dropout", {1, 6, 7, 10, 12, 13, 22}}, {"Einsum", {12, 28}}, {"Elu", {1, 6, 22}},
    {"Equal", {1, 7, 11, 13, 19}}, {"Erf", {9, 13}}, {"Exp", {1, 6, 13}}, {"Expand", {8, 13}},
    {"Flatten", {1, 9, 11, 13, 21, 23, 24, 25}}, {"Floor", {1, 6, 13}}, {"Gather", {1, 11, 13}},
    {"GatherElements", {11, 13}}, {"Gelu", {20}}, {"Gemm", {1, 6, 7, 9, 11, 13}}, {"GlobalAveragePool", {1, 22}},
    {"GatherND", {11, 12, 13}},
    {"GlobalMaxPool", {1, 22}}, {"Greater", {1, 7, 9, 13}}, {"GreaterOrEqual", {12, 16}},
    {"GroupNormalization", {18, 21}}, {"HardSigmoid", {1, 6, 22}}, {"HardSwish", {14, 22}},
    {"Hardmax", {1, 11, 13}}, {"Identity", {1, 13, 14, 16, 19, 21, 23, 24, 25}},
    {"InstanceNormalization", {1, 6, 22}}, {"IsInf", {10, 20}}, {"IsNaN", {9, 13, 20}},
    {"LayerNormalization", {17}}, {"LeakyRelu", {1, 6, 16}}, {"Less", {1, 7, 9, 13}}, {"LessOrEqual", {12, 16}},
    {"Log", {1, 6, 13}}, {"LogSoftmax", {1, 11, 13}}, {"MatMul", {1, 9, 13}}, {"Max", {1, 6, 8, 12, 13}},
    {"MaxPool", {1, 8, 10, 11, 12, 22}}, {"Mean", {1, 6, 8, 13}}, {"Min", {1, 6, 8, 12, 13}}, {"Mish", {18, 22}},
    {"Mod", {10, 13, 28}}, {"Mul", {1, 6, 7, 13, 14}}, {"Neg", {1, 6, 13}}, {"NonZero", {9, 13}}, {"Not", {1}},
    {"OneHot", {9, 11, 28}}, {"Or", {1, 7}}, {"PRelu", {1, 6, 7, 9, 16}},
    {"Pad", {1, 2, 11, 13, 18, 19, 21, 23, 24, 25}},
    {"Pow", {1, 7, 12, 13, 15}}, {"RMSNormalization", {23}}, {"Range", {11, 27}}, {"Reciprocal", {1, 6, 13}},
    {"ReduceL1", {1, 11, 13, 18}}, {"ReduceL2", {1, 11, 13, 18}}, {"ReduceLogSum", {1, 11, 13, 18, 28}},
    {"ReduceLogSumExp", {1, 11, 13, 18, 28}}, {"ReduceMax", {1, 11, 12, 13, 18, 20}},
    {"ReduceMean", {1, 11, 13, 18}}, {"ReduceMin", {1, 11, 12, 13, 18, 20}}, {"ReduceProd", {1, 11, 13, 18}},
    {"ReduceSum", {1, 11, 13}}, {"ReduceSumSquare", {1, 11, 13, 18}}, {"Relu", {1, 6, 13, 14}},
    {"Reshape", {1, 5, 13, 14, 19, 21, 23, 24, 25}}, {"Resize", {10, 11, 13, 18, 19}}, {"RotaryEmbedding", {23}},
    {"Round", {11, 22}}, {"Selu", {1, 6, 22}}, {"Shape", {1, 13, 15, 19, 21, 23, 24, 25}}, {"Shrink", {9}},
    {"Scatter", {9, 11}}, {"ScatterElements", {11, 13, 16, 18}}, {"ScatterND", {11, 13, 16, 18}},
    {"Sigmoid", {1, 6, 13}}, {"Sign", {9, 13}}, {"Sin", {7, 22}}, {"Sinh", {9, 22}},
    {"Size", {1, 13, 19, 21, 23, 24, 25}}, {"Slice", {1, 10, 11, 13}}, {"Softmax", {1, 11, 13}},
    {"Softplus", {1, 22}}, {"Softsign", {1, 22}}, {"SpaceToDepth", {1, 13, 28}}, {"Split", {1, 2, 11, 13, 18}},
    {"Sqrt", {1, 6, 13}}, {"Squeeze", {1, 11, 13, 21, 23, 24, 25}}, {"Sub", {1, 6, 7, 13, 14}},
    {"Sum", {1, 6, 8, 13}}, {"SwiGLU", {28}}, {"Swish", {24}}, {"Tan", {7, 22}}, {"Tanh", {1, 6, 13}},
    {"ThresholdedRelu", {10, 22}}, {"Tile", {1, 6, 13}}, {"TopK", {1, 10, 11, 24}}, {"Transpose", {1, 13, 21, 23, 24, 25}}, {"Trilu", {14}},
    {"Unsqueeze", {1, 11, 13, 21, 23, 24, 25}}, {"Upsample", {1, 7, 9, 10}}, {"Where", {9, 16}}, {"Xor", {1, 7}},
    // BitShift-28 adds signed types and defines shifts by the width or more; kiln reads 11 as 28.
    {"BitShift", {11, 28}}, {"BitwiseAnd", {18}}, {"BitwiseNot", {18}}, {"BitwiseOr", {18}}, {"BitwiseXor", {18}},
    {"LRN", {1, 13}},
    // GridSample-20 renamed bilinear and bicubic to linear and cubic and took N-D inputs.
    {"AffineGrid", {20}}, {"CenterCropPad", {18}}, {"Col2Im", {18}}, {"GridSample", {16, 20, 22}}, {"RoiAlign", {10, 16, 22}},
    {"ImageDecoder", {20}},
    // Compress-11 admits a negative axis, NonMaxSuppression-11 only rewords 10; the other later versions add types.
    {"Compress", {9, 11, 28}}, {"Unique", {11, 28}}, {"NonMaxSuppression", {10, 11}}, {"MaxRoiPool", {1, 22}},
    // Quantization: 13 added per-axis scales, 21 blocked ones and output_dtype,
    // 23 QuantizeLinear's precision and DequantizeLinear's output_dtype; the
    // other versions add types (float8, int4, ...), which kiln refuses where
    // they appear. QLinearMatMul-21 adds float16/bfloat16 scales.
    {"QuantizeLinear", {10, 13, 19, 21, 23, 24, 25, 28}}, {"DequantizeLinear", {10, 13, 19, 21, 23, 24, 25, 28}},
    {"DynamicQuantizeLinear", {11}}, {"MatMulInteger", {10}}, {"QLinearMatMul", {10, 21}}, {"ConvInteger", {10}},
    {"QLinearConv", {10}},
    // RNN-1, GRU-1 and GRU-3 and LSTM-1 predate the opsets kiln reads (7 on); 14 added layout, 22 bfloat16.
    {"GRU", {1, 3, 7, 14, 22}}, {"LSTM", {1, 7, 14, 22}}, {"RNN", {1, 7, 14, 22}},
    // Signal processing. DFT-20 took its axis as an input (DFT-17's attribute, default 1).
    {"BlackmanWindow", {17}}, {"DFT", {17, 20}}, {"HammingWindow", {17}}, {"HannWindow", {17}}, {"MelWeightMatrix", {17}},
    {"STFT", {17}},
    {"BitCast", {26}}, {"CausalConvWithState", {27}}, {"LinearAttention", {27}},
    // LpPool-1 and GlobalLpPool-1 take p as a float; kiln reads a whole one as 2's int.
    {"CumProd", {26}}, {"Det", {11, 22}}, {"EyeLike", {9, 22}}, {"GlobalLpPool", {1, 2, 22}}, {"LpNormalization", {1, 22}},
    {"LpPool", {1, 2, 11, 18, 22}}, {"MaxUnpool", {9, 11, 22}}, {"MeanVarianceNormalization", {9, 13}},
    {"ReverseSequence", {10, 28}}, {"TensorScatter", {24}},
    // DeformConv-22 and the random ops' 22 add bfloat16.
    {"DeformConv", {19, 22}}, {"Bernoulli", {15, 22}}, {"Multinomial", {7, 22}}, {"RandomNormal", {1, 22}},
    {"RandomNormalLike", {1, 22}}, {"RandomUniform", {1, 22}}, {"RandomUniformLike", {1, 22}},
    // Control flow. If-11 lets the branches' shapes differ; Scan-9 dropped
    // Scan-8's batch dim and took axes, 11 negative ones; the other versions
    // add types (sequences, optionals: refused where they appear).
    {"If", {1, 11, 13, 16, 19, 21, 23, 24, 25}}, {"Loop", {1, 11, 13, 16, 19, 21, 23, 24, 25}},
    {"Scan", {8, 9, 11, 16, 19, 21, 23, 24, 25}},
    // Text: string tensors (and TfIdfVectorizer's integer n-grams).
    {"RegexFullMatch", {20}}, {"StringConcat", {20}}, {"StringNormalizer", {10}}, {"StringSplit", {20}}, {"TfIdfVectorizer", {9}},
};

// The ai.onnx.ml ops kiln reads and the ai.onnx.ml opsets that define a new
// version of each, up to kMaxMlOpset (OnnxMlOpVersions.MatchTheOnnxPackage
// compares them with the onnx package's). LabelEncoder-1 maps strings to
// their index in classes_strings and back, 2 took keys_* and values_*, 4
// tensors of any type. TreeEnsemble-5 replaced TreeEnsembleClassifier and
// TreeEnsembleRegressor, which kiln does not read.
const std::vector<std::pair<std::string_view, std::vector<int>>> kOnnxMlOpVersions = {
    {"ArrayFeatureExtractor", {1}}, {"Binarizer", {1}}, {"LabelEncoder", {1, 2, 4}}, {"TreeEnsemble", {5}}};

// ONNX op types translated into an op of another name (besides Constant, which
// becomes a weight, and the ops of op_decompositions.cpp, which become several).
// Scatter-9 is ScatterElements without reduction under its old name.
constexpr std::pair<std::string_view, OpKind> kAliases[] = {{"Upsample", OpKind::kResize}, {"Scatter", OpKind::kScatterElements}};

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

const std::vector<int>* versions_of(std::string_view op_type) {
  for (auto& [type, versions] : kOnnxOpVersions)
    if (type == op_type) return &versions;
  return nullptr;
}

}  // namespace

const std::vector<std::pair<std::string_view, std::vector<int>>>& onnx_op_versions() { return kOnnxOpVersions; }

// Ops that models carry in the default domain at opsets before ONNX defined
// them, with the meaning ONNX later gave them: ONNX Runtime registers
// LayerNormalization there for opsets 1 to 16 (its optimizer writes such
// models), as ONNX's LayerNormalization-17 (axis, epsilon, stash_type; Y,
// Mean, InvStdDev). Read as that first definition.
constexpr std::pair<std::string_view, int> kReadBeforeDefinition[] = {{"LayerNormalization", 17}};

int onnx_op_version(std::string_view op_type, int opset) {
  const std::vector<int>* versions = versions_of(op_type);
  int version = 0;
  if (versions)
    for (int v : *versions)
      if (v <= opset) version = v;
  if (version == 0)
    for (auto& [type, first] : kReadBeforeDefinition)
      if (type == op_type) version = first;
  return version;
}

bool is_supported_op(const std::string& op_type) { return versions_of(op_type) != nullptr; }

const std::vector<std::pair<std::string_view, std::vector<int>>>& onnx_ml_op_versions() { return kOnnxMlOpVersions; }

int onnx_ml_op_version(std::string_view op_type, int ml_opset) {
  int version = 0;
  for (auto& [type, versions] : kOnnxMlOpVersions)
    if (type == op_type)
      for (int v : versions)
        if (v <= ml_opset) version = v;
  return version;
}

std::vector<std::string> onnx_op_types(OpKind op) {
  std::vector<std::string> types;
  if (ir::family_of(op) == ir::OpFamily::kMl) return {str(kMlDomain, "::", ir::op_name(op))};
  if (!ir::is_builder_op(op)) types.emplace_back(ir::op_name(op));
  for (auto& [alias, target] : kAliases)
    if (target == op) types.emplace_back(alias);
  return types;
}

namespace {

// A tensor attribute or Constant value of a type kiln lacks names the node and the attribute.
ir::TensorData attribute_tensor(GraphBuilder& b, AttributeProto& a, const std::string& where) {
  try {
    return tensor_from_proto(*a.mutable_t(), b.base_dir());
  } catch (const Error& e) {
    throw Error(e.code(), str(where, ": attribute '", a.name(), "': ", e.what()));
  }
}

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
    case AttributeProto::TENSOR: return attribute_tensor(b, a, where);
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

// An ints attribute that became input `slot` in opset `since` (Reduce*'s axes
// in 18, ...): moved there in older versions, an error in newer ones.
void attr_became_input(GraphBuilder& b, ir::Node& node, const char* attr, size_t slot, int since, int version,
                       const std::string& where) {
  if (version < since) attr_to_input(b, node, attr, slot);
  else if (node.attrs.has(attr))
    fail(ErrorCode::kInvalidModel, where, ": '", attr, "' is an input from opset ", since, " on, not an attribute");
}

bool is_false_constant(GraphBuilder& b, ir::ValueId id) {
  const ir::Value& v = b.net().value(id);
  if (!v.weight) return false;
  for (int64_t x : ir::read_ints(*v.weight))
    if (x) return false;
  return true;
}

bool has_input(const ir::Node& node, size_t i) { return i < node.inputs.size() && node.inputs[i] != ir::kNoValue; }

void translate_constant(GraphBuilder& b, ::onnx::NodeProto& p, const std::string& where) {
  if (p.output_size() != 1) fail(ErrorCode::kInvalidModel, where, " must have one output");
  ir::TensorData t;
  for (auto& a : *p.mutable_attribute()) {
    const std::string& n = a.name();
    if (n == "value") {
      t = attribute_tensor(b, a, where);
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

// Resize before opset 11 and Upsample: (X, scales) with asymmetric coordinates.
void translate_legacy_resize(GraphBuilder& b, ir::Node& node, const std::string& where) {
  ir::ValueId scales;
  if (node.attrs.has("scales")) {
    auto s = node.attrs.get_floats("scales");
    ir::TensorData t;
    t.dtype = DType::kFloat32;
    t.dims = {int64_t(s.size())};
    std::vector<float> f(s.begin(), s.end());
    t.data = Buffer::copy_of(f.data(), f.size() * sizeof(float));
    scales = b.net().add_weight(node.name + "_scales", std::move(t));
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

// GridSample-16's interpolation modes are bilinear, nearest and bicubic;
// 20 renamed them linear, nearest and cubic, the IR's names.
void translate_grid_sample_mode(ir::Node& node, int version, const std::string& where) {
  std::string mode = node.attrs.get_string("mode", version < 20 ? "bilinear" : "linear");
  const char* linear = version < 20 ? "bilinear" : "linear";
  const char* cubic = version < 20 ? "bicubic" : "cubic";
  if (mode != linear && mode != cubic && mode != "nearest")
    fail(ErrorCode::kInvalidModel, where, ": mode '", mode, "' is not one of GridSample-", version < 20 ? 16 : version, "'s ", linear,
         ", nearest, ", cubic);
  node.attrs.set("mode", std::string(mode == linear ? "linear" : mode == cubic ? "cubic" : "nearest"));
}

// The signal generators' output_datatype is an ONNX type code; the IR's is a kiln dtype.
void translate_output_datatype(ir::Node& node, const std::string& where) {
  if (!node.attrs.has("output_datatype")) return;
  int64_t code = node.attrs.get_int("output_datatype", ::onnx::TensorProto::FLOAT);
  auto dtype = dtype_from_onnx(int32_t(code));
  if (!dtype)
    fail(ErrorCode::kUnsupported, where, ": output_datatype ", onnx_dtype_name(int32_t(code)), ", a type kiln does not have (it has ",
         kiln_dtype_names(), ")");
  node.attrs.set("output_datatype", int64_t(*dtype));
}

// DFT-17's axis attribute (default 1) is DFT-20's input 2.
void translate_dft_axis(GraphBuilder& b, ir::Node& node, int version, const std::string& where) {
  if (version >= 20) {
    if (node.attrs.has("axis")) fail(ErrorCode::kInvalidModel, where, ": 'axis' is an input from opset 20 on, not an attribute");
    return;
  }
  int64_t axis = node.attrs.get_int("axis", 1);
  node.attrs.erase("axis");
  node.inputs.resize(std::max<size_t>(node.inputs.size(), 2), ir::kNoValue);
  node.inputs.push_back(b.const_ints(node.name + "_axis", {axis}));
}

// Split-18 takes its sizes from the `split` input or the `num_outputs`
// attribute, exactly one of them; before, num_outputs did not exist.
void check_split(const ir::Node& node, int version, const std::string& where) {
  bool sizes = has_input(node, 1), parts = node.attrs.has("num_outputs");
  if (version < 18 && parts)
    fail(ErrorCode::kInvalidModel, where, ": attribute 'num_outputs' belongs to Split from opset 18 on");
  if (version >= 18 && sizes == parts)
    fail(ErrorCode::kInvalidModel, where, ": Split-18 needs either the 'split' input or the 'num_outputs' attribute",
         sizes ? ", not both" : "");
}

// QuantizeLinear and DequantizeLinear: attributes of a later version are
// refused; dtype attributes (ONNX's codes, 0 for unset) become kiln's dtype
// codes, a type kiln lacks refused naming it; saturate (float8 targets only) stays.
void translate_quantize_attributes(ir::Node& node, int version, const std::string& where) {
  bool quantize = node.op == OpKind::kQuantizeLinear;
  const std::pair<const char*, int> since[] = {
      {"axis", 13}, {"saturate", 19}, {"block_size", 21}, {"output_dtype", quantize ? 21 : 23}, {"precision", 23}};
  for (auto& [attr, first] : since)
    if (node.attrs.has(attr) && version < first)
      fail(ErrorCode::kInvalidModel, where, ": attribute '", attr, "' belongs to ", ir::op_name(node.op), " from opset ", first, " on");
  for (const char* attr : {"output_dtype", "precision"}) {
    if (!node.attrs.has(attr)) continue;
    int64_t code = node.attrs.get_int(attr, 0);
    if (code == 0) {
      node.attrs.erase(attr);
      continue;
    }
    std::optional<DType> dtype = dtype_from_onnx(int32_t(code));
    if (!dtype)
      fail(ErrorCode::kUnsupported, where, ": ", attr, " ", onnx_dtype_name(int32_t(code)), ", a type kiln does not have (it has ",
           kiln_dtype_names(), ")");
    node.attrs.set(attr, int64_t(*dtype));
  }
  if (!quantize) node.attrs.erase("saturate");  // no attribute of DequantizeLinear
}

// The IR checks arity and attributes again when the network is finalized; here
// its errors also say which ONNX version the node was read as.
void check_translated(const ir::Node& node, const std::string& type, int version, int opset) {
  try {
    ir::check_node_schema(node);
  } catch (const Error& e) {
    throw Error(e.code(), str(e.what(), " (", type, "-", version, " in a model of opset ", opset, ")"));
  }
}


// LabelEncoder-1's classes_strings maps a string to its index and an int64
// index to its string; 2 and later spell out keys and values, and only 4 takes tensors.
void translate_label_encoder(GraphBuilder& b, ir::Node& node, int version, const std::string& where) {
  if (version < 4)
    for (const char* attr : {"keys_tensor", "values_tensor", "default_tensor"})
      if (node.attrs.has(attr)) fail(ErrorCode::kInvalidModel, where, ": attribute '", attr, "' belongs to LabelEncoder from ai.onnx.ml opset 4 on");
  if (version >= 2) {
    if (node.attrs.has("classes_strings")) fail(ErrorCode::kInvalidModel, where, ": 'classes_strings' belongs to LabelEncoder-1");
    return;
  }
  std::vector<std::string> classes = node.attrs.get_strings("classes_strings");
  std::vector<int64_t> indexes(classes.size());
  for (size_t i = 0; i < indexes.size(); ++i) indexes[i] = int64_t(i);
  std::optional<ir::InferOutput> x = node.inputs.empty() ? std::nullopt : b.infer(node.inputs[0]);
  if (!x) fail(ErrorCode::kUnsupported, where, ": LabelEncoder-1 needs its input's dtype known where it stands in the graph");
  node.attrs.erase("classes_strings");
  if (is_string(x->dtype)) {
    node.attrs.set("keys_strings", std::move(classes));
    node.attrs.set("values_int64s", std::move(indexes));
  } else {
    node.attrs.set("keys_int64s", std::move(indexes));
    node.attrs.set("values_strings", std::move(classes));
  }
}

// A node of the ai.onnx.ml domain: its op of the same name, read in the version the model's ai.onnx.ml opset selects.
void translate_ml_node(GraphBuilder& b, ::onnx::NodeProto& p, const std::string& name) {
  const std::string& type = p.op_type();
  std::string where = str("node '", name, "' (", kMlDomain, "::", type, ", ai.onnx.ml opset ", b.ml_opset(), ")");
  int version = onnx_ml_op_version(type, b.ml_opset());
  if (version == 0) fail(ErrorCode::kInvalidModel, where, ": the model's ai.onnx.ml opset has no ", type);
  ir::Node node;
  node.name = name;
  for (auto& a : *p.mutable_attribute()) node.attrs.set(a.name(), convert_attribute(b, a, where));
  for (const auto& in : p.input()) node.inputs.push_back(b.value(in));
  for (const auto& out : p.output()) node.outputs.push_back(out.empty() ? ir::kNoValue : b.value(out));
  node.op = *ir::op_from_name(type);  // is_supported_op checked every op type first
  if (node.op == OpKind::kLabelEncoder) translate_label_encoder(b, node, version, where);
  check_translated(node, type, version, b.ml_opset());
  b.net().add_node(std::move(node));
}

}  // namespace

bool is_supported_domain_op(const std::string& domain, const std::string& op_type) {
  if (domain == kMlDomain) return onnx_ml_op_version(op_type, kMaxMlOpset) != 0;
  return domain == "ai.onnx.preview" && op_type == "FlexAttention";
}

void translate_node(GraphBuilder& b, ::onnx::NodeProto& p, int index) {
  const std::string& type = p.op_type();
  std::string name = p.name().empty() ? str(type, "_", index) : p.name();
  if (p.domain() == kMlDomain) return translate_ml_node(b, p, name);
  if (p.domain() == "ai.onnx.preview")  // FlexAttention-1, the domain's one version
    return translate_flex_attention(b, p, name, str("node '", name, "' (ai.onnx.preview::", type, ")"));
  int opset = b.opset();
  std::string where = str("node '", name, "' (", type, ", opset ", opset, ")");
  int version = onnx_op_version(type, opset);
  if (version == 0)
    fail(ErrorCode::kInvalidModel, where, ": ONNX opset ", opset, " has no ", type, " (it is defined from opset ",
         versions_of(type)->front(), " on)");
  if (type == "Constant") return translate_constant(b, p, where);
  if (type == "If" || type == "Loop" || type == "Scan") return translate_control_flow(b, p, name, version, where);

  ir::Node node;
  node.name = name;
  for (auto& a : *p.mutable_attribute()) node.attrs.set(a.name(), convert_attribute(b, a, where));
  for (const auto& in : p.input()) node.inputs.push_back(b.value(in));
  for (const auto& out : p.output()) node.outputs.push_back(out.empty() ? ir::kNoValue : b.value(out));
  while (!node.inputs.empty() && node.inputs.back() == ir::kNoValue) node.inputs.pop_back();
  while (!node.outputs.empty() && node.outputs.back() == ir::kNoValue) node.outputs.pop_back();
  if (type == "Attention") return translate_attention(b, node, where);
  if (type == "RMSNormalization") return translate_rms_normalization(b, node, where);
  if (type == "RotaryEmbedding") return translate_rotary_embedding(b, node, where);
  if (type == "Swish" || type == "SwiGLU" || type == "Mish") return translate_swish_family(b, node, type, where);
  if (type == "CenterCropPad") return translate_center_crop_pad(b, node, where);
  if (type == "DynamicQuantizeLinear") return translate_dynamic_quantize_linear(b, node, where);
  if (type == "MeanVarianceNormalization") return translate_mean_variance_normalization(b, node, where);
  node.op = *op_for_onnx_type(type);  // import_model checked every op type first

  switch (node.op) {
    case OpKind::kSoftmax:
    case OpKind::kLogSoftmax:
    case OpKind::kHardmax:
      if (version < 13) return translate_legacy_softmax(b, std::move(node));
      break;
    case OpKind::kReduceSum:
      attr_became_input(b, node, "axes", 1, 13, version, where);
      break;
    case OpKind::kReduceMean: case OpKind::kReduceMax: case OpKind::kReduceMin: case OpKind::kReduceProd:
    case OpKind::kReduceL1: case OpKind::kReduceL2: case OpKind::kReduceLogSum: case OpKind::kReduceLogSumExp:
    case OpKind::kReduceSumSquare:
      attr_became_input(b, node, "axes", 1, 18, version, where);
      break;
    case OpKind::kSqueeze:
    case OpKind::kUnsqueeze:
      attr_became_input(b, node, "axes", 1, 13, version, where);
      break;
    case OpKind::kSplit:
      attr_became_input(b, node, "split", 1, 13, version, where);
      check_split(node, version, where);
      break;
    case OpKind::kSlice:
      if (version < 10) {
        bool has_axes = node.attrs.has("axes");
        attr_to_input(b, node, "starts", 1);
        attr_to_input(b, node, "ends", 2);
        if (has_axes) attr_to_input(b, node, "axes", 3);
      }
      break;
    case OpKind::kPad:
      if (version < 11) {
        double value = node.attrs.get_float("value", 0.0);
        node.attrs.erase("value");
        attr_to_input(b, node, "pads", 1);
        node.inputs.push_back(b.const_float(name + "_value", float(value)));
      }
      break;
    case OpKind::kScatterND:
    case OpKind::kScatterElements: {
      // reduction came in version 16 (none, add, mul); max and min in 18. IR semantics are 18's.
      std::string reduction = node.attrs.get_string("reduction", "none");
      int since = reduction == "none" ? 0 : reduction == "add" || reduction == "mul" ? 16 : 18;
      if (version < since)
        fail(ErrorCode::kInvalidModel, where, ": reduction '", reduction, "' is defined from ", type, "-", since, " on; the model's is ",
             type, "-", version);
      break;
    }
    case OpKind::kTopK:
      if (version < 10) {
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
    case OpKind::kCast:
    case OpKind::kCastLike:
    case OpKind::kBitCast:
      if (node.op != OpKind::kCastLike) {
        int64_t code = node.attrs.get_int("to", -1);
        auto dtype = dtype_from_onnx(int32_t(code));
        if (!dtype)
          fail(ErrorCode::kUnsupported, where, ": ", node.op == OpKind::kCast ? "cast" : "bitcast", " to ",
               onnx_dtype_name(int32_t(code)), ", a type kiln does not have (it has ", kiln_dtype_names(), ")");
        node.attrs.set("to", int64_t(*dtype));
      }
      // saturate (19) rules casts to float8 and round_mode (24) casts to float8e8m0: both stay.
      if (node.attrs.has("round_mode") && version < 24)
        fail(ErrorCode::kInvalidModel, where, ": attribute 'round_mode' belongs to ", type, " from opset 24 on");
      break;
    case OpKind::kResize:
      if (type == "Upsample" || version < 11) translate_legacy_resize(b, node, where);
      break;
    case OpKind::kGridSample: translate_grid_sample_mode(node, version, where); break;
    case OpKind::kQuantizeLinear: case OpKind::kDequantizeLinear: translate_quantize_attributes(node, version, where); break;
    case OpKind::kRNN:
    case OpKind::kGRU:
    case OpKind::kLSTM:
      // kiln's schema admits one more output, the scratch `kiln build` adds for the GPU runtime.
      if (node.outputs.size() > ir::recurrent_outputs(node.op))
        fail(ErrorCode::kInvalidModel, where, ": ", node.outputs.size(), " outputs; ", type, " has at most ",
             ir::recurrent_outputs(node.op));
      break;
    case OpKind::kLpPool:
    case OpKind::kGlobalLpPool:
      if (version < 2 && node.attrs.has("p")) {
        double p = node.attrs.get_float("p", 2.0);
        if (p != std::floor(p) || p < 1 || p > 1e6)
          fail(ErrorCode::kUnsupported, where, ": p ", p, " is not a whole number >= 1 (", type, "-", version, "'s float p)");
        node.attrs.set("p", int64_t(p));
      }
      break;
    case OpKind::kEyeLike:
    case OpKind::kRandomUniform:
    case OpKind::kRandomNormal:
    case OpKind::kRandomUniformLike:
    case OpKind::kRandomNormalLike:
    case OpKind::kBernoulli:
    case OpKind::kMultinomial:
      if (node.attrs.has("dtype")) {
        int64_t code = node.attrs.get_int("dtype", -1);
        auto dtype = dtype_from_onnx(int32_t(code));
        if (!dtype)
          fail(ErrorCode::kUnsupported, where, ": dtype ", onnx_dtype_name(int32_t(code)), ", a type kiln does not have (it has ",
               kiln_dtype_names(), ")");
        node.attrs.set("dtype", int64_t(*dtype));
      }
      break;
    case OpKind::kRoiAlign:
      // RoiAlign-10 had no coordinate_transformation_mode and computes as output_half_pixel (16's default is half_pixel).
      if (version < 16) {
        if (node.attrs.has("coordinate_transformation_mode"))
          fail(ErrorCode::kInvalidModel, where, ": attribute 'coordinate_transformation_mode' belongs to RoiAlign from opset 16 on");
        node.attrs.set("coordinate_transformation_mode", std::string("output_half_pixel"));
      }
      break;
    case OpKind::kGroupNormalization:
      if (version < 21) return translate_group_normalization_18(b, std::move(node), where);
      break;
    case OpKind::kSpaceToDepth:
      if (node.attrs.has("mode")) {  // SpaceToDepth-28
        std::string mode = node.attrs.get_string("mode", "DCR");
        if (mode == "CRD") return translate_space_to_depth_crd(b, node, where);
        if (mode != "DCR") fail(ErrorCode::kInvalidModel, where, ": mode '", mode, "' is not DCR or CRD");
        node.attrs.erase("mode");
      }
      break;
    case OpKind::kRange:
      if (node.attrs.has("stash_type")) {  // Range-27: the precision of float16/bfloat16 ranges
        int64_t stash = node.attrs.get_int("stash_type", 1);
        if (stash != ::onnx::TensorProto::FLOAT && stash != ::onnx::TensorProto::DOUBLE)
          fail(ErrorCode::kInvalidModel, where, ": stash_type ", stash, " is not FLOAT (1) or DOUBLE (11)");
        node.attrs.erase("stash_type");  // kiln computes every range in float64 and rounds once
      }
      break;
    case OpKind::kHannWindow: case OpKind::kHammingWindow: case OpKind::kBlackmanWindow: case OpKind::kMelWeightMatrix:
      translate_output_datatype(node, where);
      break;
    case OpKind::kDFT: translate_dft_axis(b, node, version, where); break;
    default: break;
  }
  check_translated(node, type, version, opset);
  b.net().add_node(std::move(node));
}

}  // namespace kiln::onnx

#include "model_config.h"

#include <nlohmann/json.hpp>

#include <set>

#include "kiln/builder.h"
#include "kiln/error.h"
#include "kiln/onnx.h"

namespace kiln::serving {

namespace {

using Json = nlohmann::json;

std::optional<DType> dtype_of_config(const std::string& name) {
  static const std::map<std::string, DType, std::less<>> kTypes = {
      {"TYPE_FP32", DType::kFloat32}, {"TYPE_FP16", DType::kFloat16}, {"TYPE_BF16", DType::kBFloat16},
      {"TYPE_FP64", DType::kFloat64}, {"TYPE_INT64", DType::kInt64},  {"TYPE_INT32", DType::kInt32},
      {"TYPE_INT8", DType::kInt8},    {"TYPE_UINT8", DType::kUInt8},  {"TYPE_BOOL", DType::kBool},
      {"TYPE_INT16", DType::kInt16},  {"TYPE_UINT16", DType::kUInt16}, {"TYPE_UINT32", DType::kUInt32},
      {"TYPE_UINT64", DType::kUInt64}};
  auto it = kTypes.find(name);
  if (it == kTypes.end()) return std::nullopt;
  return it->second;
}

// Protobuf's JSON writes 64-bit integers as strings; accept both spellings.
int64_t integer_field(const Json& value, const std::string& what) {
  if (value.is_number_integer()) return value.get<int64_t>();
  if (value.is_string()) {
    const std::string& s = value.get_ref<const std::string&>();
    size_t used = 0;
    try {
      int64_t v = std::stoll(s, &used);
      if (used == s.size()) return v;
    } catch (const std::exception&) {
    }
  }
  fail(ErrorCode::kInvalidArgument, what, " must be an integer; got ", value.dump());
}

TensorConfig tensor_config(const Json& entry, const std::string& kind, int64_t max_batch_size) {
  TensorConfig t;
  if (!entry.contains("name") || !entry["name"].is_string() || entry["name"].get<std::string>().empty())
    fail(ErrorCode::kInvalidArgument, "an ", kind, " has no name");
  t.name = entry["name"].get<std::string>();
  std::string what = kind + " '" + t.name + "'";
  std::string type = entry.value("data_type", std::string("TYPE_INVALID"));
  auto dtype = dtype_of_config(type);
  if (!dtype)
    fail(ErrorCode::kUnsupported, what, " has data_type ", type,
         "; kiln serves TYPE_FP32, TYPE_FP16, TYPE_BF16, TYPE_FP64, TYPE_INT64, TYPE_INT32, TYPE_INT16, TYPE_INT8, "
         "TYPE_UINT64, TYPE_UINT32, TYPE_UINT16, TYPE_UINT8, TYPE_BOOL");
  t.dtype = *dtype;
  if (entry.contains("dims"))
    for (const Json& d : entry["dims"]) {
      int64_t v = integer_field(d, what + " dims");
      if (v < -1 || v == 0) fail(ErrorCode::kInvalidArgument, what, " has dim ", v, "; dims are -1 (any) or positive");
      t.dims.push_back(v);
    }
  if (entry.contains("reshape"))
    fail(ErrorCode::kUnsupported, what, " has a reshape; kiln takes tensors as the model declares them (drop reshape)");
  if (entry.value("is_shape_tensor", false))
    fail(ErrorCode::kUnsupported, what, " is a shape tensor; kiln has none");
  if (entry.value("optional", false))
    fail(ErrorCode::kUnsupported, what, " is optional; every input of a kiln model is required");
  t.allow_ragged_batch = entry.value("allow_ragged_batch", false);
  if (t.allow_ragged_batch && max_batch_size == 0)
    fail(ErrorCode::kInvalidArgument, what, " allows ragged batches but max_batch_size is 0");
  return t;
}

std::vector<int64_t> parse_dims(const std::string& text, const std::string& what) {
  std::vector<int64_t> dims;
  size_t start = 0;
  while (true) {
    size_t end = text.find('x', start);
    std::string part = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    size_t used = 0;
    int64_t v = -1;
    try {
      v = std::stoll(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (part.empty() || used != part.size() || v < 0)
      fail(ErrorCode::kInvalidArgument, what, ": '", text, "' is not a shape like 8x64 (non-negative sizes joined by x)");
    dims.push_back(v);
    if (end == std::string::npos) return dims;
    start = end + 1;
  }
}

const std::set<std::string, std::less<>> kSettingNames = {"precision", "cuda_graph_strategy",
                                                          "dynamic_shapes_kernel_specialization_strategy",
                                                          "runtime_cache_path"};
constexpr std::string_view kProfilePrefix = "profile.";

void apply_parameter(ServingSettings& s, const std::string& key, const std::string& value) {
  std::string what = "parameter '" + key + "'";
  if (key == "precision") {
    s.precision = plan::parse_precision(value);
    if (!s.precision) fail(ErrorCode::kInvalidArgument, what, " is '", value, "'; expected fp32, fp16 or bf16");
  } else if (key == "cuda_graph_strategy") {
    auto v = runtime::parse_cuda_graph_strategy(value);
    if (!v) fail(ErrorCode::kInvalidArgument, what, " is '", value, "'; expected disabled or whole_graph_capture");
    s.cuda_graph_strategy = *v;
  } else if (key == "dynamic_shapes_kernel_specialization_strategy") {
    auto v = runtime::parse_kernel_specialization(value);
    if (!v) fail(ErrorCode::kInvalidArgument, what, " is '", value, "'; expected lazy, eager or none");
    s.kernel_specialization = *v;
  } else if (key == "runtime_cache_path") {
    s.runtime_cache_path = value;
  } else if (key.starts_with(kProfilePrefix) && key.size() > kProfilePrefix.size()) {
    s.profiles[key.substr(kProfilePrefix.size())] = parse_profile(value, what);
  } else {
    fail(ErrorCode::kInvalidArgument, "unknown ", what,
         "; kiln takes precision, cuda_graph_strategy, dynamic_shapes_kernel_specialization_strategy, "
         "runtime_cache_path and profile.<input>");
  }
}

}  // namespace

InputProfile parse_profile(const std::string& text, const std::string& what) {
  std::vector<std::vector<int64_t>> shapes;
  size_t start = 0;
  while (true) {
    size_t end = text.find(',', start);
    shapes.push_back(parse_dims(text.substr(start, end == std::string::npos ? std::string::npos : end - start), what));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  if (shapes.size() != 3)
    fail(ErrorCode::kInvalidArgument, what, ": '", text, "' must be three shapes MIN,OPT,MAX such as 1x64,8x64,32x64");
  for (size_t i = 1; i < 3; ++i)
    if (shapes[i].size() != shapes[0].size())
      fail(ErrorCode::kInvalidArgument, what, ": '", text, "' has shapes of different ranks");
  for (size_t d = 0; d < shapes[0].size(); ++d)
    if (shapes[0][d] > shapes[1][d] || shapes[1][d] > shapes[2][d])
      fail(ErrorCode::kInvalidArgument, what, ": '", text, "' needs min <= opt <= max in every dim (dim ", d, ")");
  return {shapes[0], shapes[1], shapes[2]};
}

ModelConfig parse_model_config(const std::string& text) {
  Json doc = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) fail(ErrorCode::kParseError, "the model configuration is not a JSON object");
  ModelConfig c;
  c.name = doc.value("name", std::string());
  if (doc.contains("max_batch_size")) c.max_batch_size = integer_field(doc["max_batch_size"], "max_batch_size");
  if (c.max_batch_size < 0) fail(ErrorCode::kInvalidArgument, "max_batch_size is ", c.max_batch_size, "; expected >= 0");
  if (doc.contains("input"))
    for (const Json& e : doc["input"]) c.inputs.push_back(tensor_config(e, "input", c.max_batch_size));
  if (doc.contains("output"))
    for (const Json& e : doc["output"]) c.outputs.push_back(tensor_config(e, "output", c.max_batch_size));
  if (c.inputs.empty() || c.outputs.empty())
    fail(ErrorCode::kInvalidArgument, "config.pbtxt must list every input and output of the model (kiln does not ",
         "complete the configuration); it has ", c.inputs.size(), " inputs and ", c.outputs.size(), " outputs");
  c.default_model_filename = doc.value("default_model_filename", std::string());
  if (doc.contains("parameters")) {
    if (!doc["parameters"].is_object()) fail(ErrorCode::kInvalidArgument, "parameters must be a map");
    for (auto& [key, value] : doc["parameters"].items()) {
      if (!value.is_object() || !value.contains("string_value") || !value["string_value"].is_string())
        fail(ErrorCode::kInvalidArgument, "parameter '", key, "' has no string_value");
      apply_parameter(c.settings, key, value["string_value"].get<std::string>());
    }
  }
  return c;
}

namespace {

// The shapes a configuration entry allows, batch dim included.
std::vector<int64_t> full_config_dims(const ModelConfig& c, const TensorConfig& t) {
  std::vector<int64_t> dims = t.dims;
  if (c.max_batch_size > 0) dims.insert(dims.begin(), -1);
  return dims;
}

const TensorConfig& config_entry(const std::vector<TensorConfig>& entries, const std::string& name,
                                 const std::string& kind, const std::filesystem::path& file) {
  for (const TensorConfig& t : entries)
    if (t.name == name) return t;
  fail(ErrorCode::kInvalidArgument, file.string(), " has ", kind, " '", name, "', which config.pbtxt does not list");
}

void check_rank(const ModelConfig& c, const TensorConfig& t, const ir::Value& v, const std::string& kind) {
  if (full_config_dims(c, t).size() != v.shape.size())
    fail(ErrorCode::kShapeError, kind, " '", v.name, "' has shape ", ir::shape_to_string(v.shape), " in the model but ",
         t.dims.size(), " dims in config.pbtxt",
         c.max_batch_size > 0 ? " (with max_batch_size > 0, dims leave out the batch dim)" : "");
}

// The single symbol a dim is, or "" when it is a constant or an expression.
std::string symbol_of(const ir::Dim& d) {
  if (d.is_constant()) return "";
  std::set<std::string> symbols;
  d.collect_symbols(symbols);
  if (symbols.size() == 1 && d == ir::Dim::symbol(*symbols.begin())) return *symbols.begin();
  return "";
}

// Ranges for an ONNX input: the profile parameter, else what the
// configuration pins (fixed dims, and the batch dim up to max_batch_size).
InputProfile derive_profile(const ModelConfig& c, const TensorConfig& t, const ir::Value& input) {
  std::string param = "parameter 'profile." + input.name + "'";
  std::vector<int64_t> dims = full_config_dims(c, t);
  if (auto it = c.settings.profiles.find(input.name); it != c.settings.profiles.end()) {
    const InputProfile& p = it->second;
    if (p.max.size() != input.shape.size())
      fail(ErrorCode::kInvalidArgument, param, " has ", p.max.size(), " dims; input '", input.name, "' has ",
           input.shape.size(), " ", ir::shape_to_string(input.shape), " (give full shapes, batch dim included)");
    if (c.max_batch_size > 0 && (p.min[0] > 1 || p.max[0] < c.max_batch_size))
      fail(ErrorCode::kInvalidArgument, param, " gives the batch dim ", p.min[0], "..", p.max[0],
           "; it must cover 1..max_batch_size (", c.max_batch_size, ")");
    return p;
  }
  InputProfile p;
  for (size_t i = 0; i < input.shape.size(); ++i) {
    int64_t lo, opt, hi;
    if (input.shape[i].is_constant()) {
      lo = opt = hi = input.shape[i].constant();
    } else if (dims[i] > 0) {
      lo = opt = hi = dims[i];
    } else if (i == 0 && c.max_batch_size > 0) {
      lo = 1;
      opt = hi = c.max_batch_size;
    } else {
      fail(ErrorCode::kInvalidArgument, "input '", input.name, "' dim ", i, " (", input.shape[i].to_string(),
           " in the model, -1 in config.pbtxt) needs a range: add parameters { key: \"profile.", input.name,
           "\" value: { string_value: \"MIN,OPT,MAX\" } } with full shapes such as 1x16,8x64,32x128");
    }
    p.min.push_back(lo);
    p.opt.push_back(opt);
    p.max.push_back(hi);
  }
  return p;
}

plan::Plan build_from_onnx(const ModelConfig& c, const std::filesystem::path& file) {
  ir::Network net = onnx::load_model(file);
  for (const auto& [name, profile] : c.settings.profiles) {
    auto id = net.find_value(name);
    if (!id || !net.value(*id).is_input)
      fail(ErrorCode::kInvalidArgument, "parameter 'profile.", name, "' names no input of ", file.string());
  }
  builder::BuildOptions options;
  options.precision = c.settings.precision.value_or(plan::Precision::kFloat32);
  for (ir::ValueId id : net.inputs()) {
    const ir::Value& input = net.value(id);
    const TensorConfig& t = config_entry(c.inputs, input.name, "input", file);
    check_rank(c, t, input, "input");
    InputProfile p = derive_profile(c, t, input);
    builder::add_input_profile(net, input.name, p.min, p.opt, p.max, options);
  }
  return builder::build(net, options, file.string());
}

void check_tensor(const ModelConfig& c, const TensorConfig& t, const ir::Value& v, const std::string& kind,
                  const plan::Plan& plan) {
  std::string what = kind + " '" + v.name + "'";
  if (t.dtype != v.dtype)
    fail(ErrorCode::kTypeError, what, " is ", dtype_name(v.dtype), " in the model but ", dtype_name(t.dtype),
         " in config.pbtxt");
  check_rank(c, t, v, kind);
  std::vector<int64_t> dims = full_config_dims(c, t);
  for (size_t i = 0; i < dims.size(); ++i)
    if (v.shape[i].is_constant() && dims[i] != -1 && dims[i] != v.shape[i].constant())
      fail(ErrorCode::kShapeError, what, " dim ", i, " is ", v.shape[i].constant(), " in the model but ", dims[i],
           " in config.pbtxt");
  if (c.max_batch_size == 0) return;
  std::string batch = symbol_of(v.shape[0]);
  if (batch.empty())
    fail(ErrorCode::kShapeError, what, " has shape ", ir::shape_to_string(v.shape),
         "; with max_batch_size > 0 its first dim must be a symbolic batch dim (or set max_batch_size: 0)");
  if (plan.network.data_dependent_symbols().count(batch))
    fail(ErrorCode::kShapeError, what, " has shape ", ir::shape_to_string(v.shape), ": its first dim is a size that depends on "
         "data, not the batch; serve the model with max_batch_size: 0");
  if (kind != "input") return;
  auto range = plan.network.dim_ranges().find(batch);
  if (range == plan.network.dim_ranges().end() || range->second.min > 1 || range->second.max < c.max_batch_size)
    fail(ErrorCode::kInvalidArgument, what, ": the plan's batch range (", batch, ") does not cover 1..max_batch_size (",
         c.max_batch_size, "); rebuild it with --profile up to ", c.max_batch_size, " or lower max_batch_size");
}

}  // namespace

std::shared_ptr<const ServedModel> load_served_model(ModelConfig config, const std::filesystem::path& version_dir) {
  auto served = std::make_shared<ServedModel>();
  std::filesystem::path file;
  if (!config.default_model_filename.empty()) {
    file = version_dir / config.default_model_filename;
  } else {
    file = version_dir / "model.kiln";
    if (!std::filesystem::exists(file)) file = version_dir / "model.onnx";
  }
  if (!std::filesystem::exists(file))
    fail(ErrorCode::kIoError, "no model file: expected ", version_dir.string(), "/model.kiln or model.onnx",
         config.default_model_filename.empty() ? "" : " (or default_model_filename)");
  bool is_onnx = file.extension() == ".onnx";
  if (!is_onnx) {
    if (config.settings.precision)
      fail(ErrorCode::kInvalidArgument, "parameter 'precision' applies to model.onnx; ", file.string(),
           " is a plan, built with its precision (kiln build --precision)");
    if (!config.settings.profiles.empty())
      fail(ErrorCode::kInvalidArgument, "parameter 'profile.", config.settings.profiles.begin()->first,
           "' applies to model.onnx; ", file.string(), " is a plan, built with its ranges (kiln build --profile)");
  }
  plan::Plan plan = is_onnx ? build_from_onnx(config, file) : plan::load(file);
  const ir::Network& net = plan.network;
  for (ir::ValueId id : net.inputs())
    check_tensor(config, config_entry(config.inputs, net.value(id).name, "input", file), net.value(id), "input", plan);
  for (ir::ValueId id : net.outputs())
    check_tensor(config, config_entry(config.outputs, net.value(id).name, "output", file), net.value(id), "output",
                 plan);
  for (const TensorConfig& t : config.inputs)
    if (!net.find_value(t.name) || !net.value(*net.find_value(t.name)).is_input)
      fail(ErrorCode::kInvalidArgument, "config.pbtxt lists input '", t.name, "', which ", file.string(), " does not have");
  for (const TensorConfig& t : config.outputs) {
    bool found = false;
    for (ir::ValueId id : net.outputs()) found = found || net.value(id).name == t.name;
    if (!found)
      fail(ErrorCode::kInvalidArgument, "config.pbtxt lists output '", t.name, "', which ", file.string(),
           " does not have");
  }
  served->config = std::move(config);
  served->plan = std::make_shared<const plan::Plan>(std::move(plan));
  served->file = file;
  return served;
}

}  // namespace kiln::serving

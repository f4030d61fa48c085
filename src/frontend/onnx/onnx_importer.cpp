// ModelProto -> Network: opset checks, initializers, typed inputs, nodes, outputs.
#include <google/protobuf/io/zero_copy_stream_impl.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <map>

#include "importer.h"
#include "kiln/error.h"
#include "kiln/file_io.h"
#include "kiln/ir/limits.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/onnx.h"

namespace kiln::onnx {

namespace fs = std::filesystem;

int min_supported_opset() { return 1; }
int max_supported_opset() { return kMaxOpset; }

ir::ValueId GraphBuilder::value(const std::string& name) {
  if (name.empty()) return ir::kNoValue;
  if (auto id = net_.find_value(name)) return *id;
  return net_.add_value(name);
}

ir::ValueId GraphBuilder::const_ints(const std::string& stem, const std::vector<int64_t>& values, bool scalar) {
  ir::TensorData t;
  t.dtype = DType::kInt64;
  if (!scalar) t.dims = {int64_t(values.size())};
  t.data = Buffer::copy_of(values.data(), values.size() * sizeof(int64_t));
  return net_.add_weight(str(stem, "__const", const_counter_++), std::move(t));
}

ir::ValueId GraphBuilder::const_float(const std::string& stem, float value) {
  ir::TensorData t;
  t.dtype = DType::kFloat32;
  t.data = Buffer::copy_of(&value, sizeof(value));
  return net_.add_weight(str(stem, "__const", const_counter_++), std::move(t));
}

ir::ValueId GraphBuilder::const_bool(const std::string& stem, bool value) {
  ir::TensorData t;
  t.dtype = DType::kBool;
  t.data = Buffer::copy_of(&value, sizeof(value));
  return net_.add_weight(str(stem, "__const", const_counter_++), std::move(t));
}

ir::ValueId GraphBuilder::const_scalar(const std::string& stem, double value, DType dtype) {
  ir::TensorData t;
  t.dtype = dtype;
  std::vector<std::byte> bytes(dtype_size(dtype));
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* out = reinterpret_cast<T*>(bytes.data());
    if constexpr (std::is_same_v<T, Float16>) out->bits = float_to_half(float(value));
    else if constexpr (std::is_same_v<T, BFloat16>) out->bits = float_to_bfloat16(float(value));
    else if constexpr (requires { out->bits; }) out->bits = narrow_float_from_double(dtype, value, true);
    else if constexpr (requires { out->value; }) out->value = narrow_integer_wrap(dtype, int64_t(value));
    else *out = static_cast<T>(value);
  });
  t.data = Buffer::from_bytes(std::move(bytes));
  return net_.add_weight(str(stem, "__const", const_counter_++), std::move(t));
}

ir::ValueId GraphBuilder::op(ir::OpKind op, std::vector<ir::ValueId> inputs, const std::string& name, ir::Attributes attrs,
                             ir::ValueId output) {
  if (output == ir::kNoValue) return net_.add_op1(op, std::move(inputs), std::move(attrs), name);
  net_.add_node(ir::Node{name, op, std::move(inputs), {output}, std::move(attrs)});
  return output;
}

// An iterative walk up the producers (a long chain must not exhaust the stack),
// inferring each node once, with the same rules and budget as Network::finalize.
std::optional<ir::InferOutput> GraphBuilder::infer(ir::ValueId root) {
  enum State { kVisiting, kDone, kUnknown };
  std::vector<ir::ValueId> stack{root};
  std::function<ir::Dim()> fresh = [this] { return ir::Dim::symbol(str("_import_d", fresh_counter_++)); };
  while (!stack.empty()) {
    ir::ValueId id = stack.back();
    auto state = infer_state_.find(id);
    const ir::Value& v = net_.value(id);
    if (state == infer_state_.end() && (v.typed || v.producer < 0)) {
      if (v.typed) inferred_[id] = ir::InferOutput{v.dtype, v.shape, v.known};
      infer_state_[id] = v.typed ? kDone : kUnknown;  // untyped without a producer: not made yet
      stack.pop_back();
      continue;
    }
    if (state != infer_state_.end() && state->second != kVisiting) {
      stack.pop_back();
      continue;
    }
    const ir::Node& node = net_.nodes()[size_t(v.producer)];
    auto mark = [&](State s) {
      for (ir::ValueId out : node.outputs)
        if (out != ir::kNoValue) infer_state_[out] = s;
    };
    if (state == infer_state_.end()) {  // first visit: infer the inputs first
      mark(kVisiting);
      for (ir::ValueId in : node.inputs) {
        if (in == ir::kNoValue) continue;
        auto s = infer_state_.find(in);
        if (s == infer_state_.end()) stack.push_back(in);
        else if (s->second == kVisiting) mark(kUnknown);  // a cycle: finalize reports it
      }
      continue;
    }
    stack.pop_back();
    bool ready = std::all_of(node.inputs.begin(), node.inputs.end(),
                             [&](ir::ValueId in) { return in == ir::kNoValue || infer_state_.at(in) == kDone; });
    if (!ready) {
      mark(kUnknown);
      continue;
    }
    std::vector<ir::InferInput> inputs(node.inputs.size());
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      if (node.inputs[i] == ir::kNoValue) continue;
      const ir::Value& iv = net_.value(node.inputs[i]);
      const ir::InferOutput& io = inferred_.at(node.inputs[i]);
      inputs[i] = ir::InferInput{true, io.dtype, io.shape, io.known ? &*io.known : nullptr,
                                 iv.weight ? &*iv.weight : nullptr, &iv.name};
    }
    ir::check_node_schema(node);
    std::vector<ir::InferOutput> outputs = ir::infer_node(node, inputs, fresh);
    for (size_t i = 0; i < node.outputs.size(); ++i) {
      if (node.outputs[i] == ir::kNoValue) continue;
      for (const ir::Dim& d : outputs[i].shape) infer_work_ += d.complexity();
      inferred_[node.outputs[i]] = std::move(outputs[i]);
    }
    // Past finalize's budget: finalize will say so; until then nothing more is inferred here.
    mark(infer_work_ > ir::kMaxInferenceWork ? kUnknown : kDone);
  }
  if (infer_state_[root] != kDone) return std::nullopt;
  return inferred_[root];
}

void count_unsupported_ops(const ::onnx::GraphProto& graph, std::map<std::string, int>& unsupported) {
  for (const auto& node : graph.node()) {
    bool default_domain = node.domain().empty() || node.domain() == "ai.onnx";
    if (!default_domain) {
      if (!is_supported_domain_op(node.domain(), node.op_type())) unsupported[node.domain() + "::" + node.op_type()]++;
    } else if (!is_supported_op(node.op_type())) {
      unsupported[node.op_type()]++;
    }
    for (const auto& a : node.attribute()) {
      if (a.has_g()) count_unsupported_ops(a.g(), unsupported);
      for (const auto& g : a.graphs()) count_unsupported_ops(g, unsupported);
    }
  }
}

namespace {

ir::Shape input_shape(const ::onnx::ValueInfoProto& info) {
  ir::Shape shape;
  const auto& type = info.type().tensor_type();
  if (!type.has_shape()) fail(ErrorCode::kUnsupported, "input '", info.name(), "' has no shape (unknown rank)");
  for (int i = 0; i < type.shape().dim_size(); ++i) {
    const auto& d = type.shape().dim(i);
    if (d.has_dim_value()) {
      if (d.dim_value() < 0) fail(ErrorCode::kInvalidModel, "input '", info.name(), "' has negative dim ", d.dim_value());
      shape.push_back(ir::Dim(d.dim_value()));
    } else if (d.has_dim_param() && !d.dim_param().empty()) {
      shape.push_back(ir::Dim::symbol(d.dim_param()));
    } else {
      shape.push_back(ir::Dim::symbol(str(info.name(), "_dim", i)));
    }
  }
  return shape;
}

void check_unsupported_ops(const ::onnx::GraphProto& graph) {
  std::map<std::string, int> unsupported;
  count_unsupported_ops(graph, unsupported);
  if (unsupported.empty()) return;
  std::string list;
  for (auto& [op, count] : unsupported) list += str(list.empty() ? "" : ", ", op, " (", count, ")");
  fail(ErrorCode::kUnsupported, "unsupported ops: ", list);
}

ir::Network import_model(::onnx::ModelProto& model, const fs::path& base_dir, const std::string& label) {
  if (!model.has_graph()) fail(ErrorCode::kInvalidModel, label, " has no graph");
  ::onnx::GraphProto& graph = *model.mutable_graph();
  check_unsupported_ops(graph);
  int opset = -1, ml_opset = 0;
  for (const auto& entry : model.opset_import()) {
    if (entry.domain().empty() || entry.domain() == "ai.onnx") opset = int(entry.version());
    if (entry.domain() == kMlDomain) ml_opset = int(std::clamp<int64_t>(entry.version(), -1, kMaxMlOpset + 1));
  }
  bool ml_nodes = false, default_nodes = false;
  for (const auto& node : graph.node()) (node.domain() == kMlDomain ? ml_nodes : default_nodes) = true;
  if (ml_nodes && (ml_opset < 1 || ml_opset > kMaxMlOpset))
    fail(ml_opset > kMaxMlOpset ? ErrorCode::kUnsupported : ErrorCode::kInvalidModel, label,
         ml_opset > kMaxMlOpset ? str(" uses an ai.onnx.ml opset newer than ", kMaxMlOpset, ", the newest kiln reads")
                                : std::string(" has ai.onnx.ml nodes but imports no ai.onnx.ml opset from 1 on"));
  if (opset < 0) {
    if (model.opset_import_size() != 0 && default_nodes)
      fail(ErrorCode::kInvalidModel, label, " imports no opset of the default ONNX domain");
    opset = model.opset_import_size() != 0 ? kMaxOpset : 1;  // a model of ai.onnx.ml ops only; IR version 1-2 models
  }
  if (opset < min_supported_opset() || opset > max_supported_opset())
    fail(ErrorCode::kUnsupported, label, " uses ONNX opset ", opset, "; kiln reads opsets ", min_supported_opset(), " to ",
         max_supported_opset(), opset > max_supported_opset() ? " (the newest whose op changes it translates)" : "");
  if (opset < kMinOpset)
    for (int index = 0; index < graph.node_size(); ++index) {
      const ::onnx::NodeProto& node = graph.node(index);
      if (!node.domain().empty() && node.domain() != "ai.onnx") continue;
      int version = onnx_op_version(node.op_type(), opset), kept = onnx_op_version(node.op_type(), kMinOpset);
      if (version != 0 && version != kept)  // 0: an op opset lacks, which translate_node names
        fail(ErrorCode::kUnsupported, label, " uses ONNX opset ", opset, ", whose ", node.op_type(), "-", version, " (node '",
             node.name().empty() ? str(node.op_type(), "_", index) : node.name(), "') changed at opset ", kept,
             "; kiln reads a model of an opset before ", kMinOpset, " only where its ops are as they still are at opset ",
             kMinOpset, "; re-export the model at opset ", kMinOpset, " or newer");
    }

  ir::Network net;
  net.set_name(graph.name());
  GraphBuilder builder(net, opset, base_dir);
  builder.set_ml_opset(ml_opset);
  std::set<std::string> initializer_names;
  for (auto& init : *graph.mutable_initializer()) {
    if (init.name().empty()) fail(ErrorCode::kInvalidModel, label, " has an initializer without a name");
    std::string name = init.name();
    net.add_weight(name, tensor_from_proto(init, base_dir));
    initializer_names.insert(name);
  }
  for (const auto& input : graph.input()) {
    if (initializer_names.count(input.name())) continue;  // an input with a default value is a weight
    if (!input.type().has_tensor_type())
      fail(ErrorCode::kUnsupported, "input '", input.name(), "' is not a tensor (sequence, map and optional types are not supported)");
    auto dtype = dtype_from_onnx(input.type().tensor_type().elem_type());
    if (!dtype)
      fail(ErrorCode::kUnsupported, "input '", input.name(), "' has dtype ",
           onnx_dtype_name(input.type().tensor_type().elem_type()), ", a type kiln does not have (it has ",
           kiln_dtype_names(), ")");
    net.add_input(input.name(), *dtype, input_shape(input));
  }
  for (int i = 0; i < graph.node_size(); ++i) translate_node(builder, *graph.mutable_node(i), i);
  for (const auto& output : graph.output()) {
    if (output.has_type() && !output.type().has_tensor_type())
      fail(ErrorCode::kUnsupported, "output '", output.name(), "' is not a tensor (sequence, map and optional types are not supported)");
    auto id = net.find_value(output.name());
    if (!id) fail(ErrorCode::kInvalidModel, "graph output '", output.name(), "' is not produced by any node");
    net.add_output(*id);
  }
  net.finalize();
  return net;
}

// Protobuf cannot parse a message over 2 GiB: a larger file is refused before it is read.
constexpr uint64_t kMaxProtobufBytes = uint64_t(std::numeric_limits<int>::max());

std::string read_file(const fs::path& path, std::string_view what) {
  return file_io::read_file(path, what, kMaxProtobufBytes);
}

}  // namespace

ir::Network load_model_bytes(std::string bytes, const fs::path& base_dir) {
  std::string label = "model";
  if (bytes.empty()) fail(ErrorCode::kParseError, "the model is empty (0 bytes)");
  if (bytes.size() > size_t(std::numeric_limits<int>::max()))
    fail(ErrorCode::kUnsupported, "the model is larger than 2 GiB; store its weights as external data");
  ::onnx::ModelProto model;
  if (!model.ParseFromString(bytes))
    fail(ErrorCode::kParseError, "the model is not a valid ONNX protobuf (truncated or corrupt?)");
  bytes.clear();
  bytes.shrink_to_fit();
  return import_model(model, base_dir, label);
}

ir::Network load_model(const fs::path& path) {
  // Parse straight from the file so the model's bytes are held once: weight
  // data then moves from the protobuf into the network without a copy.
  file_io::File file = file_io::File::open_regular(path, "model");
  uint64_t size = file.size();
  if (size > kMaxProtobufBytes)
    fail(ErrorCode::kUnsupported, path.string(), ": the model has ", size, " bytes, more than 2 GiB; store its weights as external data");
  ::onnx::ModelProto model;
  bool parsed;
  {
    google::protobuf::io::FileInputStream stream(file.release());
    stream.SetCloseOnDelete(true);
    parsed = model.ParseFromZeroCopyStream(&stream);
    if (stream.GetErrno() != 0) fail(ErrorCode::kIoError, "cannot read ", path, ": ", std::strerror(stream.GetErrno()));
  }
  try {
    if (size == 0) fail(ErrorCode::kParseError, "the model is empty (0 bytes)");
    if (!parsed) fail(ErrorCode::kParseError, "the model is not a valid ONNX protobuf (truncated or corrupt?)");
    fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
    return import_model(model, dir, "model");
  } catch (const Error& e) {
    throw Error(e.code(), str(path.string(), ": ", e.what()));
  }
}

ir::TensorData load_tensor_file(const fs::path& path) {
  std::string bytes = read_file(path, "TensorProto file");
  ::onnx::TensorProto proto;
  if (!proto.ParseFromString(bytes)) fail(ErrorCode::kParseError, path, " is not a valid TensorProto");
  try {
    return tensor_from_proto(proto, path.parent_path());
  } catch (const Error& e) {
    throw Error(e.code(), str(path.string(), ": ", e.what()));
  }
}

}  // namespace kiln::onnx

namespace kiln::onnx {

ModelSummary summarize_model(const fs::path& path) {
  std::string bytes = read_file(path, "model");
  if (bytes.empty()) fail(ErrorCode::kParseError, path.string(), ": the model is empty (0 bytes)");
  ::onnx::ModelProto model;
  if (!model.ParseFromString(bytes))
    fail(ErrorCode::kParseError, path.string(), ": not a valid ONNX protobuf (truncated or corrupt?)");
  ModelSummary s;
  s.graph_name = model.graph().name();
  s.producer = model.producer_name() + (model.producer_version().empty() ? "" : " " + model.producer_version());
  s.ir_version = model.ir_version();
  for (const auto& entry : model.opset_import())
    if (entry.domain().empty() || entry.domain() == "ai.onnx") s.opset = int(entry.version());
  std::set<std::string> initializers;
  for (const auto& init : model.graph().initializer()) initializers.insert(init.name());
  s.initializer_count = int64_t(initializers.size());
  auto describe = [](const ::onnx::ValueInfoProto& v) {
    ModelSummary::Io io{v.name(), "?", "?"};
    if (!v.type().has_tensor_type()) {
      io.dtype = "non-tensor";
      return io;
    }
    const auto& t = v.type().tensor_type();
    auto dtype = dtype_from_onnx(t.elem_type());
    io.dtype = dtype ? std::string(dtype_name(*dtype)) : onnx_dtype_name(t.elem_type());
    if (t.has_shape()) {
      io.shape = "[";
      for (int i = 0; i < t.shape().dim_size(); ++i) {
        const auto& d = t.shape().dim(i);
        io.shape += (i ? "," : "") + (d.has_dim_value() ? std::to_string(d.dim_value()) : d.dim_param().empty() ? "?" : d.dim_param());
      }
      io.shape += "]";
    }
    return io;
  };
  for (const auto& in : model.graph().input())
    if (!initializers.count(in.name())) s.inputs.push_back(describe(in));
  for (const auto& out : model.graph().output()) s.outputs.push_back(describe(out));
  // The ops of subgraphs (If branches, Loop and Scan bodies) count as the model's.
  std::function<void(const ::onnx::GraphProto&)> count = [&](const ::onnx::GraphProto& graph) {
    for (const auto& node : graph.node()) {
      bool default_domain = node.domain().empty() || node.domain() == "ai.onnx";
      std::string key = default_domain ? node.op_type() : node.domain() + "::" + node.op_type();
      bool supported = default_domain ? is_supported_op(node.op_type()) : is_supported_domain_op(node.domain(), node.op_type());
      if (s.op_histogram[key]++ == 0 && !supported)
        s.unsupported_ops.push_back(key);
      for (const auto& a : node.attribute()) {
        if (a.has_g()) count(a.g());
        for (const auto& g : a.graphs()) count(g);
      }
    }
  };
  count(model.graph());
  return s;
}

}  // namespace kiln::onnx

// ONNX If, Loop and Scan: each subgraph (GraphProto attribute) becomes a
// finalized Network held by a graph attribute (but a branch that cannot stand
// alone of an If whose condition shape inference decides: see inline_decided_if). The names a subgraph reads from
// enclosing graphs (ONNX's outer scope) become inputs of it after its own and
// inputs of the node after the node's own, in the order it first reads them;
// a subgraph inside a subgraph passes them through every level between.
#include <algorithm>
#include <set>

#include "importer.h"
#include "kiln/error.h"
#include "kiln/ir/control_flow.h"
#include "kiln/ir/limits.h"

namespace kiln::onnx {

using ::onnx::AttributeProto;
using ir::OpKind;

namespace {

void read_name(const std::set<std::string>& defined, const std::string& name, std::vector<std::string>& out) {
  if (!name.empty() && !defined.count(name) && std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
}

// The names `g` reads but does not define, in order of first reading.
std::vector<std::string> outer_names(const ::onnx::GraphProto& g) {
  std::set<std::string> defined;
  for (const auto& in : g.input()) defined.insert(in.name());
  for (const auto& init : g.initializer()) defined.insert(init.name());
  for (const auto& node : g.node())
    for (const auto& out : node.output()) defined.insert(out);
  std::vector<std::string> out;
  for (const auto& node : g.node()) {
    for (const auto& in : node.input()) read_name(defined, in, out);
    for (const auto& a : node.attribute()) {
      if (a.has_g())
        for (const auto& name : outer_names(a.g())) read_name(defined, name, out);
      for (const auto& sub : a.graphs())
        for (const auto& name : outer_names(sub)) read_name(defined, name, out);
    }
  }
  for (const auto& o : g.output()) read_name(defined, o.name(), out);
  return out;
}

// The type of a subgraph input: as the model declares it, else (no element
// type, no shape) as `fallback` says, the type of the value the node gives it.
ir::InferOutput declared_type(const ::onnx::ValueInfoProto& info, const std::optional<ir::InferOutput>& fallback,
                              const std::string& where) {
  ir::InferOutput t;
  const auto& tensor = info.type().tensor_type();
  bool has_type = info.type().has_tensor_type() && tensor.elem_type() != 0;
  if (info.type().has_sequence_type() || info.type().has_optional_type() || info.type().has_map_type())
    fail(ErrorCode::kUnsupported, where, ": subgraph input '", info.name(), "' is not a tensor (sequences, maps and optionals are not supported)");
  if (has_type) {
    auto dtype = dtype_from_onnx(tensor.elem_type());
    if (!dtype)
      fail(ErrorCode::kUnsupported, where, ": subgraph input '", info.name(), "' has dtype ", onnx_dtype_name(tensor.elem_type()),
           ", a type kiln does not have (it has ", kiln_dtype_names(), ")");
    t.dtype = *dtype;
  } else if (fallback) {
    t.dtype = fallback->dtype;
  } else {
    fail(ErrorCode::kInvalidModel, where, ": subgraph input '", info.name(), "' has no type, nor does the value the node gives it");
  }
  if (has_type && tensor.has_shape()) {
    for (int i = 0; i < tensor.shape().dim_size(); ++i) {
      const auto& d = tensor.shape().dim(i);
      if (d.has_dim_value() && d.dim_value() >= 0) t.shape.push_back(ir::Dim(d.dim_value()));
      else if (d.has_dim_param() && !d.dim_param().empty()) t.shape.push_back(ir::Dim::symbol(d.dim_param()));
      else t.shape.push_back(ir::Dim::symbol(str(info.name(), "_dim", i)));
    }
  } else if (fallback) {
    t.shape = fallback->shape;
  } else {
    fail(ErrorCode::kInvalidModel, where, ": subgraph input '", info.name(), "' has no shape, nor does the value the node gives it");
  }
  return t;
}

// The type of an enclosing graph's value a subgraph reads.
ir::InferOutput outer_type(GraphBuilder& outer, const std::string& name, const std::string& where) {
  std::optional<ir::InferOutput> t = outer.infer(outer.value(name));
  if (!t) fail(ErrorCode::kInvalidModel, where, ": a subgraph reads '", name, "', which no graph around it makes before the node");
  return *t;
}

const ::onnx::GraphProto& graph_attribute(::onnx::NodeProto& p, const char* attr, const std::string& where) {
  for (const auto& a : p.attribute())
    if (a.name() == attr) {
      if (a.type() != AttributeProto::GRAPH || !a.has_g()) fail(ErrorCode::kInvalidModel, where, ": attribute '", attr, "' is not a graph");
      return a.g();
    }
  fail(ErrorCode::kInvalidModel, where, ": graph attribute '", attr, "' is required");
}

// Imports subgraph `g` of attribute `attr`: its inputs typed by `formal`, then
// the enclosing graphs' values `captured`, with their types or, when
// `symbolic_captures`, with symbolic dims of their ranks.
ir::Subgraph import_subgraph(GraphBuilder& outer, ::onnx::GraphProto g, const std::vector<ir::InferOutput>& formal,
                             const std::vector<std::string>& captured, const char* attr, const std::string& where,
                             bool symbolic_captures = false) {
  if (outer.depth() + 1 > ir::kMaxSubgraphDepth)
    fail(ErrorCode::kUnsupported, where, ": subgraphs nest more than ", ir::kMaxSubgraphDepth, " levels deep");
  if (size_t(g.input_size()) != formal.size())
    fail(ErrorCode::kInvalidModel, where, ": subgraph '", attr, "' has ", g.input_size(), " inputs; the node gives it ", formal.size());
  std::vector<ir::InferOutput> captured_types;
  for (const std::string& name : captured) {
    captured_types.push_back(outer_type(outer, name, where));
    if (symbolic_captures)
      for (size_t d = 0; d < captured_types.back().shape.size(); ++d) captured_types.back().shape[d] = ir::Dim::symbol(str(name, "_dim", d));
  }
  auto net = std::make_shared<ir::Network>();
  net->set_name(g.name().empty() ? attr : g.name());
  try {
    GraphBuilder b(*net, outer);
    for (auto& init : *g.mutable_initializer()) net->add_weight(init.name(), tensor_from_proto(init, outer.base_dir()));
    for (size_t i = 0; i < formal.size(); ++i) net->add_input(g.input(int(i)).name(), formal[i].dtype, formal[i].shape);
    for (size_t i = 0; i < captured.size(); ++i) net->add_input(captured[i], captured_types[i].dtype, captured_types[i].shape);
    for (int i = 0; i < g.node_size(); ++i) translate_node(b, *g.mutable_node(i), i);
    for (const auto& o : g.output()) {
      auto id = net->find_value(o.name());
      if (!id) fail(ErrorCode::kInvalidModel, "output '", o.name(), "' is not produced by any node");
      net->add_output(*id);
    }
    net->finalize();
  } catch (const Error& e) {
    throw Error(e.code(), str(where, ": in subgraph '", attr, "': ", e.what()));
  }
  return net;
}

// An If's branch declares the enclosing graph's values it reads with their
// types where it fits them, else with symbolic dims: exporters write branches
// that only fit the shapes they are taken for (a Split of a shape vector of
// rank 4 beside one of rank 5), and inference sees the actual shapes whenever
// it asks the branch.
ir::Subgraph import_branch(GraphBuilder& outer, const ::onnx::GraphProto& g, const std::vector<std::string>& captured,
                           const char* attr, const std::string& where) {
  try {
    return import_subgraph(outer, g, {}, captured, attr, where);
  } catch (const Error& precise) {
    try {
      return import_subgraph(outer, g, {}, captured, attr, where, true);
    } catch (const Error&) {
      throw precise;
    }
  }
}

std::vector<std::string> merged(std::vector<std::string> a, const std::vector<std::string>& b) {
  for (const auto& name : b)
    if (std::find(a.begin(), a.end(), name) == a.end()) a.push_back(name);
  return a;
}

ir::InferOutput without_dims(ir::InferOutput t, std::initializer_list<int64_t> dims) {
  for (auto it = std::rbegin(dims); it != std::rend(dims); ++it)
    if (*it >= 0 && *it < int64_t(t.shape.size())) t.shape.erase(t.shape.begin() + *it);
  t.known.reset();
  return t;
}

// The truth of an If's condition when shape inference tells it (a constant,
// or a comparison of shapes or ranks), else nullopt.
std::optional<bool> decided_condition(GraphBuilder& b, ir::ValueId cond) {
  if (cond == ir::kNoValue) return std::nullopt;
  std::optional<ir::InferOutput> t = b.infer(cond);
  if (!t || t->dtype != DType::kBool) return std::nullopt;
  const ir::Value& v = b.net().value(cond);
  std::vector<ir::Dim> values;
  if (t->known) values = *t->known;
  else if (v.weight) for (int64_t x : ir::read_ints(*v.weight)) values.push_back(ir::Dim(x));
  if (values.size() != 1 || !values[0].is_constant()) return std::nullopt;
  return values[0].constant() != 0;
}

// The nodes of the branch an If takes, read into the enclosing graph (outputs
// through Identity nodes, node names under "<if>/<branch>/"), when shape
// inference decides its condition; the other branch is never read. For Ifs
// whose branches cannot be imported as networks of their own: ONNX's function
// bodies (AffineGrid's) pick a rank's path by the length of a shape input,
// where the path not taken does not fit, and a branch decides Ifs of its own
// by values of the graph around it (a size of 1 from a shape), which a
// branch imported alone sees as mere inputs. False (nothing added) where the
// condition is not decided, or the branch does not fit its place or defines a
// name the graph has.
bool inline_decided_if(GraphBuilder& b, ::onnx::NodeProto& p, const std::string& name, const std::string& where) {
  std::optional<bool> taken = decided_condition(b, b.value(p.input(0)));
  if (!taken) return false;
  const char* branch = *taken ? "then_branch" : "else_branch";
  ::onnx::GraphProto g = graph_attribute(p, branch, where);
  if (g.input_size() != 0 || g.output_size() != p.output_size()) return false;
  auto defined = [&](const std::string& n) { return !n.empty() && b.net().find_value(n).has_value(); };
  for (const auto& init : g.initializer())
    if (defined(init.name())) return false;
  for (const auto& node : g.node())
    for (const auto& out : node.output())
      if (defined(out)) return false;
  std::string prefix = str(name, "/", branch, "/");
  for (auto& init : *g.mutable_initializer()) b.net().add_weight(init.name(), tensor_from_proto(init, b.base_dir()));
  for (int i = 0; i < g.node_size(); ++i) {
    ::onnx::NodeProto& node = *g.mutable_node(i);
    node.set_name(prefix + (node.name().empty() ? str(node.op_type(), "_", i) : node.name()));
    translate_node(b, node, i);
  }
  for (int i = 0; i < p.output_size(); ++i)
    if (!p.output(i).empty()) b.op(OpKind::kIdentity, {b.value(g.output(i).name())}, str(prefix, "out", i), {}, b.value(p.output(i)));
  return true;
}

}  // namespace

void translate_control_flow(GraphBuilder& b, ::onnx::NodeProto& p, const std::string& name, int version, const std::string& where) {
  const std::string& type = p.op_type();
  ir::Node node;
  node.name = name;
  for (const auto& out : p.output()) node.outputs.push_back(b.value(out));  // "" stays an unused output in its place
  std::vector<std::string> captured;
  auto in = [&](int i) { return i < p.input_size() ? b.value(p.input(i)) : ir::kNoValue; };
  auto type_of = [&](ir::ValueId v) { return v == ir::kNoValue ? std::nullopt : b.infer(v); };
  // Attributes other than the subgraphs, as the IR's schema checks them.
  auto plain_attributes = [&](std::initializer_list<const char*> graphs) {
    for (const auto& a : p.attribute()) {
      if (std::find_if(graphs.begin(), graphs.end(), [&](const char* g) { return a.name() == g; }) != graphs.end()) continue;
      if (a.type() == AttributeProto::INT) node.attrs.set(a.name(), int64_t(a.i()));
      else if (a.type() == AttributeProto::INTS) node.attrs.set(a.name(), std::vector<int64_t>(a.ints().begin(), a.ints().end()));
      else fail(ErrorCode::kUnsupported, where, ": attribute '", a.name(), "' is not supported");
    }
  };

  if (type == "If") {
    node.op = OpKind::kIf;
    plain_attributes({"then_branch", "else_branch"});
    if (p.input_size() != 1) fail(ErrorCode::kInvalidModel, where, ": If takes one input, the condition; it has ", p.input_size());
    const ::onnx::GraphProto& then_g = graph_attribute(p, "then_branch", where);
    const ::onnx::GraphProto& else_g = graph_attribute(p, "else_branch", where);
    captured = merged(outer_names(then_g), outer_names(else_g));
    node.inputs.push_back(in(0));
    try {
      node.attrs.set("then_branch", import_branch(b, then_g, captured, "then_branch", where));
      node.attrs.set("else_branch", import_branch(b, else_g, captured, "else_branch", where));
    } catch (const Error& e) {
      // A form kiln cannot import alone (not a malformed branch, which stays an error).
      if (e.code() == ErrorCode::kUnsupported && inline_decided_if(b, p, name, where)) return;
      throw;
    }
  } else if (type == "Loop") {
    node.op = OpKind::kLoop;
    plain_attributes({"body"});
    if (p.input_size() < 2) fail(ErrorCode::kInvalidModel, where, ": Loop takes M and cond (each may be \"\") first; it has ", p.input_size(), " inputs");
    const ::onnx::GraphProto& body = graph_attribute(p, "body", where);
    std::vector<ir::InferOutput> formal{{DType::kInt64, {}, std::nullopt}, {DType::kBool, {}, std::nullopt}};
    for (int i = 0; i < p.input_size(); ++i) node.inputs.push_back(in(i));
    for (int i = 2; i < p.input_size() && i < body.input_size(); ++i) formal.push_back(declared_type(body.input(i), type_of(in(i)), where));
    captured = outer_names(body);
    node.attrs.set("body", import_subgraph(b, body, formal, captured, "body", where));
    node.attrs.set("captured", int64_t(captured.size()));
  } else {  // Scan
    node.op = OpKind::kScan;
    bool batched = version < 9;
    int first = batched ? 1 : 0;  // Scan-8's input 0 is sequence_lens
    if (batched) {
      if (p.input_size() > 0 && !p.input(0).empty())
        fail(ErrorCode::kUnsupported, where, ": Scan-8's sequence_lens is not supported (every sequence runs its full length)");
      for (auto& a : *p.mutable_attribute())
        if (a.name() == "directions") a.set_name("scan_input_directions");
    }
    plain_attributes({"body"});
    if (batched) node.attrs.set("batched", int64_t(1));
    int64_t scans = node.attrs.get_int("num_scan_inputs", -1);
    int values = p.input_size() - first;
    if (scans < 1 || scans > values)
      fail(ErrorCode::kInvalidModel, where, ": num_scan_inputs ", scans, " does not fit its ", values, " state and scan inputs");
    int states = values - int(scans);
    std::vector<int64_t> axes = node.attrs.get_ints("scan_input_axes", std::vector<int64_t>(size_t(scans), 0));
    if (version < 11)
      for (const char* attr : {"scan_input_axes", "scan_output_axes"})
        for (int64_t a : node.attrs.get_ints(attr))
          if (a < 0) fail(ErrorCode::kInvalidModel, where, ": ", attr, " entry ", a, " is negative; Scan takes those from opset 11 on");
    const ::onnx::GraphProto& body = graph_attribute(p, "body", where);
    std::vector<ir::InferOutput> formal;
    for (int i = 0; i < values; ++i) node.inputs.push_back(in(first + i));
    for (int i = 0; i < values && i < body.input_size(); ++i) {
      ir::ValueId v = in(first + i);
      std::optional<ir::InferOutput> given = type_of(v);
      if (given && batched) given = without_dims(*given, i < states ? std::initializer_list<int64_t>{0} : std::initializer_list<int64_t>{0, 1});
      else if (given && i >= states && size_t(i - states) < axes.size()) {
        int64_t rank = int64_t(given->shape.size()), axis = axes[size_t(i - states)];
        given = without_dims(*given, {axis < 0 ? axis + rank : axis});
      }
      formal.push_back(declared_type(body.input(i), given, where));
    }
    captured = outer_names(body);
    node.attrs.set("body", import_subgraph(b, body, formal, captured, "body", where));
    node.attrs.set("captured", int64_t(captured.size()));
  }
  for (const std::string& c : captured) node.inputs.push_back(b.value(c));
  try {
    ir::check_node_schema(node);
  } catch (const Error& e) {
    throw Error(e.code(), str(e.what(), " (", type, "-", version, " in a model of opset ", b.opset(), ")"));
  }
  b.net().add_node(std::move(node));
}

}  // namespace kiln::onnx

#include <sstream>

#include "kiln/error.h"
#include "kiln/ir/network.h"

namespace kiln::ir {

namespace {

std::string type_of(const Value& v) {
  return v.typed ? str(dtype_name(v.dtype), shape_to_string(v.shape)) : std::string("?");
}

template <class T>
std::string join(const std::vector<T>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + str(items[i]);
  return out;
}

std::string attr_to_string(const AttrValue& value) {
  switch (attr_type_of(value)) {
    case AttrType::kInt: return std::to_string(std::get<int64_t>(value));
    case AttrType::kFloat: return str(std::get<double>(value));
    case AttrType::kString: return "\"" + std::get<std::string>(value) + "\"";
    case AttrType::kInts: return "[" + join(std::get<std::vector<int64_t>>(value)) + "]";
    case AttrType::kFloats: return "[" + join(std::get<std::vector<double>>(value)) + "]";
    case AttrType::kStrings: return "[" + join(std::get<std::vector<std::string>>(value)) + "]";
    case AttrType::kTensor: {
      auto& t = std::get<TensorData>(value);
      return str("tensor<", dtype_name(t.dtype), "[", join(t.dims), "]>");
    }
    case AttrType::kGraph: {
      const Network& g = *std::get<Subgraph>(value);
      return str("graph<", g.inputs().size(), " inputs, ", g.nodes().size(), " nodes, ", g.outputs().size(), " outputs>");
    }
  }
  return "?";
}

// Subgraphs follow their node, indented one level further.
void dump_into(std::ostringstream& out, const Network& net, const std::string& indent);

void dump_subgraphs(std::ostringstream& out, const Node& node, const std::string& indent) {
  for (auto& [name, value] : node.attrs.all())
    if (attr_type_of(value) == AttrType::kGraph) {
      out << indent << "  " << name << ": ";
      dump_into(out, *std::get<Subgraph>(value), indent + "    ");
    }
}

}  // namespace

std::string dump_network(const Network& net) {
  std::ostringstream out;
  dump_into(out, net, "");
  return out.str();
}

namespace {

void dump_into(std::ostringstream& out, const Network& net, const std::string& indent) {
  out << "network " << (net.name().empty() ? "(unnamed)" : net.name()) << "\n";
  for (ValueId id : net.inputs()) out << indent << "  input  " << net.value(id).name << ": " << type_of(net.value(id)) << "\n";
  for (auto& [symbol, r] : net.dim_ranges())
    out << indent << "  range  " << symbol << " in [" << r.min << ", " << r.max << "], opt " << r.opt << "\n";
  for (const Value& v : net.values())
    if (v.weight) out << indent << "  weight " << v.name << ": " << type_of(v) << "\n";
  for (const Node& node : net.nodes()) {
    out << indent << "  ";
    for (size_t i = 0; i < node.outputs.size(); ++i) {
      out << (i ? ", " : "");
      if (node.outputs[i] == kNoValue) out << "_";
      else out << net.value(node.outputs[i]).name << ": " << type_of(net.value(node.outputs[i]));
    }
    out << " = " << op_name(node.op) << "(";
    for (size_t i = 0; i < node.inputs.size(); ++i)
      out << (i ? ", " : "") << (node.inputs[i] == kNoValue ? std::string("_") : net.value(node.inputs[i]).name);
    out << ")";
    if (!node.attrs.all().empty()) {
      out << " {";
      bool first = true;
      for (auto& [name, value] : node.attrs.all()) {
        out << (first ? "" : ", ") << name << "=" << attr_to_string(value);
        first = false;
      }
      out << "}";
    }
    out << "  # " << node.name << "\n";
    dump_subgraphs(out, node, indent);
  }
  for (ValueId id : net.outputs()) out << indent << "  output " << net.value(id).name << ": " << type_of(net.value(id)) << "\n";
}

}  // namespace

}  // namespace kiln::ir

// The Network: kiln's model IR. Values (graph inputs, weights, intermediate
// tensors) connected by Nodes, with symbolic shapes and per-symbol profiles.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "kiln/buffer.h"
#include "kiln/dtype.h"
#include "kiln/export.h"
#include "kiln/ir/dim.h"
#include "kiln/ir/ops.h"

KILN_API_BEGIN
namespace kiln::ir {

using ValueId = int32_t;
using NodeId = int32_t;
inline constexpr ValueId kNoValue = -1;  // an omitted optional input or output

// Constant tensor data: weights, tensor-valued attributes, reference-run values. Shares its bytes.
// A string tensor (kString) holds its elements in `strings`, row-major, and no bytes in `data`.
struct TensorData {
  DType dtype = DType::kFloat32;
  std::vector<int64_t> dims;
  Buffer data;  // dense, row-major, little-endian, dtype_size(dtype) * numel bytes; empty for kString
  std::vector<std::string> strings;  // kString only: numel UTF-8 strings
  int64_t numel() const;
};

class Network;
// A subgraph held by a node (If's branches, the body of Loop and Scan): a
// finalized Network. Its inputs are the node's per-run values followed by the
// values of the enclosing graph it reads, which are also the node's last
// inputs (ONNX's implicit outer-scope reads made explicit). Copies of a node
// share it: a subgraph is never edited in place.
using Subgraph = std::shared_ptr<const Network>;

using AttrValue = std::variant<int64_t, double, std::string, std::vector<int64_t>, std::vector<double>,
                               std::vector<std::string>, TensorData, Subgraph>;
enum class AttrType { kInt, kFloat, kString, kInts, kFloats, kStrings, kTensor, kGraph };
std::string_view attr_type_name(AttrType type);
AttrType attr_type_of(const AttrValue& value);

class Attributes {
 public:
  bool has(std::string_view name) const { return values_.count(name) != 0; }
  void set(const std::string& name, AttrValue value) { values_[name] = std::move(value); }
  void erase(std::string_view name);
  const std::map<std::string, AttrValue, std::less<>>& all() const { return values_; }

  // Typed reads; a present attribute of another type is a kInvalidModel error.
  int64_t get_int(std::string_view name, int64_t fallback) const;
  double get_float(std::string_view name, double fallback) const;
  std::string get_string(std::string_view name, const std::string& fallback) const;
  std::vector<int64_t> get_ints(std::string_view name, const std::vector<int64_t>& fallback = {}) const;
  std::vector<double> get_floats(std::string_view name, const std::vector<double>& fallback = {}) const;
  std::vector<std::string> get_strings(std::string_view name) const;  // empty when absent
  const TensorData* get_tensor(std::string_view name) const;
  const Network* get_graph(std::string_view name) const;  // nullptr when absent

 private:
  const AttrValue* find(std::string_view name, AttrType expected) const;
  std::map<std::string, AttrValue, std::less<>> values_;
};

struct Value {
  std::string name;
  DType dtype = DType::kFloat32;
  Shape shape;
  bool typed = false;          // dtype/shape known (inputs, weights, or after shape inference)
  NodeId producer = -1;        // -1 for graph inputs, weights and not-yet-connected values
  bool is_input = false;
  std::optional<TensorData> weight;
  // The contents of a small integer tensor when shape inference can tell them
  // (shape arithmetic: Shape -> Gather -> Concat -> Reshape), row-major.
  std::optional<std::vector<Dim>> known;
};

struct Node {
  std::string name;
  OpKind op = OpKind::kIdentity;
  std::vector<ValueId> inputs;   // kNoValue marks an omitted optional input
  std::vector<ValueId> outputs;  // kNoValue marks an unused optional output
  Attributes attrs;
};

struct DimRange {
  int64_t min = 1, opt = 1, max = 1;
};
// A range per symbol: a network's ranges, or one optimization profile of a plan.
using DimRanges = std::map<std::string, DimRange, std::less<>>;

class Network {
 public:
  // Building. Names must be unique among values; empty names are generated.
  ValueId add_input(const std::string& name, DType dtype, Shape shape);
  ValueId add_weight(const std::string& name, TensorData weight);
  ValueId add_value(const std::string& name);  // declared now, produced by a node added later
  NodeId add_node(Node node);
  // Convenience for programmatic building: creates the outputs and returns them.
  std::vector<ValueId> add_op(OpKind op, std::vector<ValueId> inputs, Attributes attrs = {}, int num_outputs = 1,
                              const std::string& name = "");
  ValueId add_op1(OpKind op, std::vector<ValueId> inputs, Attributes attrs = {}, const std::string& name = "");
  void add_output(ValueId value);
  void set_dim_range(const std::string& symbol, DimRange range);
  void set_name(std::string name) { name_ = std::move(name); }

  // Checks structure (dangling values, cycles, arity, attributes), sorts nodes
  // topologically and infers every dtype and shape. Throws kiln::Error naming
  // the node and tensor at fault. Building after finalize() requires another call.
  void finalize();
  bool finalized() const { return finalized_; }

  const std::string& name() const { return name_; }
  const std::vector<Value>& values() const { return values_; }
  const Value& value(ValueId id) const { return values_.at(size_t(id)); }
  const std::vector<Node>& nodes() const { return nodes_; }  // topological after finalize()
  const std::vector<ValueId>& inputs() const { return inputs_; }
  const std::vector<ValueId>& outputs() const { return outputs_; }
  const DimRanges& dim_ranges() const { return dim_ranges_; }
  std::optional<ValueId> find_value(std::string_view name) const;
  // Symbols that stand for data-dependent sizes (made up by shape inference).
  const std::set<std::string>& data_dependent_symbols() const { return data_dependent_; }
  // Whether a dim of `id` involves such a symbol: its size is known once the network has run.
  bool size_depends_on_data(ValueId id) const;

  // Number of weight elements and bytes (a string weight's bytes are its strings' UTF-8 bytes).
  int64_t parameter_count() const;
  int64_t parameter_bytes() const;

 private:
  ValueId new_value(const std::string& name);
  std::string unique_name(const std::string& stem);
  void topological_sort();
  void infer_shapes();

  std::string name_;
  std::vector<Value> values_;
  std::vector<Node> nodes_;
  std::vector<ValueId> inputs_, outputs_;
  std::map<std::string, ValueId, std::less<>> value_by_name_;
  DimRanges dim_ranges_;
  std::set<std::string> data_dependent_;
  int64_t name_counter_ = 0;
  bool finalized_ = false;
};

// Checks every typed value's size with its symbols bound (e.g. to a profile's
// maximum) against the limits in limits.h; values with an unbound symbol are
// skipped. Throws kShapeError naming the tensor and the node that makes it.
void check_value_sizes(const Network& net, const SymbolBindings& bindings);

// A readable multi-line text form of a network (inputs, weights, nodes with shapes, outputs).
std::string dump_network(const Network& network);

}  // namespace kiln::ir
KILN_API_END

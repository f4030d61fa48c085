// Per-op type and shape inference, shared by Network::finalize (symbolic dims)
// and the reference interpreter (concrete dims and real data), so shapes have
// one definition.
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "kiln/export.h"
#include "kiln/ir/network.h"
// Declared apart, and included here for code that finds them through this header.
#include "kiln/ir/attention.h"
#include "kiln/ir/window.h"

KILN_API_BEGIN
namespace kiln::ir {

struct InferInput {
  bool present = false;
  DType dtype = DType::kFloat32;
  Shape shape;
  const std::vector<Dim>* known = nullptr;  // symbolic contents of a small int tensor
  const TensorData* data = nullptr;         // actual contents when constant
  const std::string* name = nullptr;        // the tensor's name, for messages
};

struct InferOutput {
  DType dtype = DType::kFloat32;
  Shape shape;
  std::optional<std::vector<Dim>> known;
};

// Checks arity and attribute names/types of `node` against its op's schema.
void check_node_schema(const Node& node);

// Infers every output of `node`. `fresh_dim` makes a new symbol for sizes that
// depend on data the inference cannot see. Throws kiln::Error naming the node.
std::vector<InferOutput> infer_node(const Node& node, const std::vector<InferInput>& inputs,
                                    const std::function<Dim()>& fresh_dim);

// An Einsum equation split into operand terms and the output term ("" with
// has_output false when the equation has no "->"); spaces removed.
struct EinsumEquation {
  std::string text;
  std::vector<std::string> terms;
  std::string output;
  bool has_output = false;
};
EinsumEquation parse_einsum(std::string equation);
// The equation's labels for operands of these ranks: "..." expanded into digit
// labels (right-aligned across operands), the output's labels (implicit: the
// ellipsis, then the labels used once, in order), the rest summed in order.
struct EinsumLabels {
  std::vector<std::string> terms;
  std::string out, summed;
};
EinsumLabels einsum_labels(const EinsumEquation& eq, const std::vector<size_t>& ranks);

// Broadcast two shapes numpy-style; throws kShapeError when they do not fit.
Shape broadcast_shapes(const Shape& a, const Shape& b);

// Reads an integer or bool constant tensor's elements as int64 (uint64 keeps its bits: 2^63 and more read negative).
std::vector<int64_t> read_ints(const TensorData& data);
// Reads any numeric constant tensor's elements as double.
std::vector<double> read_doubles(const TensorData& data);

}  // namespace kiln::ir
KILN_API_END

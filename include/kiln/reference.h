// The CPU reference interpreter: executes any finalized Network on the host.
// It is the oracle every GPU kernel is checked against, so it favours
// clarity and accuracy (float64 accumulation) over speed.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kiln/export.h"
#include "kiln/ir/network.h"

KILN_API_BEGIN
namespace kiln::reference {

using Tensor = ir::TensorData;

// A tensor of `dtype` and `dims` filled from doubles (rounded to the dtype).
Tensor make_tensor(DType dtype, std::vector<int64_t> dims, const std::vector<double>& values);
// A string tensor of `dims` holding `values`, row-major.
Tensor make_string_tensor(std::vector<int64_t> dims, std::vector<std::string> values);
// The tensor with its dims reordered as Transpose with `perm` does (any dtype).
Tensor permute(const Tensor& t, const std::vector<int64_t>& perm);

// Whether the interpreter has a kernel for `op` (every op kind should: it is the oracle).
bool has_kernel(ir::OpKind op);

// Runs one node of `network` on its inputs (nullptr for an omitted optional
// input), in the node's input order, as run() runs it inside the network:
// returns one tensor per node output (those the node leaves out are empty).
// The GPU runtime runs the nodes on string tensors with it, on the host.
std::vector<Tensor> run_node(const ir::Network& network, const ir::Node& node, const std::vector<const Tensor*>& inputs);

// Runs the network on named inputs; returns one tensor per network output, in
// order. Checks every input's dtype and dims (constant dims must match, equal
// symbols must agree, symbols must lie in their ranges when set). Throws kiln::Error.
std::vector<Tensor> run(const ir::Network& network, const std::map<std::string, Tensor>& inputs);

// Runs the network as run() does and returns, by name, every tensor a node
// produces that `keep` accepts (every one without `keep`): the values a
// layer-by-layer comparison needs. Kept tensors are not freed, so memory
// grows with what is kept.
std::map<std::string, Tensor> run_every_tensor(const ir::Network& network, const std::map<std::string, Tensor>& inputs,
                                               const std::function<bool(const std::string&)>& keep = {});

}  // namespace kiln::reference
KILN_API_END

// Per-op type and shape inference, shared by Network::finalize (symbolic dims)
// and the reference interpreter (concrete dims and real data), so shapes have
// one definition.
#pragma once

#include <array>
#include <functional>
#include <optional>
#include <vector>

#include "kiln/export.h"
#include "kiln/ir/network.h"

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

// Geometry of a sliding window op (Conv, ConvTranspose, pools) for concrete input dims.
struct WindowGeometry {
  std::vector<int64_t> kernel, strides, dilations, pads_begin, pads_end, output;
};
WindowGeometry window_geometry(const Node& node, const std::vector<int64_t>& input_spatial,
                               const std::vector<int64_t>& kernel_spatial);

// v reordered as Transpose with `perm` reorders dims: out[i] = v[perm[i]].
template <class T>
std::vector<T> permuted(const std::vector<T>& v, const std::vector<int64_t>& perm) {
  std::vector<T> out;
  for (int64_t p : perm) out.push_back(v[size_t(p)]);
  return out;
}

// Permutations between channels-first [N, C, spatial...] and channels-last
// [N, spatial..., C] layouts of a rank-`rank` tensor (Transpose's perm).
std::vector<int64_t> to_channels_last_perm(size_t rank);
std::vector<int64_t> to_channels_first_perm(size_t rank);
// Whether a Conv's padding is explicit and equal at both ends of every dim
// (what cuDNN supports): auto_pad NOTSET or VALID with symmetric pads.
bool has_symmetric_explicit_pads(const Node& node);
// Symmetric explicit pads, no dilation and no ceil_mode: a pool cuDNN runs.
bool is_plain_pool_window(const Node& node);

// The Attention op computes, for batch b < B, head h < H, query row i < Sq:
//   out[o(b,h,i,d)] = sum_j softmax_j(scale * sum_e q[q(b,h,i,e)] k[k(b,h,j,e)]) v[v(b,h,j,d)]
// Each operand is its input tensor seen through a view program (attributes
// q_view, k_view, v_view): steps applied to the dense input, each a view (no
// data moves): [0, n, dims...] reshape (one dim may be -1), [1, n, perm...]
// transpose, [2, 3, axis, index, keep] pick one index along an axis (keep: the
// axis stays as size 1), [3, 3, axis, start, length] narrow an axis to a range.
// Q ends as [H, Sq, D] or [B, H, Sq, D], V likewise with Sk rows, K as V or,
// with k_transposed, as [.., D, Sk]. With causal, key j is left out of row i
// when j > i. The output is [.., Sq, D] transposed by out_perm (none: as is), dense.
enum class ViewStep : int64_t { kReshape = 0, kTranspose = 1, kPick = 2, kNarrow = 3 };
struct AttentionGeometry {
  int64_t batch = 1, heads = 1, q_len = 0, kv_len = 0, head_dim = 0;
  std::array<int64_t, 5> q{}, k{}, v{}, out{};  // element offset and strides for (b, h, row, d)
  std::vector<int64_t> out_dims;
};
// For inputs of these dims; throws naming the node when a program does not
// fit them or a step is not a view of the dims it meets.
AttentionGeometry attention_geometry(const Node& node, const std::vector<int64_t>& q_dims, const std::vector<int64_t>& k_dims,
                                     const std::vector<int64_t>& v_dims);
// The output shape for symbolic input shapes (shape inference).
Shape attention_output_shape(const Node& node, const Shape& q, const Shape& k, const Shape& v);
// What a view program makes of a tensor of this shape (checks the steps).
Shape apply_view_program(const Node& node, std::string_view attr, const Shape& dims);
// Strides that show a tensor viewed as (dims, strides) with new dims, the
// elements in the same order, if one strided view can (PyTorch's view rule).
std::optional<std::vector<int64_t>> reshaped_strides(const std::vector<int64_t>& dims, const std::vector<int64_t>& strides,
                                                     const std::vector<int64_t>& new_dims);

// An Einsum equation split into operand terms and the output term ("" with
// has_output false when the equation has no "->"); spaces removed.
struct EinsumEquation {
  std::string text;
  std::vector<std::string> terms;
  std::string output;
  bool has_output = false;
};
EinsumEquation parse_einsum(std::string equation);

// Broadcast two shapes numpy-style; throws kShapeError when they do not fit.
Shape broadcast_shapes(const Shape& a, const Shape& b);

// Reads an integer constant tensor's elements (int64/int32/int8/uint8/bool) as int64.
std::vector<int64_t> read_ints(const TensorData& data);
// Reads any numeric constant tensor's elements as double.
std::vector<double> read_doubles(const TensorData& data);

}  // namespace kiln::ir
KILN_API_END

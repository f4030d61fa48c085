// The Attention op's geometry: view programs over its inputs (src/ir/attention.cpp).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "kiln/export.h"
#include "kiln/ir/network.h"

KILN_API_BEGIN
namespace kiln::ir {

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
// An optional fourth input, the mask, broadcasts against the scores [B, H, Sq,
// Sk] ([H, Sq, Sk] for rank-3 operands), dense, its dims aligned to the right:
// a float mask is added to the scaled scores (padding masks, relative position
// biases); a bool mask keeps a score where it equals mask_keep (default 1) and
// puts mask_fill (absent: -inf) elsewhere. The causal rule comes after it.
// With empty_rows_zero, a row whose every score is -inf writes 0 (ONNX's
// Attention), not the 0/0 of its softmax.
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
// The scores' shape, [B, H, Sq, Sk] or [H, Sq, Sk], for symbolic input shapes.
Shape attention_scores_shape(const Node& node, const Shape& q, const Shape& k, const Shape& v);
// Element strides of a mask of these dims for (b, h, i, j), 0 along the dims it
// broadcasts; throws naming the node when it does not broadcast to the scores.
std::array<int64_t, 4> attention_mask_strides(const Node& node, const AttentionGeometry& g, size_t scores_rank,
                                              const std::vector<int64_t>& mask_dims);
// What a view program makes of a tensor of this shape (checks the steps).
Shape apply_view_program(const Node& node, std::string_view attr, const Shape& dims);

}  // namespace kiln::ir
KILN_API_END

// What LinearAttention's layers share: its heads, head sizes, update rule and
// scale, which shape inference checks and the reference kernel and the GPU
// lowering read the same way.
#pragma once

#include <cstdint>

#include "kiln/export.h"
#include "kiln/ir/network.h"

KILN_API_BEGIN
namespace kiln::ir {

struct LinearAttentionGeometry {
  int64_t q_heads = 1, kv_heads = 1, key_dim = 0, value_dim = 0;
  bool gated = false;  // S = exp(decay) * S before the write ("gated", "gated_delta")
  bool delta = false;  // the write is beta * (v - S^T k) rather than v ("delta", "gated_delta")
  double scale = 1;
};
// From the node's attributes and the packed widths (last dims) of its query
// and value, [B, T, q_heads * key_dim] and [B, T, kv_heads * value_dim]
// (checked: an invalid model's error names the node).
LinearAttentionGeometry linear_attention_geometry(const Node& node, int64_t query_width, int64_t value_width);

}  // namespace kiln::ir
KILN_API_END

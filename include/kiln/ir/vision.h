// What the vision family's layers share: RoiAlign's bound on samples and
// Col2Im's blocks, which shape inference, the reference kernel and the GPU
// lowering all walk the same way.
#pragma once

#include <cstdint>
#include <vector>

#include "kiln/export.h"
#include "kiln/ir/network.h"

KILN_API_BEGIN
namespace kiln::ir {

// RoiAlign's samples a bin side at most: sampling_ratio may not ask for more,
// and an adaptive grid (sampling_ratio 0) of a huge or non-finite RoI takes
// this many: a bound on the work one output element costs.
inline constexpr int64_t kRoiAlignMaxGrid = 4096;

// Col2Im's block of `block` elements a dim, with the node's dilations, pads
// ([begin..., end...]) and strides (defaults filled in, checked: an invalid
// model's error names the node).
struct Col2ImGeometry {
  std::vector<int64_t> block, dilations, pads, strides;
};
Col2ImGeometry col2im_geometry(const Node& node, const std::vector<int64_t>& block);
// The block positions along spatial dim d of an image `image` long (0: none fits).
int64_t col2im_blocks(const Col2ImGeometry& g, int64_t d, int64_t image);

}  // namespace kiln::ir
KILN_API_END

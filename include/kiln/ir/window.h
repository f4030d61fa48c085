// Sliding windows of the conv and pool families: geometry for concrete dims,
// and the channels-last layouts (and the cuDNN conditions) the builder and the
// runtime choose between.
#pragma once

#include <cstdint>
#include <vector>

#include "kiln/export.h"
#include "kiln/ir/network.h"

KILN_API_BEGIN
namespace kiln::ir {

// Geometry of a sliding window op (Conv, ConvTranspose, pools) for concrete input dims.
struct WindowGeometry {
  std::vector<int64_t> kernel, strides, dilations, pads_begin, pads_end, output;
};
WindowGeometry window_geometry(const Node& node, const std::vector<int64_t>& input_spatial,
                               const std::vector<int64_t>& kernel_spatial);

// Permutations between channels-first [N, C, spatial...] and channels-last
// [N, spatial..., C] layouts of a rank-`rank` tensor (Transpose's perm).
std::vector<int64_t> to_channels_last_perm(size_t rank);
std::vector<int64_t> to_channels_first_perm(size_t rank);
// Whether a Conv's padding is explicit and equal at both ends of every dim
// (what cuDNN supports): auto_pad NOTSET or VALID with symmetric pads.
bool has_symmetric_explicit_pads(const Node& node);
// Symmetric explicit pads, no dilation and no ceil_mode: a pool cuDNN runs.
bool is_plain_pool_window(const Node& node);

}  // namespace kiln::ir
KILN_API_END

// Limits on what a model may ask of kiln: tensor sizes, ranks and the work
// and memory shape inference may spend. A model file is small, but the sizes
// and expressions it describes are not, so every consumer (reference, builder,
// runtime) checks against these before it allocates or loops.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "kiln/dtype.h"
#include "kiln/export.h"

KILN_API_BEGIN
namespace kiln::ir {

// Largest tensor: 1 TiB, and fewer than 2^62 elements so byte offsets of any
// dtype fit an int64 (no GPU holds more; a bigger size is a broken model).
inline constexpr int64_t kMaxTensorBytes = int64_t(1) << 40;
inline constexpr int64_t kMaxTensorElements = int64_t(1) << 62;
// Most dims a tensor may have (ONNX models use at most 8 or so).
inline constexpr int64_t kMaxRank = 64;
// Most terms plus atoms in one symbolic Dim, counting nested max/min/div
// expressions in full: real shape arithmetic stays in the tens.
inline constexpr int64_t kMaxDimSize = 2048;
// Most data-dependent symbols shape inference makes up for one model.
inline constexpr int64_t kMaxSymbols = int64_t(1) << 14;
// Shape-inference work per model, in Dim sizes of the shapes it infers:
// a budget per node, and a hard cap whatever the node count.
inline constexpr int64_t kInferenceWorkPerNode = 4096;
inline constexpr int64_t kMaxInferenceWork = int64_t(1) << 24;
// Most levels of subgraphs (If branches, Loop and Scan bodies) inside one another.
inline constexpr int kMaxSubgraphDepth = 16;
// Most iterations the reference interpreter runs of one Loop or Scan node:
// exporters write a trip count of 2^63-1 with a condition that ends the loop,
// and a condition that never does must end in an error, not a hang.
inline constexpr int64_t kMaxLoopIterations = int64_t(1) << 20;

// The element count of dims; throws kShapeError naming `what` when a dim is
// negative, the product overflows or it passes kMaxTensorElements.
int64_t checked_element_count(const std::vector<int64_t>& dims, std::string_view what);
// The byte size of a dense tensor of dims and dtype; throws kShapeError naming
// `what` when the element count is bad (as above) or the size passes kMaxTensorBytes.
// A string tensor has no dense bytes: its element count is checked and 0 returned.
int64_t checked_byte_size(const std::vector<int64_t>& dims, DType dtype, std::string_view what);

}  // namespace kiln::ir
KILN_API_END

// The ai.onnx.ml ops' attributes, decoded and checked once: LabelEncoder's
// mapping and TreeEnsemble's trees. Shape inference checks them (errors name
// the node); the reference kernels run on what these return, so every index
// they follow is in range and every tree ends in leaves.
#pragma once

#include <cstdint>
#include <vector>

#include "kiln/dtype.h"
#include "kiln/export.h"
#include "kiln/ir/network.h"

KILN_API_BEGIN
namespace kiln::ir {

// LabelEncoder: exactly one keys_* and one values_* attribute (strings, int64s,
// floats or a tensor), as many values as keys, and the default for keys
// missing from the map (default_tensor, or default_string / default_int64 /
// default_float by the values' type, with ONNX's defaults "_Unused", -1, -0.0).
struct LabelEncoderTypes {
  DType key, value;
};
LabelEncoderTypes label_encoder_types(const Node& node);
struct LabelEncoderTable {
  TensorData keys, values;  // rank 1, as many of each
  TensorData fallback;      // one element of the values' dtype
};
LabelEncoderTable label_encoder_table(const Node& node);

// TreeEnsemble (ai.onnx.ml 5). Node i of the forest compares feature
// `feature[i]` of a row with `split[i]` by `mode[i]`; its true and false
// branches are nodes, or leaves where true_leaf / false_leaf say so.
enum class TreeMode : uint8_t { kLeq, kLt, kGte, kGt, kEq, kNeq, kMember };
enum class TreeAggregate : uint8_t { kAverage, kSum, kMin, kMax };
enum class TreePostTransform : uint8_t { kNone, kSoftmax, kLogistic, kSoftmaxZero, kProbit };
struct TreeEnsembleAttrs {
  int64_t n_targets = 0;
  TreeAggregate aggregate = TreeAggregate::kSum;
  TreePostTransform post_transform = TreePostTransform::kNone;
  std::vector<int64_t> roots;
  std::vector<int64_t> feature, true_id, false_id;
  std::vector<bool> true_leaf, false_leaf, missing_tracks_true;
  std::vector<TreeMode> mode;
  std::vector<double> split;
  std::vector<std::vector<double>> members;  // per node: the set of a kMember node, empty for the others
  std::vector<int64_t> leaf_target;
  std::vector<double> leaf_weight;
  int64_t max_feature = -1;  // the largest feature index a node reads
};
// Checks lengths, modes, every node and leaf index, targets, and that no tree
// loops back on itself; throws kInvalidModel naming the node and attribute.
TreeEnsembleAttrs tree_ensemble_attrs(const Node& node);
// Whether a tree's root is itself its leaf (ONNX: both branches the same leaf).
bool tree_is_leaf(const TreeEnsembleAttrs& t, int64_t root);

}  // namespace kiln::ir
KILN_API_END

// What the reference interpreter and the GPU kernels of the random ops share:
// the numbers (random_math.h, one text for both sides) and each node's key.
#pragma once

#include <math.h>

#include <cstdint>
#include <cstring>

#include "kiln/ir/network.h"
#include "kiln/ir/random_math.h"

KILN_API_BEGIN
namespace kiln::ir {

// The Philox key of a random op: the bits of its `seed` (ONNX's seed is a
// float; each value its own key). Without a seed, a hash (FNV-1a) of the
// node's name: the node gives the same numbers on every call, on the CPU and
// on the GPU alike, so enqueue keeps no state that advances and a CUDA graph
// replays it as it is; nodes of different names differ.
inline uint64_t random_key(const Node& node) {
  if (node.attrs.has("seed")) {
    double seed = node.attrs.get_float("seed", 0.0);
    uint64_t bits;
    std::memcpy(&bits, &seed, sizeof bits);
    return bits;
  }
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char ch : node.name) {
    hash ^= ch;
    hash *= 1099511628211ull;
  }
  return hash;
}

// The parameters of a random op's distribution: [low, high) for the uniform
// ops, mean and scale for the normal ones (ONNX's defaults).
struct RandomDistribution {
  double a, b;
};
inline RandomDistribution random_distribution(const Node& node) {
  bool normal = node.op == OpKind::kRandomNormal || node.op == OpKind::kRandomNormalLike;
  return normal ? RandomDistribution{node.attrs.get_float("mean", 0.0), node.attrs.get_float("scale", 1.0)}
                : RandomDistribution{node.attrs.get_float("low", 0.0), node.attrs.get_float("high", 1.0)};
}

}  // namespace kiln::ir
KILN_API_END

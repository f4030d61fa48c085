// The AOT builder: lowers a Network into a Plan (folding, fusion, precision,
// memory planning). Needs no GPU.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kiln/export.h"
#include "kiln/plan.h"

KILN_API_BEGIN
namespace kiln::builder {

struct BuildOptions {
  plan::Precision precision = plan::Precision::kFloat32;
  // The optimization profiles of the plan, in order: each has ranges for
  // symbolic dims, overriding those the network has. Empty: one profile, the
  // network's ranges. Every profile needs a range for every symbolic input
  // dim; the plan is made for their union (its arena holds the largest shapes
  // of every profile) and a context runs the shapes of the one it selects.
  std::vector<ir::DimRanges> profiles;
  // Upper bounds of data-dependent sizes, by the name of the tensor whose size
  // depends on data (a NonZero's, a Range's of data bounds, ...): the memory
  // plan reserves them, and enqueue fails naming the tensor when one is
  // exceeded. Where none is given, one follows from the largest input shapes
  // (NonZero: its input's elements; TopK: its axis; Compress and Unique: the
  // slices along theirs; NonMaxSuppression: every box of every batch and
  // class; Reshape: its elements) or the build fails naming the tensor.
  std::map<std::string, int64_t, std::less<>> data_dependent_bounds;
  // The bound of every other data-dependent size no bound follows for; -1:
  // none (the build fails naming the first such tensor).
  int64_t default_data_dependent_bound = -1;
  // Called with one line per pass as the build goes; unset: the lines go to
  // the log as info (kiln/logging.h).
  std::function<void(const std::string&)> progress;
};

// Turns "--profile input:MINxD/OPTxD/MAXxD" dims into symbol ranges of
// profile `profile` of `options`: one it has, or options.profiles.size() to
// start the next. A symbol another input dim of that profile already ranges
// differently is an error.
void add_input_profile(const ir::Network& network, const std::string& input, const std::vector<int64_t>& min,
                       const std::vector<int64_t>& opt, const std::vector<int64_t>& max, BuildOptions& options,
                       size_t profile = 0);

plan::Plan build(const ir::Network& network, const BuildOptions& options, const std::string& source = "");

}  // namespace kiln::builder
KILN_API_END

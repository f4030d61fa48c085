// The AOT builder: lowers a Network into a Plan (folding, fusion, precision,
// memory planning). Needs no GPU.
#pragma once

#include <functional>
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

// The AOT builder: lowers a Network into a Plan (folding, fusion, precision,
// memory planning). Needs no GPU.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "kiln/export.h"
#include "kiln/plan.h"

KILN_API_BEGIN
namespace kiln::builder {

struct BuildOptions {
  plan::Precision precision = plan::Precision::kFloat32;
  // Ranges for symbolic dims, overriding those the network has.
  std::map<std::string, ir::DimRange> ranges;
  // Called with one line per pass as the build goes; unset: the lines go to
  // the log as info (kiln/logging.h).
  std::function<void(const std::string&)> progress;
};

// Turns "--profile input:MINxD/OPTxD/MAXxD" dims into symbol ranges for `network`.
void add_input_profile(const ir::Network& network, const std::string& input, const std::vector<int64_t>& min,
                       const std::vector<int64_t>& opt, const std::vector<int64_t>& max, BuildOptions& options);

plan::Plan build(const ir::Network& network, const BuildOptions& options, const std::string& source = "");

}  // namespace kiln::builder
KILN_API_END

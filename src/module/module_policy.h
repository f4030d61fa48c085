// The behavior matrix of the module layer as a pure decision: for a module's
// segments and its cudagraphs mode, how each engine runs, whether the whole
// module is captured, which warnings to give and which error to raise — all
// before any capture begins. No CUDA: unit-tested without a GPU.
#pragma once

#include <string>
#include <vector>

#include "kiln/module.h"

namespace kiln::module {

// What the policy needs to know of one engine segment.
struct EngineFacts {
  std::string name;
  bool native_graphs = false;      // its cuda_graph_strategy is whole_graph_capture
  bool lazy = false;               // lazy kernel specialization
  bool dynamic_inputs = false;     // some input dim is symbolic
  bool stream_capturable = true;   // is_stream_capturable(stream) of its context
  std::string capture_obstacle{};  // capture_obstacle(stream) of its context: why not
};

struct ModulePlan {
  bool outer_capture = false;           // capture the whole module per input-shape key
  std::vector<bool> engine_native;      // per engine: run with its native graphs
  std::vector<std::string> warnings;    // given once each
  std::string error;                    // non-empty: refuse to run, nothing captured
};

// Why an engine cannot be captured as one piece inside a module capture ("" if it can).
std::string monolithic_capture_obstacle(const EngineFacts& engine);

ModulePlan plan_module(CudagraphsMode mode, const std::vector<EngineFacts>& engines);

}  // namespace kiln::module

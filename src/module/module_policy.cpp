#include "module_policy.h"

namespace kiln::module {

std::string cudagraphs_mode_name(CudagraphsMode mode) {
  switch (mode) {
    case CudagraphsMode::kStandard: return "standard";
    case CudagraphsMode::kSubgraph: return "subgraph";
    case CudagraphsMode::kWholeGraph: return "whole_graph";
  }
  return "?";
}

std::optional<CudagraphsMode> parse_cudagraphs_mode(const std::string& name) {
  if (name == "standard") return CudagraphsMode::kStandard;
  if (name == "subgraph") return CudagraphsMode::kSubgraph;
  if (name == "whole_graph") return CudagraphsMode::kWholeGraph;
  return std::nullopt;
}

std::string monolithic_capture_obstacle(const EngineFacts& e) {
  if (!e.stream_capturable)
    return "its context cannot be captured on this stream (" +
           (e.capture_obstacle.empty() ? std::string("the legacy default stream, or inputs without shapes or addresses")
                                       : e.capture_obstacle) +
           ")";
  if (e.lazy && e.dynamic_inputs)
    return "lazy kernel specialization with dynamic inputs swaps kernels in after a capture would have frozen them "
           "(build with static shapes or use eager or none)";
  return {};
}

ModulePlan plan_module(CudagraphsMode mode, const std::vector<EngineFacts>& engines) {
  ModulePlan plan;
  plan.engine_native.assign(engines.size(), false);
  switch (mode) {
    case CudagraphsMode::kStandard:  // each engine as configured
      for (size_t i = 0; i < engines.size(); ++i) plan.engine_native[i] = engines[i].native_graphs;
      break;
    case CudagraphsMode::kSubgraph:  // every engine with native graphs; host segments run directly
      for (size_t i = 0; i < engines.size(); ++i) {
        plan.engine_native[i] = true;
        if (!engines[i].native_graphs)
          plan.warnings.push_back("engine '" + engines[i].name +
                                  "': cuda_graph_strategy disabled is switched to whole_graph_capture for cudagraphs mode subgraph");
      }
      break;
    case CudagraphsMode::kWholeGraph:  // one capture of everything; engines' own graphs off inside it
      for (const EngineFacts& e : engines)
        if (std::string why = monolithic_capture_obstacle(e); !why.empty()) {
          plan.error = "cudagraphs mode whole_graph: engine '" + e.name + "' cannot be captured as one piece: " + why;
          return plan;
        }
      plan.outer_capture = true;
      break;
  }
  return plan;
}

}  // namespace kiln::module

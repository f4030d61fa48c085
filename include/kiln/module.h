// The module layer: an ordered list of segments, kiln engines and host code
// (callables that enqueue their own CUDA work on the stream they are given),
// run under one of three cudagraphs modes:
//   standard     each engine as configured (its cuda_graph_strategy);
//   subgraph     every engine with native graphs (a disabled one is switched
//                to whole_graph_capture, with one warning); host code directly;
//   whole_graph  the whole module captured once per input-shape key into one
//                graph, with static staging buffers for its inputs and
//                outputs and the engines' own graphs off inside it; refused,
//                before anything is captured, if an engine cannot be captured
//                as one piece.
// When the caller is capturing the stream, every segment records into the
// caller's capture (the manual capture path).
#pragma once

#include <cuda_runtime_api.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kiln/dtype.h"
#include "kiln/export.h"
#include "kiln/runtime.h"

KILN_API_BEGIN
namespace kiln::module {

enum class CudagraphsMode { kStandard, kSubgraph, kWholeGraph };
std::string cudagraphs_mode_name(CudagraphsMode mode);
std::optional<CudagraphsMode> parse_cudagraphs_mode(const std::string& name);

// Device memory with its dtype and dims.
struct DeviceTensor {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> dims;
};

struct HostSegment {
  std::string name;
  std::vector<std::string> inputs, outputs;  // module tensor names
  // Dtype and dims of each output for these inputs (host only).
  std::function<std::vector<std::pair<DType, std::vector<int64_t>>>(const std::vector<DeviceTensor>& inputs)> output_shapes;
  // Enqueues the work on `stream`. May run inside a capture: it must not
  // allocate device memory or synchronize.
  std::function<void(cudaStream_t stream, const std::vector<DeviceTensor>& inputs, const std::vector<DeviceTensor>& outputs)>
      enqueue;
};

class Module {
 public:
  Module(std::vector<std::string> inputs, std::vector<std::string> outputs, CudagraphsMode mode = CudagraphsMode::kStandard);
  ~Module();
  // An engine segment with a context of its own; each engine input and output
  // `t` is the module tensor rename[t], or `t` when not renamed.
  void add_engine(const std::string& name, std::shared_ptr<runtime::Engine> engine,
                  const std::map<std::string, std::string>& rename = {});
  void add_host(HostSegment segment);
  // Applies from the next run; refused while the module's own capture is open.
  void set_cudagraphs_mode(CudagraphsMode mode);
  CudagraphsMode cudagraphs_mode() const;
  // Called once per distinct warning (default: the log, kiln/logging.h).
  void on_warning(std::function<void(const std::string&)> sink);

  // Runs every segment in order on `stream` and returns the module outputs in
  // memory the module owns (valid until the next run). Memory is allocated
  // only the first time an input-shape key is seen, never inside a capture.
  std::vector<DeviceTensor> run(const std::map<std::string, DeviceTensor>& inputs, cudaStream_t stream);

  struct Stats {
    int64_t runs = 0;
    int64_t direct_runs = 0;         // segments launched one by one (no module graph)
    int64_t outer_captures = 0;      // whole_graph: module graphs captured
    int64_t outer_replays = 0;       // whole_graph: module graph launches
    int64_t into_caller_capture = 0; // runs recorded into the caller's capture
    std::vector<std::string> warnings;
  };
  const Stats& stats() const;
  const runtime::ExecutionContext& context(const std::string& engine_segment) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace kiln::module
KILN_API_END

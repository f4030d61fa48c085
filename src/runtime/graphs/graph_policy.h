// Which path an enqueue takes under cuda_graph_strategy: the decision alone,
// with no CUDA calls, so it is unit-tested without a GPU.
#pragma once

#include <string>
#include <string_view>

namespace kiln::runtime::graphs {

enum class Path {
  kDirect,              // launch every kernel on the stream
  kIntoCallerCapture,   // the caller is capturing the stream: launch into its capture
  kCapture,             // capture this call into a graph, instantiate, launch it
  kReplay,              // launch the shape's graph (repaired first if needed)
};

// Why a call with whole_graph_capture ran without a graph of its own.
enum class Fallback {
  kNone,
  kCaptureFailed,   // capturing or instantiating this shape failed (reason recorded)
  kDataDependent,   // the engine has data-dependent sizes: enqueue reads them back and waits in mid-call
  kHostSteps,       // the engine runs nodes on the host (string tensors): enqueue waits for their inputs in mid-call
};
std::string_view fallback_name(Fallback f);

struct CallState {
  bool graphs_enabled = false;    // cuda_graph_strategy == whole_graph_capture
  bool legacy_stream = false;     // the legacy default stream (null or cudaStreamLegacy), which cannot be captured
  bool caller_capturing = false;  // the stream is being captured by the caller
  int calls_at_shape = 0;         // earlier calls at this input-shape key (this context)
  int warmup_calls = 1;           // direct calls at a shape before it is captured
  bool has_graph = false;         // this shape has an instantiated graph
  bool capture_failed = false;    // the last capture at this shape failed
  int retry_capture_at = 0;       // ... and is tried again from this call at the shape on
  bool data_dependent = false;    // the engine has data-dependent sizes (never captured)
  bool host_steps = false;        // the engine runs nodes on the host (never captured)
};

// Calls to wait before capturing again after `failures` failures in a row:
// 8, 16, 32, ... up to 1024 (a capture another thread's call broke usually
// works the next time; one that keeps failing costs little).
int capture_retry_delay(int failures);

struct Decision {
  Path path = Path::kDirect;
  Fallback fallback = Fallback::kNone;
  // The graph is captured on and launched from the context's own stream,
  // joined to the caller's (legacy) stream by events before and after.
  bool on_context_stream = false;
};

Decision decide(const CallState& s);

}  // namespace kiln::runtime::graphs

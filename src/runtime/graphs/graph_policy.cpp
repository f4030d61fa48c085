#include "graph_policy.h"

#include <algorithm>

namespace kiln::runtime::graphs {

std::string_view fallback_name(Fallback f) {
  switch (f) {
    case Fallback::kNone: return "none";
    case Fallback::kCaptureFailed: return "capture failed";
    case Fallback::kDataDependent: return "data-dependent shapes";
    case Fallback::kHostSteps: return "host steps";
  }
  return "?";
}

Decision decide(const CallState& s) {
  // A caller's capture comes first, whatever the strategy: kiln records into it
  // and never begins a capture of its own inside another.
  if (s.caller_capturing) return {Path::kIntoCallerCapture, Fallback::kNone};
  if (!s.graphs_enabled) return {Path::kDirect, Fallback::kNone};
  // enqueue waits for sizes read back from the device in mid-call: no graph holds that.
  if (s.data_dependent) return {Path::kDirect, Fallback::kDataDependent};
  if (s.host_steps) return {Path::kDirect, Fallback::kHostSteps};
  if (s.has_graph) return {Path::kReplay, Fallback::kNone, s.legacy_stream};
  if (s.capture_failed && s.calls_at_shape < s.retry_capture_at) return {Path::kDirect, Fallback::kCaptureFailed};
  if (s.calls_at_shape < s.warmup_calls) return {Path::kDirect, Fallback::kNone};  // warm-up
  return {Path::kCapture, Fallback::kNone, s.legacy_stream};
}

int capture_retry_delay(int failures) { return 8 << std::clamp(failures - 1, 0, 7); }

}  // namespace kiln::runtime::graphs

// The path an enqueue takes under cuda_graph_strategy, decided without a GPU.
#include <gtest/gtest.h>

#include "graphs/graph_policy.h"

namespace kiln::runtime::graphs {
namespace {

CallState enabled() {
  CallState s;
  s.graphs_enabled = true;
  return s;
}

TEST(GraphPolicy, DisabledRunsDirectWithoutAFallback) {
  CallState s;
  s.calls_at_shape = 5;
  Decision d = decide(s);
  EXPECT_EQ(d.path, Path::kDirect);
  EXPECT_EQ(d.fallback, Fallback::kNone);
}

TEST(GraphPolicy, WarmUpThenCaptureThenReplay) {
  CallState s = enabled();
  s.warmup_calls = 2;
  for (int calls : {0, 1}) {
    s.calls_at_shape = calls;
    EXPECT_EQ(decide(s).path, Path::kDirect) << calls;
    EXPECT_EQ(decide(s).fallback, Fallback::kNone);
  }
  s.calls_at_shape = 2;
  EXPECT_EQ(decide(s).path, Path::kCapture);
  s.has_graph = true;
  EXPECT_EQ(decide(s).path, Path::kReplay);
  s.warmup_calls = 0;
  s.calls_at_shape = 0;
  s.has_graph = false;
  EXPECT_EQ(decide(s).path, Path::kCapture);  // no warm-up asked for
}

TEST(GraphPolicy, DataDependentSizesRunDirectlyWithTheirFallback) {
  CallState s = enabled();
  s.data_dependent = true;
  for (int calls : {0, 1, 5}) {
    s.calls_at_shape = calls;
    EXPECT_EQ(decide(s).path, Path::kDirect) << calls;
    EXPECT_EQ(decide(s).fallback, Fallback::kDataDependent) << calls;
  }
  EXPECT_EQ(fallback_name(Fallback::kDataDependent), "data-dependent shapes");
  s.graphs_enabled = false;  // no graphs asked for: nothing fell back
  EXPECT_EQ(decide(s).fallback, Fallback::kNone);
}

TEST(GraphPolicy, HostStepsRunDirectlyWithTheirFallback) {
  CallState s = enabled();
  s.host_steps = true;
  for (int calls : {0, 1, 5}) {
    s.calls_at_shape = calls;
    EXPECT_EQ(decide(s).path, Path::kDirect) << calls;
    EXPECT_EQ(decide(s).fallback, Fallback::kHostSteps) << calls;
  }
  EXPECT_EQ(fallback_name(Fallback::kHostSteps), "host steps");
  s.data_dependent = true;  // both: the sizes are named first
  EXPECT_EQ(decide(s).fallback, Fallback::kDataDependent);
  s.graphs_enabled = false;
  EXPECT_EQ(decide(s).fallback, Fallback::kNone);
}

TEST(GraphPolicy, CallerCaptureWinsWhateverTheStrategy) {
  for (bool on : {false, true}) {
    CallState s;
    s.graphs_enabled = on;
    s.caller_capturing = true;
    s.has_graph = true;
    EXPECT_EQ(decide(s).path, Path::kIntoCallerCapture);
    EXPECT_EQ(decide(s).fallback, Fallback::kNone);
  }
}

TEST(GraphPolicy, TheLegacyStreamGetsGraphsOnTheContextsStream) {
  CallState s = enabled();
  s.legacy_stream = true;
  Decision warm_up = decide(s);  // the first call runs directly, on the caller's stream
  EXPECT_EQ(warm_up.path, Path::kDirect);
  EXPECT_FALSE(warm_up.on_context_stream);
  s.calls_at_shape = 1;
  Decision capture = decide(s);
  EXPECT_EQ(capture.path, Path::kCapture);
  EXPECT_TRUE(capture.on_context_stream);
  s.has_graph = true;
  Decision replay = decide(s);
  EXPECT_EQ(replay.path, Path::kReplay);
  EXPECT_EQ(replay.fallback, Fallback::kNone);
  EXPECT_TRUE(replay.on_context_stream);
  s.legacy_stream = false;
  EXPECT_FALSE(decide(s).on_context_stream);
}

TEST(GraphPolicy, AFailedCaptureRunsDirectlyUntilItsRetry) {
  CallState s = enabled();
  s.calls_at_shape = 4;
  s.capture_failed = true;
  s.retry_capture_at = 4 + capture_retry_delay(1);
  Decision d = decide(s);
  EXPECT_EQ(d.path, Path::kDirect);
  EXPECT_EQ(d.fallback, Fallback::kCaptureFailed);
  s.calls_at_shape = s.retry_capture_at;
  d = decide(s);
  EXPECT_EQ(d.path, Path::kCapture);
  EXPECT_EQ(d.fallback, Fallback::kNone);
}

TEST(GraphPolicy, RetriesBackOffAndTheWaitIsBounded) {
  EXPECT_EQ(capture_retry_delay(1), 8);
  EXPECT_EQ(capture_retry_delay(2), 16);
  EXPECT_EQ(capture_retry_delay(3), 32);
  EXPECT_EQ(capture_retry_delay(8), 1024);
  EXPECT_EQ(capture_retry_delay(100), 1024);
}

}  // namespace
}  // namespace kiln::runtime::graphs

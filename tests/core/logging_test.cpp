#include "kiln/logging.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "log_capture.h"

namespace kiln {
namespace {

using testing::LogCapture;

TEST(Logging, SeverityNamesRoundTrip) {
  for (Severity s : {Severity::kError, Severity::kWarning, Severity::kInfo, Severity::kVerbose})
    EXPECT_EQ(parse_severity(severity_name(s)), s);
  EXPECT_FALSE(parse_severity("debug").has_value());
}

TEST(Logging, MessagesLessSevereThanTheMinimumAreDropped) {
  LogCapture log(Severity::kWarning);
  kiln::log(Severity::kVerbose, "detail");
  kiln::log(Severity::kInfo, "progress");
  kiln::log(Severity::kWarning, "cache not used");
  kiln::log(Severity::kError, "broken");
  EXPECT_EQ(log.text(), "warning: cache not used\nerror: broken\n");
  EXPECT_TRUE(log_enabled(Severity::kWarning));
  EXPECT_FALSE(log_enabled(Severity::kInfo));

  set_log_severity(Severity::kVerbose);
  kiln::log(Severity::kVerbose, "detail");
  EXPECT_EQ(log.count(Severity::kVerbose, "detail"), 1u);
  set_log_severity(Severity::kError);
  kiln::log(Severity::kWarning, "hidden");
  EXPECT_EQ(log.count(Severity::kWarning, "hidden"), 0u);
}

TEST(Logging, TheDefaultLoggerWritesWarningsToStderr) {
  Severity before = log_severity();
  set_logger(nullptr);
  set_log_severity(Severity::kWarning);
  ::testing::internal::CaptureStderr();
  kiln::log(Severity::kWarning, "runtime cache not saved");
  kiln::log(Severity::kInfo, "compiled 8/8 kernels");
  std::string err = ::testing::internal::GetCapturedStderr();
  set_log_severity(before);
  EXPECT_EQ(err, "kiln: warning: runtime cache not saved\n");
}

// Compile threads log while the program may swap loggers: every message
// reaches exactly one logger, none is lost or torn.
TEST(Logging, ConcurrentMessagesAndLoggerSwapsAreSafe) {
  LogCapture restore(Severity::kWarning);  // the default logger and minimum come back at the end
  constexpr int kThreads = 8, kMessages = 2000;
  std::atomic<bool> stop{false};
  struct Counter : Logger {
    void log(Severity, std::string_view message) override {
      if (message == "line") ++n;
    }
    std::atomic<int> n{0};
  };
  auto a = std::make_shared<Counter>(), b = std::make_shared<Counter>();
  set_logger(a);  // before any writer starts: none may reach the logger of before
  std::thread swapper([&] {
    for (bool flip = false; !stop; flip = !flip) set_logger(flip ? a : b);
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t)
    writers.emplace_back([] {
      for (int i = 0; i < kMessages; ++i) kiln::log(Severity::kWarning, "line");
    });
  for (auto& w : writers) w.join();
  stop = true;
  swapper.join();
  EXPECT_EQ(a->n + b->n, kThreads * kMessages);
}

}  // namespace
}  // namespace kiln

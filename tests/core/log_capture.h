// Captures kiln's log for the lifetime of one object: installs a recording
// logger with a minimum severity, and puts back the default logger and the
// previous minimum when destroyed, so tests do not leak into each other.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/logging.h"

namespace kiln::testing {

class LogCapture {
 public:
  struct Entry {
    Severity severity;
    std::string message;
  };

  explicit LogCapture(Severity minimum = Severity::kVerbose) : previous_(log_severity()) {
    set_logger(recorder_);
    set_log_severity(minimum);
  }
  ~LogCapture() {
    set_logger(nullptr);
    set_log_severity(previous_);
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::vector<Entry> entries() const {
    std::lock_guard lock(recorder_->mutex);
    return recorder_->entries;
  }
  // Messages of `severity` that contain `text`.
  size_t count(Severity severity, std::string_view text = "") const {
    size_t n = 0;
    for (const Entry& e : entries()) n += e.severity == severity && e.message.find(text) != std::string::npos;
    return n;
  }
  // Everything, one "severity: message" line each, for failure messages.
  std::string text() const {
    std::string out;
    for (const Entry& e : entries()) out += std::string(severity_name(e.severity)) + ": " + e.message + "\n";
    return out;
  }

 private:
  struct Recorder : Logger {
    void log(Severity severity, std::string_view message) override {
      std::lock_guard lock(mutex);
      entries.push_back({severity, std::string(message)});
    }
    mutable std::mutex mutex;
    std::vector<Entry> entries;
  };
  std::shared_ptr<Recorder> recorder_ = std::make_shared<Recorder>();
  Severity previous_;
};

}  // namespace kiln::testing

#include "kiln/logging.h"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

namespace kiln {

namespace {

struct Sink {
  std::mutex mutex;                 // guards `logger` (the pointer, not calls through it)
  std::shared_ptr<Logger> logger;   // null: stderr
  std::atomic<int> minimum{int(Severity::kWarning)};
};

// Never destroyed: background compile threads may still log while the
// process's static objects are torn down.
Sink& sink() {
  static Sink* s = new Sink;
  return *s;
}

// One write per line, so lines from several threads never interleave.
void write_stderr(Severity severity, std::string_view message) {
  std::string line = "kiln: ";
  if (severity == Severity::kError || severity == Severity::kWarning) line += std::string(severity_name(severity)) + ": ";
  line.append(message);
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace

std::string_view severity_name(Severity severity) {
  switch (severity) {
    case Severity::kError: return "error";
    case Severity::kWarning: return "warning";
    case Severity::kInfo: return "info";
    case Severity::kVerbose: return "verbose";
  }
  return "?";
}

std::optional<Severity> parse_severity(std::string_view name) {
  for (Severity s : {Severity::kError, Severity::kWarning, Severity::kInfo, Severity::kVerbose})
    if (name == severity_name(s)) return s;
  return std::nullopt;
}

void set_logger(std::shared_ptr<Logger> logger) {
  std::lock_guard lock(sink().mutex);
  sink().logger = std::move(logger);
}

void set_log_severity(Severity minimum) { sink().minimum.store(int(minimum), std::memory_order_relaxed); }

Severity log_severity() { return Severity(sink().minimum.load(std::memory_order_relaxed)); }

bool log_enabled(Severity severity) { return int(severity) <= sink().minimum.load(std::memory_order_relaxed); }

void log(Severity severity, std::string_view message) {
  if (!log_enabled(severity)) return;
  std::shared_ptr<Logger> logger;
  {
    std::lock_guard lock(sink().mutex);
    logger = sink().logger;
  }
  // Called unlocked: a slow logger delays only its own thread, and one that
  // logs or replaces the logger itself cannot deadlock.
  if (logger) logger->log(severity, message);
  else write_stderr(severity, message);
}

}  // namespace kiln

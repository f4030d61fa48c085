// kiln's one log: everything the library says besides return values and
// exceptions (runtime cache problems, a module setting it had to change,
// kernels compiling) goes to one process-wide Logger with a severity, so a
// program decides where messages go and how many it wants.
//
// The default logger writes lines like "kiln: warning: ..." to stderr, and
// messages less severe than kWarning are dropped. A progress callback a
// caller passes explicitly (BuildOptions::progress, RuntimeConfig::progress,
// warm_cache's progress, Module::on_warning) gets its lines instead of the
// logger.
#pragma once

#include <memory>
#include <optional>
#include <string_view>

#include "kiln/export.h"

KILN_API_BEGIN
namespace kiln {

// Most severe first: a minimum of kInfo lets kError, kWarning and kInfo through.
enum class Severity { kError, kWarning, kInfo, kVerbose };

std::string_view severity_name(Severity severity);  // "error", "warning", "info", "verbose"
std::optional<Severity> parse_severity(std::string_view name);

class Logger {
 public:
  virtual ~Logger() = default;
  // Called from whichever thread has something to say, background compile
  // threads included, possibly from several at once: an implementation must
  // be thread-safe. kiln holds none of its locks while calling it.
  virtual void log(Severity severity, std::string_view message) = 0;
};

// Replaces the process's logger; null restores the default (stderr). Safe
// while other threads log: each message goes to the old or the new logger.
void set_logger(std::shared_ptr<Logger> logger);
// Messages less severe than `minimum` are dropped before any logger sees them.
void set_log_severity(Severity minimum);
Severity log_severity();
// True when a message of `severity` would reach the logger now.
bool log_enabled(Severity severity);
// Sends `message` to the logger when its severity passes the minimum.
void log(Severity severity, std::string_view message);

}  // namespace kiln
KILN_API_END

// kiln's single error type: every failure is a kiln::Error carrying a code a
// program can branch on and a message a person can act on (which model, node,
// tensor, file, and what was expected).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

#include "kiln/export.h"

KILN_API_BEGIN
namespace kiln {

enum class ErrorCode {
  kInvalidArgument,  // bad call or bad CLI input
  kInvalidModel,     // the model/network breaks a rule (cycle, dangling input, bad attribute)
  kUnsupported,      // valid input kiln does not handle (op, dtype, opset, attribute value)
  kParseError,       // a file that cannot be decoded (truncated, garbage)
  kIoError,          // a file that cannot be opened, read or written
  kShapeError,       // shapes or ranks that do not fit together
  kTypeError,        // dtypes that do not fit together
  kDevice,           // the GPU or a CUDA library failed (the message names the call and kernel)
  kInternal,         // a kiln bug
};

std::string_view error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

// Concatenates anything streamable into one string: str("node ", name, " has ", n, " inputs").
template <class... Args>
std::string str(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

template <class... Args>
[[noreturn]] void fail(ErrorCode code, const Args&... args) {
  throw Error(code, str(args...));
}

}  // namespace kiln
KILN_API_END

#include "kiln/error.h"

namespace kiln {

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kInvalidModel: return "invalid model";
    case ErrorCode::kUnsupported: return "unsupported";
    case ErrorCode::kParseError: return "parse error";
    case ErrorCode::kIoError: return "I/O error";
    case ErrorCode::kShapeError: return "shape error";
    case ErrorCode::kTypeError: return "type error";
    case ErrorCode::kDevice: return "device error";
    case ErrorCode::kInternal: return "internal error";
  }
  return "error";
}

}  // namespace kiln

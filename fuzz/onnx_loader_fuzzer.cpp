// libFuzzer target: arbitrary bytes through the ONNX loader must end in a
// model or a kiln::Error that is not internal, never a crash, leak or sanitizer report.
#include <cstddef>
#include <cstdint>
#include <string>

#include "kiln/error.h"
#include "kiln/onnx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    kiln::onnx::load_model_bytes(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const kiln::Error& e) {
    if (e.code() == kiln::ErrorCode::kInternal) __builtin_trap();  // internal errors are bugs: report them
  }
  return 0;
}

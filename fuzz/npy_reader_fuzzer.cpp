// libFuzzer target: arbitrary bytes through the .npy reader must end in a
// tensor whose bytes match its shape, or a kiln::Error that is not internal.
#include <cstddef>
#include <cstdint>
#include <string>

#include "kiln/error.h"
#include "kiln/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    kiln::ir::TensorData t = kiln::io::parse_npy(std::string(reinterpret_cast<const char*>(data), size), "fuzz.npy");
    if (t.data.size() != size_t(t.numel()) * kiln::dtype_size(t.dtype)) __builtin_trap();
  } catch (const kiln::Error& e) {
    if (e.code() == kiln::ErrorCode::kInternal) __builtin_trap();
  }
  return 0;
}

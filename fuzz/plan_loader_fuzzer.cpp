// libFuzzer target: arbitrary bytes through the .kiln plan loader must end in
// a plan or a kiln::Error that is not internal.
#include <cstddef>
#include <cstdint>

#include "kiln/error.h"
#include "kiln/plan.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    kiln::plan::deserialize(kiln::Buffer::copy_of(data, size), "fuzz");
  } catch (const kiln::Error& e) {
    if (e.code() == kiln::ErrorCode::kInternal) __builtin_trap();
  }
  return 0;
}

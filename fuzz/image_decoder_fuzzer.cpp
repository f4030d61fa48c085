// libFuzzer target: arbitrary bytes through ImageDecoder's decoders (every
// format by its signature, each pixel format) must end in an image or a
// kiln::Error that is not internal, never a crash, hang, leak or sanitizer report.
#include <cstddef>
#include <cstdint>

#include "image/image_decoder.h"
#include "kiln/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (auto format : {kiln::image::PixelFormat::kRgb, kiln::image::PixelFormat::kGrayscale}) {
    try {
      kiln::image::decode({data, size}, format);
    } catch (const kiln::Error& e) {
      if (e.code() == kiln::ErrorCode::kInternal) __builtin_trap();  // internal errors are bugs: report them
    }
  }
  return 0;
}

// Internal to src/image: what the format decoders share. Each decoder returns
// the image as its library gives it, 1 (gray) or 3 (RGB) channels; alpha is
// dropped as Pillow's convert("RGB") drops it. image_decoder.cpp converts to
// the pixel format asked for.
#pragma once

#include <cstdint>
#include <span>

#include "image_decoder.h"
#include "kiln/error.h"

namespace kiln::image {

// Fails unless width x height is a size kiln decodes: both >= 1 and at most kMaxPixels pixels.
void check_size(int64_t width, int64_t height, const char* format);

// An image of 1 or 3 channels with its pixels allocated (after check_size).
Image make_image(int64_t width, int64_t height, int64_t channels);

// One file each, compiled where the build found the library (src/CMakeLists.txt).
Image decode_jpeg(std::span<const uint8_t> bytes);
Image decode_png(std::span<const uint8_t> bytes);
Image decode_tiff(std::span<const uint8_t> bytes);
Image decode_webp(std::span<const uint8_t> bytes);
Image decode_jpeg2000(std::span<const uint8_t> bytes);

}  // namespace kiln::image

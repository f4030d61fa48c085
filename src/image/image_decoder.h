// Decoding of encoded images (ONNX ImageDecoder) on the host: the format is
// told by the stream's first bytes, each format is decoded by its usual
// library where kiln was built with it (libjpeg-turbo, libpng, libtiff,
// libwebp, OpenJPEG) and BMP and PNM by hand. Outputs match what Pillow
// gives (ONNX's reference decodes with it): JPEG with libjpeg's default
// settings, grayscale of a colour image by Pillow's integer ITU-R 601-2 luma.
// Every stream is hostile input: malformed, truncated or too large ones fail
// with kiln::Error (kParseError, kUnsupported), never a crash.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::image {

enum class PixelFormat { kRgb, kBgr, kGrayscale };

// "RGB", "BGR" or "Grayscale" (ImageDecoder's pixel_format) into `out`; false for any other name.
bool parse_pixel_format(std::string_view name, PixelFormat& out);
inline int64_t channels_of(PixelFormat format) { return format == PixelFormat::kGrayscale ? 1 : 3; }

// Decoded pixels, row-major [height, width, channels].
struct Image {
  int64_t height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;
};

// The most pixels (height times width) a stream may declare: a small stream
// may claim a huge image (a decompression bomb), refused before any allocation.
inline constexpr int64_t kMaxPixels = int64_t(1) << 28;

// Decodes `bytes`; errors say what is wrong with the stream (the caller names the node).
Image decode(std::span<const uint8_t> bytes, PixelFormat format);

// The formats kiln reads, each with the library it needs and whether this
// build lacks it: "BMP, JPEG (libjpeg-turbo), JPEG 2000 (OpenJPEG, not in this build), ...".
std::string supported_formats();
// Whether this build decodes `format`, a name as supported_formats() lists it ("JPEG 2000").
bool built_with(std::string_view format);

}  // namespace kiln::image

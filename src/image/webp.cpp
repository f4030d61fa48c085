// WebP through libwebp: still images, lossy or lossless, decoded to RGB
// (alpha dropped, as Pillow's convert("RGB") drops it). libwebp reports
// errors by return values.
#include <webp/decode.h>

#include "codecs.h"

namespace kiln::image {

Image decode_webp(std::span<const uint8_t> bytes) {
  WebPBitstreamFeatures features;
  VP8StatusCode status = WebPGetFeatures(bytes.data(), bytes.size(), &features);
  if (status == VP8_STATUS_NOT_ENOUGH_DATA) fail(ErrorCode::kParseError, "the WebP stream is truncated");
  if (status != VP8_STATUS_OK) fail(ErrorCode::kParseError, "the WebP stream cannot be decoded (libwebp status ", int(status), ")");
  if (features.has_animation) fail(ErrorCode::kUnsupported, "animated WebP is not supported (still images are)");
  check_size(features.width, features.height, "WebP");
  Image out = make_image(features.width, features.height, 3);
  if (!WebPDecodeRGBInto(bytes.data(), bytes.size(), out.pixels.data(), out.pixels.size(), int(out.width * 3)))
    fail(ErrorCode::kParseError, "the WebP stream cannot be decoded (truncated or corrupt image data)");
  return out;
}

}  // namespace kiln::image

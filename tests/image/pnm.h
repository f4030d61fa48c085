// Binary PPM (P6) and PGM (P5) streams made in a test: images of any size and
// pixels without a codec library, for ImageDecoder's tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::testing {

// `pixels` row-major, `channels` 3 (P6) or 1 (P5), maxval 255.
inline std::vector<uint8_t> pnm(int64_t width, int64_t height, int64_t channels, const std::vector<uint8_t>& pixels) {
  std::string header = (channels == 3 ? "P6\n" : "P5\n") + std::to_string(width) + " " + std::to_string(height) + "\n255\n";
  std::vector<uint8_t> out(header.begin(), header.end());
  out.insert(out.end(), pixels.begin(), pixels.end());
  return out;
}

}  // namespace kiln::testing

// PNG through libpng. Pixels as Pillow gives them: 16-bit samples keep their
// high byte, palettes and 1/2/4-bit grays expand to 8 bits, alpha (and a
// tRNS transparency) is dropped, gamma is not applied. libpng reports errors
// by longjmp to png_jmpbuf; that lands in `run`, whose frame holds no C++
// object, and the failure is thrown from decode_png.
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include <png.h>

#include "codecs.h"

namespace kiln::image {

namespace {

struct Decoding {
  std::span<const uint8_t> bytes;
  size_t at = 8;  // past the signature, which detect() has checked
  char message[200] = "";
  Image image;
  std::vector<png_bytep> rows;
};

void on_error(png_structp png, png_const_charp message) {
  auto* d = static_cast<Decoding*>(png_get_error_ptr(png));
  std::snprintf(d->message, sizeof d->message, "%s", message);
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}

void read_bytes(png_structp png, png_bytep out, size_t length) {
  auto* d = static_cast<Decoding*>(png_get_io_ptr(png));
  if (d->bytes.size() - d->at < length) png_error(png, "the stream is truncated");
  std::memcpy(out, d->bytes.data() + d->at, length);
  d->at += length;
}

// Returns false after a libpng error (d.message says which); check_size and
// make_image may throw, which leaves `run` by the usual unwinding.
bool run(png_structp png, png_infop info, Decoding& d) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_read_fn(png, &d, read_bytes);
  png_set_sig_bytes(png, 8);
  png_read_info(png, info);
  int64_t width = png_get_image_width(png, info), height = png_get_image_height(png, info);
  check_size(width, height, "PNG");
  int color = png_get_color_type(png, info);
  png_set_strip_16(png);
  png_set_palette_to_rgb(png);
  png_set_expand_gray_1_2_4_to_8(png);
  png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  int64_t channels = (color & PNG_COLOR_MASK_COLOR) ? 3 : 1;
  if (png_get_channels(png, info) != channels || png_get_bit_depth(png, info) != 8)
    png_error(png, "the transformed rows are not 8-bit gray or RGB");
  d.image = make_image(width, height, channels);
  d.rows.resize(size_t(height));
  for (int64_t y = 0; y < height; ++y) d.rows[size_t(y)] = d.image.pixels.data() + y * width * channels;
  png_read_image(png, d.rows.data());
  png_read_end(png, nullptr);
  return true;
}

}  // namespace

Image decode_png(std::span<const uint8_t> bytes) {
  Decoding d;
  d.bytes = bytes;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &d, on_error, on_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    fail(ErrorCode::kInternal, "libpng could not allocate its decoder");
  }
  bool ok = false;
  try {
    ok = run(png, info, d);
  } catch (...) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw;
  }
  png_destroy_read_struct(&png, &info, nullptr);
  if (!ok) fail(ErrorCode::kParseError, "the PNG stream cannot be decoded: ", d.message);
  return std::move(d.image);
}

}  // namespace kiln::image

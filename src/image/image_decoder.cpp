// The format from the stream's first bytes, BMP and PNM by hand (no library
// is needed for them), and the conversion to the pixel format asked for.
#include <cmath>
#include <cstring>

#include "codecs.h"

namespace kiln::image {

namespace {

using Decoder = Image (*)(std::span<const uint8_t>);

struct Format {
  const char* name;
  const char* library;  // "" for the formats kiln parses itself
  Decoder decoder;      // null where this build lacks the library
};

Image decode_bmp(std::span<const uint8_t> bytes);
Image decode_pnm(std::span<const uint8_t> bytes);

// src/CMakeLists.txt defines KILN_IMAGE_<FORMAT> for each library it found.
#ifdef KILN_IMAGE_JPEG
const Format kJpeg{"JPEG", "libjpeg-turbo", decode_jpeg};
#else
const Format kJpeg{"JPEG", "libjpeg-turbo", nullptr};
#endif
#ifdef KILN_IMAGE_PNG
const Format kPng{"PNG", "libpng", decode_png};
#else
const Format kPng{"PNG", "libpng", nullptr};
#endif
#ifdef KILN_IMAGE_TIFF
const Format kTiff{"TIFF", "libtiff", decode_tiff};
#else
const Format kTiff{"TIFF", "libtiff", nullptr};
#endif
#ifdef KILN_IMAGE_WEBP
const Format kWebp{"WebP", "libwebp", decode_webp};
#else
const Format kWebp{"WebP", "libwebp", nullptr};
#endif
#ifdef KILN_IMAGE_JPEG2000
const Format kJpeg2000{"JPEG 2000", "OpenJPEG", decode_jpeg2000};
#else
const Format kJpeg2000{"JPEG 2000", "OpenJPEG", nullptr};
#endif
const Format kBmp{"BMP", "", decode_bmp};
const Format kPnm{"PNM", "", decode_pnm};

bool starts_with(std::span<const uint8_t> bytes, std::initializer_list<uint8_t> magic, size_t at = 0) {
  if (bytes.size() < at + magic.size()) return false;
  return std::equal(magic.begin(), magic.end(), bytes.begin() + std::ptrdiff_t(at));
}

bool is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

const Format* detect(std::span<const uint8_t> b) {
  if (starts_with(b, {0xFF, 0xD8, 0xFF})) return &kJpeg;
  if (starts_with(b, {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'})) return &kPng;
  if (starts_with(b, {'I', 'I', '*', 0}) || starts_with(b, {'M', 'M', 0, '*'}) || starts_with(b, {'I', 'I', '+', 0}) ||
      starts_with(b, {'M', 'M', 0, '+'}))
    return &kTiff;
  if (starts_with(b, {'R', 'I', 'F', 'F'}) && starts_with(b, {'W', 'E', 'B', 'P'}, 8)) return &kWebp;
  if (starts_with(b, {0, 0, 0, 0x0C, 'j', 'P', ' ', ' ', '\r', '\n', 0x87, '\n'}) || starts_with(b, {0xFF, 0x4F, 0xFF, 0x51}))
    return &kJpeg2000;
  if (starts_with(b, {'B', 'M'})) return &kBmp;
  if (b.size() >= 3 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6' && is_space(b[2])) return &kPnm;
  return nullptr;
}

// ---- BMP -------------------------------------------------------------------------

uint32_t le32(std::span<const uint8_t> b, size_t at) {
  return uint32_t(b[at]) | uint32_t(b[at + 1]) << 8 | uint32_t(b[at + 2]) << 16 | uint32_t(b[at + 3]) << 24;
}
uint16_t le16(std::span<const uint8_t> b, size_t at) { return uint16_t(b[at] | b[at + 1] << 8); }

// One channel of a 32-bit pixel under a BITFIELDS mask: kiln takes the masks
// Pillow takes, whole bytes (0xff at a multiple of 8 bits).
int mask_shift(uint32_t mask) {
  for (int s = 0; s < 32; s += 8)
    if (mask == uint32_t(0xFF) << s) return s;
  return -1;
}

// Windows and OS/2 bitmaps, uncompressed: 1, 4 and 8 bits through a palette,
// 24 bits BGR, 32 bits BGRX or byte-aligned BITFIELDS; rows bottom-up unless
// the height is negative. RLE and 16-bit bitmaps are refused by name.
Image decode_bmp(std::span<const uint8_t> b) {
  auto need = [&](uint64_t end, const char* what) {
    if (end > b.size()) fail(ErrorCode::kParseError, "the BMP stream is truncated: its ", what, " ends at byte ", end, " of ", b.size());
  };
  need(18, "file header");
  uint32_t data_offset = le32(b, 10), header = le32(b, 14);
  bool core = header == 12;
  if (!core && header < 40)
    fail(ErrorCode::kParseError, "the BMP info header is ", header, " bytes; expected 12 or at least 40");
  need(14 + uint64_t(header), "info header");
  int64_t width, height;
  uint32_t bits, compression = 0, colors = 0;
  if (core) {
    width = le16(b, 18);
    height = le16(b, 20);
    bits = le16(b, 24);
  } else {
    width = int32_t(le32(b, 18));
    height = int32_t(le32(b, 22));
    bits = le16(b, 28);
    compression = le32(b, 30);
    colors = le32(b, 46);
  }
  bool top_down = height < 0;
  height = std::abs(height);
  check_size(width, height, "BMP");
  constexpr uint32_t kRgb = 0, kBitfields = 3, kAlphaBitfields = 6;
  int shifts[3] = {16, 8, 0};  // red, green, blue within a little-endian 32-bit pixel
  if (compression == kBitfields || compression == kAlphaBitfields) {
    if (bits != 32) fail(ErrorCode::kUnsupported, "BMP BITFIELDS of ", bits, " bits a pixel are not supported (32 are)");
    need(14 + 40 + 12, "colour masks");
    for (int c = 0; c < 3; ++c)
      if ((shifts[c] = mask_shift(le32(b, 54 + size_t(c) * 4))) < 0)
        fail(ErrorCode::kUnsupported, "BMP colour mask 0x", std::hex, le32(b, 54 + size_t(c) * 4),
             " is not supported (each channel must be one whole byte)");
  } else if (compression != kRgb) {
    fail(ErrorCode::kUnsupported, "BMP compression ", compression, " (RLE, JPEG or PNG inside BMP) is not supported; ",
         "uncompressed bitmaps are");
  }
  if (bits != 1 && bits != 4 && bits != 8 && bits != 24 && bits != 32)
    fail(ErrorCode::kUnsupported, "BMP of ", bits, " bits a pixel is not supported (1, 4, 8, 24 and 32 are)");
  // The palette: after the info header (and a 40-byte header's masks), 4 bytes
  // an entry (3 in OS/2's core header); `colors` entries, or 2^bits if 0.
  uint8_t palette[256][3] = {};
  if (bits <= 8) {
    uint32_t most = 1u << bits;
    if (colors == 0) colors = most;
    if (colors > most) fail(ErrorCode::kParseError, "the BMP palette has ", colors, " colours, more than ", bits, " bits index");
    uint64_t at = 14 + uint64_t(header), entry = core ? 3 : 4;
    need(at + colors * entry, "palette");
    for (uint32_t i = 0; i < colors; ++i)
      for (int c = 0; c < 3; ++c) palette[i][c] = b[at + i * entry + uint64_t(2 - c)];
  }
  uint64_t stride = (uint64_t(width) * bits + 31) / 32 * 4;
  need(uint64_t(data_offset) + stride * uint64_t(height), "pixel data");
  Image out = make_image(width, height, 3);
  for (int64_t y = 0; y < height; ++y) {
    const uint8_t* row = b.data() + data_offset + stride * uint64_t(top_down ? y : height - 1 - y);
    uint8_t* px = out.pixels.data() + y * width * 3;
    for (int64_t x = 0; x < width; ++x, px += 3) {
      if (bits <= 8) {
        int64_t bit = x * bits;
        uint32_t index = (row[bit / 8] >> (8 - bits - bit % 8)) & ((1u << bits) - 1);
        // An index past the palette's entries is black, as Pillow's zero-padded palette makes it.
        std::memcpy(px, palette[index], 3);
      } else if (bits == 24) {
        px[0] = row[x * 3 + 2], px[1] = row[x * 3 + 1], px[2] = row[x * 3];
      } else {
        uint32_t pixel = le32(std::span<const uint8_t>(row, 4 * size_t(width)), size_t(x) * 4);
        for (int c = 0; c < 3; ++c) px[c] = uint8_t(pixel >> shifts[c]);
      }
    }
  }
  return out;
}

// ---- PNM -------------------------------------------------------------------------

// Netpbm's P1 to P6: bitmaps (1 is black), graymaps and pixmaps, plain
// (ASCII) or raw, any maxval to 65535. Samples are scaled to 8 bits as
// Pillow does, round(v / maxval * 255); Pillow keeps graymaps of maxval above
// 255 at 16 bits, which ImageDecoder's uint8 output cannot hold: those scale too.
class PnmReader {
 public:
  explicit PnmReader(std::span<const uint8_t> b) : b_(b) {}

  // A header number: whitespace and # comments before it, 10 digits at most.
  int64_t number(const char* what) {
    skip_space_and_comments();
    int64_t v = 0, digits = 0;
    while (at_ < b_.size() && b_[at_] >= '0' && b_[at_] <= '9') {
      if (++digits > 10) fail(ErrorCode::kParseError, "the PNM ", what, " has more than 10 digits");
      v = v * 10 + (b_[at_++] - '0');
    }
    if (digits == 0)
      fail(ErrorCode::kParseError, at_ >= b_.size() ? str("the PNM stream ends before its ", what)
                                                    : str("the PNM ", what, " is not a number"));
    return v;
  }
  // The one whitespace byte between the header and a raw raster.
  void end_header() {
    if (at_ >= b_.size() || !is_space(b_[at_])) fail(ErrorCode::kParseError, "the PNM header does not end in whitespace");
    ++at_;
  }
  std::span<const uint8_t> raster(uint64_t bytes) {
    if (b_.size() - at_ < bytes)
      fail(ErrorCode::kParseError, "the PNM stream is truncated: its raster needs ", bytes, " bytes, ", b_.size() - at_, " are left");
    return b_.subspan(at_, size_t(bytes));
  }
  // A plain P1 sample: one '0' or '1', with or without whitespace around it.
  int bit() {
    skip_space_and_comments();
    if (at_ >= b_.size()) fail(ErrorCode::kParseError, "the PNM stream is truncated: it ends before its last pixel");
    uint8_t c = b_[at_++];
    if (c != '0' && c != '1') fail(ErrorCode::kParseError, "the plain PBM raster holds '", char(c), "'; expected 0 or 1");
    return c - '0';
  }

 private:
  void skip_space_and_comments() {
    while (at_ < b_.size() && (is_space(b_[at_]) || b_[at_] == '#')) {
      if (b_[at_] == '#')
        while (at_ < b_.size() && b_[at_] != '\n' && b_[at_] != '\r') ++at_;
      else
        ++at_;
    }
  }
  std::span<const uint8_t> b_;
  size_t at_ = 2;  // past the magic number
};

Image decode_pnm(std::span<const uint8_t> b) {
  char kind = char(b[1]);
  bool plain = kind <= '3', bitmap = kind == '1' || kind == '4';
  int64_t channels = kind == '3' || kind == '6' ? 3 : 1;
  PnmReader r(b);
  int64_t width = r.number("width"), height = r.number("height");
  check_size(width, height, "PNM");
  int64_t maxval = bitmap ? 1 : r.number("maxval");
  if (maxval < 1 || maxval > 65535) fail(ErrorCode::kParseError, "the PNM maxval ", maxval, " is outside [1, 65535]");
  Image out = make_image(width, height, channels);
  uint8_t* px = out.pixels.data();
  int64_t samples = width * height * channels;
  auto scaled = [&](int64_t v) {
    if (maxval == 255) return uint8_t(std::min<int64_t>(v, 255));
    return uint8_t(std::min(255.0, std::nearbyint(double(v) / double(maxval) * 255.0)));
  };
  if (bitmap && plain) {
    for (int64_t i = 0; i < samples; ++i) px[i] = r.bit() ? 0 : 255;
  } else if (bitmap) {
    r.end_header();
    uint64_t stride = uint64_t(width + 7) / 8;
    std::span<const uint8_t> raster = r.raster(stride * uint64_t(height));
    for (int64_t y = 0; y < height; ++y)
      for (int64_t x = 0; x < width; ++x) *px++ = (raster[size_t(y) * stride + size_t(x / 8)] >> (7 - x % 8)) & 1 ? 0 : 255;
  } else if (plain) {
    for (int64_t i = 0; i < samples; ++i) {
      int64_t v = r.number("sample");
      if (v > maxval) fail(ErrorCode::kParseError, "the PNM sample ", v, " is more than its maxval ", maxval);
      px[i] = scaled(v);
    }
  } else {
    r.end_header();
    int wide = maxval > 255 ? 2 : 1;
    std::span<const uint8_t> raster = r.raster(uint64_t(samples) * uint64_t(wide));
    for (int64_t i = 0; i < samples; ++i)
      px[i] = scaled(wide == 2 ? raster[size_t(i) * 2] << 8 | raster[size_t(i) * 2 + 1] : raster[size_t(i)]);
  }
  return out;
}

// Pillow's convert("L"): ITU-R 601-2 luma in 16-bit fixed point, rounded.
uint8_t luma(const uint8_t* rgb) { return uint8_t((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16); }

Image to_format(Image in, PixelFormat format) {
  int64_t pixels = in.height * in.width;
  int64_t want = channels_of(format);
  if (in.channels == want && format != PixelFormat::kBgr) return in;
  Image out = make_image(in.width, in.height, want);
  const uint8_t* src = in.pixels.data();
  uint8_t* dst = out.pixels.data();
  for (int64_t i = 0; i < pixels; ++i, src += in.channels, dst += want) {
    if (want == 1) dst[0] = luma(src);
    else if (in.channels == 1) dst[0] = dst[1] = dst[2] = src[0];
    else if (format == PixelFormat::kBgr) dst[0] = src[2], dst[1] = src[1], dst[2] = src[0];
    else std::memcpy(dst, src, 3);
  }
  return out;
}

}  // namespace

bool parse_pixel_format(std::string_view name, PixelFormat& out) {
  if (name == "RGB") out = PixelFormat::kRgb;
  else if (name == "BGR") out = PixelFormat::kBgr;
  else if (name == "Grayscale") out = PixelFormat::kGrayscale;
  else return false;
  return true;
}

void check_size(int64_t width, int64_t height, const char* format) {
  if (width < 1 || height < 1)
    fail(ErrorCode::kParseError, "the ", format, " stream declares an image of ", width, " x ", height, " pixels, which holds none");
  if (width > kMaxPixels || height > kMaxPixels || width * height > kMaxPixels)
    fail(ErrorCode::kUnsupported, "the ", format, " stream declares an image of ", width, " x ", height,
         " pixels, more than kiln's limit of ", kMaxPixels, " pixels (2^28) an image");
}

Image make_image(int64_t width, int64_t height, int64_t channels) {
  Image image{height, width, channels, {}};
  image.pixels.resize(size_t(width * height * channels));
  return image;
}

Image decode(std::span<const uint8_t> bytes, PixelFormat format) {
  const Format* f = detect(bytes);
  if (!f)
    fail(ErrorCode::kUnsupported, "the encoded stream (", bytes.size(), " bytes) starts with no image signature kiln knows; it reads ",
         supported_formats());
  if (!f->decoder)
    fail(ErrorCode::kUnsupported, "the stream is ", f->name, ", and this kiln was built without ", f->library,
         ", which decodes it (install its development package and rebuild)");
  return to_format(f->decoder(bytes), format);
}

bool built_with(std::string_view format) {
  for (const Format* f : {&kBmp, &kJpeg, &kJpeg2000, &kPng, &kPnm, &kTiff, &kWebp})
    if (format == f->name) return f->decoder != nullptr;
  return false;
}

std::string supported_formats() {
  std::string out;
  for (const Format* f : {&kBmp, &kJpeg, &kJpeg2000, &kPng, &kPnm, &kTiff, &kWebp}) {
    out += str(out.empty() ? "" : ", ", f->name);
    if (*f->library) out += str(" (", f->library, f->decoder ? "" : ", not in this build", ")");
  }
  return out;
}

}  // namespace kiln::image

// TIFF through libtiff, first image of the file. 8-bit gray and RGB strips
// are read as stored (Pillow's raw unpacking; alpha dropped); every other
// layout (palette, YCbCr, CMYK, tiles, other bit depths) through libtiff's
// RGBA conversion, which premultiplies unassociated alpha where Pillow keeps
// it: those images' transparent parts may differ from Pillow's. libtiff
// reports errors through the handlers given when the file is opened (never
// the process-wide ones) and by return values.
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>

#include <tiffio.h>

#include "codecs.h"

namespace kiln::image {

namespace {

// libtiff's own allocations (strip buffers, tag arrays): well past the largest image kiln decodes.
constexpr tmsize_t kMaxLibraryAllocation = tmsize_t(1) << 31;

struct Stream {
  std::span<const uint8_t> bytes;
  uint64_t at = 0;
  char message[300] = "";
};

tmsize_t read_bytes(thandle_t h, void* out, tmsize_t size) {
  auto* s = static_cast<Stream*>(h);
  if (size < 0) return -1;
  uint64_t n = std::min<uint64_t>(uint64_t(size), s->at < s->bytes.size() ? s->bytes.size() - s->at : 0);
  if (n) std::memcpy(out, s->bytes.data() + s->at, size_t(n));
  s->at += n;
  return tmsize_t(n);
}
tmsize_t write_bytes(thandle_t, void*, tmsize_t) { return -1; }
toff_t seek(thandle_t h, toff_t offset, int whence) {
  auto* s = static_cast<Stream*>(h);
  uint64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? s->at : s->bytes.size();
  if (offset > UINT64_MAX - base) return toff_t(-1);
  s->at = base + offset;
  return s->at;
}
int close_stream(thandle_t) { return 0; }
toff_t size_of(thandle_t h) { return static_cast<Stream*>(h)->bytes.size(); }
int no_map(thandle_t, void**, toff_t*) { return 0; }
void no_unmap(thandle_t, void*, toff_t) {}

int on_error(TIFF*, void* user, const char* module, const char* format, va_list args) {
  auto* s = static_cast<Stream*>(user);
  if (!s->message[0]) {
    int n = std::snprintf(s->message, sizeof s->message, "%s: ", module ? module : "libtiff");
    if (n >= 0 && size_t(n) < sizeof s->message) std::vsnprintf(s->message + n, sizeof s->message - size_t(n), format, args);
  }
  return 1;  // handled: nothing printed
}
int on_warning(TIFF*, void*, const char*, const char*, va_list) { return 1; }

struct Closer {
  void operator()(TIFF* t) const { TIFFClose(t); }
};

}  // namespace

Image decode_tiff(std::span<const uint8_t> bytes) {
  Stream s{bytes};
  auto failed = [&](const char* what) {
    fail(ErrorCode::kParseError, "the TIFF stream cannot be decoded: ", what, s.message[0] ? ": " : "", s.message);
  };
  std::unique_ptr<TIFFOpenOptions, void (*)(TIFFOpenOptions*)> options(TIFFOpenOptionsAlloc(), TIFFOpenOptionsFree);
  if (!options) fail(ErrorCode::kInternal, "libtiff could not allocate its options");
  TIFFOpenOptionsSetMaxSingleMemAlloc(options.get(), kMaxLibraryAllocation);
  TIFFOpenOptionsSetErrorHandlerExtR(options.get(), on_error, &s);
  TIFFOpenOptionsSetWarningHandlerExtR(options.get(), on_warning, &s);
  // "m": no memory mapping (the procs above read from the span).
  std::unique_ptr<TIFF, Closer> tif(TIFFClientOpenExt("ImageDecoder input", "rm", &s, read_bytes, write_bytes, seek,
                                                      close_stream, size_of, no_map, no_unmap, options.get()));
  if (!tif) failed("its header or first directory is malformed");
  uint32_t width = 0, height = 0;
  uint16_t samples = 1, bits = 1, planar = PLANARCONFIG_CONTIG, photometric = PHOTOMETRIC_MINISBLACK;
  if (!TIFFGetField(tif.get(), TIFFTAG_IMAGEWIDTH, &width) || !TIFFGetField(tif.get(), TIFFTAG_IMAGELENGTH, &height))
    failed("it has no image width or length");
  check_size(width, height, "TIFF");
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_SAMPLESPERPIXEL, &samples);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_BITSPERSAMPLE, &bits);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_PLANARCONFIG, &planar);
  bool has_photometric = TIFFGetField(tif.get(), TIFFTAG_PHOTOMETRIC, &photometric);
  bool gray = photometric == PHOTOMETRIC_MINISBLACK && (samples == 1 || samples == 2);
  bool rgb = photometric == PHOTOMETRIC_RGB && (samples == 3 || samples == 4);
  if (has_photometric && bits == 8 && planar == PLANARCONFIG_CONTIG && !TIFFIsTiled(tif.get()) && (gray || rgb)) {
    int64_t channels = gray ? 1 : 3;
    Image out = make_image(width, height, channels);
    tmsize_t line = TIFFScanlineSize(tif.get());
    if (line != tmsize_t(width) * samples) failed("its scanline size does not match its samples");
    std::vector<uint8_t> row(static_cast<size_t>(line));
    for (uint32_t y = 0; y < height; ++y) {
      if (TIFFReadScanline(tif.get(), row.data(), y, 0) < 0) failed("a strip cannot be read");
      uint8_t* px = out.pixels.data() + int64_t(y) * width * channels;
      for (uint32_t x = 0; x < width; ++x) std::memcpy(px + x * channels, row.data() + size_t(x) * samples, size_t(channels));
    }
    return out;
  }
  char why[1024] = "";
  if (!TIFFRGBAImageOK(tif.get(), why))
    fail(ErrorCode::kUnsupported, "the TIFF stream's layout is not supported: ", why);
  std::vector<uint32_t> raster(size_t(width) * height);
  if (!TIFFReadRGBAImageOriented(tif.get(), width, height, raster.data(), ORIENTATION_TOPLEFT, 0))
    failed("its pixels cannot be read");
  Image out = make_image(width, height, 3);
  for (size_t i = 0; i < raster.size(); ++i) {
    out.pixels[i * 3] = uint8_t(TIFFGetR(raster[i]));
    out.pixels[i * 3 + 1] = uint8_t(TIFFGetG(raster[i]));
    out.pixels[i * 3 + 2] = uint8_t(TIFFGetB(raster[i]));
  }
  return out;
}

}  // namespace kiln::image

// JPEG through libjpeg(-turbo) with its default settings (islow DCT, fancy
// upsampling), the pixels Pillow gives. libjpeg reports errors by calling
// error_exit, which by default ends the process: here it longjmps back to
// decode_jpeg's setjmp, and the failure is thrown from there, outside
// libjpeg's frames. Only plain C state lives across the setjmp.
#include <csetjmp>
#include <cstdio>

#include <jpeglib.h>
// After jpeglib.h, which it needs: the message codes (JWRN_JPEG_EOF).
#include <jerror.h>

#include "codecs.h"

namespace kiln::image {

namespace {

// Progressive JPEGs can hold a scan per coefficient bit and more; a hostile
// stream of many tiny scans makes decoding take very long. libjpeg-turbo's
// djpeg suggests -maxscan; this bound is far past any real encoder's.
constexpr int kMaxScans = 1000;

struct ErrorState {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void on_error(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<ErrorState*>(cinfo->err);
  e->mgr.format_message(cinfo, e->message);
  longjmp(e->jump, 1);
}

// Warnings are dropped (Pillow ignores them) except the end of the data
// before the image's end: libjpeg would fill the rest with grey.
void on_message(j_common_ptr cinfo, int level) {
  auto* e = reinterpret_cast<ErrorState*>(cinfo->err);
  if (level < 0 && e->mgr.msg_code == JWRN_JPEG_EOF) {
    std::snprintf(e->message, sizeof e->message, "the stream is truncated (it ends before the image does)");
    longjmp(e->jump, 1);
  }
}

struct ScanLimit {
  jpeg_progress_mgr mgr;
  ErrorState* errors;
};

void on_progress(j_common_ptr cinfo) {
  auto* limit = reinterpret_cast<ScanLimit*>(cinfo->progress);
  auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (cinfo->is_decompressor && d->input_scan_number > kMaxScans) {
    std::snprintf(limit->errors->message, sizeof limit->errors->message, "the stream holds more than %d scans", kMaxScans);
    longjmp(limit->errors->jump, 1);
  }
}

// The state the decode touches on both sides of the setjmp, outside its frame.
struct Decoding {
  jpeg_decompress_struct cinfo;
  ErrorState errors;
  ScanLimit limit;
  Image image;
  bool created = false;
  const char* refusal = nullptr;  // a valid stream kiln does not decode
};

// Returns false after a libjpeg error (errors.message says which).
bool run(Decoding& d, std::span<const uint8_t> bytes) {
  if (setjmp(d.errors.jump)) return false;
  jpeg_create_decompress(&d.cinfo);
  d.created = true;
  d.cinfo.progress = &d.limit.mgr;
  jpeg_mem_src(&d.cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&d.cinfo, TRUE);
  switch (d.cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: d.cinfo.out_color_space = JCS_GRAYSCALE; break;
    case JCS_YCbCr: case JCS_RGB: d.cinfo.out_color_space = JCS_RGB; break;
    default: d.refusal = "CMYK and YCCK JPEGs are not supported (grayscale, YCbCr and RGB ones are)"; return true;
  }
  check_size(d.cinfo.image_width, d.cinfo.image_height, "JPEG");
  jpeg_start_decompress(&d.cinfo);
  d.image = make_image(d.cinfo.output_width, d.cinfo.output_height, d.cinfo.output_components);
  size_t stride = size_t(d.image.width * d.image.channels);
  while (d.cinfo.output_scanline < d.cinfo.output_height) {
    JSAMPROW row = d.image.pixels.data() + stride * d.cinfo.output_scanline;
    jpeg_read_scanlines(&d.cinfo, &row, 1);
  }
  jpeg_finish_decompress(&d.cinfo);
  return true;
}

}  // namespace

Image decode_jpeg(std::span<const uint8_t> bytes) {
  Decoding d{};
  d.cinfo.err = jpeg_std_error(&d.errors.mgr);
  d.errors.mgr.error_exit = on_error;
  d.errors.mgr.emit_message = on_message;
  d.limit.mgr.progress_monitor = on_progress;
  d.limit.errors = &d.errors;
  bool ok = false;
  // check_size and make_image throw: not across libjpeg's frames, which lie only below run's calls into it.
  try {
    ok = run(d, bytes);
  } catch (...) {
    if (d.created) jpeg_destroy_decompress(&d.cinfo);
    throw;
  }
  if (d.created) jpeg_destroy_decompress(&d.cinfo);
  if (!ok) fail(ErrorCode::kParseError, "the JPEG stream cannot be decoded: ", d.errors.message);
  if (d.refusal) fail(ErrorCode::kUnsupported, d.refusal);
  return std::move(d.image);
}

}  // namespace kiln::image

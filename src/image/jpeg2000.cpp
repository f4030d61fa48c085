// JPEG 2000 (JP2 files and raw J2K codestreams) through OpenJPEG. Gray (with
// alpha) and RGB (with alpha) images of full-resolution components; samples
// of other precisions are scaled to 8 bits as Pillow does (signed ones offset
// to unsigned, rounded when narrowing), clamped where Pillow would wrap.
// OpenJPEG reports errors through the handlers set on its codec and by return values.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>

#include <openjpeg.h>

#include "codecs.h"

namespace kiln::image {

namespace {

struct Stream {
  std::span<const uint8_t> bytes;
  uint64_t at = 0;
  char message[300] = "";
};

OPJ_SIZE_T read_bytes(void* out, OPJ_SIZE_T size, void* user) {
  auto* s = static_cast<Stream*>(user);
  if (s->at >= s->bytes.size()) return OPJ_SIZE_T(-1);  // OpenJPEG's end of stream
  OPJ_SIZE_T n = std::min<OPJ_SIZE_T>(size, OPJ_SIZE_T(s->bytes.size() - s->at));
  std::memcpy(out, s->bytes.data() + s->at, n);
  s->at += n;
  return n;
}
OPJ_OFF_T skip_bytes(OPJ_OFF_T n, void* user) {
  auto* s = static_cast<Stream*>(user);
  if (n < 0 && uint64_t(-n) > s->at) return -1;
  s->at += uint64_t(n);
  return n;
}
OPJ_BOOL seek_to(OPJ_OFF_T at, void* user) {
  auto* s = static_cast<Stream*>(user);
  if (at < 0 || uint64_t(at) > s->bytes.size()) return OPJ_FALSE;
  s->at = uint64_t(at);
  return OPJ_TRUE;
}

void on_error(const char* message, void* user) {
  auto* s = static_cast<Stream*>(user);
  if (!s->message[0]) {
    std::snprintf(s->message, sizeof s->message, "%s", message);
    // OpenJPEG's messages end in a newline.
    size_t n = std::strlen(s->message);
    while (n && (s->message[n - 1] == '\n' || s->message[n - 1] == '\r')) s->message[--n] = 0;
  }
}
void quiet(const char*, void*) {}

// A sample as Pillow's j2ku unpackers make it 8 bits wide.
uint8_t to_8_bits(int32_t v, const opj_image_comp_t& c) {
  int prec = int(c.prec), shift = 8 - prec;
  int64_t x = int64_t(v) + (c.sgnd ? int64_t(1) << (prec - 1) : 0);
  if (shift < 0) x = (x + (int64_t(1) << (-shift - 1))) >> -shift;
  else x <<= shift;
  return uint8_t(std::clamp<int64_t>(x, 0, 255));
}

}  // namespace

Image decode_jpeg2000(std::span<const uint8_t> bytes) {
  Stream s{bytes};
  auto failed = [&](const char* what) {
    fail(ErrorCode::kParseError, "the JPEG 2000 stream cannot be decoded: ", what, s.message[0] ? ": " : "", s.message);
  };
  bool jp2 = bytes.size() >= 4 && bytes[0] == 0 && bytes[1] == 0;  // the JP2 signature box; else a J2K codestream
  std::unique_ptr<opj_codec_t, void (*)(opj_codec_t*)> codec(opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K),
                                                             opj_destroy_codec);
  if (!codec) fail(ErrorCode::kInternal, "OpenJPEG could not allocate its decoder");
  opj_set_error_handler(codec.get(), on_error, &s);
  opj_set_warning_handler(codec.get(), quiet, &s);
  opj_set_info_handler(codec.get(), quiet, &s);
  opj_dparameters_t parameters;
  opj_set_default_decoder_parameters(&parameters);
  // Strict: a truncated stream fails instead of decoding to a partial image.
  if (!opj_setup_decoder(codec.get(), &parameters) || !opj_decoder_set_strict_mode(codec.get(), OPJ_TRUE))
    failed("its decoder cannot be set up");
  std::unique_ptr<opj_stream_t, void (*)(opj_stream_t*)> stream(opj_stream_create(OPJ_J2K_STREAM_CHUNK_SIZE, OPJ_TRUE),
                                                                opj_stream_destroy);
  if (!stream) fail(ErrorCode::kInternal, "OpenJPEG could not allocate its stream");
  opj_stream_set_user_data(stream.get(), &s, nullptr);
  opj_stream_set_user_data_length(stream.get(), bytes.size());
  opj_stream_set_read_function(stream.get(), read_bytes);
  opj_stream_set_skip_function(stream.get(), skip_bytes);
  opj_stream_set_seek_function(stream.get(), seek_to);
  opj_image_t* raw = nullptr;
  bool header = opj_read_header(stream.get(), codec.get(), &raw);
  std::unique_ptr<opj_image_t, void (*)(opj_image_t*)> image(raw, opj_image_destroy);
  if (!header || !image) failed("its header is malformed");
  int64_t width = int64_t(image->x1) - image->x0, height = int64_t(image->y1) - image->y0;
  check_size(width, height, "JPEG 2000");
  uint32_t n = image->numcomps;
  if (n < 1 || n > 4) fail(ErrorCode::kUnsupported, "JPEG 2000 images of ", n, " components are not supported (1 to 4 are)");
  if (image->color_space == OPJ_CLRSPC_SYCC || image->color_space == OPJ_CLRSPC_EYCC || image->color_space == OPJ_CLRSPC_CMYK)
    fail(ErrorCode::kUnsupported, "JPEG 2000 images in YCC or CMYK colour spaces are not supported (gray and RGB ones are)");
  for (uint32_t c = 0; c < n; ++c)
    if (image->comps[c].dx != 1 || image->comps[c].dy != 1 || image->comps[c].prec < 1 || image->comps[c].prec > 31)
      fail(ErrorCode::kUnsupported, "JPEG 2000 component ", c, " is subsampled or of precision ", image->comps[c].prec,
           "; kiln decodes full-resolution components of 1 to 31 bits");
  if (!opj_decode(codec.get(), stream.get(), image.get()) || !opj_end_decompress(codec.get(), stream.get()))
    failed("its image data is truncated or corrupt");
  int64_t channels = n >= 3 ? 3 : 1;
  for (int64_t c = 0; c < channels; ++c)
    if (!image->comps[c].data || image->comps[c].w != uint32_t(width) || image->comps[c].h != uint32_t(height))
      failed("a component was not decoded at the image's size");
  Image out = make_image(width, height, channels);
  int64_t pixels = width * height;
  for (int64_t c = 0; c < channels; ++c) {
    const opj_image_comp_t& comp = image->comps[c];
    for (int64_t i = 0; i < pixels; ++i) out.pixels[size_t(i * channels + c)] = to_8_bits(comp.data[i], comp);
  }
  return out;
}

}  // namespace kiln::image

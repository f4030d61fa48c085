// ImageDecoder on the host: every format against the pixels Pillow decodes
// (tests/data/images, written by make_images.py beside them: ONNX's
// reference decodes with Pillow), as a node of a network through shape
// inference, the reference interpreter and `kiln build`; and hostile streams
// (truncated, unknown, declaring huge images), which must fail naming the node.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "image/image_decoder.h"
#include "kiln/builder.h"
#include "kiln/error.h"
#include "kiln/reference.h"
#include "pnm.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;

const std::filesystem::path kData = KILN_IMAGE_DATA_DIR;

std::vector<uint8_t> read_file(const std::string& name) {
  std::ifstream in(kData / name, std::ios::binary);
  if (!in) ADD_FAILURE() << "cannot read " << (kData / name);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The format of a test file by its name's extension (as supported_formats names it), and the library it needs ("" for none).
struct FormatOf {
  const char* extension;
  const char* name;
  const char* library;
};
constexpr FormatOf kFormats[] = {
    {".bmp", "BMP", ""},     {".jpg", "JPEG", "libjpeg-turbo"}, {".jp2", "JPEG 2000", "OpenJPEG"}, {".j2k", "JPEG 2000", "OpenJPEG"},
    {".png", "PNG", "libpng"}, {".ppm", "PNM", ""},             {".pgm", "PNM", ""},               {".pbm", "PNM", ""},
    {".tif", "TIFF", "libtiff"}, {".webp", "WebP", "libwebp"}};

const FormatOf& format_of(const std::string& file) {
  for (const FormatOf& f : kFormats)
    if (file.ends_with(f.extension)) return f;
  throw std::runtime_error("no format for " + file);
}

// A network of one ImageDecoder node "decode" over a graph input of `bytes` bytes.
ir::Network decoder_net(const std::string& format, std::optional<std::vector<uint8_t>> weight = std::nullopt, int64_t bytes = 0) {
  ir::Network net;
  ir::ValueId in;
  if (weight) {
    ir::TensorData t;
    t.dtype = DType::kUInt8;
    t.dims = {int64_t(weight->size())};
    t.data = Buffer::copy_of(weight->data(), weight->size());
    in = net.add_weight("encoded", std::move(t));
  } else {
    in = net.add_input("encoded", DType::kUInt8, {bytes ? Dim(bytes) : Dim::symbol("bytes")});
  }
  ir::Attributes attrs;
  attrs.set("pixel_format", format);
  net.add_output(net.add_op1(OpKind::kImageDecoder, {in}, attrs, "decode"));
  net.finalize();
  return net;
}

std::map<std::string, reference::Tensor> feed(const std::vector<uint8_t>& bytes) {
  reference::Tensor t;
  t.dtype = DType::kUInt8;
  t.dims = {int64_t(bytes.size())};
  t.data = Buffer::copy_of(bytes.data(), bytes.size());
  return {{"encoded", std::move(t)}};
}

reference::Tensor decode(const std::vector<uint8_t>& bytes, const std::string& format) {
  return reference::run(decoder_net(format), feed(bytes)).at(0);
}

std::vector<uint8_t> pixels_of(const reference::Tensor& t) {
  auto* p = reinterpret_cast<const uint8_t*>(t.data.data());
  return {p, p + t.data.size()};
}

// The error decoding `bytes` raises, "" if none.
std::string error_of(const std::vector<uint8_t>& bytes, const std::string& format = "RGB", ErrorCode* code = nullptr) {
  try {
    decode(bytes, format);
  } catch (const Error& e) {
    if (code) *code = e.code();
    return e.what();
  }
  return "";
}

struct Expected {
  std::string file, format;
  std::vector<int64_t> dims;
  std::vector<uint8_t> pixels;
};

std::vector<Expected> expected_cases() {
  std::ifstream in(kData / "expected.txt");
  std::vector<Expected> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    Expected e;
    int64_t h, w, c;
    std::string hex;
    fields >> e.file >> e.format >> h >> w >> c >> hex;
    e.dims = {h, w, c};
    for (size_t i = 0; i + 1 < hex.size(); i += 2) e.pixels.push_back(uint8_t(std::stoi(hex.substr(i, 2), nullptr, 16)));
    out.push_back(std::move(e));
  }
  return out;
}

TEST(ImageDecoder, EveryFormatDecodesAsPillowDoes) {
  std::vector<Expected> cases = expected_cases();
  ASSERT_GE(cases.size(), 90u) << "tests/data/images/expected.txt";
  int compared = 0;
  for (const Expected& e : cases) {
    SCOPED_TRACE(e.file + " " + e.format);
    const FormatOf& f = format_of(e.file);
    std::vector<uint8_t> bytes = read_file(e.file);
    if (!image::built_with(f.name)) {
      std::string error = error_of(bytes, e.format);
      EXPECT_NE(error.find(str("this kiln was built without ", f.library)), std::string::npos) << error;
      continue;
    }
    reference::Tensor got = decode(bytes, e.format);
    EXPECT_EQ(got.dtype, DType::kUInt8);
    ASSERT_EQ(got.dims, e.dims);
    std::vector<uint8_t> pixels = pixels_of(got);
    size_t first = std::mismatch(pixels.begin(), pixels.end(), e.pixels.begin()).first - pixels.begin();
    EXPECT_EQ(first, pixels.size()) << "first different byte " << first << ": " << int(pixels[first]) << ", Pillow "
                                    << int(e.pixels[first]);
    ++compared;
  }
  std::cout << compared << " of " << cases.size() << " cases compared with Pillow's pixels\n";
}

// Pillow's convert("L"), by hand: (R 19595 + G 38470 + B 7471 + 2^15) >> 16;
// BGR reverses the channels; a gray image is copied to RGB's three.
TEST(ImageDecoder, PixelFormats) {
  std::vector<uint8_t> rgb{255, 0, 0, 0, 255, 0, 0, 0, 255, 1, 1, 1, 10, 200, 30, 255, 255, 255};
  std::vector<uint8_t> image = pnm(3, 2, 3, rgb);
  EXPECT_EQ(pixels_of(decode(image, "RGB")), rgb);
  EXPECT_EQ(pixels_of(decode(image, "BGR")), (std::vector<uint8_t>{0, 0, 255, 0, 255, 0, 255, 0, 0, 1, 1, 1, 30, 200, 10, 255, 255, 255}));
  reference::Tensor gray = decode(image, "Grayscale");
  EXPECT_EQ(gray.dims, (std::vector<int64_t>{2, 3, 1}));
  EXPECT_EQ(pixels_of(gray), (std::vector<uint8_t>{76, 150, 29, 1, 124, 255}));
  reference::Tensor spread = decode(pnm(2, 1, 1, {7, 200}), "RGB");
  EXPECT_EQ(spread.dims, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(pixels_of(spread), (std::vector<uint8_t>{7, 7, 7, 200, 200, 200}));
}

// A weight's image is decoded by shape inference: the output's dims are
// known, `kiln build` needs no bound, and the plan runs on the reference.
// A graph input's dims are data-dependent sizes, which need a bound.
TEST(ImageDecoder, ShapesOfWeightsAndOfInputs) {
  std::vector<uint8_t> image = pnm(5, 2, 1, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  ir::Network weight = decoder_net("BGR", image);
  EXPECT_EQ(ir::shape_to_string(weight.value(weight.outputs()[0]).shape), "[2,5,3]");
  plan::Plan built = builder::build(weight, {}, "test");
  EXPECT_EQ(reference::run(built.network, {}).at(0).dims, (std::vector<int64_t>{2, 5, 3}));

  ir::Network input = decoder_net("Grayscale");
  const ir::Shape& shape = input.value(input.outputs()[0]).shape;
  ASSERT_EQ(shape.size(), 3u);
  EXPECT_FALSE(shape[0].is_constant());
  EXPECT_FALSE(shape[1].is_constant());
  EXPECT_EQ(shape[2], Dim(1));
  int64_t bytes = int64_t(image.size());
  builder::BuildOptions options;
  builder::add_input_profile(input, "encoded", {bytes}, {bytes}, {bytes}, options);
  try {
    builder::build(input, options, "test");
    ADD_FAILURE() << "built without a bound";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--data-dependent-bound decode_out_0=N"), std::string::npos) << e.what();
  }
  options.data_dependent_bounds = {{"decode_out_0", 64}};
  plan::Plan bounded = builder::build(input, options, "test");
  EXPECT_EQ(reference::run(bounded.network, feed(image)).at(0).dims, (std::vector<int64_t>{2, 5, 1}));
}

TEST(ImageDecoder, AttributesAndInputsAreChecked) {
  try {
    decoder_net("YUV");
    ADD_FAILURE() << "pixel_format YUV accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidModel);
    EXPECT_NE(std::string(e.what()).find("node 'decode' (ImageDecoder): pixel_format 'YUV'"), std::string::npos) << e.what();
  }
  ir::Network floats;
  floats.add_output(floats.add_op1(OpKind::kImageDecoder, {floats.add_input("x", DType::kFloat32, {Dim(4)})}, {}, "decode"));
  EXPECT_THROW(floats.finalize(), Error);
  // A weight that is no image fails when the model loads, naming the node.
  try {
    decoder_net("RGB", std::vector<uint8_t>{1, 2, 3});
    ADD_FAILURE() << "a weight of 3 bytes decoded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("node 'decode' (ImageDecoder): input 0"), std::string::npos) << e.what();
  }
}

// Every image of the set cut short, and streams of no known format: errors
// that name the node, never a crash or an image made up.
TEST(ImageDecoder, TruncatedAndUnknownStreamsFail) {
  int truncated = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kData)) {
    std::string name = entry.path().filename().string();
    if (name.starts_with("bomb") || name.ends_with(".txt") || name.ends_with(".py")) continue;
    SCOPED_TRACE(name);
    std::vector<uint8_t> bytes = read_file(name);
    for (size_t keep : {bytes.size() / 2, bytes.size() - 1, size_t(3), size_t(0)}) {
      SCOPED_TRACE(keep);
      ErrorCode code = ErrorCode::kInternal;
      std::string error = error_of(std::vector<uint8_t>(bytes.begin(), bytes.begin() + std::ptrdiff_t(keep)), "RGB", &code);
      // PNG and JPEG end in markers past the pixels; kept whole, the pixels decode (as in Pillow).
      if (keep == bytes.size() - 1 && (name.ends_with(".png") || name.ends_with(".jpg") || name.ends_with(".pbm") ||
                                       name.ends_with(".ppm") || name.ends_with(".tif") || name.ends_with(".j2k") ||
                                       name.ends_with(".jp2")))
        continue;
      EXPECT_NE(error, "") << "decoded " << keep << " of " << bytes.size() << " bytes";
      EXPECT_NE(code, ErrorCode::kInternal) << error;
      EXPECT_NE(error.find("node 'decode' (ImageDecoder): input 0"), std::string::npos) << error;
      ++truncated;
    }
  }
  EXPECT_GT(truncated, 60);
  ErrorCode code = ErrorCode::kInternal;
  std::string error = error_of({'G', 'I', 'F', '8', '9', 'a', 0, 0}, "RGB", &code);
  EXPECT_EQ(code, ErrorCode::kUnsupported);
  EXPECT_NE(error.find("starts with no image signature kiln knows; it reads BMP, JPEG"), std::string::npos) << error;
}

// Streams that declare huge images (the set's bomb.* files, headers patched)
// fail before anything of that size is allocated, saying so.
TEST(ImageDecoder, HugeDeclaredImagesAreRefused) {
  for (const char* name : {"bomb.bmp", "bomb.ppm", "bomb.png", "bomb.jpg", "bomb.tif", "bomb.j2k"}) {
    SCOPED_TRACE(name);
    ErrorCode code = ErrorCode::kInternal;
    std::string error = error_of(read_file(name), "RGB", &code);
    if (!image::built_with(format_of(name).name)) {
      EXPECT_NE(error.find("this kiln was built without"), std::string::npos) << error;
      continue;
    }
    EXPECT_EQ(code, ErrorCode::kUnsupported) << error;
    EXPECT_NE(error.find("pixels, more than kiln's limit of 268435456 pixels (2^28) an image"), std::string::npos) << error;
  }
  // PNM by hand: numbers too long for a header, and a raster shorter than its dims.
  std::string long_width = "P6\n12345678901 1\n255\n";
  EXPECT_NE(error_of({long_width.begin(), long_width.end()}).find("the PNM width has more than 10 digits"), std::string::npos);
  std::string short_raster = "P6\n4 4\n255\n\1\2\3";
  EXPECT_NE(error_of({short_raster.begin(), short_raster.end()}).find("its raster needs 48 bytes, 3 are left"), std::string::npos);
}

}  // namespace
}  // namespace kiln::testing

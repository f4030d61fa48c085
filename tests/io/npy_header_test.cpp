// The .npy reader's header parser and data checks, byte by byte: what numpy
// writes is read exactly; anything else is a kiln::Error naming the file,
// never a crash, a guess or a silently wrong tensor.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/npy.h"
#include "kiln/reference.h"

namespace kiln::io {
namespace {

// A .npy file of format `major`.0 with this header text and data.
std::string npy(const std::string& header, const std::string& data, int major = 1) {
  std::string out("\x93NUMPY", 6);
  out += char(major);
  out += '\0';
  for (int i = 0; i < (major == 1 ? 2 : 4); ++i) out += char((header.size() >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string dict(const std::string& descr, const std::string& shape, const std::string& fortran = "False") {
  return "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }\n";
}

std::string floats(std::vector<float> values) { return std::string(reinterpret_cast<char*>(values.data()), values.size() * 4); }

// The error parsing `bytes` raises; its message must name the file.
Error refused(const std::string& bytes) {
  try {
    parse_npy(bytes, "input.npy");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("input.npy"), std::string::npos) << e.what();
    EXPECT_NE(e.code(), ErrorCode::kInternal) << e.what();
    return e;
  }
  ADD_FAILURE() << "accepted: " << bytes.substr(0, 200);
  return Error(ErrorCode::kInternal, "");
}

std::string message(const std::string& bytes) { return refused(bytes).what(); }

std::vector<int64_t> dims_of(const std::string& shape, size_t bytes) {
  return parse_npy(npy(dict("|u1", shape), std::string(bytes, '\1'))).dims;
}

TEST(NpyHeader, ShapesAsPythonSpellsThem) {
  EXPECT_EQ(dims_of("()", 1), std::vector<int64_t>{});
  EXPECT_EQ(dims_of("(5,)", 5), std::vector<int64_t>{5});
  EXPECT_EQ(dims_of("( 5 , )", 5), std::vector<int64_t>{5});
  EXPECT_EQ(dims_of("(2, 3)", 6), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(dims_of("(2,3,)", 6), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(dims_of("(0, 7)", 0), (std::vector<int64_t>{0, 7}));
  EXPECT_EQ(dims_of("(1, 1, 1, 1, 1, 1, 1, 1)", 1), std::vector<int64_t>(8, 1));
}

TEST(NpyHeader, DimsAreStrictDecimalIntegers) {
  for (const char* shape : {"(-4,)", "(+4,)", "(1e0x4,)", "(1e3,)", "(4.0,)", "(4,,)", "(,4)", "(,)", "(5)", "(0x10,)",
                            "(04,)", "(4L,)", "(1_000,)", "(2 3)", "(4", "4,", "[4]", "(4,) junk", "(9223372036854775808,)",
                            "(99999999999999999999999,)"}) {
    std::string what = message(npy(dict("<f4", shape), std::string(16, '\0')));
    EXPECT_NE(what.find("bad .npy header"), std::string::npos) << shape << ": " << what;
  }
  // Each dim fits, their product does not.
  EXPECT_EQ(refused(npy(dict("<f4", "(4294967296, 4294967296)"), "")).code(), ErrorCode::kParseError);
  EXPECT_EQ(refused(npy(dict("<f8", "(2305843009213693952,)"), "")).code(), ErrorCode::kParseError);
}

TEST(NpyHeader, KeysInAnyOrderExactlyOnce) {
  std::string data = floats({1, 2});
  auto t = parse_npy(npy("{\"shape\": (2,), \"fortran_order\": False, \"descr\": \"<f4\"}", data));
  EXPECT_EQ(t.dims, std::vector<int64_t>{2});
  EXPECT_EQ(t.dtype, DType::kFloat32);
  EXPECT_NE(message(npy("{'descr': '<f4', 'shape': (2,)}", data)).find("'fortran_order' is missing"), std::string::npos);
  EXPECT_NE(message(npy("{'descr': '<f4', 'fortran_order': False}", data)).find("'shape' is missing"), std::string::npos);
  EXPECT_NE(message(npy("{'fortran_order': False, 'shape': (2,)}", data)).find("'descr' is missing"), std::string::npos);
  EXPECT_NE(message(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'shape': (1,)}", data)).find("twice"),
            std::string::npos);
  EXPECT_NE(message(npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", data)).find("twice"),
            std::string::npos);
  EXPECT_NE(message(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", data)).find("unknown key"),
            std::string::npos);
  for (const char* bad : {"", "{", "}", "{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}",
                          "{'descr': '<f4', 'fortran_order': false, 'shape': (2,)}",
                          "{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2,)}", "{'descr: '<f4'}",
                          "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} }", "{descr: '<f4'}",
                          "{'descr': '<f4', 'fortran_order': False, 'shape': (2,),,}"})
    refused(npy(bad, data));
}

TEST(NpyHeader, LongHeadersAreRefusedWithoutCrashing) {
  // 50 KB in every place a regex could have recursed on.
  std::string big(50000, ' ');
  refused(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)" + big + "}" + big, floats({1, 2})));
  refused(npy("{'descr': '" + std::string(50000, 'f') + "', 'fortran_order': False, 'shape': (2,)}", floats({1, 2})));
  std::string ones = "(";
  for (int i = 0; i < 12000; ++i) ones += "1, ";
  EXPECT_NE(message(npy(dict("<f4", ones + ")"), floats({1}))).find("more than 64 dims"), std::string::npos);
  refused(npy(dict("<f4", "(" + std::string(50000, '1') + ",)"), floats({1})));
  refused(npy(std::string(50000, '{'), ""));
  refused(npy(std::string(50000, '('), ""));
  // Within the cap, the padding numpy adds is fine; past it the header is not even read.
  EXPECT_NO_THROW(parse_npy(npy(dict("<f4", "(2,)") + big, floats({1, 2}))));
  std::string huge = dict("<f4", "(2,)") + std::string(70000, ' ');
  EXPECT_NE(message(npy(huge, floats({1, 2}), 2)).find("at most 65536"), std::string::npos);
  std::string claims("\x93NUMPY\x02\x00\xff\xff\xff\xff", 12);  // a 4 GiB header in a 12-byte file
  EXPECT_NE(message(claims).find("at most 65536"), std::string::npos);
}

TEST(NpyHeader, DataMustMatchTheShapeExactly) {
  std::string header = dict("<f4", "(2, 2)");
  EXPECT_NO_THROW(parse_npy(npy(header, std::string(16, 'x'))));
  EXPECT_NE(message(npy(header, std::string(15, 'x'))).find("has 15 data bytes"), std::string::npos);
  EXPECT_NE(message(npy(header, std::string(17, 'x'))).find("has 17 data bytes"), std::string::npos);
  refused(npy(header, ""));
  refused(npy(dict("<f4", "()"), ""));  // a scalar has one element
  EXPECT_NO_THROW(parse_npy(npy(dict("<f4", "(3, 0)"), "")));
  refused(npy(dict("<f4", "(3, 0)"), "x"));
  refused(std::string("\x93NUMPY\x01\x00\x40\x00{'descr'", 17));  // header cut short
  refused(std::string("\x93NUMPY\x02\x00\x01", 9));                 // preamble cut short
  refused("\x93NUMPX" + std::string(20, ' '));
}

TEST(NpyHeader, VersionsTwoAndThreeAndNoOthers) {
  std::string data = floats({1.5f, -2});
  for (int major : {2, 3}) {
    auto t = parse_npy(npy(dict("<f4", "(2,)"), data, major));
    EXPECT_EQ(ir::read_doubles(t), (std::vector<double>{1.5, -2})) << major;
  }
  for (int major : {0, 4, 255}) EXPECT_EQ(refused(npy(dict("<f4", "(2,)"), data, major)).code(), ErrorCode::kUnsupported);
  std::string minor = npy(dict("<f4", "(2,)"), data);
  minor[7] = 1;
  EXPECT_EQ(refused(minor).code(), ErrorCode::kUnsupported);
}

TEST(NpyHeader, FortranOrderIsReadAsRowMajor) {
  // [[1, 2, 3], [4, 5, 6]] stored column by column.
  auto t = parse_npy(npy(dict("<f4", "(2, 3)", "True"), floats({1, 4, 2, 5, 3, 6})));
  EXPECT_EQ(t.dims, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ir::read_doubles(t), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  // A [2, 3, 2] tensor whose element (i, j, k) is 100i + 10j + k.
  std::vector<float> column_major;
  for (int k = 0; k < 2; ++k)
    for (int j = 0; j < 3; ++j)
      for (int i = 0; i < 2; ++i) column_major.push_back(float(100 * i + 10 * j + k));
  t = parse_npy(npy(dict("<f4", "(2, 3, 2)", "True"), floats(column_major)));
  std::vector<double> row_major;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 2; ++k) row_major.push_back(100 * i + 10 * j + k);
  EXPECT_EQ(ir::read_doubles(t), row_major);
  EXPECT_EQ(ir::read_doubles(parse_npy(npy(dict("<f4", "(3,)", "True"), floats({7, 8, 9})))), (std::vector<double>{7, 8, 9}));
  EXPECT_EQ(parse_npy(npy(dict("<f4", "(0, 3)", "True"), "")).dims, (std::vector<int64_t>{0, 3}));
}

TEST(NpyHeader, BoolBytesAreNormalized) {
  std::string bytes("\x00\x01\x02\xff\x80\x00", 6);
  for (const char* descr : {"|b1", "<b1", "|?"}) {
    auto t = parse_npy(npy(dict(descr, "(6,)"), bytes));
    ASSERT_EQ(t.dtype, DType::kBool);
    std::vector<uint8_t> raw(t.data.size());
    std::memcpy(raw.data(), t.data.data(), raw.size());
    EXPECT_EQ(raw, (std::vector<uint8_t>{0, 1, 1, 1, 1, 0})) << descr;  // every byte a valid C++ bool
  }
}

TEST(NpyHeader, ByteOrders) {
  std::string big_endian;  // 1.0f and 2.0f, most significant byte first
  for (float f : {1.0f, 2.0f}) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    for (int i = 3; i >= 0; --i) big_endian += char((bits >> (8 * i)) & 0xff);
  }
  EXPECT_EQ(ir::read_doubles(parse_npy(npy(dict(">f4", "(2,)"), big_endian))), (std::vector<double>{1, 2}));
  EXPECT_EQ(ir::read_doubles(parse_npy(npy(dict("=f4", "(2,)"), floats({1, 2})))), (std::vector<double>{1, 2}));
  std::string big_int("\0\0\0\0\0\0\x01\x02", 8);
  EXPECT_EQ(ir::read_doubles(parse_npy(npy(dict(">i8", "(1,)"), big_int))), (std::vector<double>{258}));
  EXPECT_EQ(parse_npy(npy(dict(">i1", "(1,)"), "\x05")).dtype, DType::kInt8);
  ir::TensorData u32 = parse_npy(npy(dict(">u4", "(1,)"), std::string("\xff\xff\xff\xfe", 4)));
  EXPECT_EQ(u32.dtype, DType::kUInt32);
  EXPECT_EQ(ir::read_ints(u32), (std::vector<int64_t>{4294967294}));
  ir::TensorData i16 = parse_npy(npy(dict(">i2", "(1,)"), std::string("\xff\xfe", 2)));
  EXPECT_EQ(ir::read_ints(i16), (std::vector<int64_t>{-2}));
  for (const char* descr : {"|f4", ">V2", "f4", "<c8", "<f16", "O", "|u2", "<u16", "<f4 ", "", "<U0", "|S0"})
    EXPECT_EQ(refused(npy(dict(descr, "(1,)"), "abcd")).code(), ErrorCode::kUnsupported) << descr;
}

TEST(NpyHeader, RoundTripOfEveryDtypeAndShape) {
  auto path = std::filesystem::temp_directory_path() / ("kiln_npy_header_test_" + std::to_string(getpid()) + ".npy");
  for (DType d : kAllDTypes)
    for (std::vector<int64_t> dims : {std::vector<int64_t>{}, {5}, {2, 3}, {1, 2, 3}, {0, 4}}) {
      int64_t n = ir::checked_numel(dims);
      std::vector<double> values;
      for (int64_t i = 0; i < n; ++i) values.push_back(double(i % 3 == 0 ? 0 : i));
      auto t = reference::make_tensor(d, dims, values);
      write_npy(path, t);
      auto back = read_npy(path);
      EXPECT_EQ(back.dtype, npy_read_back_dtype(d)) << dtype_name(d);
      EXPECT_EQ(back.dims, dims) << dtype_name(d);
      ASSERT_EQ(back.data.size(), t.data.size());
      if (t.data.size()) {
        EXPECT_EQ(std::memcmp(back.data.data(), t.data.data(), t.data.size()), 0) << dtype_name(d);
      }
    }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace kiln::io

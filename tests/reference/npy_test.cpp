#include <gtest/gtest.h>

#include <filesystem>

#include "kiln/error.h"
#include "kiln/npy.h"
#include "kiln/reference.h"

namespace kiln::io {
namespace {

TEST(Npy, RoundTripEveryDtype) {
  auto path = std::filesystem::temp_directory_path() / "kiln_npy_test.npy";
  for (DType d : kAllDTypes) {
    auto t = reference::make_tensor(d, {2, 3}, {1, 0, 3, 4, 5, 6});
    write_npy(path, t);
    auto back = read_npy(path);
    EXPECT_EQ(back.dtype, npy_read_back_dtype(d)) << dtype_name(d);
    EXPECT_EQ(back.dims, t.dims);
    ASSERT_EQ(back.data.size(), t.data.size());
    EXPECT_EQ(std::memcmp(back.data.data(), t.data.data(), t.data.size()), 0) << dtype_name(d);
  }
  std::filesystem::remove(path);
}

TEST(Npy, RejectsMalformedFiles) {
  EXPECT_THROW(parse_npy("hello"), Error);
  std::string header("\x93NUMPY\x01\x00", 8);
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
  header += char(dict.size());
  header += '\0';
  EXPECT_THROW(parse_npy(header + dict + std::string(15, 'x')), Error);  // 15 of 16 data bytes
  EXPECT_NO_THROW(parse_npy(header + dict + std::string(16, 'x')));
  std::string complex = "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }";
  std::string h2("\x93NUMPY\x01\x00", 8);
  h2 += char(complex.size());
  h2 += '\0';
  EXPECT_THROW(parse_npy(h2 + complex + std::string(8, 'x')), Error);
}

}  // namespace
}  // namespace kiln::io

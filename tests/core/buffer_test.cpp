#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "kiln/buffer.h"
#include "kiln/error.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

TEST(Buffer, FromStringKeepsBytesWithoutCopy) {
  std::string s(1000, 'x');
  const char* original = s.data();
  Buffer b = Buffer::from_string(std::move(s));
  EXPECT_EQ(b.size(), 1000u);
  EXPECT_EQ(reinterpret_cast<const char*>(b.data()), original);
}

TEST(Buffer, BorrowViewsTheCallersMemory) {
  std::vector<std::byte> bytes(64, std::byte{7});
  Buffer b = Buffer::borrow(bytes.data(), bytes.size());
  Buffer tail = b.slice(60, 4);
  bytes[61] = std::byte{9};  // a view, not a copy: the change shows through
  EXPECT_EQ(b.data(), bytes.data());
  EXPECT_EQ(tail.size(), 4u);
  EXPECT_EQ(tail.data()[1], std::byte{9});
  EXPECT_THROW(b.slice(60, 5), Error);
}

TEST(Buffer, MapFileRange) {
  fs::path p = fs::temp_directory_path() / "kiln_buffer_test.bin";
  {
    std::ofstream out(p, std::ios::binary);
    for (int i = 0; i < 10000; ++i) out.put(char(i % 251));
  }
  Buffer b = Buffer::map_file(p, 5000, 100);
  ASSERT_EQ(b.size(), 100u);
  EXPECT_EQ(uint8_t(b.data()[0]), 5000 % 251);
  EXPECT_EQ(Buffer::map_file(p, 0, -1).size(), 10000u);
  EXPECT_THROW(Buffer::map_file(p, 9990, 100), Error);
  EXPECT_THROW(Buffer::map_file(p, 20000, -1), Error);
  EXPECT_THROW(Buffer::map_file(p / "missing", 0, -1), Error);
  fs::remove(p);
}

}  // namespace
}  // namespace kiln

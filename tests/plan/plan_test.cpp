#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "kiln/builder.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/plan.h"
#include "kiln/reference.h"
#include "small_plan.h"

namespace kiln::plan {
namespace {

using ir::Dim;
using ir::OpKind;

using testing::bytes_of;
Plan small_plan() { return testing::small_plan(4); }

TEST(Plan, RoundTripKeepsEverything) {
  Plan p = small_plan();
  std::string bytes = serialize(p);
  Plan back = deserialize(bytes_of(bytes));
  EXPECT_EQ(dump_network(back.network), dump_network(p.network));
  EXPECT_EQ(back.arena_offset, p.arena_offset);
  EXPECT_EQ(back.arena_bytes, p.arena_bytes);
  EXPECT_EQ(back.source, "small");
  EXPECT_EQ(serialize(back), bytes);  // stable
  auto x = reference::make_tensor(DType::kFloat32, {3, 8}, std::vector<double>(24, 0.5));
  auto a = reference::run(p.network, {{"x", x}}), c = reference::run(back.network, {{"x", x}});
  EXPECT_EQ(ir::read_doubles(a[0]), ir::read_doubles(c[0]));
}

TEST(Plan, WeightsAreAlignedInTheFile) {
  Plan p = small_plan();
  Plan back = deserialize(bytes_of(serialize(p)));
  for (auto& v : back.network.values())
    if (v.weight && v.weight->data.size()) {
      // Offsets within the file are multiples of the alignment; the copy we parsed from is heap-aligned.
      EXPECT_EQ(reinterpret_cast<uintptr_t>(v.weight->data.data()) % 16, 0u) << v.name;
    }
}

TEST(Plan, FileSaveAndLoad) {
  auto path = std::filesystem::temp_directory_path() / "kiln_plan_test.kiln";
  Plan p = small_plan();
  save(p, path);
  Plan back = load(path);
  EXPECT_EQ(dump_network(back.network), dump_network(p.network));
  std::filesystem::remove(path);
  EXPECT_THROW(load(path), Error);
}

TEST(Plan, EveryTruncationIsRejected) {
  std::string bytes = serialize(small_plan());
  for (size_t n = 0; n < bytes.size(); n += (n < 256 ? 1 : 7)) {
    try {
      deserialize(bytes_of(bytes.substr(0, n)));
      FAIL() << "truncated to " << n << " bytes was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kParseError) << e.what();
    }
  }
}

TEST(Plan, BitFlipsAreRejected) {
  std::string bytes = serialize(small_plan());
  std::mt19937 rng(99);
  for (int trial = 0; trial < 500; ++trial) {
    std::string flipped = bytes;
    size_t at = 24 + rng() % (flipped.size() - 24);  // past magic+version: those have their own checks
    flipped[at] ^= char(1 << (rng() % 8));
    EXPECT_THROW(deserialize(bytes_of(flipped)), Error) << "flip at " << at;
  }
}

TEST(Plan, OtherVersionsAndGarbage) {
  EXPECT_EQ(kFormatVersion, 3u);  // 3: ops by name
  // Older plans (2 stored ops by their position in the op list) and newer ones: rebuild.
  for (uint32_t version : {kFormatVersion - 1, kFormatVersion + 1}) {
    std::string bytes = serialize(small_plan());
    bytes[8] = char(version);
    try {
      deserialize(bytes_of(bytes), "old.kiln");
      FAIL() << version;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
      EXPECT_NE(std::string(e.what()).find(str("old.kiln has plan format version ", version)), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("Rebuild it with `kiln build`"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(deserialize(bytes_of("")), Error);
  EXPECT_THROW(deserialize(bytes_of("KILNPLAN but then nonsense of some length ....................")), Error);
  EXPECT_THROW(deserialize(bytes_of(std::string(4096, '\xff'))), Error);
}

}  // namespace
}  // namespace kiln::plan

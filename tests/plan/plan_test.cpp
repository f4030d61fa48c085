#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <random>

#include "kiln/builder.h"
#include "kiln/bytes.h"
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

// Every dtype as an input, a weight, a Cast's 'to' and an output: the codes
// (appended, so older plans keep theirs) and the bytes come back unchanged.
TEST(Plan, EveryDtypeRoundTrips) {
  auto int_attr = [](const char* name, int64_t v) {
    ir::Attributes a;
    a.set(name, v);
    return a;
  };
  ir::Network net;
  std::map<std::string, reference::Tensor> feeds;
  ir::ValueId f = net.add_input("f", DType::kFloat32, {Dim(3)});
  feeds["f"] = reference::make_tensor(DType::kFloat32, {3}, {2.5, -1, 300});
  for (DType d : kAllDTypes) {
    std::string name(dtype_name(d));
    ir::ValueId x = net.add_input(name, d, {Dim(3)});
    ir::ValueId w = net.add_weight(name + "_w", reference::make_tensor(d, {3}, {1, 0, 7}));
    feeds[name] = reference::make_tensor(d, {3}, {0, 1, 1});
    if (is_narrow(d)) {  // cast, not concatenated: the narrow types are only cast and moved
      net.add_output(net.add_op1(OpKind::kCast, {x}, int_attr("to", int64_t(DType::kFloat32))));
      net.add_output(net.add_op1(OpKind::kCast, {w}, int_attr("to", int64_t(DType::kFloat32))));
    } else {
      net.add_output(net.add_op1(OpKind::kConcat, {x, w}, int_attr("axis", 0)));
    }
    net.add_output(net.add_op1(OpKind::kCast, {f}, int_attr("to", int64_t(d))));
  }
  net.finalize();
  Plan p = builder::build(net, {}, "dtypes");
  std::string bytes = serialize(p);
  Plan back = deserialize(bytes_of(bytes));
  EXPECT_EQ(dump_network(back.network), dump_network(p.network));
  EXPECT_EQ(serialize(back), bytes);
  for (DType d : kAllDTypes) EXPECT_EQ(back.network.value(*back.network.find_value(std::string(dtype_name(d)))).dtype, d);
  auto a = reference::run(p.network, feeds), c = reference::run(back.network, feeds);
  ASSERT_EQ(a.size(), c.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].dtype, c[i].dtype) << i;
    EXPECT_EQ(a[i].data.size(), c[i].data.size()) << i;
    EXPECT_EQ(std::memcmp(a[i].data.data(), c[i].data.data(), a[i].data.size()), 0) << i;
  }
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
  EXPECT_EQ(kFormatVersion, 5u);  // 5: graph attributes (subgraphs), 4: optimization profiles
  EXPECT_EQ(kOldestReadableFormatVersion, 3u);  // 3: ops by name
  // Older plans (2 stored ops by their position in the op list) and newer ones
  // (as a kiln that reads format 4 refuses the subgraphs of 5): rebuild.
  for (uint32_t version : {kOldestReadableFormatVersion - 1, kFormatVersion + 1}) {
    std::string bytes = serialize(small_plan());
    bytes[8] = char(version);
    try {
      deserialize(bytes_of(bytes), "old.kiln");
      FAIL() << version;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
      EXPECT_NE(std::string(e.what()).find(str("old.kiln has plan format version ", version)), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("reads versions 3 to 5. Rebuild it with `kiln build`"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(deserialize(bytes_of("")), Error);
  EXPECT_THROW(deserialize(bytes_of("KILNPLAN but then nonsense of some length ....................")), Error);
  EXPECT_THROW(deserialize(bytes_of(std::string(4096, '\xff'))), Error);
}

TEST(Plan, SeveralProfilesRoundTrip) {
  Plan p = testing::two_profile_plan(16);
  ASSERT_EQ(p.profiles.size(), 2u);
  std::string bytes = serialize(p);
  Plan back = deserialize(bytes_of(bytes));
  ASSERT_EQ(back.profiles.size(), 2u);
  for (size_t k = 0; k < 2; ++k) {
    const ir::DimRange &a = p.profiles[k].at("n"), &b = back.profiles[k].at("n");
    EXPECT_EQ(std::tuple(a.min, a.opt, a.max), std::tuple(b.min, b.opt, b.max)) << k;
  }
  EXPECT_EQ(back.profiles[1].at("n").min, 5);
  EXPECT_EQ(back.network.dim_ranges().at("n").max, 16);  // the union
  EXPECT_EQ(back.format_version, kFormatVersion);
  EXPECT_EQ(serialize(back), bytes);  // stable
}

TEST(Plan, EveryTruncationOfAPlanWithSeveralProfilesIsRejected) {
  std::string bytes = serialize(testing::two_profile_plan(16));
  for (size_t n = 0; n < bytes.size(); n += (n < 512 ? 1 : 7)) {
    try {
      deserialize(bytes_of(bytes.substr(0, n)));
      FAIL() << "truncated to " << n << " bytes was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kParseError) << e.what();
    }
  }
}

TEST(Plan, BitFlipsInAPlanWithSeveralProfilesAreRejected) {
  std::string bytes = serialize(testing::two_profile_plan(16));
  std::mt19937 rng(7);
  for (int trial = 0; trial < 500; ++trial) {
    std::string flipped = bytes;
    size_t at = 24 + rng() % (flipped.size() - 24);
    flipped[at] ^= char(1 << (rng() % 8));
    EXPECT_THROW(deserialize(bytes_of(flipped)), Error) << "flip at " << at;
  }
}

// A version 3 plan is a version 4 plan without the profiles section: it loads
// as one profile, its ranges.
TEST(Plan, AVersion3PlanLoadsAsOneProfile) {
  Plan p = small_plan();
  std::string file = serialize(p);
  uint64_t meta_size, weights_size;
  std::memcpy(&meta_size, file.data() + 16, 8);
  std::memcpy(&weights_size, file.data() + 24, 8);
  std::string meta = file.substr(48, meta_size), weights = file.substr(file.size() - weights_size);
  ByteWriter section;  // what version 4 writes after the ranges for this plan: one profile, n 1/2/4
  section.put<uint64_t>(1);
  section.put<uint64_t>(1);
  section.put_string("n");
  for (int64_t v : {1, 2, 4}) section.put<int64_t>(v);
  size_t at = meta.find(section.bytes());
  ASSERT_NE(at, std::string::npos);
  meta.erase(at, section.size());
  std::string v3 = frame(meta, weights);
  v3[8] = 3;
  Plan back = deserialize(bytes_of(v3), "v3.kiln");
  EXPECT_EQ(back.format_version, 3u);
  ASSERT_EQ(back.profiles.size(), 1u);
  EXPECT_EQ(back.profiles[0].at("n").max, 4);
  EXPECT_EQ(dump_network(back.network), dump_network(p.network));
  EXPECT_EQ(serialize(back), file);  // written again as version 4
  // A version 4 reader does not skip the section: the same bytes as version 4 are refused.
  std::string v4 = frame(meta, weights);
  EXPECT_THROW(deserialize(bytes_of(v4)), Error);
}

}  // namespace
}  // namespace kiln::plan

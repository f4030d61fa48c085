// The loader's checks behind the checksums: a plan file whose checksums are
// right but whose memory plan, weights or ranges are not must be refused
// before anything uses them.
#include <gtest/gtest.h>

#include <cstring>
#include <iostream>

#include "kiln/builder.h"
#include "kiln/bytes.h"
#include "kiln/error.h"
#include "kiln/plan.h"
#include "kiln/reference.h"
#include "small_plan.h"

namespace kiln::plan {
namespace {

using ir::Dim;
using ir::OpKind;

using testing::bytes_of;
Plan small_plan() { return testing::small_plan(64); }

// The message of the kParseError that loading `bytes` must raise.
std::string parse_error(const std::string& bytes) {
  try {
    deserialize(bytes_of(bytes), "test.kiln");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kParseError) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "the plan was accepted";
  return "";
}

// The first value with an arena slot, and its slot's size at the largest shapes.
size_t first_arena_value(const Plan& p) {
  for (size_t v = 0; v < p.arena_offset.size(); ++v)
    if (p.arena_offset[v] >= 0) return v;
  ADD_FAILURE() << "no value in the arena";
  return 0;
}

TEST(PlanChecks, TheBuiltPlanPasses) {
  Plan p = small_plan();
  Plan back = deserialize(bytes_of(serialize(p)));
  EXPECT_EQ(back.arena_offset, p.arena_offset);
}

TEST(PlanChecks, AnArenaTooSmallForTheLargestShapesIsRefused) {
  Plan p = small_plan();
  int64_t need = p.arena_bytes;
  // n's max is 64: a [64,8] float tensor needs 2048 bytes, more than the arena planned for n=1.
  p.arena_bytes = 256;
  std::string what = parse_error(serialize(p));
  EXPECT_NE(what.find("test.kiln"), std::string::npos) << what;
  EXPECT_NE(what.find("2048 bytes"), std::string::npos) << what;
  EXPECT_NE(what.find("arena of 256 bytes"), std::string::npos) << what;
  p.arena_bytes = need - int64_t(kArenaAlignment);
  parse_error(serialize(p));
}

TEST(PlanChecks, ArenaOffsetsMustLieInsideTheArenaAndBeAligned) {
  Plan p = small_plan();
  size_t v = first_arena_value(p);
  std::string name = p.network.value(ir::ValueId(v)).name;
  for (int64_t bad : {p.arena_bytes, p.arena_bytes - int64_t(kArenaAlignment), int64_t(8), int64_t(-2), INT64_MAX,
                      INT64_MIN}) {
    Plan q = p;
    q.arena_offset[v] = bad;
    std::string what = parse_error(serialize(q));
    EXPECT_NE(what.find("'" + name + "'"), std::string::npos) << what;
  }
  Plan q = p;
  q.arena_bytes = -256;
  parse_error(serialize(q));
  q.arena_bytes = p.arena_bytes + 1;  // not a multiple of the alignment
  parse_error(serialize(q));
}

TEST(PlanChecks, EveryIntermediateNeedsASlotAndOnlyThey) {
  Plan p = small_plan();
  size_t v = first_arena_value(p);
  Plan q = p;
  q.arena_offset[v] = -1;  // an intermediate with nowhere to live
  EXPECT_NE(parse_error(serialize(q)).find("has no arena slot"), std::string::npos);
  for (ir::ValueId io : {p.network.inputs()[0], p.network.outputs()[0], *p.network.find_value("w")}) {
    q = p;
    q.arena_offset[size_t(io)] = 0;  // inputs, outputs and weights live elsewhere
    EXPECT_NE(parse_error(serialize(q)).find(p.network.value(io).name), std::string::npos);
  }
}

// What the loader requires, the builder requires first: kiln never writes a plan it would refuse.
TEST(PlanChecks, TheBuilderRefusesInputsWithoutBoundedRanges) {
  ir::Network net;
  auto x = net.add_input("x", DType::kFloat32, {Dim::symbol("n"), Dim(8)});
  net.add_output(net.add_op1(OpKind::kRelu, {x}));  // no intermediate needs n's range
  net.finalize();
  try {
    builder::build(net, {}, "no range");
    FAIL() << "built a plan whose input has no range";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("input 'x' dim 0 ('n') has no range"), std::string::npos) << e.what();
  }
  builder::BuildOptions options;
  EXPECT_THROW(builder::add_input_profile(net, "x", {1, 8}, {1, 8}, {kMaxRangeValue + 1, 8}, options), Error);
  builder::add_input_profile(net, "x", {1, 8}, {1, 8}, {kMaxRangeValue, 8}, options);
  EXPECT_NO_THROW(deserialize(bytes_of(serialize(builder::build(net, options, "bounded")))));
  options.profiles[0]["n"].max = kMaxRangeValue + 1;
  EXPECT_THROW(builder::build(net, options, "unbounded"), Error);
}

// A plan file's two sections, to patch and frame() again with fresh checksums.
struct Sections {
  std::string meta, weights;
  std::string framed() const { return frame(meta, weights); }
};

Sections split(const std::string& file) {
  uint64_t meta_size, weights_size;
  std::memcpy(&meta_size, file.data() + 16, 8);
  std::memcpy(&weights_size, file.data() + 24, 8);
  return {file.substr(48, meta_size), file.substr(file.size() - weights_size)};
}

// Where the first metadata entry that starts with string `name` continues
// after it (ranges come before values, values before nodes).
size_t after_name(const std::string& meta, const std::string& name) {
  std::string key(8, '\0');
  key[0] = char(name.size());
  key += name;
  size_t at = meta.find(key);
  EXPECT_NE(at, std::string::npos) << name;
  return at + key.size();
}

template <class T>
void poke(std::string& bytes, size_t at, T value) {
  std::memcpy(bytes.data() + at, &value, sizeof(T));
}

TEST(PlanChecks, RangesMustBeSaneAndCoverEveryInputSymbol) {
  Sections s = split(serialize(small_plan()));
  size_t range = after_name(s.meta, "n");  // min, opt, max follow
  auto with_range = [&](int64_t min, int64_t opt, int64_t max) {
    Sections t = s;
    poke(t.meta, range, min);
    poke(t.meta, range + 8, opt);
    poke(t.meta, range + 16, max);
    return t.framed();
  };
  EXPECT_NO_THROW(deserialize(bytes_of(with_range(1, 2, 64))));
  parse_error(with_range(3, 2, 64));
  parse_error(with_range(-1, 2, 64));
  parse_error(with_range(1, 65, 64));
  EXPECT_NE(parse_error(with_range(1, 2, kMaxRangeValue + 1)).find("'n'"), std::string::npos);
  parse_error(with_range(1, 2, INT64_MAX));
  Sections t = s;
  t.meta[range - 1] = 'm';  // the range names another symbol: x's 'n' has none
  EXPECT_NE(parse_error(t.framed()).find("uses 'n', which has no range"), std::string::npos);
  t = s;  // the same range twice
  size_t entry = range - 9, count = entry - 8;
  t.meta.insert(entry, s.meta.substr(entry, 9 + 24));
  poke<uint64_t>(t.meta, count, 2);
  EXPECT_NE(parse_error(t.framed()).find("two ranges for 'n'"), std::string::npos);
}

TEST(PlanChecks, WeightsMustMatchTheirDtypeAndDimsAndLieInsideTheWeights) {
  Sections s = split(serialize(small_plan()));
  // "w": kind, arena offset, dtype, rank 2, dims 8 8, then its offset and size in the weights.
  size_t w = after_name(s.meta, "w");
  ASSERT_EQ(s.meta[w], 2);
  size_t dtype = w + 9, dims = dtype + 9, where = dims + 16, size = where + 8;
  auto patched = [&](size_t at, auto value) {
    Sections t = s;
    poke(t.meta, at, value);
    return t.framed();
  };
  EXPECT_NO_THROW(deserialize(bytes_of(patched(size, uint64_t(256)))));
  EXPECT_NE(parse_error(patched(size, uint64_t(252))).find("'w'"), std::string::npos);
  parse_error(patched(size, uint64_t(260)));
  parse_error(patched(dims, int64_t(9)));
  parse_error(patched(dims, int64_t(-8)));
  parse_error(patched(dims, int64_t(1) << 62));
  Sections t = s;  // [2^59, 8] floats: 2^64 bytes, which wraps to the 0 bytes it claims
  poke(t.meta, dims, int64_t(1) << 59);
  poke<uint64_t>(t.meta, size, 0);
  parse_error(t.framed());
  parse_error(patched(dtype, uint8_t(DType::kFloat64)));
  parse_error(patched(dtype, uint8_t(200)));
  EXPECT_NE(parse_error(patched(where, uint64_t(4))).find("not an aligned part"), std::string::npos);
  parse_error(patched(where, uint64_t(s.weights.size())));
  parse_error(patched(where, UINT64_MAX - 255));
  parse_error(patched(size, UINT64_MAX));
}

// The loader hands every weight to Network::add_weight, which checks its bytes.
TEST(PlanChecks, AWeightWhoseByteSizeWrapsToItsDataIsRefused) {
  ir::Network net;
  ir::TensorData t;
  t.dtype = DType::kFloat32;
  t.dims = {int64_t(1) << 59, 8};  // 2^62 floats: 2^64 bytes, 0 when wrapped
  EXPECT_THROW(net.add_weight("w", t), Error);
  t.dims = {int64_t(1) << 61, 8};
  EXPECT_THROW(net.add_weight("w", t), Error);
}

// Nodes name their op: a name this kiln does not know (a newer kiln's op, a
// typo) is refused naming the op and the node, never read as another op.
TEST(PlanChecks, AnOpNameThisKilnDoesNotKnowIsRefused) {
  Plan p = small_plan();
  std::string node;
  for (const ir::Node& n : p.network.nodes())
    if (n.op == OpKind::kSoftmax) node = n.name;
  ASSERT_FALSE(node.empty()) << dump_network(p.network);
  Sections s = split(serialize(p));
  size_t op = after_name(s.meta, node);  // the node's name, then its op's
  ASSERT_EQ(s.meta.substr(op, 8 + 7), std::string("\x07\0\0\0\0\0\0\0Softmax", 15));
  s.meta.replace(op + 8, 7, "Softmix");
  std::string what = parse_error(s.framed());
  EXPECT_NE(what.find("test.kiln: node '" + node + "' has op 'Softmix', which this kiln"), std::string::npos) << what;
  EXPECT_NE(what.find("`kiln build`"), std::string::npos) << what;
}

TEST(PlanChecks, HugeCountsInATinyFileAreRefusedBeforeAllocating) {
  Sections s = split(serialize(small_plan()));
  size_t ranges = after_name(s.meta, "n") - 9 - 8;
  for (uint64_t count : {uint64_t(1) << 40, UINT64_MAX, uint64_t(1000)}) {
    Sections t = s;
    poke(t.meta, ranges, count);
    EXPECT_NE(parse_error(t.framed()).find("exceeds the data left"), std::string::npos) << count;
  }
}

// The profiles follow the ranges: a count, then per profile a count and per
// symbol its name, min, opt and max. two_profile_plan(64) has n 1/2/4 and
// 5/8/64, and the ranges n 1/2/64.
struct ProfileSection {
  Sections s;
  size_t start;     // the profile count
  size_t range[2];  // each profile's min, opt, max of 'n'
  size_t size() const { return range[1] + 24 - start; }
};

ProfileSection profile_section() {
  ProfileSection p{split(serialize(testing::two_profile_plan(64))), 0, {0, 0}};
  p.start = after_name(p.s.meta, "n") + 24;
  p.range[0] = p.start + 8 + 8 + 9;
  p.range[1] = p.range[0] + 24 + 8 + 9;
  EXPECT_EQ(p.s.meta.substr(p.range[1] - 9, 9), std::string("\x01\0\0\0\0\0\0\0n", 9));
  return p;
}

TEST(PlanChecks, ProfilesMustBeSaneAndTheRangesTheirUnion) {
  ProfileSection p = profile_section();
  auto with = [&](int k, int64_t min, int64_t opt, int64_t max) {
    Sections t = p.s;
    poke(t.meta, p.range[k], min);
    poke(t.meta, p.range[k] + 8, opt);
    poke(t.meta, p.range[k] + 16, max);
    return t.framed();
  };
  EXPECT_EQ(deserialize(bytes_of(with(1, 5, 8, 64))).profiles.size(), 2u);
  EXPECT_NE(parse_error(with(1, 5, 65, 64)).find("in profile 1 the range of 'n' is min 5, opt 65, max 64; it must satisfy"),
            std::string::npos);
  parse_error(with(1, 9, 8, 64));
  parse_error(with(0, -1, 2, 4));
  parse_error(with(1, 5, 8, kMaxRangeValue + 1));
  // Profile 0 ending at 3 instead of 4 leaves the union as it was: still a valid plan.
  EXPECT_NO_THROW(deserialize(bytes_of(with(0, 1, 2, 3))));
  // Anything else must match the ranges the arena was planned for.
  EXPECT_NE(parse_error(with(1, 5, 8, 32)).find("the range of 'n' is min 1, opt 2, max 64, not the union of the profiles' (min 1, "
                                                "opt 2, max 32)"),
            std::string::npos);
  parse_error(with(0, 2, 2, 4));  // the union's min would be 2
  parse_error(with(0, 1, 3, 4));  // the union's opt is profile 0's
}

TEST(PlanChecks, EveryProfileRangesExactlyThePlansSymbols) {
  ProfileSection p = profile_section();
  Sections t = p.s;
  t.meta[p.range[1] - 1] = 'm';  // profile 1 ranges 'm' instead of 'n'
  EXPECT_NE(parse_error(t.framed()).find("profile 1 has a range for 'm', which is not a symbol of the plan's ranges"),
            std::string::npos);
  t = p.s;  // profile 1 without its range
  t.meta.erase(p.range[1] - 9, 9 + 24);
  poke<uint64_t>(t.meta, p.range[1] - 17, 0);
  EXPECT_NE(parse_error(t.framed()).find("profile 1 has no range for 'n'"), std::string::npos);
  t = p.s;  // profile 1 with its range twice
  t.meta.insert(p.range[1] - 9, p.s.meta.substr(p.range[1] - 9, 9 + 24));
  poke<uint64_t>(t.meta, p.range[1] - 17, 2);
  EXPECT_NE(parse_error(t.framed()).find("profile 1 has two ranges for 'n'"), std::string::npos);
  t = p.s;  // no profile at all
  t.meta.erase(p.start + 8, p.size() - 8);
  poke<uint64_t>(t.meta, p.start, 0);
  EXPECT_NE(parse_error(t.framed()).find("the plan has no optimization profile"), std::string::npos);
}

TEST(PlanChecks, HugeProfileCountsAreRefusedBeforeAllocating) {
  ProfileSection p = profile_section();
  for (size_t at : {p.start, p.start + 8, p.range[1] - 17})
    for (uint64_t count : {uint64_t(1) << 40, UINT64_MAX}) {
      Sections t = p.s;
      poke(t.meta, at, count);
      EXPECT_NE(parse_error(t.framed()).find("exceeds the data left"), std::string::npos) << at << ": " << count;
    }
  Sections t = p.s;  // room for more than kMaxProfiles empty profiles
  t.meta.insert(p.start + p.size(), std::string(8 * (kMaxProfiles + 1), '\0'));
  poke<uint64_t>(t.meta, p.start, kMaxProfiles + 1);
  EXPECT_NE(parse_error(t.framed()).find("1025 optimization profiles; a plan has at most 1024"), std::string::npos);
}

// Dims in a plan are written in canonical form; reading rebuilds them through
// Dim's arithmetic, which must not be able to blow up or trap on what it reads.
ByteWriter symbol_sum(int symbols) {  // a + b + c + ...
  ByteWriter w;
  w.put<uint8_t>(1);
  w.put<uint64_t>(symbols);
  for (int i = 0; i < symbols; ++i) {
    w.put<int64_t>(1);
    w.put<uint64_t>(1);
    w.put<uint8_t>(0);  // a symbol
    w.put_string(std::string(1, char('a' + i)));
  }
  return w;
}

ir::Dim read(ByteWriter& w) {
  ByteReader r(w.bytes(), "dims.kiln");
  ir::Dim d = ir::read_dim(r);
  EXPECT_EQ(r.remaining(), 0u);
  return d;
}

TEST(PlanChecks, DimsThatAreNotCanonicalCannotMultiplyOut) {
  // One term: the product of 8 atoms floor_div(a + ... + z, 1). Read through
  // the arithmetic, each simplifies to the 26-term sum: 26^8 terms from 7 KB.
  ByteWriter w;
  w.put<uint8_t>(1);
  w.put<uint64_t>(1);
  w.put<int64_t>(1);
  w.put<uint64_t>(8);
  for (int i = 0; i < 8; ++i) {
    w.put<uint8_t>(1);  // floor_div
    w.put_bytes(symbol_sum(26).bytes().data(), symbol_sum(26).size());
    w.put<uint8_t>(0);
    w.put<int64_t>(1);
  }
  try {
    read(w);
    FAIL() << "read a non-canonical dim";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kParseError) << e.what();
    EXPECT_NE(std::string(e.what()).find("dims.kiln"), std::string::npos) << e.what();
  }
  ByteWriter sum = symbol_sum(26);
  std::string text = "a";
  for (char c = 'b'; c <= 'z'; ++c) text += std::string(" + ") + c;
  EXPECT_EQ(read(sum).to_string(), text);  // canonical dims read as written
}

TEST(PlanChecks, DimArithmeticOnExtremeConstantsDoesNotTrap) {
  for (uint8_t op : {uint8_t(1), uint8_t(4)}) {  // floor_div and mod of INT64_MIN by -1
    ByteWriter w;
    w.put<uint8_t>(1);
    w.put<uint64_t>(1);
    w.put<int64_t>(1);
    w.put<uint64_t>(1);
    w.put<uint8_t>(op);
    w.put<uint8_t>(0);
    w.put<int64_t>(INT64_MIN);
    w.put<uint8_t>(0);
    w.put<int64_t>(-1);
    EXPECT_THROW(read(w), Error) << int(op);
  }
  ir::Dim n = ir::Dim::symbol("n");
  EXPECT_EQ(*floor_mod(n, ir::Dim(3)).evaluate({{"n", INT64_MIN + 1}}), 2);  // floor(a / 3) * 3 overflows
  EXPECT_EQ(*floor_mod(n, ir::Dim(-1)).evaluate({{"n", INT64_MIN}}), 0);
  EXPECT_THROW(floor_div(n, ir::Dim(-1)).evaluate({{"n", INT64_MIN}}), Error);
  EXPECT_EQ((n * ir::Dim(INT64_MIN)).to_string(), "-9223372036854775808*n");
  EXPECT_EQ((ir::Dim(1) + n * ir::Dim(INT64_MIN)).to_string(), "-9223372036854775808*n + 1");
  EXPECT_EQ((n * n + n * ir::Dim(INT64_MIN)).to_string(), "n*n - 9223372036854775808*n");
}

// Independently of the loader: a plan that loads must fit its arena at the largest shapes.
void expect_memory_safe(const Plan& p) {
  ir::SymbolBindings largest;
  for (auto& [symbol, r] : p.network.dim_ranges()) largest[symbol] = r.max;
  for (size_t v = 0; v < p.arena_offset.size(); ++v) {
    const ir::Value& value = p.network.values()[v];
    if (value.weight) {
      EXPECT_EQ(value.weight->data.size(), size_t(value.weight->numel()) * dtype_size(value.dtype));
    }
    if (p.arena_offset[v] < 0) continue;
    __int128 bytes = dtype_size(value.dtype);
    for (const Dim& d : value.shape) bytes *= std::max<int64_t>(*d.evaluate(largest), 0);
    EXPECT_LE(p.arena_offset[v] + bytes, __int128(p.arena_bytes)) << value.name;
  }
}

// Every byte of the metadata set to a few values, with the checksums made
// right again: each result is a plan that is safe to run or a kiln::Error
// that is not internal; never a crash, a huge allocation or another exception.
TEST(PlanChecks, EveryByteOfTheMetadataIsCheckedBehindTheChecksum) {
  for (const Plan& plan : {small_plan(), testing::two_profile_plan(64)}) {
    Sections s = split(serialize(plan));
    int accepted = 0;
    for (size_t at = 0; at < s.meta.size(); ++at) {
      for (uint8_t value : {uint8_t(0), uint8_t(1), uint8_t(0x7f), uint8_t(0x80), uint8_t(0xff), uint8_t(s.meta[at] ^ 4)}) {
        if (value == uint8_t(s.meta[at])) continue;
        Sections t = s;
        t.meta[at] = char(value);
        try {
          Plan p = deserialize(bytes_of(t.framed()), "mutant");
          expect_memory_safe(p);
          ++accepted;
        } catch (const Error& e) {
          EXPECT_NE(e.code(), ErrorCode::kInternal) << "byte " << at << " = " << int(value) << ": " << e.what();
        }
      }
    }
    std::cout << accepted << " of the mutants loaded\n";
    EXPECT_GT(accepted, 0);  // names, strings and weights' contents are free to change
  }
}

}  // namespace
}  // namespace kiln::plan

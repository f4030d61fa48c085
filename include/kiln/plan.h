// A Plan: a network lowered by the builder (fused, folded, in its precision)
// plus its activation memory plan. Serialized as a .kiln file: versioned,
// checksummed, GPU-independent, weights aligned to upload without repacking.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/export.h"
#include "kiln/ir/network.h"

KILN_API_BEGIN
namespace kiln::plan {

// 5: graph attributes (the subgraphs of If, Loop and Scan), attribute type 7,
// which a kiln that reads format 4 at most refuses by the version rather than
// misreading; 4: optimization profiles after the ranges (3 plans still load, as one
// profile); 3: nodes name their op (2 stored its position in the op list,
// which every new op could shift); 2: XXH3-64 checksums (1 had FNV-style ones).
inline constexpr uint32_t kFormatVersion = 5;
inline constexpr uint32_t kOldestReadableFormatVersion = 3;
inline constexpr size_t kWeightAlignment = 256;
inline constexpr size_t kArenaAlignment = 256;
// The most optimization profiles a plan may have.
inline constexpr size_t kMaxProfiles = 1024;

enum class Precision : uint8_t { kFloat32, kFloat16, kBFloat16 };
std::string_view precision_name(Precision p);
std::optional<Precision> parse_precision(std::string_view name);

struct Plan {
  ir::Network network;                // finalized, lowered
  Precision precision = Precision::kFloat32;
  std::vector<int64_t> arena_offset;  // per value id: byte offset in the activation arena, or -1
  int64_t arena_bytes = 0;            // for the largest shapes of every profile
  std::string source;                 // the model it came from
  std::string kiln_version;           // the kiln that built it
  // The optimization profiles (at least one): each has a range for every
  // symbol of network.dim_ranges(), and those ranges are their union (see
  // union_of), so the memory plan holds the largest shapes of every profile.
  // An execution context runs the shapes of the profile it selected.
  std::vector<ir::DimRanges> profiles;
  uint32_t format_version = kFormatVersion;  // of the file it was read from
};

// Whether `node`'s output shares the arena storage of its first input: the
// reshape-like ops move no data, nor does BitCast, except to bool (a byte
// other than 0 becomes 1). Such an output holds as many bytes as its input.
bool shares_input_storage(const ir::Network& net, const ir::Node& node);

std::string serialize(const Plan& plan);
// Parses a plan; weights keep pointing into `bytes` (shared, not copied).
Plan deserialize(const Buffer& bytes, const std::string& label = "plan");
void save(const Plan& plan, const std::filesystem::path& path);
Plan load(const std::filesystem::path& path);  // maps the file; throws kiln::Error on any defect

// The file around a plan's two sections: header (magic, version, sizes,
// checksums), metadata, zero padding, weights. serialize() writes through it;
// the plan fuzzer's mutator and the loader's tests rewrite sections of valid
// files with it so that the checks behind the checksums get exercised.
std::string frame(std::string_view meta, std::string_view weights);

// The largest value a range may take: larger ones are refused at load.
inline constexpr int64_t kMaxRangeValue = (int64_t(1) << 31) - 1;

// The ranges a plan of these profiles is made for: per symbol the smallest
// min, the largest max and profile 0's opt.
ir::DimRanges union_of(const std::vector<ir::DimRanges>& profiles);

// Throws unless `dims` are a shape of input `input` that profile `profile`
// accepts: its rank, its constant dims, and every symbolic dim inside the
// profile's range (kShapeError naming the input, dim, symbol, profile and
// range, and another profile that accepts the shape, if one does). An unknown
// input or profile is kInvalidArgument.
void check_input_shape(const Plan& plan, int profile, std::string_view input, const std::vector<int64_t>& dims);
// Whether check_input_shape would accept these dims (an unknown input or profile: no).
bool profile_accepts(const Plan& plan, int profile, std::string_view input, const std::vector<int64_t>& dims);

// What deserialize() checks once the network is rebuilt, before anything uses
// the plan: sane ranges (one for every symbol of every input), profiles that
// cover exactly those symbols with sane ranges whose union they are, and a memory
// plan that holds every value at the largest shapes of the ranges (aligned
// offsets; a slot for every intermediate, none for inputs, outputs and
// weights; a value sharing its input's storage is held by its input's slot). Throws kParseError naming `label`, the value and the numbers.
void verify(const Plan& plan, const std::string& label);
// The runtime's guard for concrete shapes (`dims` per value id): throws
// kShapeError when a value would outgrow the slot planned at the largest shapes.
void check_arena_fits(const Plan& plan, const std::vector<std::vector<int64_t>>& dims);

}  // namespace kiln::plan
KILN_API_END

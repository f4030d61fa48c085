// libFuzzer target: arbitrary bytes through the .kiln plan loader must end in
// a plan that is safe to run or a kiln::Error that is not internal.
//
// Random bytes almost never carry a valid checksum, so the custom mutator
// mutates a plan's metadata (or now and then its weights) and frames it
// again with fresh checksums and sizes: the fuzzer works on the checks behind
// the checksums, where the bugs that matter are.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>

#include "kiln/error.h"
#include "kiln/plan.h"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace {

constexpr char kMagic[] = "KILNPLAN";
constexpr size_t kHeaderBytes = 48;  // magic, version, reserved, meta size, weights size, two checksums

// A plan file's metadata and weights sections, as far as its header's sizes
// can be taken; false when the input is not framed like a plan.
bool split(const uint8_t* data, size_t size, std::string& meta, std::string& weights) {
  if (size < kHeaderBytes || std::memcmp(data, kMagic, 8) != 0) return false;
  uint64_t meta_size, weights_size;
  std::memcpy(&meta_size, data + 16, 8);
  std::memcpy(&weights_size, data + 24, 8);
  if (meta_size > size - kHeaderBytes) return false;
  meta.assign(reinterpret_cast<const char*>(data) + kHeaderBytes, meta_size);
  size_t align = kiln::plan::kWeightAlignment, weights_at = (kHeaderBytes + meta_size + align - 1) / align * align;
  if (weights_at < size) weights.assign(reinterpret_cast<const char*>(data) + weights_at, std::min<uint64_t>(weights_size, size - weights_at));
  return true;
}

}  // namespace

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  std::minstd_rand rng(seed);
  std::string meta, weights;
  if (!split(data, size, meta, weights) || rng() % 32 == 0) return LLVMFuzzerMutate(data, size, max_size);  // the framing too
  std::string& section = !weights.empty() && rng() % 8 == 0 ? weights : meta;
  size_t used = section.size();
  section.resize(std::min(max_size, used * 2 + 64));
  section.resize(LLVMFuzzerMutate(reinterpret_cast<uint8_t*>(section.data()), used, section.size()));
  std::string file = kiln::plan::frame(meta, weights);
  if (file.size() > max_size) return LLVMFuzzerMutate(data, size, max_size);
  std::memcpy(data, file.data(), file.size());
  return file.size();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    kiln::plan::deserialize(kiln::Buffer::copy_of(data, size), "fuzz");
  } catch (const kiln::Error& e) {
    if (e.code() == kiln::ErrorCode::kInternal) __builtin_trap();
  }
  return 0;
}

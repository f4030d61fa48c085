// The checks a loaded plan passes before anything uses it. The checksums only
// say the file is the one that was written; these say that what was written
// cannot make the runtime read or write outside its allocations: the arena
// holds every value at the largest shapes the ranges allow, and contexts are
// only ever asked to run shapes inside those ranges.
#include <algorithm>
#include <set>

#include "kiln/error.h"
#include "kiln/plan.h"

namespace kiln::plan {

namespace {

constexpr int64_t kAlign = int64_t(kArenaAlignment);

// Values a node writes that are not network outputs live in the arena; inputs,
// outputs and weights live in memory bound by the caller or the engine.
std::vector<bool> needs_arena_slot(const ir::Network& net) {
  std::vector<bool> needs(net.values().size(), false);
  for (const ir::Node& node : net.nodes())
    for (ir::ValueId v : node.outputs)
      if (v != ir::kNoValue) needs[size_t(v)] = true;
  for (ir::ValueId v : net.outputs()) needs[size_t(v)] = false;
  return needs;
}

// Bytes of a value with these dims (negative dims count as empty, as the
// builder plans them), rounded up to the arena alignment; nullopt on overflow.
std::optional<int64_t> slot_bytes(DType dtype, const std::vector<int64_t>& dims) {
  if (is_string(dtype)) return 0;  // string tensors stay on the host: no arena bytes
  int64_t bytes = int64_t(dtype_size(dtype));
  for (int64_t d : dims)
    if (__builtin_mul_overflow(bytes, std::max<int64_t>(d, 0), &bytes)) return std::nullopt;
  if (__builtin_add_overflow(bytes, kAlign - 1, &bytes)) return std::nullopt;
  return bytes / kAlign * kAlign;
}

// A value's dims at the largest shapes; throws when a dim has a symbol without a range.
std::vector<int64_t> dims_at(const ir::Value& v, const ir::SymbolBindings& bindings, const std::string& label) {
  std::optional<std::vector<int64_t>> dims;
  try {
    dims = ir::evaluate_dims(v.shape, bindings);
  } catch (const Error& e) {  // arithmetic overflow in a dim expression
    fail(ErrorCode::kParseError, label, ": value '", v.name, "' ", ir::shape_to_string(v.shape),
         " cannot be sized at the largest shapes: ", e.what());
  }
  if (!dims)
    fail(ErrorCode::kParseError, label, ": value '", v.name, "' ", ir::shape_to_string(v.shape),
         " has a dim whose symbols have no range, so its arena slot cannot be checked");
  return *dims;
}

bool sane(const ir::DimRange& r) { return 0 <= r.min && r.min <= r.opt && r.opt <= r.max && r.max <= kMaxRangeValue; }

std::string range_text(const ir::DimRange& r) { return str("min ", r.min, ", opt ", r.opt, ", max ", r.max); }

void check_ranges(const ir::Network& net, const std::string& label) {
  for (auto& [symbol, r] : net.dim_ranges())
    if (!sane(r))
      fail(ErrorCode::kParseError, label, ": the range of '", symbol, "' is ", range_text(r),
           "; it must satisfy 0 <= min <= opt <= max <= ", kMaxRangeValue);
  for (ir::ValueId id : net.inputs()) {
    const ir::Value& v = net.value(id);
    for (size_t i = 0; i < v.shape.size(); ++i) {
      if (v.shape[i].is_constant() && v.shape[i].constant() < 0)
        fail(ErrorCode::kParseError, label, ": input '", v.name, "' has negative dim ", v.shape[i].constant());
      std::set<std::string> symbols;
      v.shape[i].collect_symbols(symbols);
      for (auto& s : symbols)
        if (!net.dim_ranges().count(s))
          fail(ErrorCode::kParseError, label, ": input '", v.name, "' dim ", i, " (", v.shape[i].to_string(), ") uses '", s,
               "', which has no range");
    }
  }
}

// Every profile ranges exactly the plan's symbols, sanely, and the plan's
// ranges (what the arena was planned for) are their union.
void check_profiles(const Plan& plan, const std::string& label) {
  const ir::DimRanges& ranges = plan.network.dim_ranges();
  if (plan.profiles.empty()) fail(ErrorCode::kParseError, label, ": the plan has no optimization profile");
  for (size_t k = 0; k < plan.profiles.size(); ++k) {
    for (auto& [symbol, r] : plan.profiles[k]) {
      if (!ranges.count(symbol))
        fail(ErrorCode::kParseError, label, ": profile ", k, " has a range for '", symbol, "', which is not a symbol of the plan's ranges");
      if (!sane(r))
        fail(ErrorCode::kParseError, label, ": in profile ", k, " the range of '", symbol, "' is ", range_text(r),
             "; it must satisfy 0 <= min <= opt <= max <= ", kMaxRangeValue);
    }
    for (auto& [symbol, r] : ranges)
      if (!plan.profiles[k].count(symbol)) fail(ErrorCode::kParseError, label, ": profile ", k, " has no range for '", symbol, "'");
  }
  ir::DimRanges expected = union_of(plan.profiles);
  for (auto& [symbol, r] : ranges) {
    const ir::DimRange& u = expected.at(symbol);
    if (r.min != u.min || r.opt != u.opt || r.max != u.max)
      fail(ErrorCode::kParseError, label, ": the range of '", symbol, "' is ", range_text(r),
           ", not the union of the profiles' (", range_text(u), ")");
  }
}

// Whether `profile` accepts `dims` for input `v`: its rank, its constant dims,
// and every dim that is one symbol inside that symbol's range. (A dim that is
// an expression, such as 2*n, must agree with the other inputs' dims, which
// the runtime checks once every input is set.)
bool accepts(const ir::DimRanges& profile, const ir::Value& v, const std::vector<int64_t>& dims) {
  if (dims.size() != v.shape.size()) return false;
  for (size_t i = 0; i < dims.size(); ++i) {
    const ir::Dim& d = v.shape[i];
    if (d.is_constant()) {
      if (d.constant() != dims[i]) return false;
      continue;
    }
    std::set<std::string> symbols;
    d.collect_symbols(symbols);
    if (symbols.size() != 1 || d != ir::Dim::symbol(*symbols.begin())) continue;
    auto r = profile.find(*symbols.begin());
    if (r == profile.end() || dims[i] < r->second.min || dims[i] > r->second.max) return false;
  }
  return true;
}

}  // namespace

bool shares_input_storage(const ir::Network& net, const ir::Node& node) {
  ir::OpKind op = node.op;
  if (op == ir::OpKind::kBitCast) return net.value(node.outputs[0]).dtype != DType::kBool;
  return op == ir::OpKind::kReshape || op == ir::OpKind::kFlatten || op == ir::OpKind::kSqueeze ||
         op == ir::OpKind::kUnsqueeze || op == ir::OpKind::kIdentity;
}

ir::DimRanges union_of(const std::vector<ir::DimRanges>& profiles) {
  ir::DimRanges out;
  for (const ir::DimRanges& profile : profiles)
    for (auto& [symbol, r] : profile) {
      auto it = out.emplace(symbol, r).first;  // the first profile's opt
      it->second.min = std::min(it->second.min, r.min);
      it->second.max = std::max(it->second.max, r.max);
    }
  return out;
}

void check_input_shape(const Plan& plan, int profile, std::string_view input, const std::vector<int64_t>& dims) {
  const ir::Network& net = plan.network;
  if (profile < 0 || size_t(profile) >= plan.profiles.size())
    fail(ErrorCode::kInvalidArgument, "optimization profile ", profile, " does not exist: the plan has ", plan.profiles.size(),
         plan.profiles.size() == 1 ? " profile (0)" : str(" profiles (0 to ", plan.profiles.size() - 1, ")"));
  auto id = net.find_value(input);
  if (!id || !net.value(*id).is_input) fail(ErrorCode::kInvalidArgument, "'", input, "' is not an input of the network");
  const ir::Value& v = net.value(*id);
  if (dims.size() != v.shape.size())
    fail(ErrorCode::kShapeError, "input '", input, "' has rank ", v.shape.size(), " ", ir::shape_to_string(v.shape), "; got ",
         dims.size(), " dims");
  const ir::DimRanges& ranges = plan.profiles[size_t(profile)];
  for (size_t i = 0; i < dims.size(); ++i) {
    const ir::Dim& d = v.shape[i];
    if (d.is_constant() && d.constant() != dims[i])
      fail(ErrorCode::kShapeError, "input '", input, "' dim ", i, " must be ", d.constant(), "; got ", dims[i]);
    std::set<std::string> symbols;
    d.collect_symbols(symbols);
    if (symbols.size() != 1 || d != ir::Dim::symbol(*symbols.begin())) continue;
    const std::string& s = *symbols.begin();
    auto r = ranges.find(s);
    // The arena was planned for the ranges: a symbol without one has no bound.
    if (r == ranges.end())
      fail(ErrorCode::kShapeError, "input '", input, "' dim ", i, " ('", s, "') has no range in profile ", profile,
           ", so no size is safe for it");
    if (dims[i] >= r->second.min && dims[i] <= r->second.max) continue;
    std::string message = str("input '", input, "' dim ", i, " ('", s, "') is ", dims[i], ", outside the range [", r->second.min,
                              ", ", r->second.max, "] of '", s, "' in profile ", profile);
    std::optional<size_t> other;
    for (size_t k = 0; k < plan.profiles.size() && !other; ++k)
      if (accepts(plan.profiles[k], v, dims)) other = k;
    if (plan.profiles.size() == 1) {
      message += " (the plan's only profile)";
    } else if (other) {
      message += str("; profile ", *other, " accepts this shape of '", input, "' (", ir::shape_to_string(ir::shape_of(dims)),
                     "): select profile ", *other, " (ExecutionContext::set_optimization_profile, kiln run/bench --profile-index, "
                     "InferenceSession profile_index)");
    } else {
      message += str("; no profile of the plan accepts it ('", s, "' ranges over");
      for (size_t k = 0; k < plan.profiles.size(); ++k) {
        auto range = plan.profiles[k].find(s);
        if (range != plan.profiles[k].end())
          message += str(k ? ", " : " ", "[", range->second.min, ", ", range->second.max, "] in profile ", k);
      }
      message += ")";
    }
    fail(ErrorCode::kShapeError, message);
  }
}

bool profile_accepts(const Plan& plan, int profile, std::string_view input, const std::vector<int64_t>& dims) {
  auto id = plan.network.find_value(input);
  return profile >= 0 && size_t(profile) < plan.profiles.size() && id && plan.network.value(*id).is_input &&
         accepts(plan.profiles[size_t(profile)], plan.network.value(*id), dims);
}

void verify(const Plan& plan, const std::string& label) {
  const ir::Network& net = plan.network;
  check_ranges(net, label);
  check_profiles(plan, label);
  if (plan.arena_bytes < 0 || plan.arena_bytes % kAlign != 0)
    fail(ErrorCode::kParseError, label, ": the arena size ", plan.arena_bytes, " is not a non-negative multiple of ", kAlign);
  if (plan.arena_offset.size() != net.values().size())
    fail(ErrorCode::kParseError, label, ": ", plan.arena_offset.size(), " arena offsets for ", net.values().size(), " values");
  ir::SymbolBindings largest;
  for (auto& [symbol, r] : net.dim_ranges()) largest[symbol] = r.max;
  std::vector<bool> needs = needs_arena_slot(net);
  // A view in its input's slot holds its input's bytes, which that slot's own
  // check covers; its dims at the largest shapes may multiply to more when
  // they come from data (each dim bounded alone).
  std::vector<bool> in_input_slot(needs.size(), false);
  for (const ir::Node& node : net.nodes()) {
    if (node.outputs.empty() || node.inputs.empty() || node.outputs[0] == ir::kNoValue || node.inputs[0] == ir::kNoValue ||
        !shares_input_storage(net, node))
      continue;
    size_t out = size_t(node.outputs[0]), in = size_t(node.inputs[0]);
    in_input_slot[out] = needs[out] && needs[in] && plan.arena_offset[out] == plan.arena_offset[in];
  }
  for (size_t i = 0; i < needs.size(); ++i) {
    const ir::Value& v = net.values()[i];
    int64_t offset = plan.arena_offset[i];
    if (!needs[i]) {
      if (offset != -1)
        fail(ErrorCode::kParseError, label, ": value '", v.name, "' is an input, output or weight but has arena offset ", offset);
      continue;
    }
    if (offset == -1) fail(ErrorCode::kParseError, label, ": intermediate value '", v.name, "' has no arena slot");
    if (offset < 0 || offset % kAlign != 0)
      fail(ErrorCode::kParseError, label, ": value '", v.name, "' has arena offset ", offset, ", not a non-negative multiple of ",
           kAlign);
    if (in_input_slot[i]) continue;
    std::vector<int64_t> dims = dims_at(v, largest, label);
    auto bytes = slot_bytes(v.dtype, dims);
    if (!bytes || offset > plan.arena_bytes || *bytes > plan.arena_bytes - offset)
      fail(ErrorCode::kParseError, label, ": value '", v.name, "' ", ir::shape_to_string(v.shape), " needs ",
           bytes ? str(*bytes, " bytes") : std::string("more than 2^63 bytes"), " at the largest shapes, at arena offset ",
           offset, ", past the end of the arena of ", plan.arena_bytes, " bytes");
  }
}

void check_arena_fits(const Plan& plan, const std::vector<std::vector<int64_t>>& dims) {
  const ir::Network& net = plan.network;
  ir::SymbolBindings largest;
  for (auto& [symbol, r] : net.dim_ranges()) largest[symbol] = r.max;
  for (size_t i = 0; i < dims.size() && i < plan.arena_offset.size(); ++i) {
    if (plan.arena_offset[i] < 0) continue;
    const ir::Value& v = net.values()[i];
    // Compared with the slot itself, not the arena's end: slots of values
    // alive at the same time are neighbours, so a larger value would overwrite one.
    auto need = slot_bytes(v.dtype, dims[i]);
    auto planned = ir::evaluate_dims(v.shape, largest);
    auto slot = planned ? slot_bytes(v.dtype, *planned) : std::nullopt;
    if (!need || !slot || *need > *slot)
      fail(ErrorCode::kShapeError, "tensor '", v.name, "' ", ir::shape_to_string(v.shape), " would need ",
           need ? str(*need, " bytes") : std::string("more than 2^63 bytes"), " at these input shapes; the plan's arena slot for it has ",
           slot ? *slot : 0, " (planned at the largest shapes of the ranges)");
  }
}

}  // namespace kiln::plan

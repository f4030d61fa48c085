#include "kiln/builder.h"

#include <algorithm>
#include <array>
#include <numeric>

#include "graph.h"
#include "kiln/error.h"
#include "kiln/ir/limits.h"
#include "kiln/logging.h"
#include "kiln/version.h"

namespace kiln::builder {

using ir::OpKind;

void add_input_profile(const ir::Network& net, const std::string& input, const std::vector<int64_t>& min,
                       const std::vector<int64_t>& opt, const std::vector<int64_t>& max, BuildOptions& options,
                       size_t profile) {
  if (profile > options.profiles.size())
    fail(ErrorCode::kInvalidArgument, "--profile for '", input, "' adds to profile ", profile, ", but there are ",
         options.profiles.size(), " profiles so far; profiles are added in order (the next one is ", options.profiles.size(), ")");
  auto id = net.find_value(input);
  if (!id || !net.value(*id).is_input) fail(ErrorCode::kInvalidArgument, "--profile names '", input, "', which is not an input");
  const ir::Shape& shape = net.value(*id).shape;
  if (min.size() != shape.size() || opt.size() != shape.size() || max.size() != shape.size())
    fail(ErrorCode::kInvalidArgument, "--profile for '", input, "' needs ", shape.size(), " dims per shape ",
         ir::shape_to_string(shape));
  const ir::DimRanges* before = profile < options.profiles.size() ? &options.profiles[profile] : nullptr;
  ir::DimRanges added;  // kept only once every dim passed
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i].is_constant()) {
      if (min[i] != shape[i].constant() || opt[i] != shape[i].constant() || max[i] != shape[i].constant())
        fail(ErrorCode::kInvalidArgument, "--profile for '", input, "' dim ", i, " must be ", shape[i].constant());
      continue;
    }
    std::set<std::string> symbols;
    shape[i].collect_symbols(symbols);
    if (symbols.size() != 1 || shape[i] != ir::Dim::symbol(*symbols.begin()))
      fail(ErrorCode::kUnsupported, "--profile for '", input, "' dim ", i, " is the expression ", shape[i].to_string());
    if (min[i] < 0 || min[i] > opt[i] || opt[i] > max[i] || max[i] > plan::kMaxRangeValue)
      fail(ErrorCode::kInvalidArgument, "--profile for '", input, "' dim ", i, " must satisfy 0 <= min <= opt <= max <= ",
           plan::kMaxRangeValue);
    const std::string& symbol = *symbols.begin();
    for (const ir::DimRanges* known : std::array<const ir::DimRanges*, 2>{before, &added}) {
      if (!known) continue;
      auto it = known->find(symbol);
      if (it == known->end()) continue;
      const ir::DimRange& r = it->second;
      if (r.min != min[i] || r.opt != opt[i] || r.max != max[i])
        fail(ErrorCode::kInvalidArgument, "--profile for '", input, "' dim ", i, " gives '", symbol, "' ", min[i], "/", opt[i], "/",
             max[i], ", but profile ", profile, " already has ", r.min, "/", r.opt, "/", r.max,
             " for it from another dim; dims that share a symbol need the same range");
    }
    added[symbol] = ir::DimRange{min[i], opt[i], max[i]};
  }
  if (profile == options.profiles.size()) options.profiles.emplace_back();
  options.profiles[profile].merge(added);
}

namespace {

// Arena slots ordered by first use, with the latest last use of the placed ones
// kept per range (a max segment tree): the placed slots live at the same time
// as a new one are found without visiting the others, so planning a long chain
// stays near-linear.
class PlacedSlots {
 public:
  explicit PlacedSlots(size_t count) : count_(count), max_last_(4 * std::max<size_t>(count, 1), -1) {}
  // The slot at position `at` (in order of first use) is placed and live until `last`.
  void place(size_t at, int64_t last) { place(at, last, 1, 0, count_); }
  // Calls visit(position) for every placed slot among the first `end` whose last use is >= min_last.
  template <typename F>
  void find(size_t end, int64_t min_last, F&& visit) const { find(end, min_last, visit, 1, 0, count_); }

 private:
  void place(size_t at, int64_t last, size_t node, size_t lo, size_t hi) {
    max_last_[node] = std::max(max_last_[node], last);
    if (hi - lo == 1) return;
    size_t mid = (lo + hi) / 2;
    if (at < mid) place(at, last, 2 * node, lo, mid);
    else place(at, last, 2 * node + 1, mid, hi);
  }
  template <typename F>
  void find(size_t end, int64_t min_last, F& visit, size_t node, size_t lo, size_t hi) const {
    if (lo >= end || lo >= hi || max_last_[node] < min_last) return;
    if (hi - lo == 1) return visit(lo);
    size_t mid = (lo + hi) / 2;
    find(end, min_last, visit, 2 * node, lo, mid);
    find(end, min_last, visit, 2 * node + 1, mid, hi);
  }
  size_t count_;
  std::vector<int64_t> max_last_;
};

}  // namespace

// Liveness-based offsets in one arena: values live from their producer to their
// last reader; views extend their source's life. Greedy placement, largest first.
void plan_memory(plan::Plan& p) {
  const ir::Network& net = p.network;
  size_t nv = net.values().size();
  ir::SymbolBindings max_bindings;  // every input symbol has a range (resolve_profiles)
  for (auto& [s, r] : net.dim_ranges()) max_bindings[s] = r.max;
  std::vector<ir::ValueId> storage(nv);  // the value whose arena slot v uses
  for (size_t v = 0; v < nv; ++v) storage[v] = ir::ValueId(v);
  std::vector<bool> in_arena(nv, false);
  std::vector<bool> is_output(nv, false);
  for (auto v : net.outputs()) is_output[size_t(v)] = true;
  std::vector<int64_t> first(nv, INT64_MAX), last(nv, -1);
  for (size_t n = 0; n < net.nodes().size(); ++n) {
    const ir::Node& node = net.nodes()[n];
    for (ir::ValueId v : node.outputs) {
      if (v == ir::kNoValue || is_output[size_t(v)]) continue;
      in_arena[size_t(v)] = true;
      if (plan::shares_input_storage(net, node) && in_arena[size_t(node.inputs[0])]) storage[size_t(v)] = storage[size_t(node.inputs[0])];
    }
  }
  for (size_t n = 0; n < net.nodes().size(); ++n) {
    const ir::Node& node = net.nodes()[n];
    for (ir::ValueId v : node.outputs)
      if (v != ir::kNoValue && in_arena[size_t(v)]) first[size_t(storage[size_t(v)])] = std::min(first[size_t(storage[size_t(v)])], int64_t(n));
    for (ir::ValueId v : node.inputs)
      if (v != ir::kNoValue && in_arena[size_t(v)]) last[size_t(storage[size_t(v)])] = std::max(last[size_t(storage[size_t(v)])], int64_t(n));
  }
  struct Slot {
    ir::ValueId value;
    int64_t bytes, first, last, offset = -1;
  };
  std::vector<Slot> slots;
  for (size_t v = 0; v < nv; ++v) {
    if (!in_arena[v] || storage[v] != ir::ValueId(v)) continue;
    const ir::Value& val = net.value(ir::ValueId(v));
    std::vector<int64_t> dims;
    for (const ir::Dim& d : val.shape) {
      auto size = d.evaluate(max_bindings);
      if (!size) {
        std::set<std::string> symbols;
        d.collect_symbols(symbols);
        std::string missing;
        for (auto& s : symbols)
          if (!max_bindings.count(s)) missing += (missing.empty() ? "" : ", ") + s;
        fail(ErrorCode::kUnsupported, "tensor '", val.name, "' has dim ", d.to_string(), " whose size depends on symbols without a range (",
             missing, "); give every symbolic input dim a range with --profile");
      }
      dims.push_back(*size);
    }
    // No GPU holds more than ir::kMaxTensorBytes: refused here rather than planned into an arena no device can allocate.
    int64_t bytes = ir::checked_byte_size(dims, val.dtype, str("tensor '", val.name, "' at the largest shapes"));
    slots.push_back({ir::ValueId(v), (bytes + int64_t(plan::kArenaAlignment) - 1) / int64_t(plan::kArenaAlignment) *
                                         int64_t(plan::kArenaAlignment),
                     first[v], std::max(last[v], first[v])});
  }
  std::vector<size_t> order(slots.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return slots[a].bytes > slots[b].bytes; });
  std::vector<size_t> by_first(slots.size()), position(slots.size());
  std::iota(by_first.begin(), by_first.end(), 0);
  std::stable_sort(by_first.begin(), by_first.end(), [&](size_t a, size_t b) { return slots[a].first < slots[b].first; });
  std::vector<int64_t> firsts(slots.size());
  for (size_t k = 0; k < by_first.size(); ++k) {
    position[by_first[k]] = k;
    firsts[k] = slots[by_first[k]].first;
  }
  PlacedSlots placed(slots.size());
  p.arena_bytes = 0;
  std::vector<std::pair<int64_t, int64_t>> busy;  // address ranges of time-overlapping slots
  for (size_t i : order) {
    Slot& s = slots[i];
    busy.clear();
    size_t started = size_t(std::upper_bound(firsts.begin(), firsts.end(), s.last) - firsts.begin());
    placed.find(started, s.first, [&](size_t k) {
      const Slot& other = slots[by_first[k]];
      busy.push_back({other.offset, other.offset + other.bytes});
    });
    std::sort(busy.begin(), busy.end());
    int64_t offset = 0;
    for (auto& [lo, hi] : busy) {
      if (offset + s.bytes <= lo) break;
      offset = std::max(offset, hi);
    }
    s.offset = offset;
    int64_t end;
    if (__builtin_add_overflow(offset, s.bytes, &end))
      fail(ErrorCode::kUnsupported, "the memory plan's arena overflows 64-bit offsets; the model's tensors are too large");
    p.arena_bytes = std::max(p.arena_bytes, end);
    placed.place(position[i], s.last);
  }
  p.arena_offset.assign(nv, -1);
  for (auto& s : slots) p.arena_offset[size_t(s.value)] = s.offset;
  for (size_t v = 0; v < nv; ++v)
    if (in_arena[v]) p.arena_offset[v] = p.arena_offset[size_t(storage[v])];
}


namespace {

// The plan's profiles: each one given has its ranges over the network's own,
// for every symbol of the network's ranges and input dims. The runtime
// refuses input shapes outside the selected profile, so every symbolic input
// dim needs a range in each (without one, it could take any size).
std::vector<ir::DimRanges> resolve_profiles(const ir::Network& net, const BuildOptions& options) {
  std::vector<ir::DimRanges> given = options.profiles;
  if (given.empty()) given.emplace_back();
  if (given.size() > plan::kMaxProfiles)
    fail(ErrorCode::kInvalidArgument, given.size(), " optimization profiles; a plan has at most ", plan::kMaxProfiles);
  std::set<std::string> symbols;
  for (auto& [s, r] : net.dim_ranges()) symbols.insert(s);
  for (ir::ValueId id : net.inputs())
    for (const ir::Dim& d : net.value(id).shape) d.collect_symbols(symbols);
  std::vector<ir::DimRanges> profiles;
  for (size_t k = 0; k < given.size(); ++k) {
    std::string in_profile = given.size() == 1 ? "" : str(" in profile ", k);
    for (auto& [s, r] : given[k])
      if (!symbols.count(s))
        fail(ErrorCode::kInvalidArgument, "profile ", k, " has a range for '", s, "', which no input dim of the network uses");
    ir::DimRanges& profile = profiles.emplace_back();
    for (const std::string& s : symbols) {
      if (auto it = given[k].find(s); it != given[k].end()) profile[s] = it->second;
      else if (auto own = net.dim_ranges().find(s); own != net.dim_ranges().end()) profile[s] = own->second;
    }
    for (ir::ValueId id : net.inputs()) {
      const ir::Value& in = net.value(id);
      for (size_t i = 0; i < in.shape.size(); ++i) {
        std::set<std::string> used;
        in.shape[i].collect_symbols(used);
        for (auto& s : used)
          if (!profile.count(s))
            fail(ErrorCode::kUnsupported, "input '", in.name, "' dim ", i, " ('", s, "') has no range", in_profile,
                 "; give every symbolic input dim a range", given.size() == 1 ? " with --profile" : " in every profile");
      }
    }
    for (auto& [s, r] : profile)
      if (r.min < 0 || r.min > r.opt || r.opt > r.max || r.max > plan::kMaxRangeValue)
        fail(ErrorCode::kInvalidArgument, "the range of '", s, "'", in_profile, " is min ", r.min, ", opt ", r.opt, ", max ", r.max,
             "; it must satisfy 0 <= min <= opt <= max <= ", plan::kMaxRangeValue);
  }
  return profiles;
}

}  // namespace

plan::Plan build(const ir::Network& network, const BuildOptions& options, const std::string& source) {
  auto say = [&](const std::string& line) {
    if (options.progress) options.progress(line);
    else kiln::log(Severity::kInfo, line);
  };
  std::vector<ir::DimRanges> profiles = resolve_profiles(network, options);
  Graph g = Graph::from_network(network);
  g.ranges = plan::union_of(profiles);  // the passes and the memory plan hold for every profile
  auto run = [&](const char* name, auto&& pass) {
    int n = pass(g);
    ir::Network checked = g.to_network();  // re-validate and re-infer after every pass
    g = Graph::from_network(checked);
    say(str(name, ": ", n, " rewrites, ", g.nodes.size(), " nodes"));
  };
  say(str("input: ", network.nodes().size(), " nodes"));
  run("remove identities", remove_identities);
  run("fold constants", [](Graph& graph) { return fold_constants(graph); });
  // Control flow inside inlined branches and unrolled bodies is decided once
  // folding has seen its copies; each round goes one subgraph level deeper.
  for (int level = 0; level <= ir::kMaxSubgraphDepth; ++level) {
    int inlined = 0;
    run("inline control flow", [&](Graph& graph) { return inlined = inline_control_flow(graph); });
    if (inlined == 0) break;
    run("remove identities", remove_identities);
    run("fold constants", [](Graph& graph) { return fold_constants(graph); });
  }
  run("scan axes to the front", scan_axes_to_front);
  run("fold batchnorm into conv", fold_batchnorm_into_conv);
  run("lower batchnorm", lower_batchnorm);
  run("lower ai.onnx.ml ops", lower_ml_ops);
  DType compute = options.precision == plan::Precision::kFloat16    ? DType::kFloat16
                  : options.precision == plan::Precision::kBFloat16 ? DType::kBFloat16
                                                                     : DType::kFloat32;
  run("patch convs to matmul", patch_convs_to_matmul);
  run("transposes through merged dims", transposes_through_merged_dims);
  run("collapse order-keeping reshape chains", collapse_order_keeping_chains);
  run("convs to channels-last", [&](Graph& graph) { return convs_to_channels_last(graph, compute); });
  run("sink transposes", sink_transposes);
  run("fold constants (weight layouts)", [](Graph& graph) { return fold_constants(graph); });
  run("transposes to views", transposes_to_views);
  run("fuse matmul epilogues", fuse_matmul_epilogues);
  run("fold scales into matmul", fold_scales_into_matmul);
  run("fold transposes into matmul", fold_transposes_into_matmul);
  run("untranspose matmul weights", untranspose_matmul_weights);
  run("fuse attention", fuse_attention);
  run("transposes into attention views", transposes_into_attention_views);
  run("conv bias into elementwise", conv_bias_into_elementwise);
  run("fuse elementwise", fuse_elementwise);
  run("precision", [&](Graph& graph) { return convert_precision(graph, compute); });
  run("scratch for transposed products", scratch_for_transposed_products);
  run("scratch for recurrent layers", scratch_for_recurrent_layers);
  run("materialize outputs", materialize_outputs);
  if (std::any_of(g.nodes.begin(), g.nodes.end(), [](const ir::Node& n) { return ir::family_of(n.op) == ir::OpFamily::kControlFlow; }))
    run("build subgraphs", [&](Graph& graph) {
      // For the shapes their nodes give them, data-dependent sizes at their bounds.
      plan::Plan typed;
      typed.network = graph.to_network();
      typed.profiles = profiles;
      bound_data_dependent_sizes(typed, options.data_dependent_bounds, options.default_data_dependent_bound);
      return build_subgraphs(graph, typed.network, options, source);
    });

  plan::Plan p;
  p.network = g.to_network();
  p.precision = options.precision;
  p.source = source;
  p.kiln_version = kVersion;
  p.profiles = std::move(profiles);
  bound_data_dependent_sizes(p, options.data_dependent_bounds, options.default_data_dependent_bound);
  plan_memory(p);
  say(str("memory plan: arena ", p.arena_bytes, " bytes for the largest shapes",
          p.profiles.size() == 1 ? "" : str(" of ", p.profiles.size(), " profiles")));
  return p;
}

}  // namespace kiln::builder

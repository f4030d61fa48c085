#include "graph.h"

#include <algorithm>
#include <iterator>

#include "kiln/error.h"
#include "kiln/reference.h"

namespace kiln::builder {

Graph Graph::from_network(const ir::Network& net) {
  if (!net.finalized()) fail(ErrorCode::kInvalidArgument, "the builder needs a finalized network");
  Graph g;
  g.name = net.name();
  for (const ir::Value& v : net.values()) g.values.push_back({v.name, v.dtype, v.shape, v.is_input, v.weight, v.known});
  g.nodes = net.nodes();
  g.dead.assign(g.nodes.size(), false);
  g.inputs = net.inputs();
  g.outputs = net.outputs();
  g.ranges = net.dim_ranges();
  return g;
}

ir::Network Graph::to_network() const {
  std::vector<bool> used(values.size(), false);
  for (ir::ValueId v : inputs) used[size_t(v)] = true;
  for (ir::ValueId v : outputs) used[size_t(v)] = true;
  for (size_t n = 0; n < nodes.size(); ++n) {
    if (dead[n]) continue;
    for (ir::ValueId v : nodes[n].inputs)
      if (v != ir::kNoValue) used[size_t(v)] = true;
    for (ir::ValueId v : nodes[n].outputs)
      if (v != ir::kNoValue) used[size_t(v)] = true;
  }
  ir::Network net;
  net.set_name(name);
  std::vector<ir::ValueId> remap(values.size(), ir::kNoValue);
  for (ir::ValueId in : inputs) remap[size_t(in)] = net.add_input(values[size_t(in)].name, values[size_t(in)].dtype,
                                                                    values[size_t(in)].shape);
  for (size_t i = 0; i < values.size(); ++i) {
    if (!used[i] || values[i].is_input) continue;
    const Value& v = values[i];
    remap[i] = v.weight ? net.add_weight(v.name, *v.weight) : net.add_value(v.name);
  }
  auto map_ids = [&](std::vector<ir::ValueId> ids) {
    for (auto& v : ids) v = v == ir::kNoValue ? ir::kNoValue : remap[size_t(v)];
    return ids;
  };
  for (size_t n = 0; n < nodes.size(); ++n) {
    if (dead[n]) continue;
    ir::Node node = nodes[n];
    node.inputs = map_ids(node.inputs);
    node.outputs = map_ids(node.outputs);
    net.add_node(std::move(node));
  }
  for (ir::ValueId v : outputs) net.add_output(remap[size_t(v)]);
  for (auto& [s, r] : ranges) net.set_dim_range(s, r);
  net.finalize();
  return net;
}

std::string Graph::unique_name(const std::string& stem) {
  // Values are only appended, and keep their names, so the set catches up incrementally.
  for (; named_ < values.size(); ++named_) taken_.insert(values[named_].name);
  for (;;) {
    std::string name = str(stem, "__k", counter_++);
    if (taken_.insert(name).second) return name;
  }
}

ir::ValueId Graph::add_weight(const std::string& stem, ir::TensorData data) {
  Value v;
  v.name = unique_name(stem);
  v.dtype = data.dtype;
  v.shape = ir::shape_of(data.dims);
  v.weight = std::move(data);
  values.push_back(std::move(v));
  return ir::ValueId(values.size() - 1);
}

ir::ValueId Graph::add_value(const std::string& stem) {
  Value v;
  v.name = unique_name(stem);
  values.push_back(std::move(v));
  return ir::ValueId(values.size() - 1);
}

ir::ValueId Graph::add_ints(const std::string& stem, const std::vector<int64_t>& values) {
  return add_weight(stem, reference::make_tensor(DType::kInt64, {int64_t(values.size())}, std::vector<double>(values.begin(), values.end())));
}

std::vector<size_t> Graph::consumers(ir::ValueId v) const {
  std::vector<size_t> out;
  for (size_t n = 0; n < nodes.size(); ++n) {
    if (dead[n]) continue;
    for (ir::ValueId in : nodes[n].inputs)
      if (in == v) out.push_back(n);
  }
  return out;
}

bool Graph::is_output(ir::ValueId v) const { return std::find(outputs.begin(), outputs.end(), v) != outputs.end(); }

std::optional<size_t> Graph::producer_of(ir::ValueId v) const {
  for (size_t p = 0; p < nodes.size(); ++p)
    if (!dead[p] && std::find(nodes[p].outputs.begin(), nodes[p].outputs.end(), v) != nodes[p].outputs.end()) return p;
  return std::nullopt;
}

std::optional<size_t> Graph::only_reader(ir::ValueId v) const {
  if (is_output(v)) return std::nullopt;
  auto users = consumers(v);
  if (users.empty() || std::any_of(users.begin(), users.end(), [&](size_t u) { return u != users[0]; })) return std::nullopt;
  return users[0];
}

void Graph::insert_node(size_t at, ir::Node node) {
  nodes.insert(nodes.begin() + long(at), std::move(node));
  dead.insert(dead.begin() + long(at), false);
}

size_t Graph::replace_node(size_t n, std::vector<ir::Node> added) {
  dead[n] = true;
  size_t count = added.size();
  nodes.insert(nodes.begin() + long(n) + 1, std::make_move_iterator(added.begin()), std::make_move_iterator(added.end()));
  dead.insert(dead.begin() + long(n) + 1, count, false);
  return n + count;
}

std::vector<int> Graph::read_counts() const {
  std::vector<int> reads(values.size(), 0);
  for (size_t n = 0; n < nodes.size(); ++n)
    if (!dead[n])
      for (ir::ValueId v : nodes[n].inputs)
        if (v != ir::kNoValue) ++reads[size_t(v)];
  return reads;
}

void Graph::drop_unread() {
  std::vector<int> reads = read_counts();
  for (ir::ValueId v : outputs) ++reads[size_t(v)];
  // Readers come after their producers, so walking backwards sees a node only
  // once everything that could read it is settled: one pass reaches the fixpoint.
  for (size_t n = nodes.size(); n-- > 0;) {
    if (dead[n]) continue;
    bool read = false;
    for (ir::ValueId o : nodes[n].outputs) read = read || (o != ir::kNoValue && reads[size_t(o)] > 0);
    if (read) continue;
    dead[n] = true;
    for (ir::ValueId v : nodes[n].inputs)
      if (v != ir::kNoValue) --reads[size_t(v)];
  }
}

void Graph::replace_uses(ir::ValueId from, ir::ValueId to) {
  for (size_t n = 0; n < nodes.size(); ++n) {
    if (dead[n]) continue;
    for (ir::ValueId& in : nodes[n].inputs)
      if (in == from) in = to;
  }
  for (ir::ValueId& out : outputs)
    if (out == from) out = to;
}

Uses::Uses(const Graph& g)
    : reads_(g.values.size(), 0), first_reader_(g.values.size(), SIZE_MAX), last_reader_(g.values.size(), SIZE_MAX),
      producer_(g.values.size(), SIZE_MAX), output_(g.values.size(), false) {
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (g.dead[n]) continue;
    for (ir::ValueId v : g.nodes[n].inputs) {
      if (v == ir::kNoValue) continue;
      ++reads_[size_t(v)];
      if (first_reader_[size_t(v)] == SIZE_MAX) first_reader_[size_t(v)] = n;
      last_reader_[size_t(v)] = n;
    }
    for (ir::ValueId v : g.nodes[n].outputs)
      if (v != ir::kNoValue && producer_[size_t(v)] == SIZE_MAX) producer_[size_t(v)] = n;
  }
  for (ir::ValueId v : g.outputs) output_[size_t(v)] = true;
}

std::optional<size_t> Uses::producer_of(ir::ValueId v) const {
  if (!known(v) || producer_[size_t(v)] == SIZE_MAX) return std::nullopt;
  return producer_[size_t(v)];
}

std::optional<size_t> Uses::only_reader(ir::ValueId v) const {
  // A node's reads are counted together, so one reader is first and last.
  if (!known(v) || output_[size_t(v)] || reads_[size_t(v)] == 0 || first_reader_[size_t(v)] != last_reader_[size_t(v)])
    return std::nullopt;
  return first_reader_[size_t(v)];
}

std::optional<size_t> Uses::sole_reader(ir::ValueId v) const {
  if (!known(v) || output_[size_t(v)] || reads_[size_t(v)] != 1) return std::nullopt;
  return first_reader_[size_t(v)];
}

void Uses::reader_moved(ir::ValueId v, size_t from, size_t to) {
  if (!known(v)) return;
  for (size_t* r : {&first_reader_[size_t(v)], &last_reader_[size_t(v)]})
    if (*r == from) *r = to;
}

void Uses::produced_by(ir::ValueId v, size_t n) {
  if (known(v)) producer_[size_t(v)] = n;
}

}  // namespace kiln::builder

#include "batching.h"

#include <cstring>

#include "kiln/error.h"

namespace kiln::serving {

std::string check_request(const ServedModel& model, const RequestInputs& inputs) {
  const ir::Network& net = model.plan->network;
  if (inputs.size() != net.inputs().size())
    return str("the request has ", inputs.size(), " inputs; the model takes ", net.inputs().size());
  ir::SymbolBindings bindings;
  std::map<std::string, std::string, std::less<>> bound_by;  // symbol -> "input 'x' dim 1"
  for (size_t i = 0; i < inputs.size(); ++i) {
    const ir::Value& v = net.value(net.inputs()[i]);
    const ir::TensorData& t = inputs[i];
    if (t.dtype != v.dtype)
      return str("input '", v.name, "' is ", dtype_name(t.dtype), "; the model takes ", dtype_name(v.dtype));
    if (t.dims.size() != v.shape.size())
      return str("input '", v.name, "' has ", t.dims.size(), " dims; the model takes ", v.shape.size(), " ",
                 ir::shape_to_string(v.shape));
    for (size_t d = 0; d < t.dims.size(); ++d) {
      const ir::Dim& want = v.shape[d];
      std::string where = str("input '", v.name, "' dim ", d);
      if (want.is_constant()) {
        if (t.dims[d] != want.constant()) return str(where, " is ", t.dims[d], "; the model needs ", want.constant());
        continue;
      }
      std::set<std::string> symbols;
      want.collect_symbols(symbols);
      if (symbols.size() != 1 || want != ir::Dim::symbol(*symbols.begin())) continue;  // checked once all are bound
      const std::string& s = *symbols.begin();
      if (auto it = bindings.find(s); it != bindings.end()) {
        if (it->second != t.dims[d])
          return str(where, " is ", t.dims[d], " but ", bound_by[s], " is ", it->second, " (both are '", s, "')");
        continue;
      }
      bindings[s] = t.dims[d];
      bound_by[s] = where;
      auto range = net.dim_ranges().find(s);
      if (range != net.dim_ranges().end() && (t.dims[d] < range->second.min || t.dims[d] > range->second.max))
        return str(where, " is ", t.dims[d], "; the model's profile allows ", range->second.min, "..",
                   range->second.max, " for '", s, "'");
    }
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    const ir::Value& v = net.value(net.inputs()[i]);
    for (size_t d = 0; d < v.shape.size(); ++d) {
      auto want = v.shape[d].evaluate(bindings);
      if (want && *want != inputs[i].dims[d])
        return str("input '", v.name, "' dim ", d, " is ", inputs[i].dims[d], "; with the other dims the model needs ",
                   *want, " (", v.shape[d].to_string(), ")");
    }
  }
  if (model.batched()) {
    int64_t batch = inputs.front().dims.at(0);
    if (batch < 1 || batch > model.config.max_batch_size)
      return str("the batch dim is ", batch, "; max_batch_size is ", model.config.max_batch_size);
    for (size_t i = 1; i < inputs.size(); ++i)
      if (inputs[i].dims.at(0) != batch)
        return str("input '", net.value(net.inputs()[i]).name, "' has batch ", inputs[i].dims[0], " but input '",
                   net.value(net.inputs()[0]).name, "' has ", batch);
  }
  return "";
}

std::vector<std::vector<size_t>> batch_groups(const ServedModel& model,
                                              const std::vector<const RequestInputs*>& requests) {
  std::vector<std::vector<size_t>> groups;
  if (!model.batched()) {
    for (size_t i = 0; i < requests.size(); ++i) groups.push_back({i});
    return groups;
  }
  auto trailing_dims_equal = [](const RequestInputs& a, const RequestInputs& b) {
    for (size_t i = 0; i < a.size(); ++i)
      if (!std::equal(a[i].dims.begin() + 1, a[i].dims.end(), b[i].dims.begin() + 1, b[i].dims.end())) return false;
    return true;
  };
  for (size_t i = 0; i < requests.size(); ++i) {
    bool placed = false;
    for (auto& group : groups)
      if (trailing_dims_equal(*requests[group.front()], *requests[i])) {
        group.push_back(i);
        placed = true;
        break;
      }
    if (!placed) groups.push_back({i});
  }
  return groups;
}

ir::TensorData concat_batch(const std::vector<const ir::TensorData*>& parts) {
  if (parts.size() == 1) return *parts.front();
  ir::TensorData out;
  out.dtype = parts.front()->dtype;
  out.dims = parts.front()->dims;
  out.dims[0] = 0;
  size_t bytes = 0;
  for (const ir::TensorData* p : parts) {
    if (p->dtype != out.dtype || p->dims.size() != out.dims.size() ||
        !std::equal(p->dims.begin() + 1, p->dims.end(), out.dims.begin() + 1))
      fail(ErrorCode::kInternal, "concat_batch: parts of different dtypes or trailing dims");
    out.dims[0] += p->dims[0];
    bytes += p->data.size();
  }
  std::vector<std::byte> joined(bytes);
  size_t at = 0;
  for (const ir::TensorData* p : parts) {
    if (p->data.size()) std::memcpy(joined.data() + at, p->data.data(), p->data.size());
    at += p->data.size();
  }
  out.data = Buffer::from_bytes(std::move(joined));
  return out;
}

ir::TensorData slice_batch(const ir::TensorData& tensor, int64_t begin, int64_t count) {
  if (tensor.dims.empty() || begin < 0 || count < 0 || begin + count > tensor.dims[0])
    fail(ErrorCode::kShapeError, "rows ", begin, "..", begin + count, " are outside a batch of ",
         tensor.dims.empty() ? 0 : tensor.dims[0]);
  ir::TensorData out;
  out.dtype = tensor.dtype;
  out.dims = tensor.dims;
  out.dims[0] = count;
  size_t row_bytes = tensor.dims[0] ? tensor.data.size() / size_t(tensor.dims[0]) : 0;
  out.data = tensor.data.slice(size_t(begin) * row_bytes, size_t(count) * row_bytes);
  return out;
}

}  // namespace kiln::serving

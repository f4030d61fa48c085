#include "batching.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <utility>

#include "kiln/error.h"

namespace kiln::serving {

IoNames::IoNames(const ir::Network& net) {
  for (ir::ValueId id : net.inputs()) inputs_.push_back(net.value(id).name);
  for (ir::ValueId id : net.outputs()) outputs_.push_back(net.value(id).name);
}

int IoNames::output(std::string_view name) const {
  for (size_t i = 0; i < outputs_.size(); ++i)
    if (outputs_[i] == name) return int(i);
  return -1;
}

std::string IoNames::order_inputs(std::span<const char* const> names, std::vector<uint32_t>& order) const {
  constexpr uint32_t kUnset = ~0u;
  order.assign(inputs_.size(), kUnset);
  for (uint32_t k = 0; k < names.size(); ++k) {
    size_t p = 0;
    while (p < inputs_.size() && inputs_[p] != names[k]) ++p;
    if (p == inputs_.size()) {
      std::string takes;
      for (const std::string& n : inputs_) takes += str(takes.empty() ? "'" : ", '", n, "'");
      return str("the request has an input '", names[k], "' the model does not take (it takes ", takes, ")");
    }
    if (order[p] != kUnset) return str("the request has input '", names[k], "' twice");
    order[p] = k;
  }
  for (size_t p = 0; p < inputs_.size(); ++p)
    if (order[p] == kUnset) return str("input '", inputs_[p], "' is missing");
  return "";
}

RequestCheck::RequestCheck(std::shared_ptr<const ServedModel> model) : model_(std::move(model)) {
  const ir::Network& net = model_->plan->network;
  for (ir::ValueId id : net.inputs()) {
    std::vector<DimRule>& rules = rules_.emplace_back();
    for (const ir::Dim& want : net.value(id).shape) {
      DimRule& rule = rules.emplace_back();
      if (want.is_constant()) {
        rule.constant = want.constant();
        continue;
      }
      std::set<std::string> symbols;
      want.collect_symbols(symbols);
      if (symbols.size() != 1 || want != ir::Dim::symbol(*symbols.begin())) {
        rule.kind = DimRule::kExpression;
        has_expressions_ = true;
        continue;
      }
      const std::string& s = *symbols.begin();
      rule.kind = DimRule::kSymbol;
      rule.symbol = 0;
      while (rule.symbol < symbols_.size() && symbols_[rule.symbol].name != s) ++rule.symbol;
      if (rule.symbol == symbols_.size()) {
        Symbol& symbol = symbols_.emplace_back();
        symbol.name = s;
        if (auto range = net.dim_ranges().find(s); range != net.dim_ranges().end()) {
          symbol.ranged = true;
          symbol.range = range->second;
        }
      }
    }
  }
  bound_.resize(symbols_.size());
  bound_by_.resize(symbols_.size());
}

std::string RequestCheck::operator()(const RequestInputs& inputs) {
  const ir::Network& net = model_->plan->network;
  if (inputs.size() != net.inputs().size())
    return str("the request has ", inputs.size(), " inputs; the model takes ", net.inputs().size());
  constexpr int64_t kUnbound = -1;  // dims are never negative (the backend refuses them)
  std::fill(bound_.begin(), bound_.end(), kUnbound);
  auto where = [&](size_t i, size_t d) { return str("input '", net.value(net.inputs()[i]).name, "' dim ", d); };
  for (size_t i = 0; i < inputs.size(); ++i) {
    const ir::Value& v = net.value(net.inputs()[i]);
    const ir::TensorData& t = inputs[i];
    if (t.dtype != v.dtype)
      return str("input '", v.name, "' is ", dtype_name(t.dtype), "; the model takes ", dtype_name(v.dtype));
    if (t.dims.size() != v.shape.size())
      return str("input '", v.name, "' has ", t.dims.size(), " dims; the model takes ", v.shape.size(), " ",
                 ir::shape_to_string(v.shape));
    for (size_t d = 0; d < t.dims.size(); ++d) {
      const DimRule& rule = rules_[i][d];
      if (rule.kind == DimRule::kConstant) {
        if (t.dims[d] != rule.constant) return str(where(i, d), " is ", t.dims[d], "; the model needs ", rule.constant);
        continue;
      }
      if (rule.kind == DimRule::kExpression) continue;  // checked once all are bound
      const Symbol& s = symbols_[rule.symbol];
      int64_t& value = bound_[rule.symbol];
      if (value != kUnbound) {
        if (value != t.dims[d]) {
          auto [bi, bd] = bound_by_[rule.symbol];
          return str(where(i, d), " is ", t.dims[d], " but ", where(bi, bd), " is ", value, " (both are '", s.name,
                     "')");
        }
        continue;
      }
      value = t.dims[d];
      bound_by_[rule.symbol] = {i, d};
      if (s.ranged && (value < s.range.min || value > s.range.max))
        return str(where(i, d), " is ", value, "; the model's profile allows ", s.range.min, "..", s.range.max,
                   " for '", s.name, "'");
    }
  }
  if (has_expressions_) {
    ir::SymbolBindings bindings;
    for (size_t s = 0; s < symbols_.size(); ++s)
      if (bound_[s] != kUnbound) bindings[symbols_[s].name] = bound_[s];
    for (size_t i = 0; i < inputs.size(); ++i) {
      const ir::Value& v = net.value(net.inputs()[i]);
      for (size_t d = 0; d < v.shape.size(); ++d) {
        if (rules_[i][d].kind != DimRule::kExpression) continue;
        auto want = v.shape[d].evaluate(bindings);
        if (want && *want != inputs[i].dims[d])
          return str(where(i, d), " is ", inputs[i].dims[d], "; with the other dims the model needs ", *want, " (",
                     v.shape[d].to_string(), ")");
      }
    }
  }
  if (model_->batched()) {
    int64_t batch = inputs.front().dims.at(0);
    if (batch < 1 || batch > model_->config.max_batch_size)
      return str("the batch dim is ", batch, "; max_batch_size is ", model_->config.max_batch_size);
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

}  // namespace kiln::serving

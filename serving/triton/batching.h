// Requests into batches and results back: each request's inputs are checked on
// their own (so one bad request fails alone), requests whose inputs agree past
// the batch dim are concatenated along dim 0 and run once (each request's rows
// of the outputs go to its own response buffers). What can be worked out from the model is
// worked out once, when an instance starts, so that a request costs no name
// lookup, map or allocation. No Triton API here.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/ir/network.h"
#include "model_config.h"

namespace kiln::serving {

// One request's inputs as tensors, in the network's input order.
using RequestInputs = std::vector<ir::TensorData>;

// The network's input and output names, so that a request's tensors, named in
// any order, find their places by comparing a few strings.
class IoNames {
 public:
  explicit IoNames(const ir::Network& net);
  size_t input_count() const { return inputs_.size(); }
  const std::string& input_name(size_t i) const { return inputs_[i]; }
  // The position of the output named `name`, or -1.
  int output(std::string_view name) const;
  // For a request whose inputs are named `names` (in the request's order):
  // order[p] = the request's index of network input p. Returns what is wrong
  // ("" when nothing): an input the model does not take, a missing or a
  // repeated one.
  std::string order_inputs(std::span<const char* const> names, std::vector<uint32_t>& order) const;

 private:
  std::vector<std::string> inputs_, outputs_;
};

// What is wrong with a request's inputs for the model ("" when nothing):
// dtypes, ranks, fixed dims, symbolic dims that disagree between inputs or
// leave their profile's range, a batch larger than max_batch_size. Names the
// input and dim. Built once per instance; one check at a time.
class RequestCheck {
 public:
  explicit RequestCheck(std::shared_ptr<const ServedModel> model);
  std::string operator()(const RequestInputs& inputs);

 private:
  // A dim of an input as the model declares it: a constant, one symbol alone
  // (bound by the first input that has it), or an expression of symbols
  // (checked once every symbol is bound).
  struct DimRule {
    enum Kind { kConstant, kSymbol, kExpression } kind = kConstant;
    int64_t constant = 0;
    size_t symbol = 0;  // index into symbols_
  };
  struct Symbol {
    std::string name;
    bool ranged = false;
    ir::DimRange range;
  };
  std::shared_ptr<const ServedModel> model_;
  std::vector<std::vector<DimRule>> rules_;  // per input, per dim
  std::vector<Symbol> symbols_;
  bool has_expressions_ = false;
  // Per symbol: its value and where it was bound (input, dim), for this check.
  std::vector<int64_t> bound_;
  std::vector<std::pair<size_t, size_t>> bound_by_;
};

// Groups of requests (indices into `requests`) that run as one batch: with
// max_batch_size > 0, those whose inputs have equal dims past dim 0 (ragged
// batches split into such groups); otherwise one request per group. Order is
// kept.
std::vector<std::vector<size_t>> batch_groups(const ServedModel& model,
                                              const std::vector<const RequestInputs*>& requests);

// The tensors joined along dim 0 (equal dtypes and trailing dims).
ir::TensorData concat_batch(const std::vector<const ir::TensorData*>& parts);

}  // namespace kiln::serving

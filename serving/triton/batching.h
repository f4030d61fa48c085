// Requests into batches and results back: each request's inputs are checked on
// their own (so one bad request fails alone), requests whose inputs agree past
// the batch dim are concatenated along dim 0 and run once, and the outputs are
// cut back into per-request rows. No Triton API here.
#pragma once

#include <string>
#include <vector>

#include "kiln/ir/network.h"
#include "model_config.h"

namespace kiln::serving {

// One request's inputs as host tensors, in the network's input order.
using RequestInputs = std::vector<ir::TensorData>;

// What is wrong with a request's inputs for `model` ("" when nothing): dtypes,
// ranks, fixed dims, symbolic dims that disagree between inputs or leave their
// profile's range, a batch larger than max_batch_size. Names the input and dim.
std::string check_request(const ServedModel& model, const RequestInputs& inputs);

// Groups of requests (indices into `requests`) that run as one batch: with
// max_batch_size > 0, those whose inputs have equal dims past dim 0 (ragged
// batches split into such groups); otherwise one request per group. Order is kept.
std::vector<std::vector<size_t>> batch_groups(const ServedModel& model,
                                              const std::vector<const RequestInputs*>& requests);

// The tensors joined along dim 0 (equal dtypes and trailing dims).
ir::TensorData concat_batch(const std::vector<const ir::TensorData*>& parts);

// `count` rows of dim 0 from `begin`, sharing the tensor's bytes.
ir::TensorData slice_batch(const ir::TensorData& tensor, int64_t begin, int64_t count);

}  // namespace kiln::serving

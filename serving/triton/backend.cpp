// libtriton_kiln.so: the TRITONBACKEND entry points. A model's state is its
// ServedModel (plan + configuration) and its per-GPU engines; an instance's
// state is its Runner. Execute reads every request on its own, batches the
// good ones, runs each batch once and answers every request separately.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "batching.h"
#include "kiln/error.h"
#include "kiln/version.h"
#include "model_config.h"
#include "runners.h"
#include "triton_api.h"

namespace {

using namespace kiln;
using namespace kiln::serving;

void log(TRITONSERVER_LogLevel level, int line, const std::string& message) {
  if (!TRITONSERVER_LogIsEnabled(level)) return;
  if (TRITONSERVER_Error* e = TRITONSERVER_LogMessage(level, __FILE__, line, message.c_str()))
    TRITONSERVER_ErrorDelete(e);
}

TRITONSERVER_Error* make_error(TRITONSERVER_Error_Code code, const std::string& message) {
  return TRITONSERVER_ErrorNew(code, message.c_str());
}

TRITONSERVER_Error_Code triton_code(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kShapeError:
    case ErrorCode::kTypeError: return TRITONSERVER_ERROR_INVALID_ARG;
    case ErrorCode::kUnsupported: return TRITONSERVER_ERROR_UNSUPPORTED;
    case ErrorCode::kIoError: return TRITONSERVER_ERROR_NOT_FOUND;
    default: return TRITONSERVER_ERROR_INTERNAL;
  }
}

// A failed Triton call inside the backend, carried as an exception to the entry point.
struct TritonFailure {
  TRITONSERVER_Error* error;
};

void ok(TRITONSERVER_Error* error) {
  if (error) throw TritonFailure{error};
}

// Runs an entry point's body, turning exceptions into a Triton error whose
// message starts with `context` (which model or instance).
template <class Body>
TRITONSERVER_Error* guarded(const std::string& context, Body&& body) {
  try {
    body();
    return nullptr;
  } catch (TritonFailure& f) {
    return f.error;
  } catch (const Error& e) {
    return make_error(triton_code(e.code()), context + ": " + e.what());
  } catch (const std::exception& e) {
    return make_error(TRITONSERVER_ERROR_INTERNAL, context + ": " + e.what());
  }
}

std::optional<DType> kiln_dtype(TRITONSERVER_DataType t) {
  switch (t) {
    case TRITONSERVER_TYPE_FP32: return DType::kFloat32;
    case TRITONSERVER_TYPE_FP16: return DType::kFloat16;
    case TRITONSERVER_TYPE_BF16: return DType::kBFloat16;
    case TRITONSERVER_TYPE_FP64: return DType::kFloat64;
    case TRITONSERVER_TYPE_INT64: return DType::kInt64;
    case TRITONSERVER_TYPE_INT32: return DType::kInt32;
    case TRITONSERVER_TYPE_INT8: return DType::kInt8;
    case TRITONSERVER_TYPE_UINT8: return DType::kUInt8;
    case TRITONSERVER_TYPE_BOOL: return DType::kBool;
    default: return std::nullopt;
  }
}

TRITONSERVER_DataType triton_dtype(DType t) {
  switch (t) {
    case DType::kFloat32: return TRITONSERVER_TYPE_FP32;
    case DType::kFloat16: return TRITONSERVER_TYPE_FP16;
    case DType::kBFloat16: return TRITONSERVER_TYPE_BF16;
    case DType::kFloat64: return TRITONSERVER_TYPE_FP64;
    case DType::kInt64: return TRITONSERVER_TYPE_INT64;
    case DType::kInt32: return TRITONSERVER_TYPE_INT32;
    case DType::kInt8: return TRITONSERVER_TYPE_INT8;
    case DType::kUInt8: return TRITONSERVER_TYPE_UINT8;
    case DType::kBool: return TRITONSERVER_TYPE_BOOL;
  }
  return TRITONSERVER_TYPE_INVALID;
}

uint64_t now_ns() {
  return uint64_t(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

struct ModelState {
  ModelState(std::string name, std::shared_ptr<const ServedModel> model)
      : name(std::move(name)), model(model), engines(std::move(model)) {}
  std::string name;
  std::shared_ptr<const ServedModel> model;
  DeviceEngines engines;
};

struct InstanceState {
  std::string name;  // "model 'mlp' instance 'mlp_0'"
  std::shared_ptr<const ServedModel> model;
  std::unique_ptr<Runner> runner;
};

// Bytes between host and wherever Triton keeps a buffer (GPU memory when a
// client used CUDA shared memory).
void copy_bytes(void* dst, const void* src, size_t bytes, bool device_involved) {
  if (!bytes) return;
  if (!device_involved) {
    std::memcpy(dst, src, bytes);
    return;
  }
  cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyDefault);
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail(ErrorCode::kDevice, "copying a tensor to or from GPU memory failed: ", cudaGetErrorString(e));
  }
}

// A request's inputs as host tensors in network order, or what is wrong with them.
std::string read_request(const ServedModel& model, TRITONBACKEND_Request* request, RequestInputs& inputs) {
  const ir::Network& net = model.plan->network;
  uint32_t count = 0;
  ok(TRITONBACKEND_RequestInputCount(request, &count));
  std::map<std::string, TRITONBACKEND_Input*, std::less<>> by_name;
  for (uint32_t i = 0; i < count; ++i) {
    TRITONBACKEND_Input* input = nullptr;
    const char* name = nullptr;
    ok(TRITONBACKEND_RequestInputByIndex(request, i, &input));
    ok(TRITONBACKEND_InputProperties(input, &name, nullptr, nullptr, nullptr, nullptr, nullptr));
    by_name[name] = input;
  }
  for (ir::ValueId id : net.inputs()) {
    const std::string& name = net.value(id).name;
    auto it = by_name.find(name);
    if (it == by_name.end()) return str("input '", name, "' is missing");
    TRITONSERVER_DataType datatype;
    const int64_t* shape = nullptr;
    uint32_t rank = 0, buffers = 0;
    uint64_t byte_size = 0;
    ok(TRITONBACKEND_InputProperties(it->second, nullptr, &datatype, &shape, &rank, &byte_size, &buffers));
    auto dtype = kiln_dtype(datatype);
    if (!dtype) return str("input '", name, "' has a datatype kiln does not take (", int(datatype), ")");
    ir::TensorData t;
    t.dtype = *dtype;
    t.dims.assign(shape, shape + rank);
    for (int64_t d : t.dims)
      if (d < 0) return str("input '", name, "' has a negative dim");
    uint64_t expected = uint64_t(ir::checked_numel(t.dims)) * dtype_size(t.dtype);
    if (byte_size != expected)
      return str("input '", name, "' has ", byte_size, " bytes; its shape and datatype need ", expected);
    if (buffers == 1) {
      // One buffer in host memory: a view of it, valid until the request is released.
      const void* data = nullptr;
      uint64_t size = 0;
      TRITONSERVER_MemoryType memory = TRITONSERVER_MEMORY_CPU;
      int64_t memory_id = 0;
      ok(TRITONBACKEND_InputBuffer(it->second, 0, &data, &size, &memory, &memory_id));
      if (size != byte_size) return str("input '", name, "' has ", size, " bytes in its buffer; it declares ", byte_size);
      if (memory != TRITONSERVER_MEMORY_GPU) {
        t.data = Buffer::borrow(data, size);
        inputs.push_back(std::move(t));
        continue;
      }
    }
    std::vector<std::byte> bytes(byte_size);
    size_t at = 0;
    for (uint32_t b = 0; b < buffers; ++b) {
      const void* data = nullptr;
      uint64_t size = 0;
      TRITONSERVER_MemoryType memory = TRITONSERVER_MEMORY_CPU;
      int64_t memory_id = 0;
      ok(TRITONBACKEND_InputBuffer(it->second, b, &data, &size, &memory, &memory_id));
      if (at + size > bytes.size()) return str("input '", name, "' has more bytes in its buffers than it declares");
      copy_bytes(bytes.data() + at, data, size, memory == TRITONSERVER_MEMORY_GPU);
      at += size;
    }
    if (at != bytes.size()) return str("input '", name, "' has fewer bytes in its buffers than it declares");
    t.data = Buffer::from_bytes(std::move(bytes));
    inputs.push_back(std::move(t));
  }
  return check_request(model, inputs);
}

// Fills `response` with the outputs the request asks for.
void write_outputs(const ServedModel& model, TRITONBACKEND_Request* request, TRITONBACKEND_Response* response,
                   const std::vector<ir::TensorData>& outputs) {
  const ir::Network& net = model.plan->network;
  uint32_t count = 0;
  ok(TRITONBACKEND_RequestOutputCount(request, &count));
  for (uint32_t i = 0; i < count; ++i) {
    const char* name = nullptr;
    ok(TRITONBACKEND_RequestOutputName(request, i, &name));
    size_t index = 0;
    while (index < net.outputs().size() && net.value(net.outputs()[index]).name != name) ++index;
    if (index == net.outputs().size()) fail(ErrorCode::kInvalidArgument, "the model has no output '", name, "'");
    const ir::TensorData& t = outputs[index];
    TRITONBACKEND_Output* output = nullptr;
    ok(TRITONBACKEND_ResponseOutput(response, &output, name, triton_dtype(t.dtype), t.dims.data(),
                                    uint32_t(t.dims.size())));
    void* buffer = nullptr;
    TRITONSERVER_MemoryType memory = TRITONSERVER_MEMORY_CPU;
    int64_t memory_id = 0;
    ok(TRITONBACKEND_OutputBuffer(output, &buffer, t.data.size(), &memory, &memory_id));
    copy_bytes(buffer, t.data.data(), t.data.size(), memory == TRITONSERVER_MEMORY_GPU);
  }
}

// Sends the response (or the error) and releases the request, with its statistics.
void finish(TRITONBACKEND_ModelInstance* instance, TRITONBACKEND_Request* request, TRITONBACKEND_Response* response,
            TRITONSERVER_Error* error, const uint64_t (&times)[4]) {
  if (response) {
    if (TRITONSERVER_Error* e = TRITONBACKEND_ResponseSend(response, TRITONSERVER_RESPONSE_COMPLETE_FINAL, error)) {
      log(TRITONSERVER_LOG_ERROR, __LINE__, str("sending a response failed: ", TRITONSERVER_ErrorMessage(e)));
      TRITONSERVER_ErrorDelete(e);
    }
  }
  if (TRITONSERVER_Error* e = TRITONBACKEND_ModelInstanceReportStatistics(instance, request, error == nullptr,
                                                                         times[0], times[1], times[2], times[3]))
    TRITONSERVER_ErrorDelete(e);
  if (error) TRITONSERVER_ErrorDelete(error);
  if (TRITONSERVER_Error* e = TRITONBACKEND_RequestRelease(request, TRITONSERVER_REQUEST_RELEASE_ALL)) {
    log(TRITONSERVER_LOG_ERROR, __LINE__, str("releasing a request failed: ", TRITONSERVER_ErrorMessage(e)));
    TRITONSERVER_ErrorDelete(e);
  }
}

std::string request_label(TRITONBACKEND_Request* request) {
  const char* id = nullptr;
  if (TRITONSERVER_Error* e = TRITONBACKEND_RequestId(request, &id)) {
    TRITONSERVER_ErrorDelete(e);
    return "";
  }
  return id && *id ? str(" (request '", id, "')") : "";
}

}  // namespace

extern "C" {

TRITONSERVER_Error* TRITONBACKEND_Initialize(TRITONBACKEND_Backend*) {
  uint32_t major = 0, minor = 0;
  if (TRITONSERVER_Error* e = TRITONBACKEND_ApiVersion(&major, &minor)) return e;
  if (major != kTritonBackendApiMajor || minor < kTritonBackendApiMinor)
    return make_error(TRITONSERVER_ERROR_UNSUPPORTED,
                      str("the kiln backend needs Triton's backend API ", kTritonBackendApiMajor, ".",
                          kTritonBackendApiMinor, " or a later ", kTritonBackendApiMajor, ".x; this server has ",
                          major, ".", minor));
  log(TRITONSERVER_LOG_INFO, __LINE__, str("kiln backend ", kVersion, " (Triton backend API ", major, ".", minor, ")"));
  return nullptr;
}

TRITONSERVER_Error* TRITONBACKEND_Finalize(TRITONBACKEND_Backend*) { return nullptr; }

TRITONSERVER_Error* TRITONBACKEND_ModelInitialize(TRITONBACKEND_Model* model) {
  const char* name = "?";
  if (TRITONSERVER_Error* e = TRITONBACKEND_ModelName(model, &name)) return e;
  return guarded(str("kiln model '", name, "'"), [&] {
    uint64_t version = 0;
    ok(TRITONBACKEND_ModelVersion(model, &version));
    TRITONBACKEND_ArtifactType artifact;
    const char* location = nullptr;
    ok(TRITONBACKEND_ModelRepository(model, &artifact, &location));
    if (artifact != TRITONBACKEND_ARTIFACT_FILESYSTEM)
      fail(ErrorCode::kUnsupported, "the model's files are not on a file system");
    TRITONSERVER_Message* message = nullptr;
    ok(TRITONBACKEND_ModelConfig(model, 1, &message));
    std::string json;
    {
      const char* base = nullptr;
      size_t size = 0;
      TRITONSERVER_Error* e = TRITONSERVER_MessageSerializeToJson(message, &base, &size);
      if (!e) json.assign(base, size);
      TRITONSERVER_MessageDelete(message);
      ok(e);
    }
    auto state = std::make_unique<ModelState>(
        name, load_served_model(parse_model_config(json), std::filesystem::path(location) / std::to_string(version)));
    log(TRITONSERVER_LOG_INFO, __LINE__,
        str("kiln model '", name, "' version ", version, ": ", state->model->file.string(), " (",
            plan::precision_name(state->model->plan->precision), ", max_batch_size ",
            state->model->config.max_batch_size, ")"));
    ok(TRITONBACKEND_ModelSetState(model, state.get()));
    state.release();  // Triton holds it now; TRITONBACKEND_ModelFinalize deletes it
  });
}

TRITONSERVER_Error* TRITONBACKEND_ModelFinalize(TRITONBACKEND_Model* model) {
  void* raw = nullptr;
  if (TRITONSERVER_Error* e = TRITONBACKEND_ModelState(model, &raw)) return e;
  std::unique_ptr<ModelState> state(static_cast<ModelState*>(raw));
  if (!state) return nullptr;
  return guarded(str("kiln model '", state->name, "'"), [&] {
    for (const std::string& w : state->engines.save_cache())
      log(TRITONSERVER_LOG_WARN, __LINE__, str("kiln model '", state->name, "': runtime cache: ", w));
  });
}

TRITONSERVER_Error* TRITONBACKEND_ModelInstanceInitialize(TRITONBACKEND_ModelInstance* instance) {
  const char* name = "?";
  if (TRITONSERVER_Error* e = TRITONBACKEND_ModelInstanceName(instance, &name)) return e;
  TRITONBACKEND_Model* model = nullptr;
  void* raw = nullptr;
  if (TRITONSERVER_Error* e = TRITONBACKEND_ModelInstanceModel(instance, &model)) return e;
  if (TRITONSERVER_Error* e = TRITONBACKEND_ModelState(model, &raw)) return e;
  auto* model_state = static_cast<ModelState*>(raw);
  std::string label = str("kiln model '", model_state->name, "' instance '", name, "'");
  return guarded(label, [&] {
    TRITONSERVER_InstanceGroupKind kind;
    int32_t device = 0;
    ok(TRITONBACKEND_ModelInstanceKind(instance, &kind));
    ok(TRITONBACKEND_ModelInstanceDeviceId(instance, &device));
    auto state = std::make_unique<InstanceState>();
    state->name = label;
    state->model = model_state->model;
    if (kind == TRITONSERVER_INSTANCEGROUPKIND_CPU) {
      state->runner = make_reference_runner(model_state->model);
      log(TRITONSERVER_LOG_INFO, __LINE__, label + ": KIND_CPU, the reference interpreter (exact, slow)");
    } else if (kind == TRITONSERVER_INSTANCEGROUPKIND_GPU) {
      std::string reason;
      if (!runtime::cuda_available(&reason)) fail(ErrorCode::kDevice, "KIND_GPU needs a usable GPU: ", reason);
      state->runner = make_gpu_runner(model_state->engines.engine(device), device);
      // Triton names the instances of each GPU alike: the label tells them apart.
      state->name = label = str(label, " on GPU ", device);
      for (const std::string& w : model_state->engines.cache_warnings())
        log(TRITONSERVER_LOG_WARN, __LINE__, label + ": runtime cache: " + w);
      log(TRITONSERVER_LOG_INFO, __LINE__, label + ": KIND_GPU");
    } else {
      fail(ErrorCode::kUnsupported, "instance kind ", int(kind), " is neither KIND_CPU nor KIND_GPU");
    }
    ok(TRITONBACKEND_ModelInstanceSetState(instance, state.get()));
    state.release();  // deleted by TRITONBACKEND_ModelInstanceFinalize
  });
}

TRITONSERVER_Error* TRITONBACKEND_ModelInstanceFinalize(TRITONBACKEND_ModelInstance* instance) {
  void* raw = nullptr;
  if (TRITONSERVER_Error* e = TRITONBACKEND_ModelInstanceState(instance, &raw)) return e;
  std::unique_ptr<InstanceState> state(static_cast<InstanceState*>(raw));
  if (state && state->runner) {
    std::string summary = state->runner->summary();
    if (!summary.empty()) log(TRITONSERVER_LOG_INFO, __LINE__, state->name + ": " + summary);
  }
  return nullptr;
}

TRITONSERVER_Error* TRITONBACKEND_ModelInstanceExecute(TRITONBACKEND_ModelInstance* instance,
                                                      TRITONBACKEND_Request** requests, const uint32_t request_count) {
  uint64_t exec_start = now_ns();
  void* raw = nullptr;
  if (TRITONSERVER_Error* e = TRITONBACKEND_ModelInstanceState(instance, &raw)) return e;
  auto* state = static_cast<InstanceState*>(raw);
  const ServedModel& model = *state->model;

  // From here on every request is ours: each gets a response and a release.
  std::vector<TRITONBACKEND_Response*> responses(request_count, nullptr);
  std::vector<RequestInputs> inputs(request_count);
  std::vector<size_t> good;
  for (uint32_t r = 0; r < request_count; ++r) {
    if (TRITONSERVER_Error* e = TRITONBACKEND_ResponseNew(&responses[r], requests[r])) {
      log(TRITONSERVER_LOG_ERROR, __LINE__, state->name + ": no response: " + TRITONSERVER_ErrorMessage(e));
      TRITONSERVER_ErrorDelete(e);
      responses[r] = nullptr;
    }
    std::string problem;
    TRITONSERVER_Error* error = guarded(state->name, [&] { problem = read_request(model, requests[r], inputs[r]); });
    if (!error && !problem.empty())
      error = make_error(TRITONSERVER_ERROR_INVALID_ARG, state->name + request_label(requests[r]) + ": " + problem);
    if (error) {
      uint64_t t = now_ns();
      finish(instance, requests[r], responses[r], error, {exec_start, t, t, t});
    } else {
      good.push_back(r);
    }
  }

  std::vector<const RequestInputs*> batchable;
  for (size_t r : good) batchable.push_back(&inputs[r]);
  std::vector<std::vector<size_t>> groups = batch_groups(model, batchable);
  log(TRITONSERVER_LOG_VERBOSE, __LINE__,
      str(state->name, ": execute: ", request_count, " requests, ", request_count - good.size(), " refused, ",
          groups.size(), " batches"));
  uint64_t batch_size = 0, compute_start = 0, compute_end = 0;
  for (const std::vector<size_t>& group : groups) {
    std::vector<size_t> members;
    for (size_t g : group) members.push_back(good[g]);
    uint64_t start = now_ns();
    std::vector<ir::TensorData> outputs;
    TRITONSERVER_Error* group_error = guarded(state->name, [&] {
      std::vector<StackedInput> batch(inputs[members.front()].size());
      int64_t rows = 0;
      for (size_t m : members) rows += model.batched() ? inputs[m].front().dims[0] : 1;
      for (size_t i = 0; i < batch.size(); ++i)
        for (size_t m : members) batch[i].push_back(&inputs[m][i]);
      outputs = state->runner->run(batch);
      if (model.batched())
        for (size_t o = 0; o < outputs.size(); ++o)
          if (outputs[o].dims.empty() || outputs[o].dims[0] != rows)
            fail(ErrorCode::kShapeError, "output '", model.plan->network.value(model.plan->network.outputs()[o]).name,
                 "' has shape without the batch of ", rows, " rows first");
    });
    uint64_t end = now_ns();
    // Gathering the requests' inputs is Triton's compute_input; the run proper starts after it.
    if (!group_error) start = std::clamp(state->runner->inputs_ready_ns(), start, end);
    if (!compute_start) compute_start = start;
    compute_end = end;
    int64_t row = 0;
    for (size_t m : members) {
      TRITONSERVER_Error* error = nullptr;
      if (group_error) {
        error = make_error(TRITONSERVER_ErrorCode(group_error), TRITONSERVER_ErrorMessage(group_error));
      } else {
        error = guarded(state->name, [&] {
          if (!responses[m]) return;
          if (!model.batched()) return write_outputs(model, requests[m], responses[m], outputs);
          int64_t rows = inputs[m].front().dims[0];
          std::vector<ir::TensorData> mine;
          for (const ir::TensorData& t : outputs) mine.push_back(slice_batch(t, row, rows));
          write_outputs(model, requests[m], responses[m], mine);
        });
        if (!error) batch_size += model.batched() ? uint64_t(inputs[m].front().dims[0]) : 1;
      }
      if (model.batched()) row += inputs[m].front().dims[0];
      finish(instance, requests[m], responses[m], error, {exec_start, start, end, now_ns()});
    }
    if (group_error) TRITONSERVER_ErrorDelete(group_error);
  }
  if (batch_size) {
    if (TRITONSERVER_Error* e = TRITONBACKEND_ModelInstanceReportBatchStatistics(instance, batch_size, exec_start,
                                                                                compute_start, compute_end, now_ns()))
      TRITONSERVER_ErrorDelete(e);
  }
  return nullptr;
}

}  // extern "C"

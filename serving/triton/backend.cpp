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
#include <utility>
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

std::string request_label(TRITONBACKEND_Request* request) {
  const char* id = nullptr;
  if (TRITONSERVER_Error* e = TRITONBACKEND_RequestId(request, &id)) {
    TRITONSERVER_ErrorDelete(e);
    return "";
  }
  return id && *id ? str(" (request '", id, "')") : "";
}

// Runs `body` for one request: a failure becomes that request's error,
// naming the instance, the request and what failed (Triton's message too).
template <class Body>
TRITONSERVER_Error* for_request(const std::string& instance, TRITONBACKEND_Request* request, Body&& body) {
  TRITONSERVER_Error_Code code = TRITONSERVER_ERROR_INTERNAL;
  std::string message;
  try {
    body();
    return nullptr;
  } catch (TritonFailure& f) {
    code = TRITONSERVER_ErrorCode(f.error);
    message = TRITONSERVER_ErrorMessage(f.error);
    TRITONSERVER_ErrorDelete(f.error);
  } catch (const Error& e) {
    code = triton_code(e.code());
    message = e.what();
  } catch (const std::exception& e) {
    message = e.what();
  }
  return make_error(code, instance + request_label(request) + ": " + message);
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
    case TRITONSERVER_TYPE_INT16: return DType::kInt16;
    case TRITONSERVER_TYPE_UINT16: return DType::kUInt16;
    case TRITONSERVER_TYPE_UINT32: return DType::kUInt32;
    case TRITONSERVER_TYPE_UINT64: return DType::kUInt64;
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
    case DType::kInt16: return TRITONSERVER_TYPE_INT16;
    case DType::kUInt16: return TRITONSERVER_TYPE_UINT16;
    case DType::kUInt32: return TRITONSERVER_TYPE_UINT32;
    case DType::kUInt64: return TRITONSERVER_TYPE_UINT64;
    default: return TRITONSERVER_TYPE_INVALID;  // the narrow types (float8, int4, ...): Triton has none
  }
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

// One input of a request as Triton describes it (TRITONBACKEND_InputProperties).
struct InputInfo {
  TRITONBACKEND_Input* input = nullptr;
  TRITONSERVER_DataType datatype = TRITONSERVER_TYPE_INVALID;
  const int64_t* shape = nullptr;
  uint32_t rank = 0, buffers = 0;
  uint64_t byte_size = 0;
};

// Host time of the backend per execute call, summed, for the log at unload.
struct ExecuteTimes {
  uint64_t executes = 0, requests = 0;
  double read_us = 0, run_us = 0, answer_us = 0;
};

struct InstanceState {
  InstanceState(std::string name, std::shared_ptr<const ServedModel> served)
      : name(std::move(name)), model(std::move(served)), names(model->plan->network), check(model) {}
  std::string name;  // "model 'mlp' instance 'mlp_0'"
  std::shared_ptr<const ServedModel> model;
  IoNames names;
  RequestCheck check;
  std::unique_ptr<Runner> runner;
  ExecuteTimes times;
  // Per execute call (Triton makes one at a time per instance), kept between
  // calls so that a steady load reuses their storage.
  std::vector<TRITONBACKEND_Response*> responses;
  std::vector<TRITONSERVER_Error*> output_errors;  // per request: allocating its outputs failed
  std::vector<RequestInputs> inputs;               // per request, network order
  std::vector<std::vector<int>> input_gpus;        // per request and input: its GPU, -1 for host memory
  std::vector<InputInfo> infos;                    // one request's, in its order
  std::vector<const char*> input_names;            // one request's, in its order
  std::vector<uint32_t> order;                     // network input -> the request's index
  std::vector<size_t> good;
  std::vector<const RequestInputs*> batchable;
  std::vector<StackedInput> batch;
  std::vector<int64_t> shape;
};

// Bytes between host and wherever Triton keeps a buffer (GPU memory when a
// client used CUDA shared memory), for the paths that need them on the host.
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

// Request `r`'s inputs into s.inputs[r] (network order) and where they are
// into s.input_gpus[r]; returns what is wrong with them ("" when nothing).
std::string read_request(InstanceState& s, TRITONBACKEND_Request* request, size_t r) {
  uint32_t count = 0;
  ok(TRITONBACKEND_RequestInputCount(request, &count));
  s.infos.resize(count);
  s.input_names.resize(count);
  for (uint32_t k = 0; k < count; ++k) {
    InputInfo& info = s.infos[k];
    ok(TRITONBACKEND_RequestInputByIndex(request, k, &info.input));
    ok(TRITONBACKEND_InputProperties(info.input, &s.input_names[k], &info.datatype, &info.shape, &info.rank,
                                     &info.byte_size, &info.buffers));
  }
  std::string problem = s.names.order_inputs(s.input_names, s.order);
  if (!problem.empty()) return problem;
  const int gpu = s.runner->gpu();
  RequestInputs& inputs = s.inputs[r];
  std::vector<int>& gpus = s.input_gpus[r];
  inputs.resize(s.names.input_count());
  gpus.assign(s.names.input_count(), -1);
  for (size_t p = 0; p < inputs.size(); ++p) {
    const std::string& name = s.names.input_name(p);
    const InputInfo& info = s.infos[s.order[p]];
    auto dtype = kiln_dtype(info.datatype);
    if (!dtype) return str("input '", name, "' has a datatype kiln does not take (", int(info.datatype), ")");
    ir::TensorData& t = inputs[p];
    t.dtype = *dtype;
    t.dims.assign(info.shape, info.shape + info.rank);
    for (int64_t d : t.dims)
      if (d < 0) return str("input '", name, "' has a negative dim");
    uint64_t expected = uint64_t(ir::checked_numel(t.dims)) * dtype_size(t.dtype);
    if (info.byte_size != expected)
      return str("input '", name, "' has ", info.byte_size, " bytes; its shape and datatype need ", expected);
    if (info.buffers == 1) {
      // One buffer: a view of it, valid until the request is released. A GPU
      // runner takes it wherever it is; the reference runner needs host memory.
      const void* data = nullptr;
      uint64_t size = 0;
      TRITONSERVER_MemoryType memory = gpu >= 0 ? TRITONSERVER_MEMORY_GPU : TRITONSERVER_MEMORY_CPU;
      int64_t memory_id = std::max(gpu, 0);
      ok(TRITONBACKEND_InputBuffer(info.input, 0, &data, &size, &memory, &memory_id));
      if (size != info.byte_size)
        return str("input '", name, "' has ", size, " bytes in its buffer; it declares ", info.byte_size);
      if (memory != TRITONSERVER_MEMORY_GPU || gpu >= 0) {
        t.data = Buffer::borrow(data, size);
        gpus[p] = memory == TRITONSERVER_MEMORY_GPU ? int(memory_id) : -1;
        continue;
      }
    }
    // Several buffers, or GPU memory for the reference runner: one host copy.
    std::vector<std::byte> bytes(info.byte_size);
    size_t at = 0;
    for (uint32_t b = 0; b < info.buffers; ++b) {
      const void* data = nullptr;
      uint64_t size = 0;
      TRITONSERVER_MemoryType memory = TRITONSERVER_MEMORY_CPU;
      int64_t memory_id = 0;
      ok(TRITONBACKEND_InputBuffer(info.input, b, &data, &size, &memory, &memory_id));
      if (at + size > bytes.size()) return str("input '", name, "' has more bytes in its buffers than it declares");
      copy_bytes(bytes.data() + at, data, size, memory == TRITONSERVER_MEMORY_GPU);
      at += size;
    }
    if (at != bytes.size()) return str("input '", name, "' has fewer bytes in its buffers than it declares");
    t.data = Buffer::from_bytes(std::move(bytes));
  }
  return s.check(inputs);
}

// The response buffers of the outputs a request asks for, as the runner's
// targets: its `rows` rows from `row` of each batched output (or the whole
// output), in GPU memory of the runner's GPU when Triton can give it.
void allocate_outputs(InstanceState& s, TRITONBACKEND_Request* request, TRITONBACKEND_Response* response,
                      const std::vector<std::vector<int64_t>>& dims, int64_t row, int64_t rows,
                      std::vector<OutputTarget>& targets) {
  const ir::Network& net = s.model->plan->network;
  const int gpu = s.runner->gpu();
  uint32_t count = 0;
  ok(TRITONBACKEND_RequestOutputCount(request, &count));
  for (uint32_t i = 0; i < count; ++i) {
    const char* name = nullptr;
    ok(TRITONBACKEND_RequestOutputName(request, i, &name));
    int o = s.names.output(name);
    if (o < 0) fail(ErrorCode::kInvalidArgument, "the model has no output '", name, "'");
    DType dtype = net.value(net.outputs()[size_t(o)]).dtype;
    const std::vector<int64_t>& full = dims[size_t(o)];
    size_t bytes = size_t(ir::checked_numel(full)) * dtype_size(dtype), offset = 0;
    s.shape = full;
    if (s.model->batched()) {  // the batch dim is checked first, for the whole run
      size_t row_bytes = bytes / size_t(full[0]);
      s.shape[0] = rows;
      offset = size_t(row) * row_bytes;
      bytes = size_t(rows) * row_bytes;
    }
    TRITONBACKEND_Output* output = nullptr;
    ok(TRITONBACKEND_ResponseOutput(response, &output, name, triton_dtype(dtype), s.shape.data(),
                                    uint32_t(s.shape.size())));
    void* buffer = nullptr;
    TRITONSERVER_MemoryType memory = gpu >= 0 ? TRITONSERVER_MEMORY_GPU : TRITONSERVER_MEMORY_CPU;
    int64_t memory_id = std::max(gpu, 0);
    ok(TRITONBACKEND_OutputBuffer(output, &buffer, bytes, &memory, &memory_id));
    targets[size_t(o)] = {buffer, offset, bytes, memory == TRITONSERVER_MEMORY_GPU ? int(memory_id) : -1};
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
    auto state = std::make_unique<InstanceState>(label, model_state->model);
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
  if (state && state->times.executes) {
    const ExecuteTimes& t = state->times;
    double n = double(t.executes);
    log(TRITONSERVER_LOG_INFO, __LINE__,
        str(state->name, ": ", t.executes, " executes, ", t.requests, " requests; backend host time per execute: "
            "reading requests ", t.read_us / n, " us, runs ", t.run_us / n, " us, answering ", t.answer_us / n, " us"));
  }
  return nullptr;
}

TRITONSERVER_Error* TRITONBACKEND_ModelInstanceExecute(TRITONBACKEND_ModelInstance* instance,
                                                      TRITONBACKEND_Request** requests, const uint32_t request_count) {
  uint64_t exec_start = now_ns();
  void* raw = nullptr;
  if (TRITONSERVER_Error* e = TRITONBACKEND_ModelInstanceState(instance, &raw)) return e;
  InstanceState& s = *static_cast<InstanceState*>(raw);
  const ServedModel& model = *s.model;

  // From here on every request is ours: each gets a response and a release.
  s.responses.assign(request_count, nullptr);
  s.output_errors.assign(request_count, nullptr);
  if (s.inputs.size() < request_count) {
    s.inputs.resize(request_count);
    s.input_gpus.resize(request_count);
  }
  s.good.clear();
  for (uint32_t r = 0; r < request_count; ++r) {
    if (TRITONSERVER_Error* e = TRITONBACKEND_ResponseNew(&s.responses[r], requests[r])) {
      log(TRITONSERVER_LOG_ERROR, __LINE__, s.name + ": no response: " + TRITONSERVER_ErrorMessage(e));
      TRITONSERVER_ErrorDelete(e);
      s.responses[r] = nullptr;
    }
    std::string problem;
    TRITONSERVER_Error* error = for_request(s.name, requests[r], [&] { problem = read_request(s, requests[r], r); });
    if (!error && !problem.empty())
      error = make_error(TRITONSERVER_ERROR_INVALID_ARG, s.name + request_label(requests[r]) + ": " + problem);
    if (error) {
      uint64_t t = now_ns();
      finish(instance, requests[r], s.responses[r], error, {exec_start, t, t, t});
    } else {
      s.good.push_back(r);
    }
  }

  s.batchable.clear();
  for (size_t r : s.good) s.batchable.push_back(&s.inputs[r]);
  std::vector<std::vector<size_t>> groups = batch_groups(model, s.batchable);
  if (TRITONSERVER_LogIsEnabled(TRITONSERVER_LOG_VERBOSE))
    log(TRITONSERVER_LOG_VERBOSE, __LINE__,
        str(s.name, ": execute: ", request_count, " requests, ", request_count - s.good.size(), " refused, ",
            groups.size(), " batches"));
  uint64_t read_end = now_ns(), run_ns = 0;
  uint64_t batch_size = 0, compute_start = 0, compute_end = 0;
  std::vector<size_t> members;
  for (const std::vector<size_t>& group : groups) {
    members.clear();
    for (size_t g : group) members.push_back(s.good[g]);
    auto rows_of = [&](size_t m) { return model.batched() ? s.inputs[m].front().dims[0] : int64_t(1); };
    // Each request's outputs go straight into its response's buffers; a
    // request whose buffers cannot be had fails alone.
    TargetsFor targets_for = [&](const std::vector<std::vector<int64_t>>& dims,
                                 std::vector<std::vector<OutputTarget>>& targets) {
      int64_t rows = 0;
      for (size_t m : members) rows += rows_of(m);
      if (model.batched())
        for (size_t o = 0; o < dims.size(); ++o)
          if (dims[o].empty() || dims[o][0] != rows)
            fail(ErrorCode::kShapeError, "output '", model.plan->network.value(model.plan->network.outputs()[o]).name,
                 "' has shape without the batch of ", rows, " rows first");
      int64_t row = 0;
      for (size_t k = 0; k < members.size(); ++k) {
        size_t m = members[k];
        if (s.responses[m])
          s.output_errors[m] = for_request(s.name, requests[m], [&] {
            allocate_outputs(s, requests[m], s.responses[m], dims, row, rows_of(m), targets[k]);
          });
        if (s.output_errors[m]) targets[k].assign(targets[k].size(), OutputTarget{});
        row += rows_of(m);
      }
    };
    s.batch.resize(s.names.input_count());
    for (size_t i = 0; i < s.batch.size(); ++i) {
      s.batch[i].clear();
      for (size_t m : members) s.batch[i].push_back({&s.inputs[m][i], s.input_gpus[m][i]});
    }
    uint64_t start = now_ns();
    TRITONSERVER_Error* group_error = guarded(s.name, [&] { s.runner->run(s.batch, targets_for); });
    uint64_t end = now_ns();
    run_ns += end - start;
    // Reading and gathering the requests' inputs is Triton's compute_input; the run proper starts after it.
    if (!group_error) start = std::clamp(s.runner->inputs_ready_ns(), start, end);
    if (!compute_start) compute_start = start;
    compute_end = end;
    for (size_t m : members) {
      TRITONSERVER_Error* error = std::exchange(s.output_errors[m], nullptr);
      if (group_error) {
        if (error) TRITONSERVER_ErrorDelete(error);
        error = make_error(TRITONSERVER_ErrorCode(group_error), TRITONSERVER_ErrorMessage(group_error));
      } else if (!error && s.responses[m]) {
        batch_size += uint64_t(rows_of(m));
      }
      finish(instance, requests[m], s.responses[m], error, {exec_start, start, end, now_ns()});
    }
    if (group_error) TRITONSERVER_ErrorDelete(group_error);
  }
  // Copies the requests' buffers made (multi-buffer inputs) are not kept past the call.
  for (uint32_t r = 0; r < request_count; ++r)
    for (ir::TensorData& t : s.inputs[r]) t.data = Buffer();
  uint64_t exec_end = now_ns();
  if (batch_size) {
    if (TRITONSERVER_Error* e = TRITONBACKEND_ModelInstanceReportBatchStatistics(instance, batch_size, exec_start,
                                                                                compute_start, compute_end, exec_end))
      TRITONSERVER_ErrorDelete(e);
  }
  s.times.executes += 1;
  s.times.requests += request_count;
  s.times.read_us += double(read_end - exec_start) / 1e3;
  s.times.run_us += double(run_ns) / 1e3;
  s.times.answer_us += double(exec_end - read_end - run_ns) / 1e3;
  return nullptr;
}

}  // extern "C"

// What a Triton model configuration (config.pbtxt, handed to the backend as
// JSON) asks of kiln, and the served model it loads: the plan, checked against
// the configuration, with its runtime settings. No Triton API here, so all of
// it is unit-tested without a server.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kiln/dtype.h"
#include "kiln/plan.h"
#include "kiln/runtime.h"

namespace kiln::serving {

// An input or output as config.pbtxt declares it; `dims` leave out the batch
// dim when max_batch_size > 0, and -1 is a dim of any size.
struct TensorConfig {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> dims;
  bool allow_ragged_batch = false;
};

// Ranges for an input's dims as full shapes (batch dim included).
struct InputProfile {
  std::vector<int64_t> min, opt, max;
};

// kiln's settings from the configuration's `parameters` (string values).
struct ServingSettings {
  std::optional<plan::Precision> precision;  // for model.onnx only; fp32 when unset
  runtime::CudaGraphStrategy cuda_graph_strategy = runtime::CudaGraphStrategy::kWholeGraphCapture;
  runtime::KernelSpecialization kernel_specialization = runtime::KernelSpecialization::kLazy;
  std::string runtime_cache_path;                 // empty: no runtime cache
  std::map<std::string, InputProfile> profiles;   // "profile.<input>"
};

struct ModelConfig {
  std::string name;
  int64_t max_batch_size = 0;
  std::vector<TensorConfig> inputs, outputs;
  std::string default_model_filename;  // empty: model.kiln, else model.onnx
  ServingSettings settings;
};

// Parses the configuration JSON. Throws kiln::Error (kInvalidArgument) naming
// the field, or the parameter, and what was expected.
ModelConfig parse_model_config(const std::string& json);

// "1x64,8x64,32x64": min, opt and max shapes; throws naming `what` otherwise.
InputProfile parse_profile(const std::string& text, const std::string& what);

// The model a configuration serves: its plan, and how requests map onto it.
struct ServedModel {
  ModelConfig config;
  std::shared_ptr<const plan::Plan> plan;
  std::filesystem::path file;  // the model.kiln or model.onnx it came from
  bool batched() const { return config.max_batch_size > 0; }
};

// Finds the model file in `version_dir` (default_model_filename, else
// model.kiln, else model.onnx), loads a plan or builds one from ONNX with the
// configuration's profiles and precision, and checks that inputs and outputs
// agree with the configuration (names, dtypes, ranks, fixed dims, the batch
// dim). Throws kiln::Error saying which file, tensor or parameter is at fault.
std::shared_ptr<const ServedModel> load_served_model(ModelConfig config, const std::filesystem::path& version_dir);

}  // namespace kiln::serving

// The ONNX front end: reads an ONNX model into a kiln Network.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "kiln/export.h"
#include "kiln/ir/network.h"

KILN_API_BEGIN
namespace kiln::onnx {

// Opsets of the default ONNX domain that the importer accepts.
int min_supported_opset();
int max_supported_opset();

// Loads and finalizes a model. External data files are resolved against the
// model's folder and may not point outside it. Throws kiln::Error.
ir::Network load_model(const std::filesystem::path& path);
// Same, from bytes already in memory (external data resolved against base_dir;
// empty base_dir forbids external data).
ir::Network load_model_bytes(std::string bytes, const std::filesystem::path& base_dir = {});

// The ONNX op types (default domain) the importer translates into `op`; empty
// for ops only the builder makes. (Constant nodes become weights, not ops.)
std::vector<std::string> onnx_op_types(ir::OpKind op);

// Reads a serialized TensorProto (.pb files of the ONNX backend tests).
ir::TensorData load_tensor_file(const std::filesystem::path& path);

}  // namespace kiln::onnx

namespace kiln::onnx {

// What a model declares, read without building a Network: works for models
// kiln cannot run, so tools can say what is missing.
struct ModelSummary {
  std::string graph_name, producer;
  int64_t ir_version = 0;
  int opset = 0;
  struct Io {
    std::string name, dtype, shape;  // as declared; shape like [N,3,224,224]
  };
  std::vector<Io> inputs, outputs;
  std::map<std::string, int> op_histogram;  // "Conv" -> 20; other domains as "domain::Op"
  std::vector<std::string> unsupported_ops;
  int64_t initializer_count = 0;
};
ModelSummary summarize_model(const std::filesystem::path& path);

}  // namespace kiln::onnx
KILN_API_END

// Internal pieces of the ONNX importer shared by its source files.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "kiln/ir/network.h"
#include "kiln_onnx/onnx.pb.h"

namespace kiln::onnx {

std::optional<DType> dtype_from_onnx(int32_t elem_type);
std::string onnx_dtype_name(int32_t elem_type);
// Converts a TensorProto, taking its raw bytes without copying. `base_dir`
// resolves external data (empty: external data not allowed).
ir::TensorData tensor_from_proto(::onnx::TensorProto& proto, const std::filesystem::path& base_dir);

// Builds a Network node by node while translating ONNX names to value ids.
class GraphBuilder {
 public:
  GraphBuilder(ir::Network& net, int opset, std::filesystem::path base_dir)
      : net_(net), opset_(opset), base_dir_(std::move(base_dir)) {}
  ir::Network& net() { return net_; }
  int opset() const { return opset_; }
  const std::filesystem::path& base_dir() const { return base_dir_; }
  ir::ValueId value(const std::string& name);  // existing value or a forward declaration; "" -> kNoValue
  ir::ValueId const_ints(const std::string& stem, const std::vector<int64_t>& values, bool scalar = false);
  ir::ValueId const_float(const std::string& stem, float value);

 private:
  ir::Network& net_;
  int opset_;
  std::filesystem::path base_dir_;
  int64_t const_counter_ = 0;
};

bool is_supported_op(const std::string& op_type);
void translate_node(GraphBuilder& builder, ::onnx::NodeProto& node, int index);

}  // namespace kiln::onnx

// Builds small ONNX models in memory for importer tests.
#pragma once

#include <string>
#include <vector>

#include "kiln_onnx/onnx.pb.h"

namespace kiln::testing {

class ModelBuilder {
 public:
  explicit ModelBuilder(int opset = 13);
  ::onnx::ModelProto& model() { return model_; }
  ::onnx::GraphProto& graph() { return *model_.mutable_graph(); }

  // dims: a number, or a name for a symbolic dim.
  void input(const std::string& name, int elem_type, const std::vector<std::string>& dims);
  void output(const std::string& name, int elem_type = ::onnx::TensorProto::FLOAT);
  ::onnx::TensorProto& initializer(const std::string& name, const std::vector<int64_t>& dims,
                                   const std::vector<float>& values);
  ::onnx::TensorProto& int_initializer(const std::string& name, const std::vector<int64_t>& dims,
                                       const std::vector<int64_t>& values);
  ::onnx::NodeProto& node(const std::string& op, const std::vector<std::string>& inputs,
                          const std::vector<std::string>& outputs);
  static void attr(::onnx::NodeProto& node, const std::string& name, int64_t value);
  static void attr(::onnx::NodeProto& node, const std::string& name, const std::vector<int64_t>& values);
  static void attr(::onnx::NodeProto& node, const std::string& name, float value);
  static void attr(::onnx::NodeProto& node, const std::string& name, const std::string& value);
  std::string bytes() const;

 private:
  ::onnx::ModelProto model_;
};

// A valid model: y = Relu(x @ w + b) with x[N,4], w[4,3], b[3].
ModelBuilder small_mlp();

}  // namespace kiln::testing

#include "model_builder.h"

namespace kiln::testing {

ModelBuilder::ModelBuilder(int opset) {
  model_.set_ir_version(8);
  auto* op = model_.add_opset_import();
  op->set_domain("");
  op->set_version(opset);
  model_.mutable_graph()->set_name("test");
}

void ModelBuilder::input(const std::string& name, int elem_type, const std::vector<std::string>& dims) {
  auto* v = graph().add_input();
  v->set_name(name);
  auto* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(elem_type);
  auto* shape = t->mutable_shape();
  for (auto& d : dims) {
    auto* dim = shape->add_dim();
    if (!d.empty() && std::isdigit(static_cast<unsigned char>(d[0]))) dim->set_dim_value(std::stoll(d));
    else dim->set_dim_param(d);
  }
}

void ModelBuilder::output(const std::string& name, int elem_type) {
  auto* v = graph().add_output();
  v->set_name(name);
  v->mutable_type()->mutable_tensor_type()->set_elem_type(elem_type);
}

::onnx::TensorProto& ModelBuilder::initializer(const std::string& name, const std::vector<int64_t>& dims,
                                               const std::vector<float>& values) {
  auto* t = graph().add_initializer();
  t->set_name(name);
  t->set_data_type(::onnx::TensorProto::FLOAT);
  for (int64_t d : dims) t->add_dims(d);
  t->set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
  return *t;
}

::onnx::TensorProto& ModelBuilder::int_initializer(const std::string& name, const std::vector<int64_t>& dims,
                                                   const std::vector<int64_t>& values) {
  auto* t = graph().add_initializer();
  t->set_name(name);
  t->set_data_type(::onnx::TensorProto::INT64);
  for (int64_t d : dims) t->add_dims(d);
  for (int64_t v : values) t->add_int64_data(v);
  return *t;
}

::onnx::NodeProto& ModelBuilder::node(const std::string& op, const std::vector<std::string>& inputs,
                                      const std::vector<std::string>& outputs) {
  auto* n = graph().add_node();
  n->set_op_type(op);
  n->set_name(op + "_" + std::to_string(graph().node_size() - 1));
  for (auto& i : inputs) n->add_input(i);
  for (auto& o : outputs) n->add_output(o);
  return *n;
}

void ModelBuilder::attr(::onnx::NodeProto& node, const std::string& name, int64_t value) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(::onnx::AttributeProto::INT);
  a->set_i(value);
}

void ModelBuilder::attr(::onnx::NodeProto& node, const std::string& name, const std::vector<int64_t>& values) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(::onnx::AttributeProto::INTS);
  for (int64_t v : values) a->add_ints(v);
}

void ModelBuilder::attr(::onnx::NodeProto& node, const std::string& name, float value) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(::onnx::AttributeProto::FLOAT);
  a->set_f(value);
}

void ModelBuilder::attr(::onnx::NodeProto& node, const std::string& name, const std::string& value) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(::onnx::AttributeProto::STRING);
  a->set_s(value);
}

std::string ModelBuilder::bytes() const { return model_.SerializeAsString(); }

ModelBuilder small_mlp() {
  ModelBuilder m;
  m.input("x", ::onnx::TensorProto::FLOAT, {"N", "4"});
  m.initializer("w", {4, 3}, {0.1f, -0.2f, 0.3f, 0.4f, 0.5f, -0.6f, 0.7f, 0.8f, 0.9f, -1.0f, 1.1f, 1.2f});
  m.initializer("b", {3}, {0.5f, -0.5f, 0.25f});
  m.node("MatMul", {"x", "w"}, {"h"});
  m.node("Add", {"h", "b"}, {"z"});
  m.node("Relu", {"z"}, {"y"});
  m.output("y");
  return m;
}

}  // namespace kiln::testing

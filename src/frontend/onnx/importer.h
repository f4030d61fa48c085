// Internal pieces of the ONNX importer shared by its source files.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kiln/ir/network.h"
#include "kiln/ir/shape_inference.h"
#include "kiln_onnx/onnx.pb.h"

namespace kiln::onnx {

// The opsets of the default ONNX domain the importer reads. kMaxOpset is the
// newest opset whose op changes the translations were checked against (the
// version table in op_translation.cpp, compared with the ONNX package's op
// history by tests/frontend): a model of a newer opset is refused, never read
// with older semantics. Raising it means going through every op of the table
// that changed in between. kMinOpset is the oldest opset the translations
// start from: a model of an opset before it (down to 1) is read as of
// kMinOpset where every op it holds is the version it still has there (Elu-6,
// Not-1, ...), and refused naming the first op that changed since.
inline constexpr int kMinOpset = 7;
inline constexpr int kMaxOpset = 28;
// The ai.onnx.ml domain's opsets the importer reads (its ops' versions: kOnnxMlOpVersions in op_translation.cpp).
inline constexpr int kMaxMlOpset = 5;
inline constexpr std::string_view kMlDomain = "ai.onnx.ml";

std::optional<DType> dtype_from_onnx(int32_t elem_type);
std::string onnx_dtype_name(int32_t elem_type);
std::string kiln_dtype_names();  // "float32, float16, ..., bool", for errors about types kiln lacks
// Converts a TensorProto, taking its raw bytes without copying. `base_dir`
// resolves external data (empty: external data not allowed).
ir::TensorData tensor_from_proto(::onnx::TensorProto& proto, const std::filesystem::path& base_dir);

// Builds a Network node by node while translating ONNX names to value ids.
class GraphBuilder {
 public:
  GraphBuilder(ir::Network& net, int opset, std::filesystem::path base_dir)
      : net_(net), opset_(opset), base_dir_(std::move(base_dir)) {}
  // The builder of a subgraph of a node of `outer`'s graph.
  GraphBuilder(ir::Network& net, GraphBuilder& outer)
      : net_(net), opset_(outer.opset_), ml_opset_(outer.ml_opset_), base_dir_(outer.base_dir_), outer_(&outer),
        depth_(outer.depth_ + 1) {}
  GraphBuilder* outer() const { return outer_; }
  int depth() const { return depth_; }  // 0 for the model's graph
  ir::Network& net() { return net_; }
  int opset() const { return opset_; }
  int ml_opset() const { return ml_opset_; }  // 0: the model imports no ai.onnx.ml opset
  void set_ml_opset(int opset) { ml_opset_ = opset; }
  const std::filesystem::path& base_dir() const { return base_dir_; }
  ir::ValueId value(const std::string& name);  // existing value or a forward declaration; "" -> kNoValue
  ir::ValueId const_ints(const std::string& stem, const std::vector<int64_t>& values, bool scalar = false);
  ir::ValueId const_float(const std::string& stem, float value);
  ir::ValueId const_bool(const std::string& stem, bool value);
  ir::ValueId const_scalar(const std::string& stem, double value, DType dtype);  // a rank-0 weight
  // What shape inference says of a value, from the nodes added so far: some
  // translations depend on their inputs' dtypes and shapes. nullopt when a node
  // on the way reads a value no node has made yet (the graph is not in
  // topological order). Errors of those nodes are thrown as finalize would.
  std::optional<ir::InferOutput> infer(ir::ValueId value);
  // One node of a translation into several: named `name`, writing `output`
  // when given (an ONNX output), else a new value. Returns the output.
  ir::ValueId op(ir::OpKind op, std::vector<ir::ValueId> inputs, const std::string& name, ir::Attributes attrs = {},
                 ir::ValueId output = ir::kNoValue);

 private:
  ir::Network& net_;
  int opset_;
  int ml_opset_ = 0;
  std::filesystem::path base_dir_;
  GraphBuilder* outer_ = nullptr;
  int depth_ = 0;
  int64_t const_counter_ = 0;
  std::map<ir::ValueId, int> infer_state_;
  std::map<ir::ValueId, ir::InferOutput> inferred_;
  int64_t fresh_counter_ = 0, infer_work_ = 0;
};

// Every ONNX op type (default domain) the importer reads, with the opsets in
// which ONNX defined a new version of it, up to kMaxOpset.
const std::vector<std::pair<std::string_view, std::vector<int>>>& onnx_op_versions();
// The version of `op_type` a model of `opset` uses (its newest since-version
// <= opset); 0 when the op is not defined in that opset.
int onnx_op_version(std::string_view op_type, int opset);
bool is_supported_op(const std::string& op_type);
// The ai.onnx.ml ops the importer reads, with the ai.onnx.ml opsets that define a new version of each.
const std::vector<std::pair<std::string_view, std::vector<int>>>& onnx_ml_op_versions();
int onnx_ml_op_version(std::string_view op_type, int ml_opset);
void translate_node(GraphBuilder& builder, ::onnx::NodeProto& node, int index);

// ONNX ops translated into several kiln ops (op_decompositions.cpp). `node`
// holds the ONNX node's inputs, outputs and attributes as read; `where` names
// it for errors: node 'n' (Op, opset N).
void translate_attention(GraphBuilder& b, const ir::Node& node, const std::string& where);
void translate_rms_normalization(GraphBuilder& b, const ir::Node& node, const std::string& where);
void translate_rotary_embedding(GraphBuilder& b, const ir::Node& node, const std::string& where);
void translate_swish_family(GraphBuilder& b, const ir::Node& node, const std::string& type, const std::string& where);
void translate_group_normalization_18(GraphBuilder& b, ir::Node node, const std::string& where);
void translate_space_to_depth_crd(GraphBuilder& b, const ir::Node& node, const std::string& where);
void translate_center_crop_pad(GraphBuilder& b, const ir::Node& node, const std::string& where);
void translate_dynamic_quantize_linear(GraphBuilder& b, const ir::Node& node, const std::string& where);
void translate_mean_variance_normalization(GraphBuilder& b, const ir::Node& node, const std::string& where);

// ai.onnx.preview FlexAttention: its score_mod and prob_mod subgraphs translated in place.
void translate_flex_attention(GraphBuilder& b, ::onnx::NodeProto& node, const std::string& name, const std::string& where);
// Whether the importer reads `op_type` of `domain`, a domain other than the default one.
bool is_supported_domain_op(const std::string& domain, const std::string& op_type);
// If, Loop and Scan (control_flow.cpp): their subgraphs imported into
// Networks, the enclosing graphs' values they read made the node's inputs.
void translate_control_flow(GraphBuilder& b, ::onnx::NodeProto& node, const std::string& name, int version,
                            const std::string& where);
// The ops of `graph` and of every subgraph in it that kiln does not read
// ("Op (count)", "domain::Op (count)"), counted into `unsupported`.
void count_unsupported_ops(const ::onnx::GraphProto& graph, std::map<std::string, int>& unsupported);

}  // namespace kiln::onnx

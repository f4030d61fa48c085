// The builder's editable form of a network: passes rewire, add and drop nodes
// freely, then to_network() renumbers, re-validates and re-infers shapes.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "kiln/builder.h"
#include "kiln/ir/network.h"
#include "kiln/plan.h"

namespace kiln::builder {

struct Graph {
  struct Value {
    std::string name;
    DType dtype = DType::kFloat32;
    ir::Shape shape;
    bool is_input = false;
    std::optional<ir::TensorData> weight;
    std::optional<std::vector<ir::Dim>> known;
  };
  std::string name;
  std::vector<Value> values;
  std::vector<ir::Node> nodes;  // topological; passes keep it so
  std::vector<bool> dead;       // per node: removed by a pass
  std::vector<ir::ValueId> inputs, outputs;
  ir::DimRanges ranges;

  static Graph from_network(const ir::Network& net);
  ir::Network to_network() const;  // finalized

  ir::ValueId add_weight(const std::string& stem, ir::TensorData data);
  ir::ValueId add_value(const std::string& stem);
  ir::ValueId add_ints(const std::string& stem, const std::vector<int64_t>& values);  // an int64 [n] weight
  std::string unique_name(const std::string& stem);
  // Live nodes reading value v (with multiplicity), and whether v is a graph output.
  std::vector<size_t> consumers(ir::ValueId v) const;
  bool is_output(ir::ValueId v) const;
  // Every live read of `from` now reads `to` (graph outputs included).
  void replace_uses(ir::ValueId from, ir::ValueId to);
  // The live node writing v, if any.
  std::optional<size_t> producer_of(ir::ValueId v) const;
  // The one live node reading v (possibly through several of its inputs), if v is not a graph output.
  std::optional<size_t> only_reader(ir::ValueId v) const;
  // Inserts a live node at position `at` (the passes keep the order topological).
  void insert_node(size_t at, ir::Node node);
  // Node n dead, `added` live right after it; returns the position after them.
  size_t replace_node(size_t n, std::vector<ir::Node> added);
  // Marks dead every node none of whose outputs is read or a graph output, until none is left.
  void drop_unread();
  // Per value: how many live node inputs read it (graph outputs not counted).
  std::vector<int> read_counts() const;
  const ir::TensorData* weight_of(ir::ValueId v) const {
    return v == ir::kNoValue ? nullptr : values[size_t(v)].weight ? &*values[size_t(v)].weight : nullptr;
  }

 private:
  int64_t counter_ = 0;
  // Names unique_name has seen: those of values[0, named_) and the ones it made.
  std::unordered_set<std::string> taken_;
  size_t named_ = 0;
};

// Readers and producers of every value at one moment, for passes that ask
// about node after node (the graph's own queries scan every node, which is
// quadratic on long graphs). A pass rebuilds it after a rewrite.
class Uses {
 public:
  explicit Uses(const Graph& g);
  // As Graph::producer_of, only_reader and sole reader (exactly one read, not a graph output).
  std::optional<size_t> producer_of(ir::ValueId v) const;
  std::optional<size_t> only_reader(ir::ValueId v) const;
  std::optional<size_t> sole_reader(ir::ValueId v) const;
  // Kept current by hand: node `to` now reads v where node `from` did; node n now writes v.
  void reader_moved(ir::ValueId v, size_t from, size_t to);
  void produced_by(ir::ValueId v, size_t n);

 private:
  bool known(ir::ValueId v) const { return v != ir::kNoValue && size_t(v) < reads_.size(); }
  std::vector<int> reads_;
  std::vector<size_t> first_reader_, last_reader_, producer_;  // SIZE_MAX: none
  std::vector<bool> output_;
};

// What constant folding may spend; nodes over it run at run time instead.
// Work counts elements read and written plus multiply-adds (see fold_work).
struct FoldBudget {
  int64_t max_bytes = int64_t(64) << 20;   // per folded tensor
  int64_t max_work = int64_t(1) << 27;     // per folded node
  // Per pass, each on top of the bytes of the weights the graph holds (re-laying
  // out every weight once is always affordable).
  int64_t pass_work = int64_t(1) << 30;
  int64_t pass_bytes = int64_t(1) << 30;
};
// The reference interpreter's cost of evaluating a node whose inputs are constants, an upper bound.
int64_t fold_work(const Graph& g, const ir::Node& node);

// Passes. Each keeps the network's meaning (checked against the reference
// interpreter in tests) and returns how many rewrites it made.
int remove_identities(Graph& g);
// An If whose condition is a constant becomes its branch's nodes; a Loop or
// Scan whose iteration count is a constant (at most 64) becomes copies of its
// body (passes_control_flow.cpp). One sweep: the copies' own control flow
// waits for the constant folding after it.
int inline_control_flow(Graph& g);
// A Scan that scans along another axis than the first reads its scan inputs
// through Transposes moving that axis to the front, and writes its scan
// outputs stacked along the first, Transposes putting them where they go: the
// GPU runs a Scan by offsets into the first dim.
int scan_axes_to_front(Graph& g);
// Builds each subgraph of the control flow left (If branches, Loop and Scan
// bodies) like a network of its own, for the shapes its node gives it in
// `typed` (g to_network'd, its data-dependent sizes bounded): the subgraph
// attribute becomes the built network, and its memory plan and ranges go in
// the attributes beside it (<graph>_memory, _symbols, _ranges). Returns how many.
int build_subgraphs(Graph& g, const ir::Network& typed, const BuildOptions& options, const std::string& source);
int fold_constants(Graph& g, const FoldBudget& budget = {});
int fold_batchnorm_into_conv(Graph& g);
// BatchNormalization left after conv folding becomes elementwise math on
// per-channel views, which fuse_elementwise then fuses.
int lower_batchnorm(Graph& g);
// Binarizer becomes Greater and Cast, ArrayFeatureExtractor of constant
// indices inside the last dim a Gather (passes_ml.cpp): ops the GPU runs.
int lower_ml_ops(Graph& g);
int fuse_matmul_epilogues(Graph& g);
// A Transpose that only moves dims of size 1 becomes Squeeze + Unsqueeze (views, no kernel).
int transposes_to_views(Graph& g);
// A FusedMatMul operand that is x * (scalar constant), read by nothing else,
// becomes x, the scalar going into alpha.
int fold_scales_into_matmul(Graph& g);
// A FusedMatMul whose B is a Transpose of its last two dims (read by nothing
// else) reads the untransposed tensor with trans_b.
int fold_transposes_into_matmul(Graph& g);
// A constant B of a FusedMatMul stored transposed ([N, K], as PyTorch's Linear
// keeps it) is stored [K, N] instead: the kernels for few rows stream that
// layout faster, and cuBLASLt takes either.
int untranspose_matmul_weights(Graph& g);
// Half-precision 2-D Convs that cuDNN runs become ConvChannelsLast between
// Transposes (input and weight to channels-last, output back).
// Convolutions whose windows tile the image (kernel == stride, no padding or
// dilation, at least 4x4: patch embeddings) become patch reshapes and a MatMul.
int patch_convs_to_matmul(Graph& g);
// A chain of Reshapes and Transposes that leaves the elements in their order
// (a patch embedding's channels-first round trip) becomes one Reshape.
int collapse_order_keeping_chains(Graph& g);
// Reshape (merge the leading dims) -> Transpose (keeping the merged dim first)
// -> Reshape (split them back) becomes one Transpose of the unmerged tensor:
// what exporters write for a batched K^T. Unlike the merge, the Transpose is a
// view of a packed projection, so attention can read it in place.
int transposes_through_merged_dims(Graph& g);
int convs_to_channels_last(Graph& g, DType compute);
// Transposes move past the elementwise op (and global pool) that alone reads
// them and cancel against their inverse; ones nothing reads are dropped.
int sink_transposes(Graph& g);
// softmax(alpha * Q @ K^T) @ V with static shapes becomes one Attention node
// reading Q, K and V through strided views of the tensors they come from.
int fuse_attention(Graph& g);
// A Transpose that keeps the last dim, read only by a FusedMatMul whose product
// only Attention nodes read, moves into their view programs: the product is
// taken of the untransposed rows and the transpose becomes a view
// (nn.MultiheadAttention's batch-first transpose before its in-projection).
int transposes_into_attention_views(Graph& g);
// A Conv's constant bias becomes an Add when an elementwise op alone reads the
// Conv, so the bias rides in that op's fused kernel.
int conv_bias_into_elementwise(Graph& g);
int fuse_elementwise(Graph& g);
// A wide half-precision FusedMatMul whose N is not a multiple of 8 (an LM head
// over a 50,257-word vocabulary) gets a second output: scratch where the
// runtime computes Y^T, when Y's row count suits it, then transposes it into Y.
// Runs after the precision pass, which fixes the dtypes it looks at.
int scratch_for_transposed_products(Graph& g);
// RNN, GRU and LSTM nodes the GPU runtime runs (float32, float16, bfloat16)
// get the float32 scratch of ir::RecurrentScratch as the output after their own.
int scratch_for_recurrent_layers(Graph& g);
int convert_precision(Graph& g, DType to);
// Graph outputs that no node writes (a constant) get a copy node, so the
// runtime writes every output into the caller's memory.
int materialize_outputs(Graph& g);

// Gives every data-dependent size of the plan's (final) network an upper
// bound, the range of its symbol in the network and every profile: `given`
// (by tensor name), one that follows from the largest shapes, or `fallback`
// (-1: none); throws naming the tensor and --data-dependent-bound otherwise.
void bound_data_dependent_sizes(plan::Plan& p, const std::map<std::string, int64_t, std::less<>>& given, int64_t fallback);

// Whether a subgraph of `net`, at any depth, has a tensor named `name`.
bool subgraph_tensor(const ir::Network& net, std::string_view name);

// Fills the plan's arena offsets and size for its (final) network.
void plan_memory(plan::Plan& p);

}  // namespace kiln::builder

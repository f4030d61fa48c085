// String tensors inside GPU engines, against the reference interpreter:
// nodes on strings run on the host between the launches (host steps),
// numbers flow device -> host -> device around them, and string inputs and
// outputs are bound as host arrays of std::string. Mixed chains (numbers ->
// Cast to string -> StringConcat / RegexFullMatch -> Equal -> GPU ops), a
// string LabelEncoder to integers and back, StringSplit's data-dependent
// width, at sizes 0 to 1000+, generic and specialized kernels; the binding
// checks, and what such engines say about graphs and captures.
#include "gpu_test_util.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;

// Nonzero whole numbers in [-40, 40] as `dtype` (exact in every float type, so
// their text is the same wherever they were computed).
ir::TensorData whole_numbers(DType dtype, const std::vector<int64_t>& dims, std::mt19937& rng) {
  std::vector<double> v(size_t(ir::checked_numel(dims)));
  for (double& x : v) x = double(int(rng() % 40) + 1) * (rng() % 2 ? 1 : -1);
  return reference::make_tensor(dtype, dims, v);
}

// x[n] -> Neg (GPU) -> Cast to string -> StringConcat("id:", .) -> text
// (a string output); RegexFullMatch(text, "id:-.*") and Equal(text,
// expected[n]) -> Or -> Where(., negated, x) (GPU) -> y; `equal` (a bool
// output made on the host).
ir::Network mixed_chain(DType dtype) {
  ir::Network net;
  ValueId x = net.add_input("x", dtype, {Dim::symbol("n")});
  ValueId expected = net.add_input("expected", DType::kString, {Dim::symbol("n")});
  ValueId negated = net.add_op1(OpKind::kNeg, {x}, {}, "negate");
  ValueId digits = net.add_op1(OpKind::kCast, {negated}, attrs({{"to", int64_t(DType::kString)}}), "to_text");
  ValueId prefix = net.add_weight("prefix", reference::make_string_tensor({1}, {"id:"}));
  ValueId joined = net.add_op1(OpKind::kStringConcat, {prefix, digits}, {}, "join");
  ValueId negative = net.add_op1(OpKind::kRegexFullMatch, {joined}, attrs({{"pattern", std::string("id:-.*")}}), "negative");
  ValueId equal = net.add_op1(OpKind::kEqual, {joined, expected}, {}, "equal");
  ValueId either = net.add_op1(OpKind::kOr, {negative, equal}, {}, "either");
  ValueId y = net.add_op1(OpKind::kWhere, {either, negated, x}, {}, "pick");
  net.add_output(joined);
  net.add_output(y);
  net.add_output(equal);
  net.set_dim_range("n", {0, 7, 1000});
  net.finalize();
  return net;
}

// Feeds for mixed_chain of `n` elements: `expected` holds the reference's
// own text at every other element (so Equal finds matches) and a miss elsewhere.
Feeds mixed_feeds(const ir::Network& net, DType dtype, int64_t n, std::mt19937& rng) {
  Feeds feeds{{"x", whole_numbers(dtype, {n}, rng)},
              {"expected", reference::make_string_tensor({n}, std::vector<std::string>(size_t(n), "id:miss"))}};
  std::vector<std::string> made = reference::run(net, feeds)[0].strings;
  for (int64_t i = 0; i < n; i += 2) feeds["expected"].strings[size_t(i)] = made[size_t(i)];
  return feeds;
}

// The plan mixes both kinds of node: kernels, and host steps on the strings.
void expect_mixed_plan(const ir::Network& net, const std::vector<Feeds>& runs) {
  builder::BuildOptions options;
  add_profiles_spanning(net, runs, options);
  plan::Plan plan = builder::build(net, options);
  int on_gpu = 0, on_host = 0;
  for (const runtime::NodeSupport& s : runtime::gpu_support(plan)) {
    ASSERT_TRUE(s.supported) << s.node << ": " << s.reason;
    (s.host_note.empty() ? on_gpu : on_host)++;
  }
  EXPECT_GT(on_gpu, 0) << ir::dump_network(plan.network);
  EXPECT_GT(on_host, 0) << ir::dump_network(plan.network);
}

class GpuStringChain : public ::testing::TestWithParam<std::tuple<DType, runtime::KernelSpecialization>> {};

TEST_P(GpuStringChain, NumbersToTextAndBackMatchTheReference) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  ir::Network net = mixed_chain(dtype);
  std::mt19937 rng(17);
  std::vector<Feeds> runs;
  for (int64_t n : {7, 1, 33, 1000, 0, 7}) runs.push_back(mixed_feeds(net, dtype, n, rng));
  expect_mixed_plan(net, runs);
  expect_op_matches_reference(net, OpKind::kStringConcat, runs, plan::Precision::kFloat32, strategy, 0, -1, /*exact_integers=*/true);
}

INSTANTIATE_TEST_SUITE_P(
    DTypesAndKernels, GpuStringChain,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kInt64),
                       ::testing::Values(runtime::KernelSpecialization::kNone, runtime::KernelSpecialization::kEager)),
    [](const auto& info) {
      return str(dtype_name(std::get<0>(info.param)), "_", runtime::kernel_specialization_name(std::get<1>(info.param)));
    });

// words[b, n] -> LabelEncoder to int64 (unknown words -1) -> Add(ids) (GPU)
// -> sum; and ids -> LabelEncoder back to words (numbers read back to the
// host). Suffixes broadcast along b through StringConcat.
ir::Network label_net() {
  ir::Network net;
  ValueId words = net.add_input("words", DType::kString, {Dim::symbol("b"), Dim::symbol("n")});
  ValueId ids = net.add_input("ids", DType::kInt64, {Dim::symbol("b"), Dim::symbol("n")});
  ValueId suffix = net.add_input("suffix", DType::kString, {Dim::symbol("n")});
  ValueId codes = net.add_op1(OpKind::kLabelEncoder, {words},
                              attrs({{"keys_strings", std::vector<std::string>{"cat", "dog", "bird", "fish"}},
                                     {"values_int64s", std::vector<int64_t>{10, 20, 30, 40}}}),
                              "encode");
  ValueId sum = net.add_op1(OpKind::kAdd, {codes, ids}, {}, "sum");
  ValueId named = net.add_op1(OpKind::kLabelEncoder, {sum},
                              attrs({{"keys_int64s", std::vector<int64_t>{11, 22, 33}},
                                     {"values_strings", std::vector<std::string>{"eleven", "twenty-two", "thirty-three"}},
                                     {"default_string", std::string("?")}}),
                              "decode");
  net.add_output(sum);
  net.add_output(net.add_op1(OpKind::kStringConcat, {named, suffix}, {}, "tag"));
  net.set_dim_range("b", {1, 2, 4});
  net.set_dim_range("n", {0, 5, 1200});
  net.finalize();
  return net;
}

Feeds label_feeds(int64_t b, int64_t n, std::mt19937& rng) {
  const std::vector<std::string> vocabulary{"cat", "dog", "bird", "fish", "cow", ""};
  Feeds feeds{{"words", reference::make_string_tensor({b, n}, {})}, {"ids", random_ints(DType::kInt64, {b, n}, rng, 1, 3)}, {"suffix", reference::make_string_tensor({n}, {})}};
  for (int64_t i = 0; i < b * n; ++i) feeds["words"].strings.push_back(vocabulary[rng() % vocabulary.size()]);
  for (int64_t i = 0; i < n; ++i) feeds["suffix"].strings.push_back(str("/", i));
  return feeds;
}

TEST(GpuStrings, LabelEncoderBetweenWordsAndNumbers) {
  KILN_REQUIRE_GPU();
  ir::Network net = label_net();
  std::mt19937 rng(5);
  std::vector<Feeds> runs;
  for (auto [b, n] : std::vector<std::pair<int64_t, int64_t>>{{2, 5}, {1, 1}, {3, 7}, {4, 33}, {1, 1200}, {2, 0}})
    runs.push_back(label_feeds(b, n, rng));
  expect_mixed_plan(net, runs);
  for (auto strategy : {runtime::KernelSpecialization::kNone, runtime::KernelSpecialization::kEager}) {
    SCOPED_TRACE(runtime::kernel_specialization_name(strategy));
    expect_op_matches_reference(net, OpKind::kLabelEncoder, runs, plan::Precision::kFloat32, strategy, 0, -1, true);
  }
}

// StringSplit's width follows from the data: the host step binds it (within
// the plan's bound) and the lengths it makes feed a GPU reduction.
TEST(GpuStrings, StringSplitSizesWhatFollows) {
  KILN_REQUIRE_GPU();
  ir::Network net;
  ValueId line = net.add_input("line", DType::kString, {Dim::symbol("n")});
  std::vector<ValueId> parts = net.add_op(OpKind::kStringSplit, {line}, attrs({{"delimiter", std::string(" ")}}), 2, "split");
  net.add_output(parts[0]);
  net.add_output(net.add_op1(OpKind::kReduceSum, {parts[1]}, attrs({{"keepdims", int64_t(0)}}), "words"));
  net.set_dim_range("n", {1, 3, 40});
  net.finalize();
  std::mt19937 rng(3);
  std::vector<Feeds> runs;
  for (int64_t n : {3, 1, 7, 40}) {
    Feeds f{{"line", reference::make_string_tensor({n}, {})}};
    for (int64_t i = 0; i < n; ++i) {
      std::string s;
      for (int w = 0, words = int(rng() % 6); w < words; ++w) s += (w ? " w" : "w") + std::to_string(rng() % 100);
      f["line"].strings.push_back(s);
    }
    runs.push_back(f);
  }
  expect_op_matches_reference(net, OpKind::kStringSplit, runs, plan::Precision::kFloat32, runtime::KernelSpecialization::kNone, 0,
                              /*data_dependent_bound=*/8, true);
  // A line with more words than the bound is refused, naming the tensor.
  builder::BuildOptions options;
  options.default_data_dependent_bound = 8;
  add_profiles_spanning(net, runs, options);
  auto engine = runtime::Engine::create(builder::build(net, options));
  auto context = engine->create_context();
  Feeds wide{{"line", reference::make_string_tensor({1}, {"a b c d e f g h i j"})}};
  try {
    runtime::run_with_host_tensors(*context, *engine, wide);
    ADD_FAILURE() << "ten words fit a bound of 8";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kShapeError);
    EXPECT_NE(std::string(e.what()).find("more than the bound 8"), std::string::npos) << e.what();
  }
}

// Bound by hand: string tensors are host arrays of std::string, numbers
// device memory; each refuses the other kind of memory, naming the tensor.
// Such engines run without graphs (a "host steps" fallback each call), say
// why they cannot be captured, and refuse a caller's capture untouched.
TEST(GpuStrings, HostArraysBindAndEnginesSayTheyRunOnTheHost) {
  KILN_REQUIRE_GPU();
  ir::Network net = label_net();
  std::mt19937 rng(11);
  std::vector<Feeds> runs{label_feeds(2, 5, rng), label_feeds(1, 9, rng)};
  builder::BuildOptions options;
  add_profiles_spanning(net, runs, options);
  runtime::RuntimeConfig config;
  config.cuda_graph_strategy = runtime::CudaGraphStrategy::kWholeGraphCapture;
  auto engine = runtime::Engine::create(builder::build(net, options), config);
  auto context = engine->create_context();
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  void* ids = nullptr;
  void* sums = nullptr;
  ASSERT_EQ(cudaMalloc(&ids, 10 * sizeof(int64_t)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&sums, 10 * sizeof(int64_t)), cudaSuccess);
  std::vector<std::string> host_ids(4);
  auto expect_refused = [&](const char* name, void* address, const char* why) {
    try {
      context->set_tensor_address(name, address);
      ADD_FAILURE() << name << " took the wrong kind of memory";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  };
  expect_refused("words", ids, "'words' is a string tensor, bound as host memory holding a std::string per element");
  expect_refused("ids", host_ids.data(), "the address for 'ids' is not device memory");

  for (const Feeds& feeds : runs) {
    std::vector<std::string> words = feeds.at("words").strings, suffix = feeds.at("suffix").strings;
    std::vector<std::string> tags(size_t(feeds.at("words").numel()), "unwritten");
    const ir::TensorData& id_values = feeds.at("ids");
    ASSERT_EQ(cudaMemcpy(ids, id_values.data.data(), id_values.data.size(), cudaMemcpyHostToDevice), cudaSuccess);
    context->set_input_shape("words", feeds.at("words").dims);
    context->set_input_shape("ids", id_values.dims);
    context->set_input_shape("suffix", feeds.at("suffix").dims);
    context->set_tensor_address("words", words.data());
    context->set_tensor_address("suffix", suffix.data());
    context->set_tensor_address("ids", ids);
    const ir::Network& built = engine->plan().network;
    context->set_tensor_address(built.value(built.outputs()[0]).name, sums);
    context->set_tensor_address(built.value(built.outputs()[1]).name, tags.data());
    EXPECT_FALSE(context->is_stream_capturable(stream));
    EXPECT_NE(context->capture_obstacle(stream).find("node 'encode' (LabelEncoder) runs on the host inside the GPU engine"),
              std::string::npos)
        << context->capture_obstacle(stream);
    context->enqueue(stream);
    std::vector<ir::TensorData> want = reference::run(net, feeds);
    EXPECT_EQ(tags, want[1].strings);  // written by the time enqueue returned
    std::vector<int64_t> got(size_t(want[0].numel()));
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(got.data(), sums, got.size() * sizeof(int64_t), cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(got, ir::read_ints(want[0]));
  }
  runtime::ExecutionContext::GraphStats stats = context->graph_stats();
  EXPECT_EQ(stats.calls, 2);
  EXPECT_EQ(stats.captures, 0);
  EXPECT_EQ(stats.fallbacks["host steps"], 2);

  expect_capture_refused(*context, stream, "runs on the host inside the GPU engine");
  cudaFree(ids);
  cudaFree(sums);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace kiln::testing

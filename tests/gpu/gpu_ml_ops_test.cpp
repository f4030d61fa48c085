// The ai.onnx.ml ops on the GPU against the reference interpreter: those
// `kiln build` lowers (Binarizer as Greater and Cast, ArrayFeatureExtractor of
// constant indices as Gather), the kernels of TreeEnsemble, LabelEncoder of
// numbers, ArrayFeatureExtractor of index tensors and TfIdfVectorizer over
// integers (text family); and a string tensor moved by a GPU engine, on
// the host.
#include <cmath>
#include <functional>
#include <random>

#include "gpu_test_util.h"
#include "kiln/ir/ml.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;
using runtime::KernelSpecialization;

constexpr KernelSpecialization kStrategies[] = {KernelSpecialization::kNone, KernelSpecialization::kEager};

// x of `dtype` [rows, 5] -> Binarizer(threshold) -> its dtype.
ir::Network binarizer(DType dtype, double threshold) {
  ir::Network net;
  ir::ValueId x = net.add_input("x", dtype, {Dim::symbol("rows"), Dim(5)});
  net.add_output(net.add_op1(OpKind::kBinarizer, {x}, attrs({{"threshold", threshold}}), "binarize"));
  net.finalize();
  return net;
}

TEST(GpuMlOps, BinarizerMatchesTheReference) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(7);
  for (DType dtype : {DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt64})
    for (int64_t rows : {1, 7, 33, 1031})
      for (KernelSpecialization strategy : kStrategies) {
        // Random values in [-1, 1] (integers in [-3, 3]), every tenth the threshold's float32 rounding itself.
        ir::TensorData x = is_floating(dtype) ? random_tensor(dtype, {rows, 5}, rng, 0.0, 1.0) : random_ints(dtype, {rows, 5}, rng, -3, 3);
        if (is_floating(dtype)) {
          std::vector<double> v = ir::read_doubles(x);
          for (size_t i = 0; i < v.size(); i += 10) v[i] = double(float(0.3));
          x = reference::make_tensor(dtype, x.dims, v);
        }
        expect_gpu_matches_reference_exactly(binarizer(dtype, is_floating(dtype) ? 0.3 : 1.5), {{"x", x}}, strategy,
                                             str(dtype_name(dtype), " rows ", rows));
      }
}

// x [.., features] -> ArrayFeatureExtractor by constant indices (repeats allowed).
ir::Network extractor(DType dtype, std::vector<Dim> dims, std::vector<int64_t> indices) {
  ir::Network net;
  ir::ValueId x = net.add_input("x", dtype, dims);
  ir::ValueId y = net.add_weight("y", reference::make_tensor(DType::kInt64, {int64_t(indices.size())},
                                                             std::vector<double>(indices.begin(), indices.end())));
  net.add_output(net.add_op1(OpKind::kArrayFeatureExtractor, {x, y}, {}, "extract"));
  net.finalize();
  return net;
}

TEST(GpuMlOps, ArrayFeatureExtractorMatchesTheReference) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(11);
  for (DType dtype : {DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt64})
    for (int64_t features : {1, 7, 33, 1031})
      for (KernelSpecialization strategy : kStrategies) {
        std::vector<int64_t> picked = {features - 1, 0, features / 2, features - 1};
        ir::TensorData x = is_floating(dtype) ? random_tensor(dtype, {3, features}, rng) : random_ints(dtype, {3, features}, rng, -9, 9);
        expect_gpu_matches_reference_exactly(extractor(dtype, {Dim(3), Dim(features)}, picked), {{"x", x}}, strategy,
                                             str(dtype_name(dtype), " features ", features));
      }
  // A vector gives [1, k].
  ir::TensorData v = random_tensor(DType::kFloat32, {7}, rng);
  expect_gpu_matches_reference_exactly(extractor(DType::kFloat32, {Dim(7)}, {6, 2}), {{"x", v}}, KernelSpecialization::kNone, "vector");
}

// x [.., features] -> ArrayFeatureExtractor by the index tensor y.
ir::Network extractor_of_tensor(DType dtype, std::vector<Dim> x_dims, std::vector<Dim> y_dims) {
  ir::Network net;
  ir::ValueId x = net.add_input("x", dtype, x_dims), y = net.add_input("y", DType::kInt64, y_dims);
  net.add_output(net.add_op1(OpKind::kArrayFeatureExtractor, {x, y}, {}, "extract"));
  net.finalize();
  return net;
}

ir::Shape shape_of(const std::vector<int64_t>& dims) { return ir::Shape(dims.begin(), dims.end()); }

ir::TensorData random_of(DType dtype, const std::vector<int64_t>& dims, std::mt19937& rng) {
  return is_floating(dtype) ? random_tensor(dtype, dims, rng) : random_ints(dtype, dims, rng, -99, 99);
}

TEST(GpuMlOps, ArrayFeatureExtractorOfIndexTensorsMatchesTheReference) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(13);
  struct Case {
    std::vector<int64_t> x, y;
  };
  std::vector<Case> cases;
  for (int64_t features : {1, 7, 33, 1031}) {
    cases.push_back({{3, features}, {5}});
    cases.push_back({{2, 3, features}, {2, 3}});  // 2-D indices: numel(y) picked a row
    cases.push_back({{features}, {4}});           // a vector gives [1, numel(y)]
  }
  cases.push_back({{0, 7}, {3}});  // no rows
  cases.push_back({{4, 7}, {0}});  // no indices
  for (DType dtype : {DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt64})
    for (const Case& c : cases)
      for (KernelSpecialization strategy : kStrategies) {
        std::uniform_int_distribution<int64_t> pick(0, c.x.back() - 1);
        std::vector<int64_t> picked(size_t(ir::checked_numel(c.y)));
        for (int64_t& i : picked) i = pick(rng);
        expect_gpu_matches_reference_exactly(extractor_of_tensor(dtype, shape_of(c.x), shape_of(c.y)),
                                             {{"x", random_of(dtype, c.x, rng)}, {"y", int64s(c.y, picked)}}, strategy,
                                             str(dtype_name(dtype), " x ", ir::shape_to_string(shape_of(c.x)), " y ",
                                                 ir::shape_to_string(shape_of(c.y)), " ", spec_name(strategy)));
      }
}

// Indices outside the last dim are an error on the CPU; on the GPU, which
// cannot stop for them, they read nothing and write zeros.
TEST(GpuMlOps, ArrayFeatureExtractorIndicesOutsideTheLastDimWriteZeros) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(17);
  const int64_t features = 33;
  std::vector<int64_t> picked = {0, -1, features, 32, INT64_MIN, INT64_MAX, features + 1000, 5};
  ir::Network net = extractor_of_tensor(DType::kFloat32, {Dim(3), Dim(features)}, {Dim(int64_t(picked.size()))});
  ir::TensorData x = random_tensor(DType::kFloat32, {3, features}, rng);
  Feeds feeds{{"x", x}, {"y", int64s({int64_t(picked.size())}, picked)}};
  EXPECT_THROW(reference::run(net, feeds), Error);
  for (KernelSpecialization strategy : kStrategies) {
    std::vector<double> got = ir::read_doubles(run_on_gpu(net, feeds, plan::Precision::kFloat32, strategy).at(0));
    std::vector<double> in = ir::read_doubles(x);
    ASSERT_EQ(got.size(), 3 * picked.size());
    for (size_t r = 0; r < 3; ++r)
      for (size_t j = 0; j < picked.size(); ++j) {
        bool inside = picked[j] >= 0 && picked[j] < features;
        EXPECT_EQ(got[r * picked.size() + j], inside ? in[r * features + size_t(picked[j])] : 0.0) << "row " << r << " index " << picked[j];
      }
  }
}

// Indices the host has (a weight outside the last dim, which `kiln build` leaves to the node) are checked before anything runs.
TEST(GpuMlOps, ArrayFeatureExtractorOfKnownIndicesOutOfRangeIsAnError) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(19);
  ir::Network net = extractor(DType::kFloat32, {Dim(2), Dim(3)}, {0, 5});
  try {
    run_on_gpu(net, {{"x", random_tensor(DType::kFloat32, {2, 3}, rng)}}, plan::Precision::kFloat32, KernelSpecialization::kNone);
    FAIL() << "an index outside the last dim ran";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("index 5 (element 1 of input 1) is outside [0, 3)"), std::string::npos) << e.what();
  }
}

// ---- TreeEnsemble ------------------------------------------------------------------------------

// Values on a grid of quarters (exact in every float type) and NaN: splits,
// set members and inputs share it, so equal values and ties at the splits occur.
double grid_value(std::mt19937& rng, bool with_nan) {
  int k = int(rng() % (with_nan ? 10 : 9));
  return k == 9 ? NAN : 0.25 * (k - 4);
}

// `trees` random trees over `features` features, of depth up to 4 and every
// branch mode, NaN tracked true on some nodes, plus a tree that is one leaf;
// leaves of weights on a 1/64 grid spread over `targets` targets.
ir::Attributes random_forest(std::mt19937& rng, DType dtype, int64_t features, int64_t targets, int trees, int64_t aggregate,
                             int64_t post) {
  std::vector<double> splits, weights, members;
  std::vector<int64_t> modes, feature, true_id, false_id, true_leaf, false_leaf, missing, leaf_target, roots;
  auto add_leaf = [&] {
    weights.push_back(double(int(rng() % 129) - 64) / 64);
    leaf_target.push_back(int64_t(rng() % uint64_t(targets)));
    return int64_t(weights.size() - 1);
  };
  // A node whose branches are grown below it; returns its index.
  std::function<int64_t(int)> grow = [&](int depth) {
    int64_t id = int64_t(splits.size());
    int64_t mode = int64_t(rng() % 7);
    splits.push_back(grid_value(rng, false));
    modes.push_back(mode);
    feature.push_back(int64_t(rng() % uint64_t(features)));
    missing.push_back(rng() % 2);
    if (mode == int64_t(ir::TreeMode::kMember)) {
      for (int m = 0; m < 3; ++m) members.push_back(grid_value(rng, false));
      members.push_back(NAN);  // ends the set
    }
    true_id.push_back(0), false_id.push_back(0), true_leaf.push_back(0), false_leaf.push_back(0);
    for (bool branch : {true, false}) {
      bool leaf = depth >= 3 || rng() % 3 == 0;
      int64_t child = leaf ? add_leaf() : grow(depth + 1);
      (branch ? true_id : false_id)[size_t(id)] = child;
      (branch ? true_leaf : false_leaf)[size_t(id)] = leaf;
    }
    return id;
  };
  for (int t = 0; t < trees; ++t) roots.push_back(grow(0));
  // One tree that is a leaf: a node whose branches are both leaf `root` (the index of that node).
  int64_t root = int64_t(splits.size());
  while (int64_t(weights.size()) <= root) add_leaf();
  splits.push_back(0), modes.push_back(0), feature.push_back(0), missing.push_back(0);
  true_id.push_back(root), false_id.push_back(root), true_leaf.push_back(1), false_leaf.push_back(1);
  roots.push_back(root);
  ir::Attributes a = attrs({{"nodes_splits", reference::make_tensor(dtype, {int64_t(splits.size())}, splits)},
                            {"nodes_modes", reference::make_tensor(DType::kUInt8, {int64_t(modes.size())}, {modes.begin(), modes.end()})},
                            {"nodes_featureids", feature}, {"nodes_truenodeids", true_id}, {"nodes_falsenodeids", false_id},
                            {"nodes_trueleafs", true_leaf}, {"nodes_falseleafs", false_leaf},
                            {"nodes_missing_value_tracks_true", missing}, {"leaf_targetids", leaf_target},
                            {"leaf_weights", reference::make_tensor(dtype, {int64_t(weights.size())}, weights)},
                            {"tree_roots", roots}, {"n_targets", targets}, {"aggregate_function", aggregate},
                            {"post_transform", post}});
  if (!members.empty()) a.set("membership_values", reference::make_tensor(dtype, {int64_t(members.size())}, members));
  return a;
}

ir::Network tree_ensemble(DType dtype, int64_t features, ir::Attributes forest) {
  ir::Network net;
  ir::ValueId x = net.add_input("x", dtype, {Dim::symbol("rows"), Dim(features)});
  net.add_output(net.add_op1(OpKind::kTreeEnsemble, {x}, std::move(forest), "forest"));
  net.finalize();
  return net;
}

ir::TensorData forest_inputs(DType dtype, int64_t rows, int64_t features, std::mt19937& rng) {
  std::vector<double> v(size_t(rows * features));
  for (double& e : v) e = grid_value(rng, true);
  return reference::make_tensor(dtype, {rows, features}, v);
}

// Every aggregate with every post transform, in each floating type; the sizes
// cycle through 1, 7, 33 and 1031 rows. MIN and MAX have one target (a target
// no tree reaches keeps the type's largest value, which would dwarf the
// tolerance); SUM and AVERAGE without a softmax have 70 (three groups a row).
TEST(GpuMlOps, TreeEnsembleMatchesTheReference) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(23);
  const int64_t sizes[] = {1, 7, 33, 1031}, features = 6;
  int run = 0;
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kFloat64})
    for (int64_t post = 0; post <= 4; ++post)
      for (int64_t aggregate = 0; aggregate <= 3; ++aggregate, ++run) {
        bool softmax = post == int64_t(ir::TreePostTransform::kSoftmax) || post == int64_t(ir::TreePostTransform::kSoftmaxZero);
        bool extreme = aggregate == int64_t(ir::TreeAggregate::kMin) || aggregate == int64_t(ir::TreeAggregate::kMax);
        int64_t targets = extreme ? 1 : softmax ? 5 : 70;
        ir::Network net = tree_ensemble(dtype, features, random_forest(rng, dtype, features, targets, 9, aggregate, post));
        KernelSpecialization strategy = kStrategies[run % 2];
        int64_t rows = sizes[run % 4];
        expect_gpu_matches_reference(net, {{"x", forest_inputs(dtype, rows, features, rng)}}, plan::Precision::kFloat32,
                                     rounding_tolerance(dtype),
                                     str(dtype_name(dtype), " post ", post, " aggregate ", aggregate, " rows ", rows), strategy);
      }
}

TEST(GpuMlOps, TreeEnsembleOfAnySizeAndNone) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(29);
  ir::Network net = tree_ensemble(DType::kFloat32, 4, random_forest(rng, DType::kFloat32, 4, 3, 40, 1, 2));
  for (int64_t rows : {0, 1, 7, 33, 1031, 4099})
    for (KernelSpecialization strategy : kStrategies)
      expect_gpu_matches_reference(net, {{"x", forest_inputs(DType::kFloat32, rows, 4, rng)}}, plan::Precision::kFloat32,
                                   rounding_tolerance(DType::kFloat32), str("rows ", rows), strategy);
}

// ---- LabelEncoder ------------------------------------------------------------------------------

ir::Network label_encoder(DType key, std::vector<Dim> dims, ir::Attributes mapping) {
  ir::Network net;
  ir::ValueId x = net.add_input("x", key, dims);
  net.add_output(net.add_op1(OpKind::kLabelEncoder, {x}, std::move(mapping), "encode"));
  net.finalize();
  return net;
}

// Elements drawn from `pool` (keys and misses).
ir::TensorData drawn_from(DType dtype, const std::vector<int64_t>& dims, const std::vector<double>& pool, std::mt19937& rng) {
  std::vector<double> v(size_t(ir::checked_numel(dims)));
  for (double& e : v) e = pool[rng() % pool.size()];
  return reference::make_tensor(dtype, dims, v);
}

// Integer and float keys, from attribute lists and tensors, to values of each
// width: hits, misses (the default), a key given twice (its last value), NaN
// and -0.0 for float keys; every size, and empty.
TEST(GpuMlOps, LabelEncoderOfNumbersMatchesTheReference) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(31);
  struct Mapping {
    DType key;
    ir::Attributes attrs;
    std::vector<double> inputs;
  };
  const double big = double(int64_t(1) << 40);
  std::vector<Mapping> mappings = {
      {DType::kInt64,
       attrs({{"keys_int64s", std::vector<int64_t>{5, -2, 9, 5, int64_t(1) << 40}},
              {"values_floats", std::vector<double>{0.5, -1.5, 2.25, 3.0, 1e30}}, {"default_float", 7.5}}),
       {5, -2, 9, big, 3, 0, -big}},
      {DType::kFloat32,
       attrs({{"keys_floats", std::vector<double>{0.5, -0.0, NAN, 2.5}}, {"values_int64s", std::vector<int64_t>{10, -20, 30, int64_t(1) << 50}}}),
       {0.5, 0.0, -0.0, NAN, 2.5, 1.0, -2.5}},
      {DType::kFloat64,
       attrs({{"keys_tensor", reference::make_tensor(DType::kFloat64, {3}, {1e-300, -7.25, 3.0})},
              {"values_tensor", reference::make_tensor(DType::kFloat16, {3}, {0.5, -2.0, 65504})},
              {"default_tensor", reference::make_tensor(DType::kFloat16, {1}, {-0.25})}}),
       {1e-300, -7.25, 3.0, 0.0, NAN, 3.0000000001}},
      {DType::kInt32,
       attrs({{"keys_tensor", reference::make_tensor(DType::kInt32, {4}, {1, 2, 3, -2147483648.0})},
              {"values_tensor", reference::make_tensor(DType::kInt32, {4}, {-1, -2, -3, 2147483647})},
              {"default_tensor", reference::make_tensor(DType::kInt32, {1}, {99})}}),
       {1, 2, 3, -2147483648.0, 0, 4, 2147483647}},
  };
  for (const Mapping& m : mappings)
    for (std::vector<int64_t> dims : {std::vector<int64_t>{1}, {7}, {33}, {1031}, {0}, {5, 3}})
      for (KernelSpecialization strategy : kStrategies)
        expect_gpu_matches_reference_exactly(label_encoder(m.key, shape_of(dims), m.attrs), {{"x", drawn_from(m.key, dims, m.inputs, rng)}},
                                             strategy, str(dtype_name(m.key), " keys, x ", ir::shape_to_string(shape_of(dims)), " ",
                                                           spec_name(strategy)));
}

// ---- TfIdfVectorizer (text family) -----------------------------------------------------------

// A pool of unigrams (2 twice: its last column counts), bigrams and trigrams;
// two n-grams share column 1.
ir::Attributes tfidf_pool(const std::string& mode, int64_t min_gram, int64_t max_gram, int64_t skips, bool weighted) {
  ir::Attributes a = attrs({{"mode", mode}, {"min_gram_length", min_gram}, {"max_gram_length", max_gram}, {"max_skip_count", skips},
                            {"pool_int64s", std::vector<int64_t>{2, 3, 5, 4, 2, 5, 6, 7, 8, 6, 7, 2, 3, 2, 3, 5, 1, 1, 1}},
                            {"ngram_counts", std::vector<int64_t>{0, 5, 13}},
                            {"ngram_indexes", std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 1, 8, 9}}});
  if (weighted) a.set("weights", std::vector<double>{0.5, 2, 0.25, 1, 3, 0.125, 1.5, 4, 0.75, 2.5});
  return a;
}

TEST(GpuMlOps, TfIdfVectorizerOverIntegersMatchesTheReference) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(37);
  struct Grams {
    int64_t min_gram, max_gram, skips;
  };
  const Grams grams[] = {{1, 1, 0}, {1, 2, 2}, {2, 3, 1}, {1, 3, 5}, {3, 3, 0}, {2, 2, 0}};
  const std::pair<const char*, bool> modes[] = {{"TF", false}, {"IDF", false}, {"IDF", true}, {"TFIDF", false}, {"TFIDF", true}};
  const std::vector<std::vector<int64_t>> shapes = {{1}, {7}, {33}, {1031}, {3, 7}, {2, 33}, {1, 1031}, {0, 5}, {2, 0}};
  int run = 0;
  for (DType dtype : {DType::kInt32, DType::kInt64})
    for (const Grams& g : grams)
      for (const auto& [mode, weighted] : modes)
        for (KernelSpecialization strategy : kStrategies) {
          const std::vector<int64_t>& dims = shapes[size_t(run++) % shapes.size()];
          ir::Network net;
          ir::ValueId x = net.add_input("x", dtype, shape_of(dims));
          net.add_output(net.add_op1(OpKind::kTfIdfVectorizer, {x}, tfidf_pool(mode, g.min_gram, g.max_gram, g.skips, weighted), "tfidf"));
          net.finalize();
          expect_gpu_matches_reference_exactly(net, {{"x", random_ints(dtype, dims, rng, 0, 8)}}, strategy,
                                               str(dtype_name(dtype), " ", mode, weighted ? " weighted" : "", " grams ", g.min_gram, "-",
                                                   g.max_gram, " skips ", g.skips, " x ", ir::shape_to_string(shape_of(dims)), " ",
                                                   spec_name(strategy)));
        }
}

// A Transpose of strings in a GPU engine runs on the host, as a step of the
// staged enqueue, and gives the reference's strings.
TEST(GpuMlOps, StringTransposeRunsOnTheHost) {
  KILN_REQUIRE_GPU();
  ir::Network net;
  ir::ValueId x = net.add_input("words", DType::kString, {Dim(2), Dim(3)});
  net.add_output(net.add_op1(OpKind::kTranspose, {x}, {}, "flip"));
  net.finalize();
  ir::TensorData words = reference::make_string_tensor({2, 3}, {"a", "", "tree", "naïve", "x y", "ZZ"});
  for (const runtime::NodeSupport& s : runtime::gpu_support(builder::build(net, {}))) EXPECT_FALSE(s.host_note.empty()) << s.node;
  expect_outputs_close(run_on_gpu(net, {{"words", words}}, plan::Precision::kFloat32, KernelSpecialization::kNone),
                       reference::run(net, {{"words", words}}), 0);
}

}  // namespace
}  // namespace kiln::testing

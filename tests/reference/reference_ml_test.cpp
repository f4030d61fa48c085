// The ai.onnx.ml ops and TfIdfVectorizer on the reference interpreter, and the
// attribute checks that keep their kernels inside what exists.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/reference.h"

namespace kiln::reference {
namespace {

using ir::Dim;
using ir::OpKind;
using Strings = std::vector<std::string>;
using Ints = std::vector<int64_t>;

ir::Attributes attrs(std::initializer_list<std::pair<const char*, ir::AttrValue>> list) {
  ir::Attributes a;
  for (auto& [name, value] : list) a.set(name, value);
  return a;
}

Tensor run_node(OpKind op, std::vector<Tensor> inputs, ir::Attributes a) {
  ir::Network net;
  std::vector<ir::ValueId> ids;
  std::map<std::string, Tensor> feeds;
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::string name = str("x", i);
    ids.push_back(net.add_input(name, inputs[i].dtype, ir::Shape(inputs[i].dims.begin(), inputs[i].dims.end())));
    feeds[name] = inputs[i];
  }
  net.add_output(net.add_op1(op, ids, std::move(a), "node"));
  net.finalize();
  return run(net, feeds)[0];
}

// The message of the error running the node throws, "" when it runs.
std::string error_of(OpKind op, std::vector<Tensor> inputs, ir::Attributes a) {
  try {
    run_node(op, std::move(inputs), std::move(a));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ReferenceMl, LabelEncoderMapsStringsNumbersAndTensors) {
  Tensor y = run_node(OpKind::kLabelEncoder, {reference::make_string_tensor({2, 2}, {"a", "c", "q", "b"})},
                      attrs({{"keys_strings", Strings{"a", "b", "c"}}, {"values_int64s", Ints{0, 1, 2}}, {"default_int64", int64_t(42)}}));
  EXPECT_EQ(y.dtype, DType::kInt64);
  EXPECT_EQ(y.dims, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(ir::read_ints(y), (Ints{0, 2, 42, 1}));

  y = run_node(OpKind::kLabelEncoder, {make_tensor(DType::kInt64, {3}, {7, 8, 9})},
               attrs({{"keys_int64s", Ints{7, 9}}, {"values_strings", Strings{"seven", "nine"}}}));
  EXPECT_EQ(y.strings, (Strings{"seven", "_Unused", "nine"}));  // ONNX's default_string

  y = run_node(OpKind::kLabelEncoder, {make_tensor(DType::kFloat32, {3}, {0.5, NAN, 2})},
               attrs({{"keys_floats", std::vector<double>{0.5, NAN}}, {"values_floats", std::vector<double>{5, 6}}}));
  std::vector<double> f = ir::read_doubles(y);
  EXPECT_EQ(f[0], 5);
  EXPECT_EQ(f[1], 6);  // NaN finds the NaN key
  EXPECT_TRUE(f[2] == 0 && std::signbit(f[2]));  // -0.0, ONNX's default_float

  Tensor keys = reference::make_string_tensor({2}, {"x", "y"});
  y = run_node(OpKind::kLabelEncoder, {reference::make_string_tensor({3}, {"y", "z", "x"})},
               attrs({{"keys_tensor", keys}, {"values_tensor", make_tensor(DType::kInt16, {2}, {-1, 300})},
                      {"default_tensor", make_tensor(DType::kInt16, {1}, {9})}}));
  EXPECT_EQ(y.dtype, DType::kInt16);
  EXPECT_EQ(ir::read_ints(y), (Ints{300, 9, -1}));
}

TEST(ReferenceMl, LabelEncoderAttributesAreChecked) {
  EXPECT_NE(error_of(OpKind::kLabelEncoder, {reference::make_string_tensor({1}, {"a"})},
                     attrs({{"keys_strings", Strings{"a", "b"}}, {"values_int64s", Ints{1}}})).find("2 keys but 1 values"),
            std::string::npos);
  EXPECT_NE(error_of(OpKind::kLabelEncoder, {make_tensor(DType::kInt32, {1}, {1})},
                     attrs({{"keys_int64s", Ints{1}}, {"values_int64s", Ints{1}}})).find("the keys are int64"),
            std::string::npos);
  EXPECT_NE(error_of(OpKind::kLabelEncoder, {reference::make_string_tensor({1}, {"a"})}, attrs({{"values_int64s", Ints{1}}})).find("exactly one of keys_strings"),
            std::string::npos);
}

TEST(ReferenceMl, BinarizerAndArrayFeatureExtractor) {
  Tensor b = run_node(OpKind::kBinarizer, {make_tensor(DType::kFloat64, {4}, {-1, 0.5, 0.51, NAN})}, attrs({{"threshold", 0.5}}));
  EXPECT_EQ(ir::read_doubles(b), (std::vector<double>{0, 0, 1, 0}));

  Tensor x = make_tensor(DType::kFloat32, {2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor picked = run_node(OpKind::kArrayFeatureExtractor, {x, make_tensor(DType::kInt64, {3}, {2, 0, 2})}, {});
  EXPECT_EQ(picked.dims, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ir::read_doubles(picked), (std::vector<double>{3, 1, 3, 6, 4, 6}));
  Tensor vec = run_node(OpKind::kArrayFeatureExtractor, {reference::make_string_tensor({3}, {"a", "b", "c"}), make_tensor(DType::kInt64, {1, 2}, {1, 2})}, {});
  EXPECT_EQ(vec.dims, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(vec.strings, (Strings{"b", "c"}));
  EXPECT_NE(error_of(OpKind::kArrayFeatureExtractor, {x, make_tensor(DType::kInt64, {1}, {3})}, {}).find("index 3"), std::string::npos);
  EXPECT_NE(error_of(OpKind::kArrayFeatureExtractor, {x, make_tensor(DType::kInt64, {1}, {-1})}, {}).find("index -1"), std::string::npos);
}

// Two trees over two features: tree 0 splits feature 0 at 1 (LEQ), tree 1
// asks whether feature 1 is in {2, 3} (missing values go true).
ir::Attributes forest(int64_t aggregate, int64_t post = 0) {
  return attrs({{"nodes_splits", make_tensor(DType::kFloat32, {2}, {1, 0})},
                {"nodes_modes", make_tensor(DType::kUInt8, {2}, {0, 6})},
                {"membership_values", make_tensor(DType::kFloat32, {3}, {2, 3, NAN})},
                {"nodes_featureids", Ints{0, 1}}, {"nodes_truenodeids", Ints{0, 2}}, {"nodes_falsenodeids", Ints{1, 3}},
                {"nodes_trueleafs", Ints{1, 1}}, {"nodes_falseleafs", Ints{1, 1}},
                {"nodes_missing_value_tracks_true", Ints{0, 1}}, {"leaf_targetids", Ints{0, 1, 0, 1}},
                {"leaf_weights", make_tensor(DType::kFloat32, {4}, {10, 20, 1, 2})}, {"tree_roots", Ints{0, 1}},
                {"n_targets", int64_t(2)}, {"aggregate_function", aggregate}, {"post_transform", post}});
}

TEST(ReferenceMl, TreeEnsembleAggregatesLeaves) {
  Tensor x = make_tensor(DType::kFloat32, {3, 2}, {0.5, 2, 3, 7, 1, NAN});
  // row 0: leaf 0 (target 0, 10) and leaf 2 (target 0, 1); row 1: leaf 1 (target 1, 20) and leaf 3 (target 1, 2);
  // row 2: leaf 0 and, NaN tracking true, leaf 2.
  EXPECT_EQ(ir::read_doubles(run_node(OpKind::kTreeEnsemble, {x}, forest(1))), (std::vector<double>{11, 0, 0, 22, 11, 0}));
  EXPECT_EQ(ir::read_doubles(run_node(OpKind::kTreeEnsemble, {x}, forest(0))), (std::vector<double>{5.5, 0, 0, 11, 5.5, 0}));
  std::vector<double> low = ir::read_doubles(run_node(OpKind::kTreeEnsemble, {x}, forest(2)));
  EXPECT_EQ(low[0], 1);
  EXPECT_EQ(low[1], double(std::numeric_limits<float>::max()));  // untouched: the type's largest, as ONNX's reference
  std::vector<double> logistic = ir::read_doubles(run_node(OpKind::kTreeEnsemble, {x}, forest(1, 2)));
  EXPECT_NEAR(logistic[0], 1 / (1 + std::exp(-11.0)), 1e-7);
  EXPECT_NEAR(logistic[1], 0.5, 1e-7);
}

TEST(ReferenceMl, TreeEnsembleRefusesBrokenTrees) {
  Tensor x = make_tensor(DType::kFloat32, {1, 2}, {0, 0});
  ir::Attributes looping = forest(1);
  looping.set("nodes_trueleafs", Ints{0, 1});  // node 0's true branch is node 0
  EXPECT_NE(error_of(OpKind::kTreeEnsemble, {x}, looping).find("loops back to node 0"), std::string::npos);
  ir::Attributes outside = forest(1);
  outside.set("nodes_falsenodeids", Ints{4, 3});
  EXPECT_NE(error_of(OpKind::kTreeEnsemble, {x}, outside).find("false branch 4 is not a leaf"), std::string::npos);
  ir::Attributes feature = forest(1);
  feature.set("nodes_featureids", Ints{0, 2});
  EXPECT_NE(error_of(OpKind::kTreeEnsemble, {x}, feature).find("reads feature 2"), std::string::npos);
  ir::Attributes members = forest(1);
  members.set("membership_values", make_tensor(DType::kFloat32, {2}, {2, 3}));
  EXPECT_NE(error_of(OpKind::kTreeEnsemble, {x}, members).find("no NaN-ended set"), std::string::npos);
}

TEST(ReferenceMl, TfIdfVectorizerCountsNgramsWithSkips) {
  // ONNX's test_tfidfvectorizer_tf_batch_onlybigrams_skip5: bigrams (5,6), (7,8), (6,7) at columns 4 to 6.
  ir::Attributes a = attrs({{"mode", std::string("TF")}, {"min_gram_length", int64_t(2)}, {"max_gram_length", int64_t(2)},
                            {"max_skip_count", int64_t(5)}, {"ngram_counts", Ints{0, 4}}, {"ngram_indexes", Ints{0, 1, 2, 3, 4, 5, 6}},
                            {"pool_int64s", Ints{2, 3, 5, 4, 5, 6, 7, 8, 6, 7}}});
  Tensor x = make_tensor(DType::kInt32, {2, 6}, {1, 1, 3, 3, 3, 7, 8, 6, 7, 5, 6, 8});
  EXPECT_EQ(ir::read_doubles(run_node(OpKind::kTfIdfVectorizer, {x}, a)),
            (std::vector<double>{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1}));
  // Strings, unigrams and bigrams without skips, IDF weights per column.
  ir::Attributes s = attrs({{"mode", std::string("IDF")}, {"min_gram_length", int64_t(1)}, {"max_gram_length", int64_t(2)},
                            {"max_skip_count", int64_t(0)}, {"ngram_counts", Ints{0, 2}}, {"ngram_indexes", Ints{0, 1, 2}},
                            {"pool_strings", Strings{"a", "b", "a", "b"}}, {"weights", std::vector<double>{0.5, 2, 3}}});
  EXPECT_EQ(ir::read_doubles(run_node(OpKind::kTfIdfVectorizer, {reference::make_string_tensor({4}, {"b", "a", "b", "c"})}, s)),
            (std::vector<double>{0.5, 2, 3}));
  s.set("mode", std::string("TFIDF"));
  EXPECT_EQ(ir::read_doubles(run_node(OpKind::kTfIdfVectorizer, {reference::make_string_tensor({4}, {"b", "a", "b", "c"})}, s)),
            (std::vector<double>{0.5, 4, 3}));
  s.set("ngram_indexes", Ints{0, 1});
  EXPECT_NE(error_of(OpKind::kTfIdfVectorizer, {reference::make_string_tensor({1}, {"a"})}, s).find("ngram_indexes has 2 entries for 3 n-grams"),
            std::string::npos);
}

}  // namespace
}  // namespace kiln::reference

// The ml family: the ai.onnx.ml domain's ops (LabelEncoder, Binarizer,
// ArrayFeatureExtractor, TreeEnsemble). Their attributes are checked here, at
// inference, so that the kernels index only what exists.
#include "family.h"
#include "kiln/ir/ml.h"

namespace kiln::ir {

namespace {

void infer_label_encoder(Ctx& c) {
  LabelEncoderTypes t = label_encoder_types(c.node());
  if (c.dtype(0) != t.key)
    c.error(ErrorCode::kTypeError, "input 0 has dtype ", dtype_name(c.dtype(0)), "; the keys are ", dtype_name(t.key));
  c.set(0, t.value, c.shape(0));
}

void infer_binarizer(Ctx& c) {
  c.require_dtype(0, {DType::kFloat32, DType::kFloat64, DType::kInt64, DType::kInt32});
  c.set(0, c.dtype(0), c.shape(0));
}

// X [..., F] and indices Y into its last dim: [..., numel(Y)], and [1, numel(Y)] for a vector X (ONNX's reference).
void infer_array_feature_extractor(Ctx& c) {
  c.require_dtype(0, {DType::kFloat32, DType::kFloat64, DType::kInt64, DType::kInt32, DType::kString});
  c.require_dtype(1, {DType::kInt64});
  c.require_rank(0, 1);
  Dim picked(1);
  for (const Dim& d : c.shape(1)) picked = picked * d;
  Shape out = c.shape(0);
  if (out.size() == 1) out.insert(out.begin(), Dim(1));
  out.back() = picked;
  c.set(0, c.dtype(0), out);
}

void infer_tree_ensemble(Ctx& c) {
  c.require_dtype(0, {DType::kFloat32, DType::kFloat64, DType::kFloat16});
  c.require_rank(0, 2, 2);
  TreeEnsembleAttrs t = tree_ensemble_attrs(c.node());
  const Dim& features = c.shape(0)[1];
  if (features.is_constant() && t.max_feature >= features.constant())
    c.error(ErrorCode::kShapeError, "a tree node reads feature ", t.max_feature, " but input 0 ", shape_to_string(c.shape(0)), " has ",
            features.constant());
  c.set(0, c.dtype(0), {c.shape(0)[0], Dim(t.n_targets)});
}

}  // namespace

OpSchema ml_schema(OpKind op) {
  using T = AttrType;
  switch (op) {
    case OpKind::kLabelEncoder:
      return {1, 1, 1, 1,
              {{"keys_strings", T::kStrings}, {"keys_int64s", T::kInts}, {"keys_floats", T::kFloats, true, true},
               {"keys_tensor", T::kTensor}, {"values_strings", T::kStrings}, {"values_int64s", T::kInts},
               {"values_floats", T::kFloats, true, true}, {"values_tensor", T::kTensor}, {"default_string", T::kString},
               {"default_int64", T::kInt}, {"default_float", T::kFloat, true, true}, {"default_tensor", T::kTensor}}};
    case OpKind::kBinarizer: return {1, 1, 1, 1, {{"threshold", T::kFloat}}};
    case OpKind::kArrayFeatureExtractor: return {2, 2, 1, 1, {}};
    case OpKind::kTreeEnsemble:
      return {1, 1, 1, 1,
              {{"aggregate_function", T::kInt}, {"leaf_targetids", T::kInts}, {"leaf_weights", T::kTensor},
               {"membership_values", T::kTensor}, {"n_targets", T::kInt}, {"nodes_falseleafs", T::kInts},
               {"nodes_falsenodeids", T::kInts}, {"nodes_featureids", T::kInts}, {"nodes_hitrates", T::kTensor},
               {"nodes_missing_value_tracks_true", T::kInts}, {"nodes_modes", T::kTensor}, {"nodes_splits", T::kTensor},
               {"nodes_trueleafs", T::kInts}, {"nodes_truenodeids", T::kInts}, {"post_transform", T::kInt},
               {"tree_roots", T::kInts}}};
    default: return {0, 0, 0, 0, {}, false};
  }
}

void infer_ml(Ctx& c) {
  switch (c.node().op) {
    case OpKind::kLabelEncoder: infer_label_encoder(c); break;
    case OpKind::kBinarizer: infer_binarizer(c); break;
    case OpKind::kArrayFeatureExtractor: infer_array_feature_extractor(c); break;
    case OpKind::kTreeEnsemble: infer_tree_ensemble(c); break;
    default: no_inference(c);
  }
}

}  // namespace kiln::ir

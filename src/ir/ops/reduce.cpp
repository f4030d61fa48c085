// The reduce family: the Reduce* ops, ArgMax/ArgMin, CumSum, CumProd and TopK.
#include "family.h"

namespace kiln::ir {

namespace {

void infer_reduce_op(Ctx& c) {
  const Shape& x = c.shape(0);
  int64_t r = int64_t(x.size());
  bool keep = c.attrs().get_int("keepdims", 1) != 0;
  bool noop = c.attrs().get_int("noop_with_empty_axes", 0) != 0;
  std::vector<int64_t> axes;
  if (c.has(1)) {
    auto v = c.const_ints(1);
    if (!v) {  // axes only known at run time: the rank follows from their count, the dims from the data
      if (keep) {
        c.set(0, c.dtype(0), c.fresh_shape(Dim(r), "the output"));
        return;
      }
      const Shape& axes_shape = c.shape(1);
      if (axes_shape.size() != 1 || !axes_shape[0].is_constant())
        c.error(ErrorCode::kUnsupported, "with keepdims=0 the output rank depends on the number of axes, which only the data ",
                "gives (a data-dependent rank; kiln needs ranks that follow from the model)");
      int64_t count = axes_shape[0].constant();
      if (count == 0) {  // every axis, or none with noop_with_empty_axes
        c.set(0, c.dtype(0), noop ? x : Shape{});
        return;
      }
      if (count > r) c.error(ErrorCode::kInvalidModel, "reduces over ", count, " axes of a rank-", r, " input");
      c.set(0, c.dtype(0), c.fresh_shape(Dim(r - count), "the output"));
      return;
    }
    axes = *v;
  }
  if (axes.empty() && noop) {
    c.set(0, c.dtype(0), x);
    return;
  }
  std::vector<bool> reduced(size_t(r), axes.empty());
  for (int64_t a : axes) reduced[size_t(c.axis(a, r))] = true;
  Shape out;
  for (int64_t i = 0; i < r; ++i) {
    if (!reduced[size_t(i)]) out.push_back(x[size_t(i)]);
    else if (keep) out.push_back(Dim(1));
  }
  std::optional<std::vector<Dim>> known;
  if (c.node().op == OpKind::kReduceProd && r == 1 && !keep) {
    if (auto v = c.ints(0)) {
      Dim p(1);
      for (auto& d : *v) p = p * d;
      known = std::vector<Dim>{p};
    }
  }
  c.set(0, c.dtype(0), out, known);
}

void infer_arg(Ctx& c) {
  const Shape& x = c.shape(0);
  int64_t axis = c.axis(c.attrs().get_int("axis", 0), int64_t(x.size()));
  Shape out = x;
  if (c.attrs().get_int("keepdims", 1)) out[size_t(axis)] = Dim(1);
  else out.erase(out.begin() + axis);
  c.set(0, DType::kInt64, out);
}

void infer_topk(Ctx& c) {
  Shape out = c.shape(0);
  int64_t axis = c.axis(c.attrs().get_int("axis", -1), int64_t(out.size()));
  auto k = c.ints(1);
  if (k && k->size() != 1) c.error(ErrorCode::kShapeError, "K must have one element");
  if (k && k->front().is_constant() && out[size_t(axis)].is_constant() &&
      (k->front().constant() < 0 || k->front().constant() > out[size_t(axis)].constant()))
    c.error(ErrorCode::kShapeError, "K=", k->front().constant(), " is outside [0, ", out[size_t(axis)].constant(), "]");
  out[size_t(axis)] = k ? k->front() : c.fresh();
  c.set(0, c.dtype(0), out);
  c.set(1, DType::kInt64, out);
}

}  // namespace

OpSchema reduce_schema(OpKind op) {
  using T = AttrType;
  switch (op) {
    case OpKind::kReduceMean:
    case OpKind::kReduceSum:
    case OpKind::kReduceMax:
    case OpKind::kReduceMin:
    case OpKind::kReduceProd:
    case OpKind::kReduceL1:
    case OpKind::kReduceL2:
    case OpKind::kReduceLogSum:
    case OpKind::kReduceLogSumExp:
    case OpKind::kReduceSumSquare:
      return {1, 2, 1, 1, {{"keepdims", T::kInt}, {"noop_with_empty_axes", T::kInt}}};
    case OpKind::kArgMax:
    case OpKind::kArgMin: return {1, 1, 1, 1, {{"axis", T::kInt}, {"keepdims", T::kInt}, {"select_last_index", T::kInt}}};
    case OpKind::kCumSum: case OpKind::kCumProd: return {2, 2, 1, 1, {{"exclusive", T::kInt}, {"reverse", T::kInt}}};
    case OpKind::kTopK: return {2, 2, 2, 2, {{"axis", T::kInt}, {"largest", T::kInt}, {"sorted", T::kInt}}};
    default: return {0, 0, 0, 0, {}, false};
  }
}

void infer_reduce(Ctx& c) {
  switch (c.node().op) {
    case OpKind::kReduceMean: case OpKind::kReduceSum: case OpKind::kReduceMax: case OpKind::kReduceMin:
    case OpKind::kReduceProd: case OpKind::kReduceL1: case OpKind::kReduceL2: case OpKind::kReduceLogSum:
    case OpKind::kReduceLogSumExp: case OpKind::kReduceSumSquare:
      infer_reduce_op(c);
      break;
    case OpKind::kArgMax: case OpKind::kArgMin: infer_arg(c); break;
    case OpKind::kCumSum: case OpKind::kCumProd:
      c.require_scalar(1);
      c.axis(c.const_ints(1) ? c.const_ints(1)->at(0) : 0, c.rank(0));
      c.set(0, c.dtype(0), c.shape(0));
      break;
    case OpKind::kTopK: infer_topk(c); break;
    default: no_inference(c);
  }
}

}  // namespace kiln::ir

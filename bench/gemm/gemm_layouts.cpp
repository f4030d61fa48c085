// Y[M, N] = X[M, K] @ W[N, K]^T in fp16 through cuBLASLt, two ways: directly
// (column-major Y^T = W X^T, the layout kiln uses) and transposed (column-major
// Y = X W^T, i.e. Y^T row-major, which the runtime then transposes). Prints
// the median of the best heuristic algorithm's time for each, per problem.
// Usage: kiln_gemm_layouts [M N K]...   (default: GPT-2's LM head at several M)
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

void check(int status, const char* what) {
  if (status != 0) {
    std::fprintf(stderr, "%s failed with status %d\n", what, status);
    std::exit(1);
  }
}

cublasLtMatrixLayout_t matrix(int64_t rows, int64_t cols, int64_t ld) {
  cublasLtMatrixLayout_t l;
  check(cublasLtMatrixLayoutCreate(&l, CUDA_R_16F, uint64_t(rows), uint64_t(cols), ld), "cublasLtMatrixLayoutCreate");
  return l;
}

struct Product {
  cublasLtMatrixLayout_t a, b, d;
  cublasOperation_t op_a, op_b;
  const void *a_ptr, *b_ptr;
};

// Median microseconds of 20 calls after 3 warm-up calls, with the heuristic's first algorithm.
double time_product(cublasLtHandle_t lt, const Product& p, void* d, void* workspace, size_t workspace_bytes) {
  cublasLtMatmulDesc_t op;
  check(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &p.op_a, sizeof(p.op_a));
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &p.op_b, sizeof(p.op_b));
  cublasLtMatmulPreference_t pref;
  cublasLtMatmulPreferenceCreate(&pref);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes, sizeof(workspace_bytes));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  check(cublasLtMatmulAlgoGetHeuristic(lt, op, p.a, p.b, p.d, p.d, pref, 1, &result, &found), "cublasLtMatmulAlgoGetHeuristic");
  if (!found) return -1;
  float alpha = 1, beta = 0;
  auto call = [&] {
    check(cublasLtMatmul(lt, op, &alpha, p.a_ptr, p.a, p.b_ptr, p.b, &beta, d, p.d, d, p.d, &result.algo, workspace,
                         workspace_bytes, nullptr),
          "cublasLtMatmul");
  };
  for (int i = 0; i < 3; ++i) call();
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::vector<float> times;
  for (int i = 0; i < 20; ++i) {
    cudaEventRecord(start);
    call();
    cudaEventRecord(stop);
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    times.push_back(ms * 1000);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatmulDescDestroy(op);
  std::nth_element(times.begin(), times.begin() + 10, times.end());
  return times[10];
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::array<int64_t, 3>> problems;
  for (int i = 1; i + 2 < argc; i += 3) problems.push_back({std::atoll(argv[i]), std::atoll(argv[i + 1]), std::atoll(argv[i + 2])});
  if (problems.empty()) problems = {{1, 50257, 768}, {8, 50257, 768}, {128, 50257, 768}, {197, 50257, 768}, {1024, 50257, 768},
                                    {1024, 50264, 768}, {1024, 30522, 768}};
  cublasLtHandle_t lt;
  check(cublasLtCreate(&lt), "cublasLtCreate");
  size_t workspace_bytes = size_t(32) << 20;
  void* workspace;
  check(cudaMalloc(&workspace, workspace_bytes), "cudaMalloc");
  std::printf("%8s %8s %6s %12s %14s\n", "M", "N", "K", "direct us", "transposed us");
  for (auto [m, n, k] : problems) {
    void *x, *w, *y;
    check(cudaMalloc(&x, size_t(m * k) * 2), "cudaMalloc");
    check(cudaMalloc(&w, size_t(n * k) * 2), "cudaMalloc");
    check(cudaMalloc(&y, size_t(m * n) * 2), "cudaMalloc");
    cudaMemset(x, 0x33, size_t(m * k) * 2);  // small finite halves
    cudaMemset(w, 0x22, size_t(n * k) * 2);
    // Direct: D (N x M, ld N) = W^T-as-stored (op T of K x N) times X (K x M).
    Product direct{matrix(k, n, k), matrix(k, m, k), matrix(n, m, n), CUBLAS_OP_T, CUBLAS_OP_N, w, x};
    // Transposed: D (M x N, ld M) = X^T (op T of K x M) times W (K x N).
    Product transposed{matrix(k, m, k), matrix(k, n, k), matrix(m, n, m), CUBLAS_OP_T, CUBLAS_OP_N, x, w};
    double t_direct = time_product(lt, direct, y, workspace, workspace_bytes);
    double t_transposed = time_product(lt, transposed, y, workspace, workspace_bytes);
    std::printf("%8lld %8lld %6lld %12.1f %14.1f\n", (long long)m, (long long)n, (long long)k, t_direct, t_transposed);
    for (const Product* p : {&direct, &transposed}) {
      cublasLtMatrixLayoutDestroy(p->a);
      cublasLtMatrixLayoutDestroy(p->b);
      cublasLtMatrixLayoutDestroy(p->d);
    }
    cudaFree(x);
    cudaFree(w);
    cudaFree(y);
  }
  cudaFree(workspace);
  cublasLtDestroy(lt);
  return 0;
}

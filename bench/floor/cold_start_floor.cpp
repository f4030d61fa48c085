// The floor for kiln's cold start: a bare process that creates the CUDA
// context and the same library handles an engine and its context create
// (cuBLASLt, cuDNN), allocates a little device memory and waits for the GPU.
// Its wall time, measured from outside, is what no runtime can go below.
#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <cstdio>

int main() {
  void* memory = nullptr;
  cublasLtHandle_t lt = nullptr;
  cudnnHandle_t dnn = nullptr;
  if (cudaMalloc(&memory, 1 << 20) != cudaSuccess || cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS ||
      cudnnCreate(&dnn) != CUDNN_STATUS_SUCCESS || cudaDeviceSynchronize() != cudaSuccess) {
    std::fprintf(stderr, "cold_start_floor: CUDA setup failed\n");
    return 1;
  }
  cudnnDestroy(dnn);
  cublasLtDestroy(lt);
  cudaFree(memory);
  std::puts("ok");
  return 0;
}

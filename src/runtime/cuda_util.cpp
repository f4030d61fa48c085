#include "cuda_util.h"

namespace kiln::runtime {

void cuda_fail(cudaError_t error, const char* call, const char* file, int line, const std::string& context) {
  fail(ErrorCode::kDevice, context.empty() ? "" : context + ": ", call, " failed: ", cudaGetErrorName(error), " (",
       cudaGetErrorString(error), ") at ", file, ":", line);
}

void cublas_fail(cublasStatus_t status, const char* call, const char* file, int line, const std::string& context) {
  fail(ErrorCode::kDevice, context.empty() ? "" : context + ": ", call, " failed: cuBLAS status ", int(status), " at ", file,
       ":", line);
}

DeviceBuffer::DeviceBuffer(size_t bytes, const std::string& what) : bytes_(bytes) {
  if (bytes) KILN_CUDA(cudaMalloc(&ptr_, bytes), str("allocating ", bytes, " bytes for ", what));
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = other.ptr_;
    bytes_ = other.bytes_;
    other.ptr_ = nullptr;
  }
  return *this;
}

}  // namespace kiln::runtime

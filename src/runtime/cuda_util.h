// CUDA error checking and small RAII holders for the runtime.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "kiln/error.h"

namespace kiln::runtime {

[[noreturn]] void cuda_fail(cudaError_t error, const char* call, const char* file, int line, const std::string& context);
[[noreturn]] void cublas_fail(cublasStatus_t status, const char* call, const char* file, int line, const std::string& context);

#define KILN_CUDA(call, context)                                                      \
  do {                                                                                \
    cudaError_t kiln_error_ = (call);                                                 \
    if (kiln_error_ != cudaSuccess) ::kiln::runtime::cuda_fail(kiln_error_, #call, __FILE__, __LINE__, (context)); \
  } while (0)

#define KILN_CUBLAS(call, context)                                                    \
  do {                                                                                \
    cublasStatus_t kiln_status_ = (call);                                             \
    if (kiln_status_ != CUBLAS_STATUS_SUCCESS) ::kiln::runtime::cublas_fail(kiln_status_, #call, __FILE__, __LINE__, (context)); \
  } while (0)

// Copies host memory to the device (or sets device bytes) and waits, on a
// stream of its own: never on the legacy default stream, which would join the
// streams other threads may be capturing.
void copy_to_device(void* device, const void* host, size_t bytes, const std::string& what);
void fill_device(void* device, int byte, size_t bytes, const std::string& what);
void copy_to_host(void* host, const void* device, size_t bytes, const std::string& what);

// Makes `device` current for a scope and gives the calling thread its own
// device back after: kiln's calls run on their engine's device whichever
// device the caller's thread had chosen (several GPUs from one thread).
class DeviceScope {
 public:
  explicit DeviceScope(int device);
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = -1;
};

// Device memory owned by an engine or a context; allocated only at creation.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t bytes, const std::string& what);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept : ptr_(other.ptr_), bytes_(other.bytes_) { other.ptr_ = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  std::byte* get() const { return static_cast<std::byte*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void release();
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace kiln::runtime

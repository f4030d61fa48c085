#include "cuda_util.h"

#include "graphs/native_graph.h"

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
  if (!bytes) return;
  graphs::CaptureGate::Exclusive gate;
  KILN_CUDA(cudaMalloc(&ptr_, bytes), str("allocating ", bytes, " bytes for ", what));
}

void DeviceBuffer::release() {
  if (!ptr_) return;
  graphs::CaptureGate::Exclusive gate;  // cudaFree may synchronize the device
  cudaFree(ptr_);
  ptr_ = nullptr;
}

DeviceBuffer::~DeviceBuffer() { release(); }

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    release();
    ptr_ = other.ptr_;
    bytes_ = other.bytes_;
    other.ptr_ = nullptr;
  }
  return *this;
}

}  // namespace kiln::runtime

namespace kiln::runtime {

DeviceScope::DeviceScope(int device) {
  KILN_CUDA(cudaGetDevice(&previous_), "asking for the current device");
  if (previous_ == device) {
    previous_ = -1;  // nothing to restore
    return;
  }
  KILN_CUDA(cudaSetDevice(device), str("selecting GPU ", device));
}

DeviceScope::~DeviceScope() {
  if (previous_ >= 0) cudaSetDevice(previous_);
}

namespace {

// A non-blocking stream for one synchronous transfer, destroyed on every way out.
class TransferStream {
 public:
  explicit TransferStream(const std::string& what) {
    KILN_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), what);
  }
  ~TransferStream() { cudaStreamDestroy(stream_); }
  TransferStream(const TransferStream&) = delete;
  TransferStream& operator=(const TransferStream&) = delete;
  void finish(cudaError_t queued, const std::string& what) {
    cudaError_t done = cudaStreamSynchronize(stream_);
    KILN_CUDA(queued, what);
    KILN_CUDA(done, what);
  }
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

}  // namespace

void copy_to_device(void* device, const void* host, size_t bytes, const std::string& what) {
  if (!bytes) return;
  TransferStream s(what);
  s.finish(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, s.get()), what);
}

void fill_device(void* device, int byte, size_t bytes, const std::string& what) {
  if (!bytes) return;
  TransferStream s(what);
  s.finish(cudaMemsetAsync(device, byte, bytes, s.get()), what);
}

void copy_to_host(void* host, const void* device, size_t bytes, const std::string& what) {
  if (!bytes) return;
  TransferStream s(what);
  s.finish(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, s.get()), what);
}

}  // namespace kiln::runtime

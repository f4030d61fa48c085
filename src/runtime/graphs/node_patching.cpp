#include "node_patching.h"

#include <cstring>

namespace kiln::runtime::graphs {

namespace {

// The driver calls used here, found through the runtime so that kiln does not
// link the driver library (machines without a GPU load kiln too).
struct Driver {
  decltype(&cuGraphGetNodes) graph_get_nodes = nullptr;
  decltype(&cuGraphNodeGetType) node_get_type = nullptr;
  decltype(&cuGraphKernelNodeGetParams) kernel_node_get_params = nullptr;
  decltype(&cuFuncGetParamInfo) func_get_param_info = nullptr;
  decltype(&cuKernelGetParamInfo) kernel_get_param_info = nullptr;
  decltype(&cuGraphExecKernelNodeSetParams) exec_kernel_node_set_params = nullptr;
  decltype(&cuGraphMemsetNodeGetParams) memset_node_get_params = nullptr;
  decltype(&cuGraphExecMemsetNodeSetParams) exec_memset_node_set_params = nullptr;
  decltype(&cuCtxGetCurrent) ctx_get_current = nullptr;
  bool complete = false;
};

const Driver& driver() {
  static const Driver d = [] {
    Driver d;
    auto find = [](const char* name, auto& fn) {
      void* p = nullptr;
      cudaDriverEntryPointQueryResult found{};
      if (cudaGetDriverEntryPointByVersion(name, &p, 12040, cudaEnableDefault, &found) != cudaSuccess ||
          found != cudaDriverEntryPointSuccess) {
        cudaGetLastError();
        return false;
      }
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
      return true;
    };
    d.complete = find("cuGraphGetNodes", d.graph_get_nodes) && find("cuGraphNodeGetType", d.node_get_type) &&
                 find("cuGraphKernelNodeGetParams", d.kernel_node_get_params) &&
                 find("cuFuncGetParamInfo", d.func_get_param_info) && find("cuKernelGetParamInfo", d.kernel_get_param_info) &&
                 find("cuGraphExecKernelNodeSetParams", d.exec_kernel_node_set_params) &&
                 find("cuGraphMemsetNodeGetParams", d.memset_node_get_params) &&
                 find("cuGraphExecMemsetNodeSetParams", d.exec_memset_node_set_params) &&
                 find("cuCtxGetCurrent", d.ctx_get_current);
    return d;
  }();
  return d;
}

// A kernel node's arguments as one byte image in the device-side layout.
bool read_kernel_arguments(const Driver& d, GraphImage::Node& n) {
  const CUDA_KERNEL_NODE_PARAMS& k = n.kernel;
  if (!k.kernelParams) {  // the arguments came packed in `extra`
    if (!k.extra) return true;
    void* buffer = nullptr;
    size_t size = 0;
    for (void** e = k.extra; *e != CU_LAUNCH_PARAM_END; e += 2) {
      if (e[0] == CU_LAUNCH_PARAM_BUFFER_POINTER) buffer = e[1];
      else if (e[0] == CU_LAUNCH_PARAM_BUFFER_SIZE) size = *static_cast<size_t*>(e[1]);
      else return false;
    }
    if (!buffer && size) return false;
    n.bytes.assign(static_cast<uint8_t*>(buffer), static_cast<uint8_t*>(buffer) + size);
    n.packed = true;
    return true;
  }
  for (size_t i = 0;; ++i) {
    size_t offset = 0, size = 0;
    CUresult r = k.func ? d.func_get_param_info(k.func, i, &offset, &size) : d.kernel_get_param_info(k.kern, i, &offset, &size);
    if (r == CUDA_ERROR_INVALID_VALUE) return true;  // past the last argument
    if (r != CUDA_SUCCESS) return false;
    if (n.bytes.size() < offset + size) n.bytes.resize(offset + size);
    std::memcpy(n.bytes.data() + offset, k.kernelParams[i], size);
    n.offsets.push_back(offset);
  }
}

bool same_launch(const GraphImage::Node& a, const GraphImage::Node& b) {
  if (a.is_memset != b.is_memset || a.bytes.size() != b.bytes.size() || a.packed != b.packed || a.offsets != b.offsets)
    return false;
  if (a.is_memset) {
    const CUDA_MEMSET_NODE_PARAMS &x = a.memset, &y = b.memset;
    return x.pitch == y.pitch && x.value == y.value && x.elementSize == y.elementSize && x.width == y.width &&
           x.height == y.height;
  }
  const CUDA_KERNEL_NODE_PARAMS &x = a.kernel, &y = b.kernel;
  return x.func == y.func && x.kern == y.kern && x.gridDimX == y.gridDimX && x.gridDimY == y.gridDimY &&
         x.gridDimZ == y.gridDimZ && x.blockDimX == y.blockDimX && x.blockDimY == y.blockDimY && x.blockDimZ == y.blockDimZ &&
         x.sharedMemBytes == y.sharedMemBytes;
}

uint64_t word_at(const std::vector<uint8_t>& bytes, size_t offset) {
  uint64_t w;
  std::memcpy(&w, bytes.data() + offset, sizeof w);
  return w;
}

}  // namespace

std::optional<GraphImage> GraphImage::read(cudaGraph_t graph, const std::vector<void*>& io, const std::vector<size_t>& io_bytes) {
  const Driver& d = driver();
  if (!d.complete) return std::nullopt;
  size_t count = 0;
  if (d.graph_get_nodes(graph, nullptr, &count) != CUDA_SUCCESS) return std::nullopt;
  std::vector<CUgraphNode> handles(count);
  if (count && d.graph_get_nodes(graph, handles.data(), &count) != CUDA_SUCCESS) return std::nullopt;
  GraphImage image;
  image.io = io;
  image.io_bytes = io_bytes;
  for (CUgraphNode handle : handles) {
    CUgraphNodeType type;
    if (d.node_get_type(handle, &type) != CUDA_SUCCESS) return std::nullopt;
    Node n;
    n.node = handle;
    if (type == CU_GRAPH_NODE_TYPE_KERNEL) {
      if (d.kernel_node_get_params(handle, &n.kernel) != CUDA_SUCCESS || !read_kernel_arguments(d, n)) return std::nullopt;
      n.kernel.kernelParams = nullptr;  // they pointed into the graph's own storage
      n.kernel.extra = nullptr;
    } else if (type == CU_GRAPH_NODE_TYPE_MEMSET) {
      if (d.memset_node_get_params(handle, &n.memset) != CUDA_SUCCESS || d.ctx_get_current(&n.context) != CUDA_SUCCESS)
        return std::nullopt;
      n.is_memset = true;
      n.bytes.resize(sizeof(CUdeviceptr));
      std::memcpy(n.bytes.data(), &n.memset.dst, sizeof(CUdeviceptr));
    } else if (type != CU_GRAPH_NODE_TYPE_EMPTY && type != CU_GRAPH_NODE_TYPE_EVENT_RECORD &&
               type != CU_GRAPH_NODE_TYPE_WAIT_EVENT) {
      return std::nullopt;  // copies, host callbacks, child graphs, allocations: capture again instead
    }
    image.nodes.push_back(std::move(n));
  }
  return image;
}

void NodePatcher::updated(const GraphImage& next) {
  bool same = next.nodes.size() == image_.nodes.size() && next.io.size() == image_.io.size() && next.io_bytes == image_.io_bytes;
  for (size_t i = 0; same && i < next.nodes.size(); ++i) same = same_launch(image_.nodes[i], next.nodes[i]);
  std::vector<Relocation> found;
  std::set<size_t> changed;
  for (size_t s = 0; same && s < next.io.size(); ++s)
    if (next.io[s] != image_.io[s]) changed.insert(s);
  // Every word that differs must be one changed address plus the same offset in both captures.
  for (size_t i = 0; same && i < next.nodes.size(); ++i) {
    const std::vector<uint8_t>&a = image_.nodes[i].bytes, &b = next.nodes[i].bytes;
    size_t words = a.size() / 8 * 8;
    same = std::memcmp(a.data() + words, b.data() + words, a.size() - words) == 0;
    for (size_t o = 0; same && o < words; o += 8) {
      uint64_t x = word_at(a, o), y = word_at(b, o);
      if (x == y) continue;
      // Buffers allocated alike move alike: where two addresses explain the
      // word, the one it points into (or just past) is meant.
      std::vector<Relocation> matches;
      for (size_t s : changed) {
        auto old_base = reinterpret_cast<uint64_t>(image_.io[s]), new_base = reinterpret_cast<uint64_t>(next.io[s]);
        if (x - old_base == y - new_base) matches.push_back(Relocation{i, o, s, int64_t(x - old_base)});
      }
      auto within = [&](const Relocation& r, bool or_just_past) {
        return r.displacement >= 0 && (uint64_t(r.displacement) < image_.io_bytes[r.slot] ||
                                       (or_just_past && uint64_t(r.displacement) == image_.io_bytes[r.slot]));
      };
      if (matches.size() > 1) {
        std::vector<Relocation> inside, inside_or_past;
        for (const Relocation& r : matches) {
          if (within(r, false)) inside.push_back(r);
          if (within(r, true)) inside_or_past.push_back(r);
        }
        matches = inside.empty() ? inside_or_past : inside;
      }
      same = matches.size() == 1;
      if (same) found.push_back(matches[0]);
    }
  }
  // The executable graph now holds next's arguments (same nodes, by capture order).
  for (size_t i = 0; i < image_.nodes.size() && i < next.nodes.size(); ++i) {
    CUgraphNode handle = image_.nodes[i].node;
    image_.nodes[i] = next.nodes[i];
    image_.nodes[i].node = handle;
  }
  image_.io = next.io;
  if (!same) {
    relocations_.clear();
    learned_.clear();
    return;
  }
  std::erase_if(relocations_, [&](const Relocation& r) { return changed.count(r.slot) != 0; });
  relocations_.insert(relocations_.end(), found.begin(), found.end());
  learned_.insert(changed.begin(), changed.end());
}

bool NodePatcher::patch(cudaGraphExec_t exec, const std::vector<void*>& io) {
  if (io.size() != image_.io.size()) return false;
  std::set<size_t> changed;
  for (size_t s = 0; s < io.size(); ++s) {
    if (io[s] == image_.io[s]) continue;
    auto moved = reinterpret_cast<uint64_t>(io[s]) - reinterpret_cast<uint64_t>(image_.io[s]);
    if (!learned_.count(s) || moved % 256 != 0) return false;
    changed.insert(s);
  }
  std::set<size_t> dirty;
  for (const Relocation& r : relocations_)
    if (changed.count(r.slot)) {
      uint64_t word = reinterpret_cast<uint64_t>(io[r.slot]) + uint64_t(r.displacement);
      std::memcpy(image_.nodes[r.node].bytes.data() + r.offset, &word, sizeof word);
      dirty.insert(r.node);
    }
  image_.io = io;
  const Driver& d = driver();
  for (size_t i : dirty) {
    GraphImage::Node& n = image_.nodes[i];
    CUresult r;
    if (n.is_memset) {
      CUDA_MEMSET_NODE_PARAMS p = n.memset;
      std::memcpy(&p.dst, n.bytes.data(), sizeof p.dst);
      r = d.exec_memset_node_set_params(exec, n.node, &p, n.context);
    } else {
      CUDA_KERNEL_NODE_PARAMS p = n.kernel;
      std::vector<void*> arguments;
      size_t size = n.bytes.size();
      void* packed[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, n.bytes.data(), CU_LAUNCH_PARAM_BUFFER_SIZE, &size, CU_LAUNCH_PARAM_END};
      if (n.packed) {
        p.extra = packed;
      } else {
        for (size_t offset : n.offsets) arguments.push_back(n.bytes.data() + offset);
        p.kernelParams = arguments.data();
      }
      r = d.exec_kernel_node_set_params(exec, n.node, &p);
    }
    if (r != CUDA_SUCCESS) {
      // Some nodes may hold the new addresses already: only a new capture
      // (which rewrites every node) makes the image true again.
      learned_.clear();
      return false;
    }
  }
  return true;
}

}  // namespace kiln::runtime::graphs

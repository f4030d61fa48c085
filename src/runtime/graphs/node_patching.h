// Repairing an executable graph for new input/output addresses by rewriting
// only the arguments that hold them, instead of capturing again.
//
// Where the addresses sit in each node's arguments is learned, not assumed:
// when a graph is captured again for new addresses, the two captures' nodes
// are compared word by word, and every word that changed must be one bound
// address plus a fixed offset (the same offset in both captures). That covers
// kiln's kernels and the libraries' (cuBLASLt, cuDNN) alike, without knowing
// their argument layouts. Addresses that did not change between the two
// captures are not learned; a later change of one of them captures again.
// Where two addresses moved by the same distance, a word belongs to the
// buffer it points into.
#pragma once

#include <cuda.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <vector>

namespace kiln::runtime::graphs {

// The nodes of a captured graph: types, launch configuration and argument bytes.
class GraphImage {
 public:
  // Reads `graph`'s nodes; nullopt where a node cannot be read or patched
  // (host callbacks, child graphs, copies, ...).
  static std::optional<GraphImage> read(cudaGraph_t graph, const std::vector<void*>& io, const std::vector<size_t>& io_bytes);

  struct Node {
    CUgraphNode node = nullptr;
    bool is_memset = false;
    CUDA_KERNEL_NODE_PARAMS kernel{};  // kernel nodes: kernelParams/extra point into `bytes` when written
    CUDA_MEMSET_NODE_PARAMS memset{};
    CUcontext context = nullptr;       // memset nodes
    std::vector<uint8_t> bytes;        // the device-side argument layout; a memset's destination
    std::vector<size_t> offsets;       // each argument's offset in `bytes` (kernels)
    bool packed = false;               // the arguments came as one buffer (CU_LAUNCH_PARAM_BUFFER_POINTER)
  };
  std::vector<Node> nodes;
  std::vector<void*> io;        // the bound input/output addresses the graph was captured with
  std::vector<size_t> io_bytes;  // and their sizes
};

// Where each bound address sits in a graph's nodes, learned from two captures.
class NodePatcher {
 public:
  // `base` is the image of the graph an executable graph was instantiated
  // from; its node handles name the executable graph's nodes from now on.
  explicit NodePatcher(GraphImage base) : image_(std::move(base)) {}

  // The executable graph was updated from a new capture (`next`): its
  // arguments are now next's. Learns from the difference where the addresses
  // that changed are; forgets everything learned when the two captures differ
  // in anything else (new kernels, other launch sizes).
  void updated(const GraphImage& next);

  // Rewrites the executable graph's nodes for new addresses. False (nothing
  // changed in `exec`) when an address is not learned yet, moved by other than
  // a multiple of 256 bytes (libraries choose kernels by alignment), or CUDA
  // refused; then capture again.
  bool patch(cudaGraphExec_t exec, const std::vector<void*>& io);

 private:
  struct Relocation {
    size_t node, offset, slot;
    int64_t displacement;  // the word minus the slot's address
  };
  GraphImage image_;
  std::vector<Relocation> relocations_;
  std::set<size_t> learned_;  // slots whose every occurrence is in relocations_
};

}  // namespace kiln::runtime::graphs

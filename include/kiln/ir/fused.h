// Encoding of the builder's fused ops, shared by the builder (which makes
// them), the reference interpreter (which checks them) and codegen.
#pragma once

#include <string>
#include <vector>

#include "kiln/export.h"
#include "kiln/ir/network.h"

KILN_API_BEGIN
namespace kiln::ir {

// FusedElementwise: instruction i applies ops[i] to up to kMaxArgs operands.
// Operand r < num_inputs names node input r; r >= num_inputs names the result
// of instruction r - num_inputs; -1 is unused. Each instruction carries
// kMaxParams float parameters (alpha, beta, ... in the op's attribute order,
// see fused_param_names). The node's output is the last instruction's result.
inline constexpr int kFusedMaxArgs = 3;
inline constexpr int kFusedMaxParams = 2;
// What one FusedElementwise may hold: the GPU kernel's parameter block has
// room for this many inputs' strides, and a longer program only makes one
// slow compile of a kernel that is memory-bound anyway.
inline constexpr int kFusedMaxInputs = 14;
inline constexpr int kFusedMaxInstructions = 256;

struct FusedInstruction {
  OpKind op;
  int args[kFusedMaxArgs] = {-1, -1, -1};
  double params[kFusedMaxParams] = {0, 0};
};

std::vector<FusedInstruction> decode_fused_program(const Node& node);
void encode_fused_program(const std::vector<FusedInstruction>& program, Attributes& attrs);

// Ops a FusedElementwise program may contain (float math the builder fuses).
bool is_fusable_elementwise(OpKind op);
// Every op an elementwise GPU kernel computes: the fusable ones plus integer,
// boolean and comparison ops, which run as single-op kernels.
bool is_elementwise(OpKind op);
// Which attributes of the op become instruction parameters (with defaults);
// `integer` ones are int attributes, stored as doubles in the program.
struct FusedParam {
  const char* name;
  double fallback;
  bool integer = false;
};
std::vector<FusedParam> fused_param_names(OpKind op);
// The instruction for one elementwise node, its attributes as parameters (args unset).
FusedInstruction instruction_from_node(const Node& node);
// The attributes an instruction stands for, rebuilt from its parameters.
Attributes fused_instruction_attrs(const FusedInstruction& instruction);

// FusedMatMul activations.
inline const std::vector<std::string> kFusedActivations = {"none", "relu", "gelu", "gelu_tanh", "sigmoid", "tanh"};

}  // namespace kiln::ir
KILN_API_END

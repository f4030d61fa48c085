"""The zoo's models: torchvision and Hugging Face transformers definitions with
seeded random weights (nothing is downloaded), at sizes real deployments use
at batch 1, or at a tiny size for CPU tests.

    module, inputs = build("resnet50", batch=8)        # module in eval mode, {"image": tensor}
    module, inputs = build("llama", batch=1, tiny=True)

Every model takes one input, "image" (N, 3, H, W) float32 or "ids" (N, seq)
int64, and returns one tensor: class logits, the last hidden state
(encoders) or next-token logits (decoders).

Random weights must still give informative outputs: BatchNorm running
statistics are set from a forward pass in training mode over a random batch
(with the defaults, mean 0 and variance 1, activations grow block after block
until fp16 overflows), and weight matrices the library starts at zero (ViT's
classifier head) get a seeded normal init instead, so the output depends on
the input.
"""
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

SEED = 0
SEQ = 128          # tokens per sequence for the language models
TINY_SEQ = 16
IMAGE = 224
TINY_IMAGE = 64


@dataclass(frozen=True)
class Entry:
    family: str
    make: Callable[[bool], nn.Module]   # tiny -> module with fresh random weights
    input: str                          # "image" or "ids"
    vocab: int = 0                      # for "ids": token ids are drawn below vocab (full size)
    exporter: str = "torchscript"       # or "dynamo": bench/zoo/export.py says which family needs which
    kiln_gap: str = ""                  # why `kiln build` refuses the exported model, while it does


class Logits(nn.Module):
    """A Hugging Face model as a plain module: input ids in, one tensor out.
    causal: pass the causal mask as a 4D additive mask, which the attention
    layers take as is; left to the library, the mask is built by indexing an
    attention mask (GatherND) or by looking for packed sequences (aten::diff),
    which neither ONNX exporter turns into ops kiln can plan."""

    def __init__(self, model, output, causal=False, **call):
        super().__init__()
        self.model, self.output, self.causal, self.call = model, output, causal, call

    def forward(self, ids):
        mask = {}
        if self.causal:
            dtype = self.model.get_input_embeddings().weight.dtype
            t = ids.shape[1]
            above = torch.ones(t, t, dtype=torch.bool, device=ids.device).triu(1)
            mask["attention_mask"] = torch.zeros(1, 1, t, t, dtype=dtype, device=ids.device).masked_fill(
                above, torch.finfo(dtype).min)
        return getattr(self.model(input_ids=ids, **mask, **self.call), self.output)


def _torchvision(name, **kwargs):
    def make(tiny):
        import torchvision
        return getattr(torchvision.models, name)(weights=None, **kwargs)
    return make


def _vit(tiny):
    import torchvision
    if tiny:  # vit_b_16 is fixed at 224x224; the same class at 64x64 with 2 small layers
        from torchvision.models.vision_transformer import VisionTransformer
        return VisionTransformer(TINY_IMAGE, 16, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=100)
    return torchvision.models.vit_b_16(weights=None)


TINY_VOCAB = 512


def _hf(kind):
    def make(tiny):
        import transformers as t
        small = dict(vocab_size=TINY_VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128)
        if kind == "bert":  # BERT-base
            config = t.BertConfig(**small) if tiny else t.BertConfig()
            return Logits(t.BertModel(config, add_pooling_layer=False), "last_hidden_state")
        if kind == "distilbert":  # distilbert-base: 6 layers of 768
            config = (t.DistilBertConfig(vocab_size=TINY_VOCAB, dim=64, n_layers=2, n_heads=4, hidden_dim=128) if tiny
                      else t.DistilBertConfig())
            return Logits(t.DistilBertModel(config), "last_hidden_state")
        if kind == "gpt2":  # GPT-2 small with its tied LM head
            config = (t.GPT2Config(vocab_size=TINY_VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64) if tiny
                      else t.GPT2Config())
            return Logits(t.GPT2LMHeadModel(config), "logits", causal=True, use_cache=False)
        if kind == "t5_encoder":  # t5-small's encoder: relative position buckets, RMS-style T5LayerNorm
            config = (t.T5Config(vocab_size=TINY_VOCAB, d_model=64, d_ff=128, d_kv=16, num_layers=2, num_heads=4) if tiny
                      else t.T5Config(d_model=512, d_ff=2048, d_kv=64, num_layers=6, num_heads=8))
            return Logits(t.T5EncoderModel(config), "last_hidden_state")
        # A Llama-style decoder: RMSNorm, rotary embeddings, SwiGLU, grouped-query attention (8 heads, 4 KV heads).
        config = (t.LlamaConfig(max_position_embeddings=64, num_key_value_heads=2, **small) if tiny
                  else t.LlamaConfig(vocab_size=32000, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                                     num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512))
        return Logits(t.LlamaForCausalLM(config), "logits", causal=True, use_cache=False)
    return make


ZOO = {
    "resnet50": Entry("CNN, residual", _torchvision("resnet50"), "image"),
    "mobilenet_v3_large": Entry("CNN, depthwise (mobile)", _torchvision("mobilenet_v3_large"), "image"),
    "efficientnet_b0": Entry("CNN, depthwise + squeeze-excitation", _torchvision("efficientnet_b0"), "image"),
    "convnext_tiny": Entry("CNN, large kernel (7x7 depthwise)", _torchvision("convnext_tiny"), "image"),
    "regnet_y_800mf": Entry("CNN, grouped + squeeze-excitation", _torchvision("regnet_y_800mf"), "image"),
    "densenet121": Entry("CNN, dense concatenation", _torchvision("densenet121"), "image"),
    "vit_b_16": Entry("vision transformer", _vit, "image", exporter="dynamo"),
    "swin_t": Entry("vision transformer, shifted windows", _torchvision("swin_t"), "image", exporter="dynamo"),
    "bert": Entry("encoder LM (BERT-base)", _hf("bert"), "ids", 30522, exporter="dynamo"),
    "distilbert": Entry("encoder LM (DistilBERT-base)", _hf("distilbert"), "ids", 30522),
    "t5_encoder": Entry("encoder LM (T5-small encoder)", _hf("t5_encoder"), "ids", 32128),
    "gpt2": Entry("decoder LM (GPT-2 small)", _hf("gpt2"), "ids", 50257, exporter="dynamo"),
    "llama": Entry("decoder LM (Llama-style: RMSNorm, rotary, GQA)", _hf("llama"), "ids", 32000, exporter="dynamo"),
}


def example(name, batch, tiny=False, seed=SEED + 1):
    """The model's input for `batch`, seeded: {input name: tensor} on the CPU."""
    entry = ZOO[name]
    g = torch.Generator().manual_seed(seed)
    if entry.input == "image":
        size = TINY_IMAGE if tiny else IMAGE
        return {"image": torch.randn(batch, 3, size, size, generator=g)}
    vocab = TINY_VOCAB if tiny else entry.vocab
    return {"ids": torch.randint(0, vocab, (batch, TINY_SEQ if tiny else SEQ), generator=g)}


def _informative_init(module, calibration):
    """Seeded normal init for weight matrices the library leaves at zero, then
    BatchNorm statistics from one training-mode pass (cumulative average)."""
    g = torch.Generator().manual_seed(SEED + 2)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)) and not m.weight.any():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.02)
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        module.eval()
        for m in norms:  # only the norms: dropout and stochastic depth stay off
            m.train()
        with torch.no_grad():
            module(*calibration.values())
        for m in norms:
            m.momentum = 0.1
    return module.eval()


def build(name, batch=1, tiny=False):
    """(module in eval mode on the CPU, {input name: example tensor}) with the zoo's seed."""
    if name not in ZOO:
        raise KeyError(f"no zoo model '{name}'; the zoo has {', '.join(ZOO)}")
    torch.manual_seed(SEED)
    module = ZOO[name].make(tiny)
    calibration = example(name, 8, tiny, seed=SEED + 3)
    return _informative_init(module, calibration), example(name, batch, tiny)

"""kiln.torch on whole models (small random-weight configs), compiled for the CPU
reference interpreter and compared with PyTorch eager.

Vision: faithful re-implementations of torchvision's blocks (torch_vision_blocks.py;
no torchvision release matches the installed torch). Language: Hugging Face
transformers' own BERT, GPT-2, T5 encoder and Llama (skipped where transformers
is not installed)."""

from __future__ import annotations


import pytest

torch = pytest.importorskip("torch")

import kiln.torch as kt  # noqa: E402
from kiln.torch._engine import call_engine  # noqa: E402
from kiln.torch._partition import compute_node_count  # noqa: E402

import torch_vision_blocks as tv  # noqa: E402


def flat(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict) or hasattr(out, "to_tuple"):
        out = out.to_tuple() if hasattr(out, "to_tuple") else tuple(out.values())
    return [t for o in out for t in flat(o)]


def torch_compute_ops(compiled) -> set[str]:
    """The ATen ops PyTorch still computes in the compiled graph (data movement and sizes aside)."""
    nodes = [n for n in compiled.graph.nodes if n.op == "call_function" and n.target is not call_engine]
    return {str(n.target) for n in nodes if compute_node_count([n])}


def engine_count(compiled) -> int:
    return sum(1 for n in compiled.graph.nodes if n.op == "call_function" and n.target is call_engine)


def check_model(model, specs, runs, *, tol=1e-4, allowed_torch_ops=frozenset(), max_engines=None):
    model = model.eval()
    compiled = kt.compile(model, specs, device="cpu", min_block_size=1)
    assert engine_count(compiled) >= 1
    if max_engines is not None:
        assert engine_count(compiled) <= max_engines, compiled.code
    left = torch_compute_ops(compiled)
    assert left <= set(allowed_torch_ops), f"unexpected PyTorch compute ops: {sorted(left - set(allowed_torch_ops))}"
    for inputs in runs:
        with torch.no_grad():
            expected, actual = flat(model(*inputs)), flat(compiled(*inputs))
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert a.shape == e.shape and a.dtype == e.dtype
            scale = max(e.abs().max().item(), 1e-6)
            err = (a - e).abs().max().item()
            assert err <= tol * scale, f"max error {err:.3g} > {tol} * {scale:.3g}"
    return compiled


def image(batch, size=32, seed=0):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --- vision ---------------------------------------------------------------------------------------------------

VISION = {
    "resnet-basic": lambda: tv.ResNet(tv.BasicBlock),
    "resnet-bottleneck": lambda: tv.ResNet(tv.Bottleneck),
    "mobilenet-v3": tv.MobileNetV3,
    "efficientnet": tv.EfficientNet,
    "regnet-x": lambda: tv.RegNet(),
    "regnet-y": lambda: tv.RegNet(se_ratio=0.25),
    "convnext": tv.ConvNeXt,
    "vit": tv.VisionTransformer,
    "swin": tv.SwinTransformer,
}


@pytest.mark.parametrize("name", list(VISION))
def test_vision_model_runs_whole_in_kiln(name):
    torch.manual_seed(0)
    model = tv.randomize_batch_norms(VISION[name]())
    check_model(model, [image(2)], [[image(2, seed=1)]], max_engines=1)


def test_resnet_with_a_dynamic_batch():
    torch.manual_seed(0)
    model = tv.randomize_batch_norms(tv.ResNet())
    spec = kt.Input(min_shape=(1, 3, 32, 32), opt_shape=(2, 3, 32, 32), max_shape=(4, 3, 32, 32))
    check_model(model, [spec], [[image(1, seed=2)], [image(3, seed=3)]], max_engines=1)


def test_vit_with_a_dynamic_batch():
    torch.manual_seed(0)
    spec = kt.Input(min_shape=(1, 3, 32, 32), opt_shape=(2, 3, 32, 32), max_shape=(4, 3, 32, 32))
    check_model(tv.VisionTransformer(), [spec], [[image(1, seed=2)], [image(3, seed=3)]], max_engines=1)


# --- language (Hugging Face transformers) ------------------------------------------------------------------------


def transformers():
    return pytest.importorskip("transformers", reason="Hugging Face transformers is not installed")


def token_ids(batch, length, vocab=100, seed=0):
    return torch.randint(1, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_bert():
    T = transformers()
    torch.manual_seed(0)
    cfg = T.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                       max_position_embeddings=32)
    check_model(T.BertModel(cfg), [token_ids(2, 8)], [[token_ids(2, 8, seed=1)]], max_engines=1)


def test_bert_with_a_dynamic_sequence_length():
    T = transformers()
    torch.manual_seed(0)
    cfg = T.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                       max_position_embeddings=32)
    spec = kt.Input(min_shape=(2, 2), opt_shape=(2, 8), max_shape=(2, 16), dtype=torch.int64)
    check_model(T.BertModel(cfg), [spec], [[token_ids(2, 3, seed=1)], [token_ids(2, 16, seed=2)]])


def test_gpt2():
    T = transformers()
    torch.manual_seed(0)
    cfg = T.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=32, use_cache=False,
                       bos_token_id=1, eos_token_id=1)
    check_model(T.GPT2LMHeadModel(cfg), [token_ids(2, 8)], [[token_ids(2, 8, seed=1)]], max_engines=1)


def test_t5_encoder():
    T = transformers()
    torch.manual_seed(0)
    cfg = T.T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
                     relative_attention_max_distance=16)
    check_model(T.T5EncoderModel(cfg), [token_ids(2, 10)], [[token_ids(2, 10, seed=1)]], max_engines=1)


def test_llama():
    T = transformers()
    torch.manual_seed(0)
    cfg = T.LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, max_position_embeddings=64, use_cache=False, bos_token_id=1, eos_token_id=2)
    check_model(T.LlamaForCausalLM(cfg), [token_ids(1, 8)], [[token_ids(1, 8, seed=1)]], max_engines=1)

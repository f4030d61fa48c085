"""The model families kiln.torch is built for, compiled on the GPU and compared
with PyTorch eager: torchvision classifiers and Hugging Face encoders/decoders
(random weights, small configs where the library allows). fp32 within 1e-4 and
fp16 within 2e-2 of the output's largest magnitude."""

import pytest

torch = pytest.importorskip("torch")

import kiln  # noqa: E402
import kiln.torch as kt  # noqa: E402

available, reason = kiln.runtime.cuda_available()
pytestmark = [
    pytest.mark.skipif(not (available and torch.cuda.is_available()), reason=f"no usable GPU: {reason}"),
    pytest.mark.usefixtures("no_tf32"),
]

TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-2}


def vision(name, size=224):
    def make():
        torchvision = pytest.importorskip("torchvision")
        return getattr(torchvision.models, name)(weights=None), torch.randn(1, 3, size, size)

    return make


class LastHidden(torch.nn.Module):
    """A Hugging Face model returning its last hidden state as a plain tensor."""

    def __init__(self, model, **call):
        super().__init__()
        self.model = model
        self.call = call

    def forward(self, ids):
        return self.model(input_ids=ids, **self.call).last_hidden_state


def hugging_face(kind):
    def make():
        transformers = pytest.importorskip("transformers")
        small = dict(vocab_size=1000)
        if kind == "bert":
            config = transformers.BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                             intermediate_size=256, **small)
            model, call = transformers.BertModel(config), {}
        elif kind == "gpt2":
            config = transformers.GPT2Config(n_embd=128, n_layer=2, n_head=4, n_positions=64, **small)
            model, call = transformers.GPT2Model(config), {"use_cache": False}
        elif kind == "t5":
            config = transformers.T5Config(d_model=128, d_ff=256, d_kv=32, num_layers=2, num_heads=4, **small)
            model, call = transformers.T5EncoderModel(config), {}
        else:
            config = transformers.LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                              **small)
            model, call = transformers.LlamaModel(config), {"use_cache": False}
        return LastHidden(model, **call), torch.randint(0, 1000, (1, 16))

    return make


MODELS = {
    "resnet18": vision("resnet18"),
    "mobilenet_v3_small": vision("mobilenet_v3_small"),
    "efficientnet_b0": vision("efficientnet_b0"),
    "convnext_tiny": vision("convnext_tiny"),
    "regnet_y_400mf": vision("regnet_y_400mf"),
    "vit_b_16": vision("vit_b_16"),
    "swin_t": vision("swin_t"),
    "bert": hugging_face("bert"),
    "gpt2": hugging_face("gpt2"),
    "t5_encoder": hugging_face("t5"),
    "llama": hugging_face("llama"),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("name", list(MODELS))
def test_model_matches_eager(name, dtype):
    torch.manual_seed(0)
    model, example = MODELS[name]()
    model = model.cuda().eval().to(dtype)
    example = example.cuda()
    if example.is_floating_point():
        example = example.to(dtype)
    with torch.no_grad():
        expected = model(example).float()
        compiled = kt.compile(model, [example], min_block_size=3)
        engines = len(compiled.engines)
        aten_left = [n for n in compiled.graph.nodes if n.op == "call_function" and "call_engine" not in str(n.target)
                     and "getitem" not in str(n.target)]
        got = compiled(example).float()
    print(f"{name} {dtype}: {engines} engines, PyTorch nodes left: {sorted({str(n.target) for n in aten_left})}")
    assert engines >= 1
    error = (got - expected).abs().max().item()
    scale = expected.abs().max().item()
    assert error <= TOLERANCE[dtype] * scale, f"{name}: max error {error:.3g} against max |eager| {scale:.3g}"

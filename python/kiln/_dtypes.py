"""kiln dtype names and their numpy and torch counterparts."""

import numpy as np

# kiln name -> numpy dtype of the same bytes (bfloat16 travels as raw 16-bit words).
NUMPY = {
    "float32": np.float32,
    "float16": np.float16,
    "float64": np.float64,
    "bfloat16": np.uint16,
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "bool": np.bool_,
}


def from_numpy(dtype) -> str:
    """The kiln name of a numpy dtype (uint16 is not bfloat16: numpy has none)."""
    for name, np_type in NUMPY.items():
        if name != "bfloat16" and np.dtype(np_type) == np.dtype(dtype):
            return name
    raise TypeError(f"numpy dtype {np.dtype(dtype)} has no kiln counterpart (kiln has {', '.join(sorted(NUMPY))})")


def torch_dtype(name: str):
    import torch

    return {
        "float32": torch.float32,
        "float16": torch.float16,
        "float64": torch.float64,
        "bfloat16": torch.bfloat16,
        "int8": torch.int8,
        "int16": torch.int16,
        "int32": torch.int32,
        "int64": torch.int64,
        "uint8": torch.uint8,
        "bool": torch.bool,
    }[name]


def from_torch(dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    if name not in NUMPY:
        raise TypeError(f"torch dtype {dtype} has no kiln counterpart (kiln has {', '.join(sorted(NUMPY))})")
    return name


def bfloat16_words_to_float32(words: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) as float32 values (exact: bfloat16 is float32's top half)."""
    return (words.astype(np.uint32) << 16).view(np.float32)

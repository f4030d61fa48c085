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
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
    "bool": np.bool_,
    # numpy has no narrow types: a byte per element, as kiln holds them (a
    # float8's or float4e2m1's bits; a 4- or 2-bit integer's value).
    "float8e4m3fn": np.uint8,
    "float8e4m3fnuz": np.uint8,
    "float8e5m2": np.uint8,
    "float8e5m2fnuz": np.uint8,
    "float4e2m1": np.uint8,
    "float8e8m0": np.uint8,
    "uint4": np.uint8,
    "uint2": np.uint8,
    "int4": np.int8,
    "int2": np.int8,
}

# Names whose numpy dtype stands for another kiln type (from_numpy never answers them).
_RAW = {
    "bfloat16", "float8e4m3fn", "float8e4m3fnuz", "float8e5m2", "float8e5m2fnuz", "float4e2m1", "float8e8m0",
    "uint4", "uint2", "int4", "int2",
}


def from_numpy(dtype) -> str:
    """The kiln name of a numpy dtype (uint16 is not bfloat16: numpy has none); str and object arrays hold strings."""
    if np.dtype(dtype).kind in "UO":
        return "string"
    for name, np_type in NUMPY.items():
        if name not in _RAW and np.dtype(np_type) == np.dtype(dtype):
            return name
    raise TypeError(f"numpy dtype {np.dtype(dtype)} has no kiln counterpart (kiln has {', '.join(sorted(NUMPY))})")


def _torch_names():
    """kiln names torch has a dtype for (uint16, uint32 and uint64 since torch 2.3); not the narrow types,
    whose torch namesakes (torch.int4, ...) hold no data kiln's layout matches."""
    import torch

    names = [name for name in NUMPY if name == "bfloat16" or name not in _RAW]
    return {name: getattr(torch, name) for name in names if isinstance(getattr(torch, name, None), torch.dtype)}


def torch_dtype(name: str):
    dtypes = _torch_names()
    if name not in dtypes:
        raise TypeError(f"kiln dtype {name} has no counterpart in this torch (it has {', '.join(sorted(dtypes))})")
    return dtypes[name]


def from_torch(dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    if name not in NUMPY:
        raise TypeError(f"torch dtype {dtype} has no kiln counterpart (kiln has {', '.join(sorted(NUMPY))})")
    return name


def bfloat16_words_to_float32(words: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) as float32 values (exact: bfloat16 is float32's top half)."""
    return (words.astype(np.uint32) << 16).view(np.float32)

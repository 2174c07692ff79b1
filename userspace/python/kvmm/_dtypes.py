# SPDX-License-Identifier: MIT
"""Element types a KV cache can hold, by name, numpy dtype or torch dtype."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

import numpy as np


@dataclass(frozen=True)
class DType:
    name: str  # canonical: float16, bfloat16, float32, int8, uint8
    itemsize: int
    typestr: str  # numpy __array_interface__ typestr of the raw elements
    torch_name: str  # attribute of the torch module


_DTYPES: Dict[str, DType] = {
    d.name: d
    for d in (
        DType("float16", 2, "<f2", "float16"),
        DType("bfloat16", 2, "<i2", "bfloat16"),  # numpy has no bfloat16: raw int16 bits
        DType("float32", 4, "<f4", "float32"),
        DType("int8", 1, "|i1", "int8"),
        DType("uint8", 1, "|u1", "uint8"),
    )
}
_ALIASES = {"half": "float16", "f16": "float16", "bf16": "bfloat16", "float": "float32", "f32": "float32"}


def resolve(dtype: Any) -> DType:
    """The DType for a name, numpy dtype or torch dtype; ValueError otherwise."""
    name = None
    if isinstance(dtype, DType):
        return dtype
    if isinstance(dtype, str):
        name = _ALIASES.get(dtype, dtype)
    elif type(dtype).__module__ == "torch" and type(dtype).__name__ == "dtype":
        name = str(dtype).split(".", 1)[1]
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = None
    if name not in _DTYPES:
        raise ValueError(
            f"dtype {dtype!r} is not one kvmm caches hold ({', '.join(_DTYPES)})"
        )
    return _DTYPES[name]


def torch_dtype(d: DType) -> Any:
    import torch

    return getattr(torch, d.torch_name)

"""The operator: a named shape with a dtype, and what it costs in FLOPs and bytes.

An `Op` is the node of an `OpGraph`. Everything a cost model needs is derived
from its shape and dtype; its name only locates it (`unet.down.1.attn.0.self`).
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.shapes import Shape

DTYPE_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1}

CATEGORIES = (
    "Attention",
    "Linear",
    "Convolution",
    "GroupNorm",
    "LayerNorm",
    "Elementwise",
    "Resample",
    "Embedding",
    "Communication",
    "Other",
)


@dataclass(frozen=True)
class Op:
    name: str
    shape: Shape
    dtype: str = "fp16"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_BYTES:
            raise ValueError(f"dtype {self.dtype!r} not in {tuple(DTYPE_BYTES)}")

    @property
    def kind(self) -> str:
        return self.shape.kind

    @property
    def category(self) -> str:
        return self.shape.category

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def flops(self) -> int:
        return self.shape.flops

    @property
    def mac_flops(self) -> int:
        return self.shape.mac_flops

    @property
    def weight_bytes(self) -> int:
        return self.shape.weight_elements * self.dtype_bytes

    @property
    def output_bytes(self) -> int:
        return self.shape.output_elements * self.dtype_bytes

    @property
    def bytes(self) -> int:
        """Minimal device-memory bytes read plus written by one fused kernel."""
        # An embedding lookup reads only the rows it gathers, not the whole table.
        weights_read = getattr(self.shape, "weight_elements_read", self.shape.weight_elements)
        elements = self.shape.input_elements + weights_read + self.shape.output_elements
        return elements * self.dtype_bytes

    @property
    def similarity_bytes(self) -> int:
        """Bytes of the similarity matrix baseline attention materializes (0 for other ops)."""
        return getattr(self.shape, "similarity_elements", 0) * self.dtype_bytes

    @property
    def kv_cache_bytes(self) -> int:
        return getattr(self.shape, "kv_cache_elements", 0) * self.dtype_bytes

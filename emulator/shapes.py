"""Shape-only descriptions of the operators a generative model runs.

Each shape is a frozen dataclass that knows how much arithmetic it does and how
many elements it touches, independent of dtype. `emulator.ops.Op` pairs a shape
with a name and a dtype and turns element counts into bytes.

Conventions (the same everywhere in the project):
- `mac_flops`: 2 FLOPs per multiply-add of the matrix products and convolutions
  an operator contains; this is what torch's FlopCounterMode counts.
- `flops`: `mac_flops` plus the other arithmetic (bias adds, softmax,
  normalization, activations), counted per element with the constants below.
- `input_elements` / `output_elements` / `weight_elements`: the minimal tensors a
  fused kernel reads and writes; a kernel that re-reads data costs more, which is
  the cost model's business, not the shape's.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

# FLOPs per element for the non-matmul work. They only matter for rooflines of
# memory-bound ops; the constants are an honest count of the arithmetic of a
# straightforward kernel, not a measurement.
SOFTMAX_FLOPS_PER_ELEMENT = 5  # max, subtract, exp, sum, divide
NORM_FLOPS_PER_ELEMENT = {"group": 8, "layer": 8, "rms": 4}
ELEMENTWISE_FLOPS_PER_ELEMENT = {
    "add": 1,
    "mul": 1,
    "scale": 1,
    "silu": 4,  # x * sigmoid(x): exp, add, divide, multiply
    "quick_gelu": 5,  # x * sigmoid(1.702 x)
    "gelu": 8,  # tanh approximation
    "geglu": 9,  # gelu(gate) * x
    "swiglu": 5,  # silu(gate) * x
    "rope": 3,  # x * cos + rotate(x) * sin
    "copy": 0,  # layout change: a strided tensor (a transpose, a permute) made contiguous
    "memcpy": 0,  # contiguous copy: concatenation, clone or cast of contiguous tensors, streamed
    "unary": 1,  # one arithmetic op per element (exp, rsqrt, pow, ...), as lowered from aten
    "sigmoid": 3,  # exp, add, divide
    "reduce": 1,  # a sum or mean over the input's elements
    "timestep": 4,  # sinusoidal timestep features
}

ATTENTION_VARIANTS = ("self", "cross", "spatial", "temporal", "causal")
COLLECTIVE_OPS = ("all_gather", "all_reduce", "reduce_scatter", "all_to_all", "send_recv")
NORM_KINDS = tuple(NORM_FLOPS_PER_ELEMENT)
RESAMPLE_KINDS = ("up", "down")


def _positive(**values: int) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Linear:
    """x[m, k] @ W[k, n] (+ bias[n]) -> y[m, n]; m = all leading dims flattened."""

    m: int
    k: int
    n: int
    bias: bool = True

    kind = "linear"
    category = "Linear"

    def __post_init__(self) -> None:
        _positive(m=self.m, k=self.k, n=self.n)

    @property
    def mac_flops(self) -> int:
        return 2 * self.m * self.k * self.n

    @property
    def flops(self) -> int:
        return self.mac_flops + (self.m * self.n if self.bias else 0)

    @property
    def input_elements(self) -> int:
        return self.m * self.k

    @property
    def weight_elements(self) -> int:
        return self.k * self.n + (self.n if self.bias else 0)

    @property
    def output_elements(self) -> int:
        return self.m * self.n


@dataclass(frozen=True)
class Matmul:
    """Batched product of two activations: a[batch, m, k] @ b[batch, k, n]."""

    batch: int
    m: int
    k: int
    n: int

    kind = "matmul"
    category = "Linear"

    def __post_init__(self) -> None:
        _positive(batch=self.batch, m=self.m, k=self.k, n=self.n)

    @property
    def mac_flops(self) -> int:
        return 2 * self.batch * self.m * self.k * self.n

    flops = mac_flops

    @property
    def input_elements(self) -> int:
        return self.batch * (self.m * self.k + self.k * self.n)

    weight_elements = 0

    @property
    def output_elements(self) -> int:
        return self.batch * self.m * self.n


@dataclass(frozen=True)
class Conv:
    """N-d convolution over `size` (2-d: (H, W); temporal 1-d: (frames,)).

    Padding is 'same' (kernel // 2), as in every model of the suite, so the
    output size is ceil(size / stride).
    """

    batch: int
    c_in: int
    c_out: int
    size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: int = 1
    groups: int = 1
    bias: bool = True

    category = "Convolution"

    def __post_init__(self) -> None:
        _positive(batch=self.batch, c_in=self.c_in, c_out=self.c_out, stride=self.stride)
        if len(self.size) != len(self.kernel) or not self.size:
            raise ValueError(f"conv size {self.size} and kernel {self.kernel} differ in rank")
        if self.c_in % self.groups or self.c_out % self.groups:
            raise ValueError(f"groups {self.groups} must divide c_in {self.c_in} and c_out {self.c_out}")

    @property
    def kind(self) -> str:
        return "conv2d" if len(self.size) == 2 else f"conv{len(self.size)}d"

    @property
    def out_size(self) -> tuple[int, ...]:
        return tuple(-(-s // self.stride) for s in self.size)

    @property
    def mac_flops(self) -> int:
        per_output = (self.c_in // self.groups) * prod(self.kernel)
        return 2 * self.batch * self.c_out * prod(self.out_size) * per_output

    @property
    def flops(self) -> int:
        return self.mac_flops + (self.output_elements if self.bias else 0)

    @property
    def input_elements(self) -> int:
        return self.batch * self.c_in * prod(self.size)

    @property
    def weight_elements(self) -> int:
        return self.c_out * (self.c_in // self.groups) * prod(self.kernel) + (self.c_out if self.bias else 0)

    @property
    def output_elements(self) -> int:
        return self.batch * self.c_out * prod(self.out_size)


@dataclass(frozen=True)
class Attention:
    """softmax(Q K^T / sqrt(d)) V for q[batch, heads, q_len, d], k/v[batch, kv_heads, kv_len, d].

    `causal` masks keys after the query's position, the queries being the last
    q_len of the kv_len positions (prefill: q_len == kv_len; decode: q_len == 1).
    FLOPs count the unmasked query-key pairs; the similarity matrix a baseline
    (unfused) kernel materializes is always the full q_len x kv_len.
    `kv_cache` marks attention that reads a KV cache which grows every decode step.
    `kv_heads`: grouped-query attention, each K/V head shared by heads / kv_heads
    query heads (None: one per query head, multi-head attention). FLOPs are the
    query heads'; K and V (their reads, the KV cache, its growth) the KV heads'.
    A kv_heads equal to heads is stored as None, so the two spellings are one shape.
    """

    batch: int
    heads: int
    q_len: int
    kv_len: int
    head_dim: int
    variant: str = "self"
    causal: bool = False
    kv_cache: bool = False
    kv_heads: int | None = None

    kind = "attention"
    category = "Attention"

    def __post_init__(self) -> None:
        _positive(batch=self.batch, heads=self.heads, q_len=self.q_len, kv_len=self.kv_len, head_dim=self.head_dim)
        if self.variant not in ATTENTION_VARIANTS:
            raise ValueError(f"attention variant {self.variant!r} not in {ATTENTION_VARIANTS}")
        if self.causal and self.q_len > self.kv_len:
            raise ValueError(f"causal attention needs q_len <= kv_len, got {self.q_len} > {self.kv_len}")
        if self.kv_heads is not None:
            _positive(kv_heads=self.kv_heads)
            if self.heads % self.kv_heads:
                raise ValueError(f"{self.heads} query heads do not split into groups of {self.kv_heads} KV heads")
            if self.kv_heads == self.heads:  # multi-head attention: one spelling, equal and hashed alike
                object.__setattr__(self, "kv_heads", None)

    @property
    def key_value_heads(self) -> int:
        """K/V heads: kv_heads, or heads for multi-head attention."""
        return self.kv_heads or self.heads

    @property
    def group(self) -> int:
        """Query heads per K/V head (1: multi-head attention)."""
        return self.heads // self.key_value_heads

    @property
    def pairs(self) -> int:
        """Query-key pairs computed per (batch, head)."""
        if not self.causal:
            return self.q_len * self.kv_len
        offset = self.kv_len - self.q_len  # keys every query sees in full
        return self.q_len * offset + self.q_len * (self.q_len + 1) // 2

    @property
    def mac_flops(self) -> int:
        # Q K^T and P V: two products of 2 * pairs * head_dim FLOPs each.
        return 4 * self.batch * self.heads * self.pairs * self.head_dim

    @property
    def flops(self) -> int:
        return self.mac_flops + SOFTMAX_FLOPS_PER_ELEMENT * self.batch * self.heads * self.pairs

    @property
    def input_elements(self) -> int:
        # q[B, H, Lq, d] + k, v[B, Hkv, Lkv, d]
        return self.batch * self.head_dim * (self.heads * self.q_len + 2 * self.key_value_heads * self.kv_len)

    weight_elements = 0

    @property
    def output_elements(self) -> int:
        return self.batch * self.heads * self.q_len * self.head_dim

    @property
    def similarity_elements(self) -> int:
        """Elements of the [batch, heads, q_len, kv_len] score matrix of baseline attention."""
        return self.batch * self.heads * self.q_len * self.kv_len

    @property
    def kv_cache_elements(self) -> int:
        """Elements of the keys and values held in a KV cache (0 if none)."""
        # k, v[B, Hkv, Lkv, d]
        return 2 * self.batch * self.key_value_heads * self.kv_len * self.head_dim if self.kv_cache else 0

    def advanced(self, tokens: int) -> "Attention":
        """The same attention after `tokens` more positions entered the KV cache."""
        return Attention(self.batch, self.heads, self.q_len, self.kv_len + tokens, self.head_dim,
                         self.variant, self.causal, self.kv_cache, self.kv_heads)


@dataclass(frozen=True)
class Norm:
    """Group, layer or RMS normalization of `elements` values with `channels` affine parameters.

    Group norm takes statistics per (sample, group): `batch` samples of
    `channels` channels in `groups` groups. Layer and RMS norm take them per
    row of `channels` values.
    """

    norm: str
    elements: int
    channels: int
    groups: int = 1
    batch: int = 1

    category_by_norm = {"group": "GroupNorm", "layer": "LayerNorm", "rms": "LayerNorm"}

    def __post_init__(self) -> None:
        _positive(elements=self.elements, channels=self.channels, groups=self.groups, batch=self.batch)
        if self.elements % (self.channels * self.batch):
            raise ValueError(f"{self.elements} elements do not split into {self.batch} x {self.channels} channels")
        if self.norm not in NORM_KINDS:
            raise ValueError(f"norm {self.norm!r} not in {NORM_KINDS}")

    @property
    def kind(self) -> str:
        return f"{self.norm}_norm"

    @property
    def category(self) -> str:
        return self.category_by_norm[self.norm]

    mac_flops = 0

    @property
    def flops(self) -> int:
        return NORM_FLOPS_PER_ELEMENT[self.norm] * self.elements

    @property
    def input_elements(self) -> int:
        return self.elements

    @property
    def weight_elements(self) -> int:
        return self.channels if self.norm == "rms" else 2 * self.channels

    @property
    def output_elements(self) -> int:
        return self.elements


@dataclass(frozen=True)
class Softmax:
    """Softmax over rows of a [rows, cols] matrix (unfused attention, logits)."""

    rows: int
    cols: int

    kind = "softmax"
    category = "Other"

    def __post_init__(self) -> None:
        _positive(rows=self.rows, cols=self.cols)

    mac_flops = 0

    @property
    def flops(self) -> int:
        return SOFTMAX_FLOPS_PER_ELEMENT * self.rows * self.cols

    @property
    def input_elements(self) -> int:
        return self.rows * self.cols

    weight_elements = 0
    output_elements = input_elements


@dataclass(frozen=True)
class Elementwise:
    """A pointwise op of `inputs` full-size operands producing `elements` values.

    Small broadcast operands (a bias, a per-channel time embedding) are not counted
    as inputs; they are negligible next to the activation.
    """

    op: str
    elements: int
    inputs: int = 1

    kind = "elementwise"
    category = "Elementwise"

    def __post_init__(self) -> None:
        _positive(elements=self.elements, inputs=self.inputs)
        if self.op not in ELEMENTWISE_FLOPS_PER_ELEMENT:
            raise ValueError(f"elementwise op {self.op!r} not in {tuple(ELEMENTWISE_FLOPS_PER_ELEMENT)}")

    mac_flops = 0

    @property
    def flops(self) -> int:
        return ELEMENTWISE_FLOPS_PER_ELEMENT[self.op] * self.elements

    @property
    def input_elements(self) -> int:
        return self.inputs * self.elements

    weight_elements = 0

    @property
    def output_elements(self) -> int:
        return self.elements


@dataclass(frozen=True)
class Resample:
    """Nearest-neighbour up-sampling or average-pool down-sampling by `factor` per spatial dim."""

    direction: str
    batch: int
    channels: int
    size: tuple[int, ...]
    factor: int = 2

    kind = "resample"
    category = "Resample"

    def __post_init__(self) -> None:
        _positive(batch=self.batch, channels=self.channels, factor=self.factor)
        if self.direction not in RESAMPLE_KINDS:
            raise ValueError(f"resample direction {self.direction!r} not in {RESAMPLE_KINDS}")

    @property
    def out_size(self) -> tuple[int, ...]:
        if self.direction == "up":
            return tuple(s * self.factor for s in self.size)
        return tuple(s // self.factor for s in self.size)

    mac_flops = 0

    @property
    def flops(self) -> int:
        # Pooling adds factor^d inputs per output; nearest up-sampling only copies.
        if self.direction == "down":
            return self.input_elements
        return 0

    @property
    def input_elements(self) -> int:
        return self.batch * self.channels * prod(self.size)

    weight_elements = 0

    @property
    def output_elements(self) -> int:
        return self.batch * self.channels * prod(self.out_size)


@dataclass(frozen=True)
class Embedding:
    """Table lookup: `tokens` ids into a [vocab, dim] table."""

    tokens: int
    vocab: int
    dim: int

    kind = "embedding"
    category = "Embedding"

    def __post_init__(self) -> None:
        _positive(tokens=self.tokens, vocab=self.vocab, dim=self.dim)

    mac_flops = 0
    flops = 0

    @property
    def input_elements(self) -> int:
        return self.tokens  # the ids

    @property
    def weight_elements(self) -> int:
        return self.vocab * self.dim

    @property
    def weight_elements_read(self) -> int:
        return min(self.tokens, self.vocab) * self.dim

    @property
    def output_elements(self) -> int:
        return self.tokens * self.dim


@dataclass(frozen=True)
class Collective:
    """A collective over a group of `ranks` GPUs (NCCL), seen from one rank.

    `elements` is the message as NCCL (and nccl-tests, and aiconfigurator's
    tables) counts it: the whole buffer, not a rank's share. all_reduce: the
    buffer every rank holds (in = out); all_gather: the gathered output, P x
    each rank's input; reduce_scatter: the input before scattering, P x each
    rank's output; all_to_all: each rank's send buffer (= its receive buffer);
    send_recv: the buffer sent from one rank to the other (ranks = 2). Bytes
    follow from the op's dtype like every shape's. `cross_node`: the group
    spans more than one node (the link is the network, not NVLink).

    FLOPs are 0: all_reduce and reduce_scatter add (P-1)/P x elements per rank,
    a vector op many times faster than moving those elements over a link.
    `link_elements`: what one rank sends over its link in a ring (bandwidth-
    optimal) algorithm: all_reduce 2(P-1)/P x elements (reduce-scatter then
    all-gather), all_gather / reduce_scatter / all_to_all (P-1)/P x elements,
    send_recv the whole buffer.
    """

    op: str
    elements: int
    ranks: int
    cross_node: bool = False

    kind = "collective"
    category = "Communication"

    def __post_init__(self) -> None:
        if self.op not in COLLECTIVE_OPS:
            raise ValueError(f"collective {self.op!r} not in {COLLECTIVE_OPS}")
        _positive(elements=self.elements, ranks=self.ranks)
        if self.ranks < 2:
            raise ValueError(f"a collective needs at least 2 ranks, got {self.ranks}")
        if self.op == "send_recv" and self.ranks != 2:
            raise ValueError(f"send_recv is between 2 ranks, got {self.ranks}")
        if self.op in ("all_gather", "reduce_scatter", "all_to_all") and self.elements % self.ranks:
            raise ValueError(f"{self.op}: {self.elements} elements do not split over {self.ranks} ranks")

    mac_flops = 0
    flops = 0
    weight_elements = 0

    @property
    def shard_elements(self) -> int:
        """One rank's share of the buffer (all_gather's input, reduce_scatter's output)."""
        return self.elements // self.ranks

    @property
    def input_elements(self) -> int:
        return self.shard_elements if self.op == "all_gather" else self.elements

    @property
    def output_elements(self) -> int:
        return self.shard_elements if self.op == "reduce_scatter" else self.elements

    @property
    def link_elements(self) -> int:
        """Elements one rank sends over its link (ring formulas; all_reduce rounded down)."""
        p = self.ranks
        if self.op == "send_recv":
            return self.elements
        if self.op == "all_reduce":
            return 2 * (p - 1) * self.elements // p
        return (p - 1) * self.shard_elements


Shape = Linear | Matmul | Conv | Attention | Norm | Softmax | Elementwise | Resample | Embedding | Collective

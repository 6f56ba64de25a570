"""LLaMA-3.1-8B and LLaMA-3.1-70B: prefill of the prompt, then one decode step per token.

Sources: Meta's Hugging Face config.json of meta-llama/Llama-3.1-8B and
meta-llama/Llama-3.1-70B, as transcribed in oumi-ai/oumi
configs/recipes/llama3_1/README.md (vulkomilev/oumi): 8B: 32 layers, hidden
4096, 32 query and 8 key/value heads (head_dim 128), SwiGLU MLP 14336; 70B: 80
layers, hidden 8192, 64 query and 8 key/value heads (head_dim 128), MLP 28672;
both: vocabulary 128,256, untied output head, RMSNorm, RoPE (theta 500,000,
llama3 scaling), max_position_embeddings 131072. Published parameter counts:
8,030,261,248 and 70.6B (thamada/modelQuery README.md, from the checkpoints).

Grouped-query attention: K and V are projected to 8 heads, each shared by a
group of 4 (8B) or 8 (70B) query heads; the attention reads, and the KV cache
holds, the 8 K/V heads (Attention.kv_heads). Stages as workloads/llama2.py:
prefill produces the first output token; each of the remaining
output_tokens - 1 decode steps runs one token per sequence against a KV cache
one position longer than the step before; only the last position's logits are
computed (as Hugging Face's generate does).
"""

from __future__ import annotations

from dataclasses import dataclass

from workloads.blocks import transformer
from workloads.blocks.transformer import TransformerSpec
from workloads.config import WorkloadConfig
from workloads.workload import Workload, graph_stage

VOCAB = 128256
CONTEXT = 131072


@dataclass(frozen=True)
class Llama3:
    name: str  # workload name
    title: str  # as stages describe it
    layer: TransformerSpec
    layers: int


LLAMA31_8B = Llama3("llama3.1-8b", "LLaMA-3.1-8B",
                    TransformerSpec(4096, 32, 14336, "swiglu", norm="rms", bias=False, rope=True, kv_heads=8), 32)
LLAMA31_70B = Llama3("llama3.1-70b", "LLaMA-3.1-70B",
                     TransformerSpec(8192, 64, 28672, "swiglu", norm="rms", bias=False, rope=True, kv_heads=8), 80)


def forward(b, model: Llama3, batch: int, tokens: int, cache_len: int) -> None:
    """`tokens` new positions per sequence attending to `cache_len` cached ones (these included)."""
    spec = model.layer
    x = b.embedding("embed_tokens", b.input(batch, tokens), VOCAB, spec.dim)  # [B, L, D]
    x = transformer.stack(b, x, spec, model.layers, variant="causal", causal=True, cache_len=cache_len)
    last = x.narrow(1, 1)  # [B, 1, D]: the position whose next token is sampled
    logits = b.linear("lm_head", transformer.norm(b, last, spec.norm), VOCAB, bias=False)  # [B, 1, 128256]
    b.softmax("sample", logits)


def stages_of(model: Llama3):
    def stages(cfg: WorkloadConfig):
        prompt, out = cfg.prompt_tokens, cfg.output_tokens
        result = [graph_stage("prefill", f"{model.title} prefill of {prompt} tokens", cfg, 1, cfg.batch,
                              lambda b, n: forward(b, model, n, prompt, prompt), weights=model.name)]
        if out > 1:
            result.append(graph_stage("decode", f"{model.title} decode, KV cache {prompt + 1}..{prompt + out - 1}",
                                      cfg, out - 1, cfg.batch, lambda b, n: forward(b, model, n, 1, prompt + 1),
                                      kv_growth=1, weights=model.name))
        return tuple(result)

    return stages


def workload(model: Llama3) -> Workload:
    return Workload(
        name=model.name,
        klass="text-to-text, autoregressive LLM",
        description=f"{model.title}: grouped-query attention (8 KV heads), 128k vocabulary; prefill of the prompt, "
                    "then token-by-token decode with a KV cache",
        defaults=WorkloadConfig(prompt_tokens=512, output_tokens=128, dtype="bf16"),  # the released weights' dtype
        stages=stages_of(model),
        context_tokens=CONTEXT,
    )


WORKLOADS = (workload(LLAMA31_8B), workload(LLAMA31_70B))

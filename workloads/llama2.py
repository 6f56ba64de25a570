"""LLaMA-2-7B, the text-to-text reference: prefill of the prompt, then one decode step per token.

Source: the Hugging Face config of meta-llama/Llama-2-7b-hf, as transcribed in
microsoft/vidur vidur/config/model_config.py @7d47513: 32 layers, hidden 4096,
32 query and 32 key/value heads, SwiGLU MLP 11008, RMSNorm, RoPE, vocabulary
32000 (untied output head). Prefill produces the first output token; each of
the remaining output_tokens - 1 decode steps runs one token per sequence and
attends to a KV cache one position longer than the step before. Only the last
position's logits are computed (as Hugging Face's generate does). Context:
4096 tokens of prompt plus output (the Llama 2 paper, arXiv 2307.09288,
Table 1: context length 4k; max_position_embeddings 4096 in the Hugging Face
config of meta-llama/Llama-2-7b-hf).
"""

from __future__ import annotations

from workloads.blocks import transformer
from workloads.blocks.transformer import TransformerSpec
from workloads.config import WorkloadConfig
from workloads.workload import Workload, graph_stage

LAYER = TransformerSpec(4096, 32, 11008, "swiglu", norm="rms", bias=False, rope=True)
LAYERS = 32
VOCAB = 32000
CONTEXT = 4096


def forward(b, batch: int, tokens: int, cache_len: int) -> None:
    """`tokens` new positions per sequence attending to `cache_len` cached ones (these included)."""
    x = b.embedding("embed_tokens", b.input(batch, tokens), VOCAB, LAYER.dim)  # [B, L, 4096]
    x = transformer.stack(b, x, LAYER, LAYERS, variant="causal", causal=True, cache_len=cache_len)
    last = x.narrow(1, 1)  # [B, 1, 4096]: the position whose next token is sampled
    logits = b.linear("lm_head", transformer.norm(b, last, LAYER.norm), VOCAB, bias=False)
    b.softmax("sample", logits)


def stages(cfg: WorkloadConfig):
    prompt, out = cfg.prompt_tokens, cfg.output_tokens
    result = [graph_stage("prefill", f"LLaMA-2-7B prefill of {prompt} tokens", cfg, 1, cfg.batch,
                          lambda b, n: forward(b, n, prompt, prompt), weights="llama2-7b")]
    if out > 1:
        result.append(graph_stage("decode", f"LLaMA-2-7B decode, KV cache {prompt + 1}..{prompt + out - 1}", cfg,
                                  out - 1, cfg.batch, lambda b, n: forward(b, n, 1, prompt + 1),
                                  kv_growth=1, weights="llama2-7b"))
    return tuple(result)


WORKLOAD = Workload(
    name="llama2-7b",
    klass="text-to-text, autoregressive LLM",
    description="LLaMA-2-7B reference: prefill of the prompt, then token-by-token decode with a KV cache",
    defaults=WorkloadConfig(prompt_tokens=512, output_tokens=128),
    stages=stages,
    context_tokens=CONTEXT,
)

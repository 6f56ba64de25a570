"""Video diffusion transformers (3-D DiTs) on latent videos, as diffusers runs them.

Four families, each following its diffusers class (diffusers 0.42):
- Wan 2.1 (`WanTransformer3DModel`): (1, 2, 2) patches; per block AdaLN self-attention over the video tokens
  with RMS-normed Q and K across heads and 3-D RoPE, cross-attention to umT5 text (LayerNorm, QK RMS norm),
  AdaLN GELU MLP; the text is projected to the model width once per call.
- CogVideoX (`CogVideoXTransformer3DModel`): 2x2 patches per frame; text and video tokens in one sequence,
  each modality with its own ("expert") AdaLN, per-head LayerNorm on Q and K, RoPE on the video part.
- HunyuanVideo (`HunyuanVideoTransformer3DModel`): a token refiner on the LLM text (2 self-attention blocks),
  then dual-stream blocks (separate weights per modality, one joint attention) and single-stream blocks
  (parallel attention and MLP over the joint sequence), as in FLUX; guidance scale embedded like the timestep.
- LTX-Video (`LTXVideoTransformer3DModel`): 1x1x1 patches on a 32x-compressed latent, RMS-norm AdaLN,
  self-attention with QK RMS norm and RoPE, cross-attention to T5.

Conventions: RoPE is one elementwise op per rotated tensor; AdaLN is the norm, then a multiply and an add of
the broadcast (scale, shift); a gated residual is a multiply and an add. The float32 casts diffusers wraps
around norms are not recorded (they move data, no arithmetic). Latent video x[B, C, F, H, W].
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.builder import GraphBuilder, Tensor
from emulator.shapes import Conv, Norm


@dataclass(frozen=True)
class VideoDiTSpec:
    family: str  # wan | cogvideox | hunyuan | ltx
    dim: int  # model width: heads * head_dim
    heads: int
    mlp: int  # MLP hidden width
    layers: int  # (dual-stream) transformer blocks
    text_dim: int  # width of the text encoder's states
    in_channels: int = 16  # latent channels
    patch: tuple[int, int, int] = (1, 2, 2)  # (frames, height, width) per token
    single_layers: int = 0  # HunyuanVideo single-stream blocks
    refiner_layers: int = 0  # HunyuanVideo token-refiner blocks
    pooled_dim: int = 0  # HunyuanVideo: CLIP pooled text vector
    time_dim: int = 0  # CogVideoX: width of the timestep embedding (0: the model width)
    freq_dim: int = 256  # sinusoidal timestep features

    @property
    def patch_elements(self) -> int:
        t, h, w = self.patch
        return self.in_channels * t * h * w

    def tokens(self, frames: int, height: int, width: int) -> int:
        """Video tokens of a latent of `frames` x `height` x `width`."""
        t, h, w = self.patch
        return (frames // t) * (height // h) * (width // w)


# -- shared pieces --------------------------------------------------------------------------------------------
def timestep_mlp(b: GraphBuilder, name: str, n: int, freq: int, dim: int, base: Tensor | None = None) -> Tensor:
    """Sinusoidal features [B, freq] -> Linear -> SiLU -> Linear: [B, dim]."""
    with b.scope(name):
        t = b.elementwise("features", "timestep", base if base is not None else b.input(n, freq))
        t = b.linear("linear_1", t, dim)
        return b.linear("linear_2", b.elementwise("act", "silu", t), dim)


def text_projection(b: GraphBuilder, name: str, text: Tensor, dim: int, act: str = "gelu") -> Tensor:
    """PixArt-style caption projection: text[B, T, Dt] -> Linear -> act -> Linear: [B, T, dim]."""
    with b.scope(name):
        h = b.elementwise("act", act, b.linear("linear_1", text, dim))
        return b.linear("linear_2", h, dim)


def modulation(b: GraphBuilder, name: str, temb: Tensor, dim: int, count: int) -> Tensor:
    """AdaLN parameters: SiLU(temb)[B, E] -> Linear -> [B, count * dim]."""
    return b.linear(name, b.elementwise(f"{name}_act", "silu", temb), count * dim)


def modulate(b: GraphBuilder, name: str, x: Tensor, kind: str = "layer") -> Tensor:
    """norm(x) * (1 + scale) + shift, scale and shift broadcast over the tokens of x[B, L, D]."""
    with b.scope(name):
        h = b.layer_norm("norm", x) if kind == "layer" else b.rms_norm("norm", x)
        return b.elementwise("shift", "add", b.elementwise("scale", "mul", h))


def gated_residual(b: GraphBuilder, name: str, x: Tensor, h: Tensor) -> Tensor:
    """x + gate * h (gate broadcast per channel)."""
    return b.add_(f"{name}_residual", x, b.elementwise(f"{name}_gate", "mul", h))


def head_norm(b: GraphBuilder, name: str, t: Tensor, kind: str, width: int) -> Tensor:
    """Q or K normalization: RMS or LayerNorm over `width` channels (the heads together, or one head)."""
    return b.add(name, Norm(kind, t.numel, width), (t,), t.shape)


def qkv(b: GraphBuilder, x: Tensor, dim: int, norm: str, norm_width: int, prefix: str = "") -> tuple:
    """Q, K, V projections of x[B, L, D] with Q and K normalized."""
    q, k, v = (b.linear(f"{prefix}to_{c}", x, dim) for c in "qkv")
    return head_norm(b, f"{prefix}norm_q", q, norm, norm_width), head_norm(b, f"{prefix}norm_k", k, norm,
                                                                           norm_width), v


def rope(b: GraphBuilder, q: Tensor, k: Tensor, video: int | None = None) -> tuple[Tensor, Tensor]:
    """Rotary embedding of q, k[B, L, D]; with `video`, only the first `video` tokens rotate (the rest is text)."""
    rq = q if video is None else q.narrow(1, video)
    rk = k if video is None else k.narrow(1, video)
    return b.elementwise("rope_q", "rope", rq), b.elementwise("rope_k", "rope", rk)


def patch_embed(b: GraphBuilder, spec: VideoDiTSpec, latent: Tensor) -> Tensor:
    """latent[B, C, F, H, W] -> tokens [B, F*H/ph*W/pw, D]: a (1, p, p) conv with stride p, run per frame."""
    n, c, f, h, w = latent.shape
    _, ph, pw = spec.patch
    shape = Conv(n * f, c, spec.dim, (h, w), (ph, pw), ph)
    y = b.add("patch_embedding", shape, (latent,), (n * f, spec.dim, h // ph, w // pw))
    return b.rearrange("to_tokens", y, n, f * (h // ph) * (w // pw), spec.dim)


def final_layer(b: GraphBuilder, spec: VideoDiTSpec, x: Tensor, kind: str = "layer") -> Tensor:
    """AdaLN-modulated norm, projection to patch values, and the unpatchify copy."""
    x = modulate(b, "norm_out", x, kind)
    y = b.linear("proj_out", x, spec.patch_elements)
    return b.rearrange("unpatchify", y, *y.shape)


# -- Wan 2.1 ----------------------------------------------------------------------------------------------------
def wan_block(b: GraphBuilder, spec: VideoDiTSpec, x: Tensor, context: Tensor) -> Tensor:
    """x[B, L, D] video tokens, context[B, T, D] projected text."""
    d = spec.dim
    with b.scope("attn1"):
        q, k, v = qkv(b, modulate(b, "norm1", x), d, "rms", d)
        q, k = rope(b, q, k)
        o = b.linear("to_out", b.attention("self", q, k, v, spec.heads, "self"), d)
    x = gated_residual(b, "attn1", x, o)
    with b.scope("attn2"):
        q = head_norm(b, "norm_q", b.linear("to_q", b.layer_norm("norm2", x), d), "rms", d)
        k = head_norm(b, "norm_k", b.linear("to_k", context, d), "rms", d)
        v = b.linear("to_v", context, d)
        o = b.linear("to_out", b.attention("cross", q, k, v, spec.heads, "cross"), d)
    x = b.add_("attn2_residual", x, o)
    with b.scope("ffn"):
        h = b.elementwise("gelu", "gelu", b.linear("proj", modulate(b, "norm3", x), spec.mlp))
        h = b.linear("out", h, d)
    return gated_residual(b, "ffn", x, h)


def wan(b: GraphBuilder, spec: VideoDiTSpec, n: int, frames: int, height: int, width: int, text: int) -> Tensor:
    """One denoiser call on latents [n, C, frames, height, width] and umT5 states [n, text, 4096]."""
    x = patch_embed(b, spec, b.input(n, spec.in_channels, frames, height, width))
    temb = timestep_mlp(b, "time_embedder", n, spec.freq_dim, spec.dim)
    modulation(b, "time_proj", temb, spec.dim, 6)  # [B, 6D], shared by every block
    context = text_projection(b, "text_embedder", b.input(n, text, spec.text_dim), spec.dim, "gelu")
    for i in range(spec.layers):
        with b.scope(f"blocks.{i}"):
            x = wan_block(b, spec, x, context)
    return final_layer(b, spec, x)


# -- CogVideoX ----------------------------------------------------------------------------------------------------
def expert_modulate(b: GraphBuilder, name: str, spec: VideoDiTSpec, temb: Tensor, video: Tensor,
                    text: Tensor) -> tuple[Tensor, Tensor]:
    """CogVideoXLayerNormZero: one Linear to 6 vectors (shift, scale, gate per modality), a LayerNorm each."""
    with b.scope(name):
        modulation(b, "linear", temb, spec.dim, 6)
        return modulate(b, "video", video), modulate(b, "text", text)


def cogvideox_block(b: GraphBuilder, spec: VideoDiTSpec, x: Tensor, c: Tensor, temb: Tensor) -> tuple:
    """x[B, L, D] video and c[B, T, D] text tokens, attended as one [B, T + L, D] sequence (text first)."""
    d, n, lv, lt = spec.dim, x.shape[0], x.shape[1], c.shape[1]
    hx, hc = expert_modulate(b, "norm1", spec, temb, x, c)
    with b.scope("attn1"):
        joint = b.concat("cat", hc, hx, dim=1)  # [B, T + L, D]
        q, k, v = qkv(b, joint, d, "layer", d // spec.heads)
        b.elementwise("rope_q", "rope", q.view(n * (lt + lv), d).narrow(0, n * lv))  # the video part
        b.elementwise("rope_k", "rope", k.view(n * (lt + lv), d).narrow(0, n * lv))
        o = b.linear("to_out", b.attention("self", q, k, v, spec.heads, "self"), d)
    x = gated_residual(b, "attn1_video", x, o.narrow(1, lv))
    c = gated_residual(b, "attn1_text", c, o.narrow(1, lt))
    hx, hc = expert_modulate(b, "norm2", spec, temb, x, c)
    with b.scope("ff"):
        h = b.concat("cat", hc, hx, dim=1)
        h = b.linear("out", b.elementwise("gelu", "gelu", b.linear("proj", h, spec.mlp)), d)
    x = gated_residual(b, "ff_video", x, h.narrow(1, lv))
    c = gated_residual(b, "ff_text", c, h.narrow(1, lt))
    return x, c


def cogvideox(b: GraphBuilder, spec: VideoDiTSpec, n: int, frames: int, height: int, width: int,
              text: int) -> Tensor:
    """One denoiser call on latents [n, frames, C, height, width] and T5 states [n, text, 4096]."""
    temb = timestep_mlp(b, "time_embedding", n, spec.dim, spec.time_dim)  # features of width D -> [B, 512]
    c = b.linear("text_proj", b.input(n, text, spec.text_dim), spec.dim)
    x = patch_embed(b, spec, b.input(n, spec.in_channels, frames, height, width))
    b.concat("embeds", c, x, dim=1)  # the joint sequence diffusers builds, split again before the blocks
    for i in range(spec.layers):
        with b.scope(f"transformer_blocks.{i}"):
            x, c = cogvideox_block(b, spec, x, c, temb)
    x = b.layer_norm("norm_final", x)
    modulation(b, "norm_out_linear", temb, spec.dim, 2)
    return final_layer(b, spec, x)


# -- HunyuanVideo -------------------------------------------------------------------------------------------------
def refiner_block(b: GraphBuilder, spec: VideoDiTSpec, c: Tensor, temb: Tensor) -> Tensor:
    """Token-refiner block on text c[B, T, D]: gated self-attention and SiLU MLP (gates from temb)."""
    d = spec.dim
    with b.scope("attn"):
        h = b.layer_norm("norm1", c)
        q, k, v = (b.linear(f"to_{x}", h, d) for x in "qkv")
        o = b.linear("to_out", b.attention("self", q, k, v, spec.heads, "self"), d)
    modulation(b, "norm_out", temb, d, 2)
    c = gated_residual(b, "attn", c, o)
    with b.scope("ff"):
        h = b.elementwise("silu", "silu", b.linear("proj", b.layer_norm("norm2", c), spec.mlp))
        h = b.linear("out", h, d)
    return gated_residual(b, "ff", c, h)


def token_refiner(b: GraphBuilder, spec: VideoDiTSpec, n: int, text: int) -> Tensor:
    """LLM states [B, T, 4096] -> refined text tokens [B, T, D], conditioned on the timestep and their mean."""
    with b.scope("context_embedder"):
        states = b.input(n, text, spec.text_dim)
        mean = b.elementwise("masked_mean", "reduce", b.elementwise("mask", "mul", states)).view(n * text,
                                                                                             spec.text_dim)
        temb = timestep_mlp(b, "timestep_embedder", n, spec.freq_dim, spec.dim)
        pooled = text_projection(b, "text_embedder", mean.narrow(0, n), spec.dim, "silu")
        temb = b.add_("temb", temb, pooled)
        c = b.linear("proj_in", states, spec.dim)
        for i in range(spec.refiner_layers):
            with b.scope(f"refiner_blocks.{i}"):
                c = refiner_block(b, spec, c, temb)
    return c


def hunyuan_double(b: GraphBuilder, spec: VideoDiTSpec, x: Tensor, c: Tensor, temb: Tensor) -> tuple:
    """Dual-stream block: per-modality AdaLN, projections and MLP; one attention over [video; text]."""
    d, lv = spec.dim, x.shape[1]
    modulation(b, "norm1.linear", temb, d, 6)
    modulation(b, "norm1_context.linear", temb, d, 6)
    hx, hc = modulate(b, "norm1", x), modulate(b, "norm1_context", c)
    with b.scope("attn"):
        q, k, v = qkv(b, hx, d, "rms", d // spec.heads)
        q, k = rope(b, q, k)
        cq, ck, cv = qkv(b, hc, d, "rms", d // spec.heads, prefix="add_")
        q, k, v = (b.concat(f"cat_{s}", a, t, dim=1) for s, a, t in (("q", q, cq), ("k", k, ck), ("v", v, cv)))
        o = b.attention("joint", q, k, v, spec.heads, "self")  # [B, L + T, D]
        ox, oc = b.linear("to_out", o.narrow(1, lv), d), b.linear("to_add_out", o.narrow(1, c.shape[1]), d)
    x, c = gated_residual(b, "attn", x, ox), gated_residual(b, "attn_context", c, oc)
    hx, hc = modulate(b, "norm2", x), modulate(b, "norm2_context", c)
    for name, h in (("ff", hx), ("ff_context", hc)):
        with b.scope(name):
            h = b.linear("out", b.elementwise("gelu", "gelu", b.linear("proj", h, spec.mlp)), d)
        if name == "ff":
            x = gated_residual(b, name, x, h)
        else:
            c = gated_residual(b, name, c, h)
    return x, c


def hunyuan_single(b: GraphBuilder, spec: VideoDiTSpec, x: Tensor, video: int, temb: Tensor) -> Tensor:
    """Single-stream block on the joint sequence x[B, L + T, D]: attention and MLP in parallel, one output Linear."""
    d = spec.dim
    modulation(b, "norm.linear", temb, d, 3)
    h = modulate(b, "norm", x)
    mlp = b.elementwise("act_mlp", "gelu", b.linear("proj_mlp", h, spec.mlp))
    with b.scope("attn"):
        q, k, v = qkv(b, h, d, "rms", d // spec.heads)
        rope(b, q, k, video)
        o = b.attention("joint", q, k, v, spec.heads, "self")
    h = b.linear("proj_out", b.concat("cat", o, mlp, dim=2), d)  # [B, L + T, D + mlp] -> [B, L + T, D]
    return gated_residual(b, "out", x, h)


def hunyuan(b: GraphBuilder, spec: VideoDiTSpec, n: int, frames: int, height: int, width: int,
            text: int) -> Tensor:
    """One call on latents [n, C, frames, height, width], LLM states [n, text, 4096] and CLIP pooled [n, 768]."""
    temb = timestep_mlp(b, "timestep_embedder", n, spec.freq_dim, spec.dim)
    guidance = timestep_mlp(b, "guidance_embedder", n, spec.freq_dim, spec.dim)  # the embedded guidance scale
    pooled = text_projection(b, "text_embedder", b.input(n, spec.pooled_dim), spec.dim, "silu")
    temb = b.add_("temb", b.add_("temb_guidance", temb, guidance), pooled)
    x = patch_embed(b, spec, b.input(n, spec.in_channels, frames, height, width))
    c = token_refiner(b, spec, n, text)
    lv = x.shape[1]
    for i in range(spec.layers):
        with b.scope(f"transformer_blocks.{i}"):
            x, c = hunyuan_double(b, spec, x, c, temb)
    joint = b.concat("joint", x, c, dim=1)
    for i in range(spec.single_layers):
        with b.scope(f"single_transformer_blocks.{i}"):
            joint = hunyuan_single(b, spec, joint, lv, temb)
    modulation(b, "norm_out.linear", temb, spec.dim, 2)
    return final_layer(b, spec, joint.narrow(1, lv))


# -- LTX-Video ----------------------------------------------------------------------------------------------------
def ltx_block(b: GraphBuilder, spec: VideoDiTSpec, x: Tensor, context: Tensor) -> Tensor:
    """x[B, L, D] video tokens, context[B, T, D] projected T5 text; AdaLN parameters come from the caller."""
    d = spec.dim
    with b.scope("attn1"):
        q, k, v = qkv(b, modulate(b, "norm1", x, "rms"), d, "rms", d)
        q, k = rope(b, q, k)
        o = b.linear("to_out", b.attention("self", q, k, v, spec.heads, "self"), d)
    x = gated_residual(b, "attn1", x, o)
    with b.scope("attn2"):
        q = head_norm(b, "norm_q", b.linear("to_q", x, d), "rms", d)
        k = head_norm(b, "norm_k", b.linear("to_k", context, d), "rms", d)
        v = b.linear("to_v", context, d)
        o = b.linear("to_out", b.attention("cross", q, k, v, spec.heads, "cross"), d)
    x = b.add_("attn2_residual", x, o)
    with b.scope("ff"):
        h = b.elementwise("gelu", "gelu", b.linear("proj", modulate(b, "norm2", x, "rms"), spec.mlp))
        h = b.linear("out", h, d)
    return gated_residual(b, "ff", x, h)


def ltx(b: GraphBuilder, spec: VideoDiTSpec, n: int, frames: int, height: int, width: int, text: int) -> Tensor:
    """One call on packed latents [n, frames*height*width, 128] and T5 states [n, text, 4096]."""
    tokens = spec.tokens(frames, height, width)
    x = b.linear("proj_in", b.input(n, tokens, spec.patch_elements), spec.dim)
    b.elementwise("rope_freqs", "rope", b.input(tokens, spec.dim))  # cos and sin of the 3-D positions
    temb = timestep_mlp(b, "time_embed", n, spec.freq_dim, spec.dim)
    modulation(b, "time_embed.linear", temb, spec.dim, 6)
    context = text_projection(b, "caption_projection", b.input(n, text, spec.text_dim), spec.dim, "gelu")
    for i in range(spec.layers):
        with b.scope(f"transformer_blocks.{i}"):
            x = ltx_block(b, spec, x, context)
    return final_layer(b, spec, x)


FORWARDS = {"wan": wan, "cogvideox": cogvideox, "hunyuan": hunyuan, "ltx": ltx}


def denoise(b: GraphBuilder, spec: VideoDiTSpec, n: int, frames: int, height: int, width: int,
            text: int) -> Tensor:
    """One denoiser call of `spec`'s family at batch n on a latent of frames x height x width."""
    return FORWARDS[spec.family](b, spec, n, frames, height, width, text)


def check_video(name: str, frames: int, height: int, width: int, time_factor: int, spatial: int) -> None:
    """Frames are 1 + a multiple of the VAE's temporal factor; sides are multiples of `spatial` pixels."""
    from emulator.errors import UserError

    if (frames - 1) % time_factor:
        raise UserError(f"--frames must be 1 + a multiple of {time_factor} for {name} (e.g. {4 * time_factor + 1}), "
                        f"got {frames}")
    for knob, side in (("height", height), ("width", width)):
        if side % spatial:
            raise UserError(f"--{knob} must be a multiple of {spatial} for {name}, got {side}")

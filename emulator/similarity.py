"""Analytic memory of the attention similarity matrix over one UNet pass.

The characterization study models the bytes that baseline attention
materializes in a diffusion UNet: at a level with S = H_L * W_L positions, a
self-attention call holds an S x S matrix and a cross-attention call an
S x text matrix. `digest_unet_bytes` is its formula verbatim (batch 1, one
head, fp16, one self- and one cross-attention per level visit, each level
visited on the way down and up, the bottom level once); `level_bytes` is the
same sum for any UNet, given how many (call x head) products attend at each
level. Tests check both against the attention ops of the built graphs.
"""

from __future__ import annotations

from typing import Iterable


def digest_unet_bytes(latent_h: int, latent_w: int, text_tokens: int, depth: int, d: int = 2) -> int:
    """2 * [2 * sum_{n<depth} A(S / d^(2n)) + A(S / d^(2 depth))], A(s) = s * (s + text)."""
    s = latent_h * latent_w

    def area(n: int) -> int:
        positions, rem = divmod(s, d ** (2 * n))
        if rem:
            raise ValueError(f"latent {latent_h}x{latent_w} does not divide by {d}^{n} per side")
        return positions * (positions + text_tokens)

    return 2 * (2 * sum(area(n) for n in range(depth)) + area(depth))


def level_bytes(levels: Iterable[tuple[int, int, int]], text_tokens: int, batch: int = 1,
                dtype_bytes: int = 2) -> int:
    """Sum over levels of (self_head_calls * S^2 + cross_head_calls * S * text) * batch * bytes.

    levels: (S positions, self-attention head-calls, cross-attention head-calls) per level.
    """
    total = sum(self_calls * s * s + cross_calls * s * text_tokens for s, self_calls, cross_calls in levels)
    return total * batch * dtype_bytes

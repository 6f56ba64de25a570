"""Paged KV cache: a device's KV memory as a pool of fixed-size blocks that requests take as their KV grows.

The pool is the device memory left after the weights and the activation peak
of the largest step. A block holds `block_tokens` positions of one request's
keys and values in every layer, so its size is the model's KV bytes per token
(its K/V heads, grouped-query attention included) times `block_tokens`; models
with different KV widths share the pool in bytes. A request holds
ceil(tokens / block_tokens) blocks for the positions it has in cache, and gives
them all back when it leaves or is preempted. Every change is mirrored in the
device's reserved memory, whose checks fail loudly if the pool were overrun.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(eq=False)
class Pages:
    """One request's blocks."""

    block_bytes: int  # bytes of one of its blocks
    block_tokens: int
    blocks: int = 0

    def needed(self, tokens: int) -> int:
        """Further blocks to hold `tokens` positions."""
        return max(-(-tokens // self.block_tokens) - self.blocks, 0)

    @property
    def bytes(self) -> int:
        return self.blocks * self.block_bytes


class KVPool:
    """The device's KV blocks: what is free, what is used."""

    def __init__(self, device, capacity_bytes: int):
        self.device, self.capacity_bytes = device, capacity_bytes
        self.used_bytes = 0

    def grow(self, pages: Pages, tokens: int) -> bool:
        """Give `pages` the blocks for `tokens` positions; False (and nothing taken) when they are not free."""
        extra = pages.needed(tokens) * pages.block_bytes
        if self.used_bytes + extra > self.capacity_bytes:
            return False
        if extra:
            pages.blocks += extra // pages.block_bytes
            self.used_bytes += extra
            self.device.hold(extra)
        return True

    def free(self, pages: Pages) -> int:
        """Return all of a request's blocks; the bytes they held."""
        held = pages.bytes
        self.used_bytes -= held
        self.device.hold(-held)
        pages.blocks = 0
        return held

    def fits_alone(self, pages: Pages, tokens: int) -> bool:
        """Whether `tokens` positions of this request fit in the empty pool."""
        return (-(-tokens // pages.block_tokens)) * pages.block_bytes <= self.capacity_bytes

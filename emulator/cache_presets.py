"""Named step-caching presets: each method's published behaviour as data, with its source.

A preset says which steps compute in full and what the others reuse. A method
that decides per input at run time (TeaCache, first-block cache) is given as the
share of steps it computes in full on average, placed evenly over the loop
(`emulator.schedules.spread`); where a source reports only a speed-up, the share
is 1 / speed-up (a reused step taken as free, which the emulator then costs: its
reuse ops), and `share_from` says which. A fixed-interval method (FORA,
DeepCache) computes every `interval`-th step. The emulator costs work only: it
does not model the image or video quality a preset gives.

`cached` names what a request keeps between steps: `residual` (one hidden
state: the reused stack's residual), `residual+indicator` (also the tensor the
method compares steps by: TeaCache's previous modulated input, the first-block
cache's previous first-block residual), `per-block` (FORA: each block's
attention and MLP outputs, two hidden states per block).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CachePreset:
    method: str  # teacache | fbcache | fora | deepcache
    model: str  # the model the published figure is for
    reuse_depth: int  # what a reused step computes: 0 skip (only the reuse ops), k the blocks of depth below k
    cached: str  # residual | residual+indicator | per-block
    source: str  # paper or repository, and the setting measured
    share: float | None = None  # share of steps computed in full (runtime methods)
    interval: int | None = None  # every interval-th step computed in full (fixed methods)
    threshold: str = ""  # the method's threshold or setting name
    reported_speedup: float | None = None  # end-to-end speed-up the source reports
    share_from: str = ""  # how `share` follows from the source: "FLOPs" or "1/speed-up"


BENCHMARK_FLUX = "varadrane1707/BenchmarkFlux README, A100, 1024x1024, 28 steps"
FLUX_BASE_S = 15.65  # that benchmark's FLUX.1-dev without a cache, bf16 on one A100


def flux_preset(method: str, prefix: int, cached_s: float, threshold: str) -> CachePreset:
    """A FLUX.1-dev preset from the benchmark's time with the cache: share computed = 1 / speed-up."""
    return CachePreset(method, "FLUX.1-dev", prefix, "residual+indicator",
                       f"{BENCHMARK_FLUX}: {FLUX_BASE_S} s -> {cached_s} s", share=cached_s / FLUX_BASE_S,
                       threshold=threshold, reported_speedup=FLUX_BASE_S / cached_s, share_from="1/speed-up")


PRESETS: dict[str, CachePreset] = {
    # FLUX.1-dev, 1024x1024, 28 steps, bf16 on one A100 (varadrane1707/BenchmarkFlux README): 15.65 s baseline;
    # TeaCache 0.2 10.96 s, 0.4 7.01 s, 0.6 5.23 s; FBCache 0.15 5.09 s.
    "teacache-flux-0.2": flux_preset("teacache", 0, 10.96, "rel_l1_thresh 0.2"),
    "teacache-flux-0.4": flux_preset("teacache", 0, 7.01, "rel_l1_thresh 0.4"),
    "teacache-flux-0.6": flux_preset("teacache", 0, 5.23, "rel_l1_thresh 0.6"),
    "fbcache-flux-0.15": flux_preset("fbcache", 1, 5.09, "residual_diff_threshold 0.15"),
    # Wan 2.1, 129 frames at 1280x720 on one H100 (rakib91221/PromptTea, PromptTea4Wan2.1/README.md): 181.62 PFLOPs
    # per video; TeaCache "slow" 91.14 PFLOPs (1.93x), "fast" 66.81 PFLOPs (2.64x).
    "teacache-wan-slow": CachePreset("teacache", "Wan 2.1", 0, "residual+indicator",
                                     "rakib91221/PromptTea README (Wan2.1, 129 frames 1280x720, H100): "
                                     "91.14 of 181.62 PFLOPs", share=91.14 / 181.62, threshold="TeaCache 'slow'",
                                     reported_speedup=1.93, share_from="FLOPs"),
    "teacache-wan-fast": CachePreset("teacache", "Wan 2.1", 0, "residual+indicator",
                                     "rakib91221/PromptTea README (Wan2.1, 129 frames 1280x720, H100): "
                                     "66.81 of 181.62 PFLOPs", share=66.81 / 181.62, threshold="TeaCache 'fast'",
                                     reported_speedup=2.64, share_from="FLOPs"),
    # Wan 2.1 T2V 14B, first-block cache (testdummyvt/diffsynth-wan-cache README): 1216.17 s -> 657.64 s at 0.06.
    "fbcache-wan-0.06": CachePreset("fbcache", "Wan 2.1 T2V 14B", 1, "residual+indicator",
                                    "testdummyvt/diffsynth-wan-cache README: 1216.17 s -> 657.64 s",
                                    share=657.64 / 1216.17, threshold="threshold 0.06",
                                    reported_speedup=1216.17 / 657.64, share_from="1/speed-up"),
    # HunyuanVideo (welltop-cn/ComfyUI-TeaCache README): "1.6x lossless speedup and a 2x speedup".
    "teacache-hunyuan-1.6x": CachePreset("teacache", "HunyuanVideo", 0, "residual+indicator",
                                         "welltop-cn/ComfyUI-TeaCache README: 1.6x 'lossless' setting",
                                         share=1 / 1.6, threshold="the README's lossless setting",
                                         reported_speedup=1.6, share_from="1/speed-up"),
    "teacache-hunyuan-2x": CachePreset("teacache", "HunyuanVideo", 0, "residual+indicator",
                                       "welltop-cn/ComfyUI-TeaCache README: 2x setting",
                                       share=1 / 2.0, threshold="the README's 2x setting",
                                       reported_speedup=2.0, share_from="1/speed-up"),
    # FORA (Selvaraju et al., arXiv 2407.01425): attention and MLP outputs cached every N steps and reused between.
    # A reused step here runs only the reuse ops: the blocks' norms and residual adds FORA still runs are left out.
    "fora-3": CachePreset("fora", "DiT / PixArt-alpha", 0, "per-block",
                          "FORA, arXiv 2407.01425 (caching interval N)", interval=3, threshold="N=3"),
    # DeepCache (Ma et al., arXiv 2312.00858): 2.3x on Stable Diffusion v1.5 over 50 PLMS steps (abstract);
    # diffusers' DeepCache guide uses cache_interval 3, cache_branch_id 0 (the shallowest branch: one level here).
    "deepcache-3": CachePreset("deepcache", "Stable Diffusion v1.5", 1, "residual",
                               "DeepCache, arXiv 2312.00858; diffusers DeepCache guide (interval 3, branch 0)",
                               interval=3, threshold="cache_interval 3, cache_branch_id 0", reported_speedup=2.3),
}

"""The frontend on today's diffusion transformers and video VAEs, lowered small (few layers, small latents).

Faults checked, each against a hand count or torch's FlopCounterMode (which counts convolutions and
matrix products, not attention on fake tensors):
- a key-padding mask ([B, 1, 1, N], or squared as padding & padding^T) leaves attention full; only a
  triangular mask (tril, or query positions compared with key positions) or is_causal makes it causal;
- a convolution's output size is the real output's: per-dimension strides, pre-padded inputs;
- pad, vector norms, nearest-exact upsampling, repeat_interleave, einsum and outer are lowered;
- each parameter counts once per graph however often a frame-by-frame or tiled VAE calls it.
"""

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

import torch  # noqa: E402

from emulator.cli import main  # noqa: E402
from emulator.engine.scenario import scenario_from_data  # noqa: E402
from emulator.errors import UserError  # noqa: E402
from workloads.frontend import lower_module  # noqa: E402
from workloads.modules import DIT_PRESETS, module_graph, preset_pipeline  # noqa: E402

SMALL = {"num_layers": 1, "num_single_layers": 1, "num_refiner_layers": 1, "num_attention_heads": 2,
         "attention_head_dim": 16, "rope_axes_dim": (4, 6, 6), "text_embed_dim": 32, "pooled_projection_dim": 16}


def lower_fake(make, *inputs):
    """Lower `make()` built on fake tensors in fp16 (no memory), with FlopCounterMode's count alongside."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    inputs = [t.half() if t.is_floating_point() else t for t in inputs]
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16)
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            module = make().eval()
            graph = lower_module(module, *inputs)
            counter = FlopCounterMode(display=False)
            with torch.inference_mode(), counter:
                module(*inputs)
        return graph, counter.get_total_flops(), sum(p.numel() for p in module.parameters())
    finally:
        torch.set_default_dtype(default)


def test_hunyuan_video_key_padding_masks_leave_attention_full():
    # latents [1, 16, 5, 16, 16], patch (1, 2, 2): 5 * 8 * 8 = 320 video tokens + 20 text tokens = 340
    from diffusers import HunyuanVideoTransformer3DModel

    g, counted, _ = lower_fake(lambda: HunyuanVideoTransformer3DModel(**SMALL), torch.randn(1, 16, 5, 16, 16),
                               torch.tensor([500]), torch.randn(1, 20, 32), torch.ones(1, 20, dtype=torch.long),
                               torch.randn(1, 16), torch.tensor([1000.0]))
    assert not any(op.shape.causal for op in g.attention_ops)  # refiner's [1,1,20,20], blocks' [1,1,1,340]
    # hand count: 4 * heads 2 * 340^2 pairs * head_dim 16 per block (double + single), 20^2 in the refiner
    attention = sum(op.mac_flops for op in g.attention_ops)
    assert attention == 4 * 2 * 16 * (2 * 340 ** 2 + 20 ** 2)  # 14,822,400 (7,424,000 when taken as causal)
    assert g.totals.mac_flops - attention == counted  # every conv and linear, as torch counts them


def test_causal_comes_from_a_triangular_mask_or_is_causal():
    f = torch.nn.functional

    class Block(torch.nn.Module):
        def forward(self, q, padding):  # q [1, 2, 8, 4], padding [1, 8]
            keys = padding[:, None, None, :].bool()  # [1, 1, 1, 8]: a key-padding mask
            square = keys & keys.transpose(-1, -2)  # [1, 1, 8, 8]: padding, squared
            pos = torch.arange(8)
            triangle = pos[None, :] <= pos[:, None]  # [8, 8]: key position <= query position
            x, y = torch.meshgrid(pos // 4, pos // 4, indexing="xy")  # frames of 4 tokens (HunyuanVideo's VAE)
            return (f.scaled_dot_product_attention(q, q, q, attn_mask=keys),
                    f.scaled_dot_product_attention(q, q, q, attn_mask=square),
                    f.scaled_dot_product_attention(q, q, q, attn_mask=triangle),
                    f.scaled_dot_product_attention(q, q, q, attn_mask=torch.ones(8, 8, dtype=torch.bool).tril()),
                    f.scaled_dot_product_attention(q, q, q, attn_mask=x <= y),
                    f.scaled_dot_product_attention(q, q, q, is_causal=True))

    with torch.inference_mode():
        g = lower_module(Block(), torch.randn(1, 2, 8, 4), torch.ones(1, 8))
    assert [op.shape.causal for op in g.attention_ops] == [False, False, True, True, True, True]


def test_wan_patch_embedding_uses_the_real_output_size():
    # Conv3d 16 -> 32, kernel = stride = (1, 2, 2) on [1, 16, 3, 16, 16]: output [1, 32, 3, 8, 8]
    # hand count: 2 * 3 frames * 32 * 8 * 8 * 16 * 2 * 2 = 786,432 FLOPs (3,145,728 with 'same' size)
    from diffusers import WanTransformer3DModel

    cfg = dict(num_layers=1, num_attention_heads=2, attention_head_dim=16, ffn_dim=64, text_dim=32, freq_dim=32)
    g, counted, _ = lower_fake(lambda: WanTransformer3DModel(**cfg), torch.randn(1, 16, 3, 16, 16),
                               torch.tensor([500]), torch.randn(1, 20, 32))
    (patch,) = [op for op in g.ops if op.category == "Convolution"]
    assert patch.mac_flops == 786_432
    assert g.totals.mac_flops - sum(op.mac_flops for op in g.attention_ops) == counted


def test_causal_padded_and_strided_convs_match_flop_counter():
    class Convs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.causal = torch.nn.Conv3d(4, 8, 3)  # input pre-padded by a pad op: no conv padding
            self.down = torch.nn.Conv3d(8, 8, 3, stride=(1, 2, 2), padding=(0, 1, 1))
            self.up = torch.nn.ConvTranspose2d(8, 4, 2, stride=2)

        def forward(self, x):  # x [1, 4, 5, 8, 8]
            x = self.causal(torch.nn.functional.pad(x, (1, 1, 1, 1, 2, 0), mode="replicate"))  # [1, 8, 5, 8, 8]
            x = self.down(torch.nn.functional.pad(x, (0, 0, 0, 0, 2, 0)))  # [1, 8, 5, 4, 4]
            return self.up(x[:, :, 0])  # [1, 4, 8, 8]

    g, counted, _ = lower_fake(Convs, torch.randn(1, 4, 5, 8, 8))
    # hand count: 2*8*(5*8*8)*4*27 = 552,960; 2*8*(5*4*4)*8*27 = 276,480; 2*8*(4*4)*4*4 = 4,096
    assert [op.mac_flops for op in g.ops if op.category == "Convolution"] == [552_960, 276_480, 4_096]
    assert g.totals.mac_flops == counted
    assert [op.shape.op for op in g.ops if op.kind == "elementwise"] == ["memcpy", "memcpy"]  # the two pads
    assert not g.unmapped


def test_newly_mapped_ops():
    class Ops(torch.nn.Module):
        def forward(self, x, a, b):  # x [1, 4, 8, 8], a [2, 3, 5], b [2, 5, 6]
            norm = torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-6)  # [1, 1, 8, 8]
            up = torch.nn.functional.interpolate(x / norm, scale_factor=2, mode="nearest-exact")  # [1, 4, 16, 16]
            rep = up.repeat_interleave(2, dim=1)  # [1, 8, 16, 16]
            prod = torch.einsum("bij,bjk->bik", a, b)  # [2, 3, 6]: 2 * 2*3*5*6 = 360 FLOPs
            outer = torch.outer(torch.arange(4.0), torch.arange(5.0))  # [4, 5]
            return rep, prod, outer

    with torch.inference_mode():
        g = lower_module(Ops(), torch.randn(1, 4, 8, 8), torch.randn(2, 3, 5), torch.randn(2, 5, 6))
    assert not g.unmapped
    kinds = [op.kind if op.kind != "elementwise" else op.shape.op for op in g.ops]
    assert kinds == ["reduce", "unary", "mul", "resample", "copy", "matmul", "mul"], kinds
    assert g.op("module.einsum.0").mac_flops == 360
    assert g.op("module._upsample_nearest_exact2d.0").shape.factor == 2


def test_a_vae_decoding_frame_by_frame_counts_its_weights_once():
    # AutoencoderKLWan decodes latent frame by frame (a cache carries the causal context): 3 latent frames
    # run the decoder 3 times. Parameters: the decoder's and post_quant_conv's, once.
    from diffusers import AutoencoderKLWan

    from workloads.modules import VideoDecode

    cfg = dict(base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True])
    g, counted, _ = lower_fake(lambda: VideoDecode(AutoencoderKLWan(**cfg)), torch.randn(1, 4, 3, 8, 8))
    vae = AutoencoderKLWan(**cfg)
    used = sum(p.numel() for p in vae.decoder.parameters()) + sum(p.numel() for p in vae.post_quant_conv.parameters())
    per_call = sum(op.shape.weight_elements for op in g.ops)
    assert per_call > 2 * g.totals.params  # the decoder ran on every frame
    assert g.totals.params == pytest.approx(used, rel=0.02)  # norms' affine counts are the Norm shape's
    assert g.totals.mac_flops - sum(op.mac_flops for op in g.attention_ops) == counted  # mid-block attention
    assert sum(t.params for t in g.by_category.values()) == g.totals.params


@pytest.mark.parametrize("preset", list(DIT_PRESETS))
def test_every_preset_lowers_small_with_nothing_unmapped(preset):
    spec, cfg, source = DIT_PRESETS[preset]
    assert source
    cfg = dict(cfg)
    if "vae" not in preset:  # one block of each kind, at the published widths
        cfg.update({k: 1 for k in ("num_layers", "num_single_layers", "num_refiner_layers") if k in cfg})
        cfg.update({"dual_attention_layers": (0,)} if "dual_attention_layers" in cfg else {})
    video = "Video" in spec or "Wan" in spec or "CogVideoX" in spec
    g = module_graph(spec, preset, height=256, width=256, frames=9 if video else None, cfg=cfg)
    assert g.totals.mac_flops > 0 and g.attention_ops or "vae" in preset
    assert not set(g.unmapped) - {"__and", "ge", "le", "repeat"}  # mask arithmetic (and LTX's int repeats)


def test_describe_module_takes_size_knobs_and_refuses_bad_ones(capsys):
    # Wan 2.1 1.3B at 256 x 256, 9 frames: latents 3 x 32 x 32, patches 3 x 16 x 16 = 768 tokens
    assert main(["describe", "--module", "diffusers:WanTransformer3DModel", "--config", "wan2.1-t2v-1.3b",
                 "--height", "256", "--width", "256", "--frames", "9", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"frames": 9' in out and '"q_len": 768' in out.replace(" ", "").replace('"q_len":768', '"q_len": 768')
    refused = [["--module", "diffusers:FluxTransformer2DModel", "--config", "flux.1-dev", "--frames", "9"],
               ["--module", "diffusers:FluxTransformer2DModel", "--config", "flux.1-dev", "--height", "500"],
               ["--module", "diffusers:FluxTransformer2DModel", "--config", "flux.1-dev", "--steps", "4"],
               ["--module", "diffusers:FluxTransformer2DModel", "--config", "wan2.1-t2v-1.3b"],
               ["--module", "diffusers:Nope", "--config", "flux.1-dev"]]
    for argv in refused:
        assert main(["describe", *argv]) == 2
        assert capsys.readouterr().err.count("\n") == 1


def test_a_scenario_traffic_class_names_a_module_preset():
    data = {"name": "m", "horizon_s": 1, "policies": [{"policy": "fcfs"}],
            "traffic": [{"name": "w", "workload": "module:wan2.1-t2v-1.3b", "arrival": {"process": "fixed",
                                                                                       "rate_per_s": 1},
                         "knobs": {"height": 256, "width": 256, "frames": 9}}]}
    s = scenario_from_data(data)
    (stage,) = s.traffic[0].pipeline().stages
    assert stage.graph().attention_ops[0].shape.q_len == 768
    for bad, says in (({"workload": "module:nope"}, "unknown module preset"),
                      ({"knobs": {"steps": 3}}, "unknown knob"),
                      ({"knobs": {"height": 250}}, "multiple of 16")):
        broken = {**data, "traffic": [{**data["traffic"][0], **bad}]}
        with pytest.raises(UserError, match=says):
            scenario_from_data(broken)
    with pytest.raises(UserError, match="unknown module preset"):
        preset_pipeline("nope")

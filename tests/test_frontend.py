"""Lowering real diffusers / transformers models (configs only, fake tensors) against the hand-written suite.

The hand-written graphs were themselves checked against independent counts
(tests/test_reference_counts.py); here the frontend, which knows nothing of
them, must reach the same FLOPs (within 1%) and the same attention calls.
"""

from collections import Counter

import pytest

pytest.importorskip("torch")  # diffusers and transformers import without it, then cannot build a model
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from emulator.cli import main
from workloads import build
from workloads.modules import PRESETS, module_graph


def reference(preset):
    sd = build("stable-diffusion", image_size=512, guidance=False)
    return {"sd-v1.5-unet": lambda: sd.stage("unet").graph(1),
            "sd-vae-decoder": lambda: sd.stage("vae_decoder").graph(1),
            "clip-vit-l14-text": lambda: sd.stage("text_encoder").graph(1),
            "llama2-7b": lambda: build("llama2-7b", prompt_tokens=512).stage("prefill").graph(1)}[preset]()


def attention_calls(graph):
    return Counter((op.shape.q_len, op.shape.kv_len, op.shape.heads, op.shape.head_dim) for op in graph.attention_ops)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_a_lowered_model_matches_the_hand_written_component(preset):
    spec, _ = PRESETS[preset]
    lowered, written = module_graph(spec, preset), reference(preset)
    assert lowered.totals.flops == pytest.approx(written.totals.flops, rel=0.01)
    assert attention_calls(lowered) == attention_calls(written)
    assert lowered.totals.params == pytest.approx(written.totals.params, rel=0.001)
    assert not lowered.unmapped.keys() - {"eq", "argmax", "ne", "le", "diff", "cumsum", "__and"}  # mask arithmetic


def test_lowered_ops_are_named_by_module_path_and_linked_by_data():
    g = module_graph("diffusers:UNet2DConditionModel", "sd-v1.5-unet")
    names = [op.name for op in g.ops]
    assert any(n.startswith("down_blocks.0.attentions.0.transformer_blocks.0.attn1.") for n in names)
    first_conv = next(op.name for op in g.ops if op.shape.kind == "conv2d")
    assert first_conv.startswith("conv_in.")
    # the up path reads the down path's outputs (skip connections): some up-block op has a down-block producer
    assert any(src.startswith("down_blocks.") and dst.startswith("up_blocks.") for src, dst in g.structure.edges)


def test_batch_scales_the_lowered_work():
    one = module_graph("transformers:CLIPTextModel", "clip-vit-l14-text")
    four = module_graph("transformers:CLIPTextModel", "clip-vit-l14-text", batch=4)
    assert four.totals.mac_flops == 4 * one.totals.mac_flops


def test_describe_module_reports_and_refuses_bad_input(capsys, tmp_path):
    assert main(["describe", "--module", "transformers:CLIPTextModel", "--config", "clip-vit-l14-text",
                 "--json"]) == 0
    assert '"workload": "transformers:CLIPTextModel"' in capsys.readouterr().out
    assert main(["describe", "--module", "transformers:CLIPTextModel", "--config", "sd-v1.5-unet"]) == 2
    bad = tmp_path / "c.json"
    bad.write_text("[1, 2]")
    assert main(["describe", "--module", "diffusers:UNet2DConditionModel", "--config", str(bad)]) == 2
    assert main(["describe", "--module", "torchvision:ResNet", "--config", "sd-v1.5-unet"]) == 2


def test_softmax_and_the_two_kinds_of_copy_are_lowered():
    import torch

    from workloads.frontend import lower_module

    class Block(torch.nn.Module):
        def forward(self, x, cache):  # x [2, 8, 16], cache [2, 8, 32]
            scores = torch.softmax(x @ x.transpose(1, 2), dim=-1)  # [2, 8, 8]
            heads = x.transpose(1, 2).contiguous()  # a layout change: [2, 16, 8] read with strides
            grown = torch.cat([cache, x], dim=-1)  # a KV-cache append: [2, 8, 48] streamed
            return scores, heads, grown

    with torch.inference_mode():  # where softmax reaches the frontend undecomposed
        g = lower_module(Block(), torch.randn(2, 8, 16), torch.randn(2, 8, 32))
    kinds = Counter(op.shape.kind if op.shape.kind != "elementwise" else op.shape.op for op in g.ops)
    assert kinds == {"matmul": 1, "softmax": 1, "copy": 1, "memcpy": 1}, kinds
    assert not g.unmapped

"""The lowering against numbers counted by other tools or by hand, never by this project.

References:
- SD v1.5 UNet at 512x512 (64x64 latent, 77 text tokens), batch 1, one step:
  0.8033 TFLOP counting convolution, linear and attention-matmul FLOPs only
  (torch.utils.flop_counter.FlopCounterMode on diffusers' UNet2DConditionModel
  with the SD v1.5 config on the meta device): conv 55.3%, linear 29.0%,
  attention matmuls 15.7%.
- SD VAE decoder 64x64 -> 512x512: 2.515 TFLOP, counted the same way.
- Parameters: SD v1.4/1.5 UNet 859.52M, VAE decoder 49.49M, CLIP text encoder
  123.13M (onnx-tool's model zoo, shared/reference/published-flops.csv);
  LLaMA-2-7B 6.74B (Meta's model card); SDXL base UNet 2.6B (SDXL paper, Table 1).
"""

import pytest

import workloads
from workloads.blocks.text_encoders import T5_XXL


def mac_share(graph):
    total = graph.totals.mac_flops
    return {c: t.mac_flops / total for c, t in graph.by_category.items() if t.mac_flops}, total


@pytest.fixture(scope="module")
def sd():
    return workloads.build("stable-diffusion", image_size=512, batch=1, guidance=False)


def test_sd_unet_flops_per_image_step(sd):
    shares, total = mac_share(sd.stage("unet").graph())
    assert total == pytest.approx(0.8033e12, rel=0.01)
    assert shares["Convolution"] == pytest.approx(0.553, abs=0.01)
    assert shares["Linear"] == pytest.approx(0.290, abs=0.01)
    assert shares["Attention"] == pytest.approx(0.157, abs=0.01)


def test_sd_vae_decoder_flops(sd):
    assert sd.stage("vae_decoder").graph().totals.mac_flops == pytest.approx(2.515e12, rel=0.01)


def test_sd_parameters(sd):
    assert sd.stage("unet").graph().totals.params == pytest.approx(859.52e6, rel=0.01)
    assert sd.stage("vae_decoder").graph().totals.params == pytest.approx(49.49e6, rel=0.01)
    assert sd.stage("text_encoder").graph().totals.params == pytest.approx(123.13e6, rel=0.01)


def test_llama2_7b_parameters():
    p = workloads.build("llama2-7b")
    assert p.params_total == pytest.approx(6.74e9, rel=0.01)


def test_sdxl_unet_parameters():
    p = workloads.build("prod-image")
    assert p.stage("unet").graph().totals.params == pytest.approx(2.6e9, rel=0.02)


def test_t5_xxl_encoder_parameters_by_hand():
    # google/t5-v1_1-xxl: per layer 4 attention projections d x d, gated-GELU
    # MLP wi_0, wi_1 (d x ff) and wo (ff x d), two RMSNorm scales; embedding
    # 32128 x d; a final RMSNorm. No biases.
    d, ff, layers, vocab = 4096, 10240, 24, 32128
    by_hand = layers * (4 * d * d + 3 * d * ff + 2 * d) + vocab * d + d
    p = workloads.build("imagen")
    assert p.stage("text_encoder").graph().totals.params == by_hand
    assert T5_XXL.layers == layers


def test_sd_unet_self_attention_lengths_at_512(sd):
    lengths = {op.shape.q_len for op in sd.stage("unet").graph().attention_ops if op.shape.variant == "self"}
    assert lengths == {4096, 1024, 256, 64}


def test_sd_cross_attention_reads_77_text_tokens(sd):
    cross = [op.shape for op in sd.stage("unet").graph().attention_ops if op.shape.variant == "cross"]
    assert cross and {a.kv_len for a in cross} == {77}

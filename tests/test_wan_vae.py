"""Wan2.1 VAE: official shapes, streaming decode == one-shot decode, causality, dtypes."""

from __future__ import annotations

import pytest
import torch

from runtime.wan.vae import (LATENT_MEAN, LATENT_STD, StreamingDecoder, VAEConfig, WanVAE,
                             pixel_frames, to_uint8)


def tiny_vae(seed: int = 0, dtype: torch.dtype = torch.float32) -> WanVAE:
    """A tiny VAE with random weights small enough that outputs stay inside (-1, 1)."""
    torch.manual_seed(seed)
    vae = WanVAE(VAEConfig.preset("tiny")).eval()
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith("gamma"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.15)
    return vae.to(dtype)


def decode_in_blocks(vae: WanVAE, z: torch.Tensor, sizes: list[int],
                     frames_per_call: int | None) -> tuple[torch.Tensor, list[int]]:
    dec = StreamingDecoder(vae, frames_per_call)
    outs, start = [], 0
    for n in sizes:
        outs.append(dec.decode(z[:, :, start:start + n]))
        start += n
    return torch.cat(outs, dim=2), [o.shape[2] for o in outs]


def test_official_parameter_counts_and_key_shapes():
    with torch.device("meta"):
        vae = WanVAE(VAEConfig.preset("wan2.1"))
    sd = vae.state_dict()
    count = lambda prefix: sum(v.numel() for k, v in sd.items() if k.startswith(prefix))  # noqa: E731
    assert count("decoder.") == 73_295_331
    assert sum(v.numel() for v in sd.values()) == 126_892_531
    expected = {  # spec §6.3
        "conv2.weight": (16, 16, 1, 1, 1),
        "conv1.weight": (32, 32, 1, 1, 1),
        "decoder.conv1.weight": (384, 16, 3, 3, 3),
        "decoder.middle.0.residual.0.gamma": (384, 1, 1, 1),
        "decoder.middle.0.residual.2.weight": (384, 384, 3, 3, 3),
        "decoder.middle.0.residual.6.weight": (384, 384, 3, 3, 3),
        "decoder.middle.1.norm.gamma": (384, 1, 1),
        "decoder.middle.1.to_qkv.weight": (1152, 384, 1, 1),
        "decoder.middle.1.proj.weight": (384, 384, 1, 1),
        "decoder.upsamples.3.resample.1.weight": (192, 384, 3, 3),
        "decoder.upsamples.3.time_conv.weight": (768, 384, 3, 1, 1),
        "decoder.upsamples.4.shortcut.weight": (384, 192, 1, 1, 1),
        "decoder.upsamples.7.time_conv.weight": (768, 384, 3, 1, 1),
        "decoder.upsamples.11.resample.1.weight": (96, 192, 3, 3),
        "decoder.upsamples.14.residual.6.weight": (96, 96, 3, 3, 3),
        "decoder.head.0.gamma": (96, 1, 1, 1),
        "decoder.head.2.weight": (3, 96, 3, 3, 3),
        "encoder.conv1.weight": (96, 3, 3, 3, 3),
        "encoder.downsamples.2.resample.1.weight": (96, 96, 3, 3),
        "encoder.downsamples.5.time_conv.weight": (192, 192, 3, 1, 1),
        "encoder.head.2.weight": (32, 384, 3, 3, 3),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert "decoder.upsamples.15.residual.0.gamma" not in sd


def test_decoder_only_build_has_no_encoder_keys():
    with torch.device("meta"):
        vae = WanVAE(VAEConfig.preset("wan2.1"), with_encoder=False)
    keys = vae.state_dict().keys()
    assert not any(k.startswith(("encoder.", "conv1.")) for k in keys)
    assert sum(p.numel() for p in vae.parameters()) == 73_295_331 + 16 * 16 + 16


@pytest.mark.parametrize("sizes", [[3, 3, 3], [1, 3, 3, 2], [2, 4, 3], [9], [1] * 9])
def test_streaming_decode_equals_one_shot(sizes):
    vae = tiny_vae()
    z = torch.randn(2, 16, 9, 4, 6)  # [B, C, F, h, w]
    whole = vae.decode(z, frames_per_call=None)  # one call, every frame at once
    assert whole.shape == (2, 3, 33, 32, 48)
    assert 0.05 < whole.abs().mean() < 0.9  # not saturated: the comparison means something
    for fpc in (1, 2, None):
        got, counts = decode_in_blocks(vae, z, sizes, fpc)
        assert counts == [pixel_frames(sizes[0])] + [4 * n for n in sizes[1:]]
        torch.testing.assert_close(got, whole, atol=2e-5, rtol=1e-4)


def test_blocks_of_three_give_9_then_12_frames():
    vae = tiny_vae()
    dec = StreamingDecoder(vae)
    z = torch.randn(1, 16, 9, 2, 2)
    assert [dec.decode(z[:, :, i:i + 3]).shape[2] for i in (0, 3, 6)] == [9, 12, 12]
    assert dec.latent_frames == 9
    dec.reset()  # a new stream starts over with the first-frame rule
    assert dec.decode(z[:, :, :3]).shape[2] == 9


def test_decode_is_causal_in_time():
    vae = tiny_vae()
    z = torch.randn(1, 16, 6, 2, 3)
    base = vae.decode(z)
    z2 = z.clone()
    z2[:, :, 3] += 1.0  # change latent frame 3: pixel frames 1 + 4*2 = 9 onwards may change
    moved = vae.decode(z2)
    assert torch.equal(base[:, :, :9], moved[:, :, :9])
    assert not torch.allclose(base[:, :, 9:13], moved[:, :, 9:13])


def test_unnormalisation_uses_the_latent_statistics():
    """The decoder must see z * std + mean (spec §6.4) before conv2."""
    vae = tiny_vae()
    mean = torch.tensor(LATENT_MEAN).view(1, 16, 1, 1, 1)
    std = torch.tensor(LATENT_STD).view(1, 16, 1, 1, 1)
    z = torch.randn(1, 16, 3, 2, 2)  # normalised, [B, C, T, h, w]
    with torch.no_grad():
        expect = vae.decoder(vae.conv2(z * std + mean), {}).clamp(-1, 1)
        wrong = vae.decoder(vae.conv2(z), {}).clamp(-1, 1)
    got = vae.decode(z)
    torch.testing.assert_close(got, expect, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(got, wrong, atol=1e-3)


def test_bf16_latent_stats_round_std_before_reciprocal():
    vae = tiny_vae()
    mean, inv_std = vae.latent_stats(torch.bfloat16, "cpu")
    assert mean.dtype == inv_std.dtype == torch.bfloat16
    expect = 1.0 / torch.tensor(LATENT_STD).to(torch.bfloat16)
    assert torch.equal(inv_std.flatten(), expect)


def test_bfloat16_streaming_matches_float32():
    vae32 = tiny_vae()
    vae16 = tiny_vae(dtype=torch.bfloat16)
    z = torch.randn(1, 16, 5, 4, 4)
    ref = vae32.decode(z)
    got, _ = decode_in_blocks(vae16, z.to(torch.bfloat16), [2, 3], 1)
    assert got.dtype == torch.float32
    assert (got - ref).abs().mean() < 0.02
    one_shot, _ = decode_in_blocks(vae16, z.to(torch.bfloat16), [5], 1)
    torch.testing.assert_close(got, one_shot, atol=0.02, rtol=0)


def test_encode_shapes_and_roundtrip_layout():
    vae = tiny_vae()
    video = torch.rand(1, 3, 9, 32, 48) * 2 - 1
    lat = vae.encode(video)
    assert lat.shape == (1, 16, 3, 4, 6)
    # the encoder is causal too: changing the last 4 pixel frames leaves latents 0-1 alone
    video2 = video.clone()
    video2[:, :, 5:] = 0
    lat2 = vae.encode(video2)
    assert torch.equal(lat[:, :, :2], lat2[:, :, :2])
    assert not torch.equal(lat[:, :, 2], lat2[:, :, 2])
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        vae.encode(video[:, :, :4])
    assert vae.decode(lat).shape == (1, 3, 9, 32, 48)


def test_to_uint8_matches_reference_arithmetic():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.999, 1.0, 3.0]).view(1, 1, 1, 1, 7).expand(1, 3, 1, 1, 7)
    u = to_uint8(x)
    assert u.dtype == torch.uint8 and u.shape == (1, 1, 1, 7, 3)
    assert u[0, 0, 0, :, 0].tolist() == [0, 0, 63, 127, 254, 255, 255]  # truncation, as the scripts do
    rgb = torch.stack([torch.full((2, 4, 5), v) for v in (-1.0, 0.0, 1.0)]).unsqueeze(0)  # [1, 3, 2, 4, 5]
    assert to_uint8(rgb)[0, 1, 2, 3].tolist() == [0, 127, 255]  # channels end up last

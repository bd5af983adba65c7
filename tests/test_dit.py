"""RoPE, unpatchify and schedule against the official facts (longlive_spec.md §1, §3).

The wan-1.3b key names and parameter count are checked in test_wan_loading.py."""

from __future__ import annotations

import torch

from runtime.dit import unpatchify
from runtime.rope import Rope3D, apply_rope, axis_channels
from runtime.schedule import FlowSchedule, ScheduleConfig


def test_rope_split_matches_wan():
    assert axis_channels(128) == (44, 42, 42)


def test_rope_equals_complex_multiplication_in_float64():
    """Interleaved pairs times exp(i * pos * theta^(-2i/n)) per axis, as the reference computes it."""
    head_dim, rows, cols = 24, 3, 5
    x = torch.randn(2, 3, 2 * rows * cols, head_dim)  # [B, H, L, d], 2 frames
    pos = torch.tensor([[7, 8], [1000, 1001]])
    got = apply_rope(x, Rope3D(head_dim).table(pos, rows, cols, torch.device("cpu")))

    ct, ch, cw = axis_channels(head_dim)
    def freqs(n, p):
        return torch.polar(torch.ones(n // 2, dtype=torch.float64),
                           p * 10000.0 ** (-torch.arange(0, n, 2, dtype=torch.float64) / n))
    want = torch.empty_like(x)
    for b in range(2):
        for f in range(2):
            for h in range(rows):
                for w in range(cols):
                    tok = (f * rows + h) * cols + w
                    rot = torch.cat([freqs(ct, pos[b, f]), freqs(ch, h), freqs(cw, w)])
                    z = torch.view_as_complex(x[b, :, tok].double().reshape(3, -1, 2).contiguous())
                    want[b, :, tok] = torch.view_as_real(z * rot).flatten(1).float()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_warped_schedule_matches_longlive():
    s = FlowSchedule(ScheduleConfig())
    assert s.step_timesteps[0] == 1000.0 and s.step_timesteps[1] == 937.5 and s.step_timesteps[3] == 625.0
    assert abs(s.step_timesteps[2] - 833.3333) < 1e-3
    torch.testing.assert_close(torch.tensor(s.step_sigmas), torch.tensor([1.0, 0.9375, 0.8333333, 0.625]))


def test_deterministic_renoise_reuses_implied_noise():
    s = FlowSchedule(ScheduleConfig(renoise="deterministic"))
    x0, eps = torch.randn(4, 4), torch.randn(4, 4)
    x_t = 0.2 * x0 + 0.8 * eps
    torch.testing.assert_close(s.renoise(x_t, x0, 0.8, 0.5, torch.Generator()), 0.5 * x0 + 0.5 * eps)


def test_unpatchify_places_channels_as_the_official_layout():
    """Channel (ph*2 + pw)*16 + c of token (f, h, w) is latent (c, f, 2h+ph, 2w+pw) (spec §1.8)."""
    F, rows, cols, C = 2, 3, 4, 16
    tokens = torch.randn(1, F, rows * cols, 4 * C)
    out = unpatchify(tokens, (rows, cols), (1, 2, 2), C)
    assert out.shape == (1, C, F, 2 * rows, 2 * cols)
    for f, h, w, ph, pw, c in [(0, 0, 0, 0, 1, 1), (1, 2, 3, 1, 0, 15), (1, 1, 2, 1, 1, 7)]:
        assert out[0, c, f, 2 * h + ph, 2 * w + pw] == tokens[0, f, h * cols + w, (ph * 2 + pw) * C + c]

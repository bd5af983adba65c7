"""The Wan2.1 video VAE: a causal 3-D convolutional autoencoder, with streaming decode.

Written from longlive_spec.md §6 (reference: Wan2.1 ``wan/modules/vae.py``). Module and
attribute names equal the official checkpoint keys (``conv2``, ``decoder.upsamples.3.time_conv``
...), so ``Wan2.1_VAE.pth`` loads key for key. Compression is 4x in time (first frame alone)
and 8x in space: T_px = 4*T_lat - 3.

Time is causal everywhere: every 3-tap temporal conv sees only the current and two previous
frames. That is what makes streaming exact: a ``CausalCache`` carries each conv's last two
input frames from one call to the next, so decoding a video block by block gives the same
frames as decoding it at once (up to kernel blocking in floating point).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Latent statistics of Wan2.1 (spec §6.4): z_norm = (z - mean) / std, per channel.
LATENT_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
               0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
LATENT_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
              3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)

# A cache maps each causal module to the state it carries to the next chunk.
CausalCache = dict[nn.Module, Any]


@dataclass(frozen=True)
class VAEConfig:
    dim: int = 96  # base channel width; stages use dim * dim_mult[i]
    z_dim: int = 16  # latent channels
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()  # spatial scales with extra attention blocks (none in Wan2.1)
    temperal_downsample: tuple[bool, ...] = (False, True, True)  # official spelling

    @property
    def temperal_upsample(self) -> tuple[bool, ...]:
        return tuple(reversed(self.temperal_downsample))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "VAEConfig":
        try:
            base = VAE_PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown VAE preset {name!r}; known: {sorted(VAE_PRESETS)}") from None
        return replace(base, **overrides)


VAE_PRESETS: dict[str, VAEConfig] = {
    "wan2.1": VAEConfig(),
    # Same topology (two temporal x2 stages, three spatial x2), 4 base channels: tests only.
    "tiny": VAEConfig(dim=4),
}


class CausalConv3d(nn.Conv3d):
    """Conv3d zero-padded on the past side of time only, so output frame t never sees t+1.

    With a cache, the previous call's last input frames replace the zero padding.
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int | tuple[int, int, int],
                 stride: int | tuple[int, int, int] = 1, padding: int | tuple[int, int, int] = 0):
        super().__init__(in_dim, out_dim, kernel_size, stride=stride, padding=0)
        pt, ph, pw = (padding,) * 3 if isinstance(padding, int) else padding
        self.time_pad = 2 * pt  # frames of history this conv needs
        self.space_pad = (pw, pw, ph, ph)

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:
        # x: [B, C, T, H, W] -> [B, C', T, H, W] (stride 1 in time)
        if self.time_pad:
            past = cache.get(self) if cache is not None else None
            if past is None:  # start of the stream: zero history
                past = x.new_zeros(*x.shape[:2], self.time_pad, *x.shape[3:])
            x = torch.cat([past, x], dim=2)
            if cache is not None:
                cache[self] = x[:, :, -self.time_pad:].clone()  # clone: don't pin the whole chunk
        if any(self.space_pad):
            x = F.pad(x, self.space_pad)
        return super().forward(x)


class RMSNorm(nn.Module):
    """Channel RMS norm, ``F.normalize * sqrt(C) * gamma`` (the official ``RMS_norm``)."""

    def __init__(self, dim: int, images: bool = True):
        super().__init__()
        self.scale = dim**0.5
        # gamma broadcasts over (H, W) for 2-D inputs and (T, H, W) for 3-D ones
        self.gamma = nn.Parameter(torch.ones(dim, 1, 1) if images else torch.ones(dim, 1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma


class Upsample2x(nn.Module):
    """Nearest 2x spatial upsampling, done in float32 as the reference does."""

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x.float(), scale_factor=2.0, mode="nearest-exact").type_as(x)


def _frames_to_images(x: Tensor) -> Tensor:
    return x.transpose(1, 2).flatten(0, 1)  # [B, C, T, H, W] -> [B*T, C, H, W]


def _images_to_frames(x: Tensor, batch: int) -> Tensor:
    return x.unflatten(0, (batch, -1)).transpose(1, 2)  # [B*T, C, H, W] -> [B, C, T, H, W]


class Resample(nn.Module):
    """Spatial x2 up/down sampling, optionally with temporal x2 (``upsample3d``/``downsample3d``)."""

    def __init__(self, dim: int, mode: str):
        super().__init__()
        self.mode = mode
        if mode in ("upsample2d", "upsample3d"):
            self.resample = nn.Sequential(Upsample2x(), nn.Conv2d(dim, dim // 2, 3, padding=1))
        elif mode in ("downsample2d", "downsample3d"):
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
        else:
            raise ValueError(f"unknown resample mode {mode!r}")
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    def forward(self, x: Tensor, cache: CausalCache) -> Tensor:
        if self.mode == "upsample3d":
            x = self._upsample_time(x, cache)
        x = _images_to_frames(self.resample(_frames_to_images(x)), x.shape[0])
        if self.mode == "downsample3d":
            x = self._downsample_time(x, cache)
        return x

    def _upsample_time(self, x: Tensor, cache: CausalCache) -> Tensor:
        # [B, C, T, H, W] -> [B, C, 2T, H, W]; on the stream's first chunk frame 0 is not
        # doubled (the reference's 'Rep' marker), giving 2T - 1 frames.
        parts = []
        if self not in cache:
            cache[self] = "started"
            parts.append(x[:, :, :1])
            x = x[:, :, 1:]  # the frames after the first see zero history, as in the reference
        if x.shape[2]:
            y = self.time_conv(x, cache)  # [B, 2C, T, H, W]
            b, c2, t, h, w = y.shape
            y = y.view(b, 2, c2 // 2, t, h, w)  # halves: channels [0, C) and [C, 2C)
            y = torch.stack((y[:, 0], y[:, 1]), dim=3)  # [B, C, T, 2, H, W]: frame t -> (t_a, t_b)
            parts.append(y.reshape(b, c2 // 2, 2 * t, h, w))
        return torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]

    def _downsample_time(self, x: Tensor, cache: CausalCache) -> Tensor:
        # [B, C, T, H, W] -> [B, C, T/2, H, W]; the first chunk (one frame) passes unchanged,
        # later chunks are prefixed by the previous chunk's last frame (reference behaviour).
        last = cache.get(self)
        cache[self] = x[:, :, -1:].clone()
        if last is None:
            return x
        return self.time_conv(torch.cat([last, x], dim=2))


class ResidualBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        # indices 0..6 are the checkpoint's: norm, SiLU, conv, norm, SiLU, Dropout(0), conv
        self.residual = nn.Sequential(
            RMSNorm(in_dim, images=False), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim, images=False), nn.SiLU(), nn.Dropout(0.0),
            CausalConv3d(out_dim, out_dim, 3, padding=1))
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: Tensor, cache: CausalCache) -> Tensor:
        h = self.shortcut(x)
        for layer in self.residual:
            x = layer(x, cache) if isinstance(layer, CausalConv3d) else layer(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame separately (no mixing in time)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:
        identity = x
        b, c, t, h, w = x.shape
        y = self.to_qkv(self.norm(_frames_to_images(x)))  # [B*T, 3C, H, W]
        q, k, v = y.flatten(2).transpose(1, 2).unsqueeze(1).chunk(3, dim=-1)  # 3x [B*T, 1, HW, C]
        y = F.scaled_dot_product_attention(q, k, v)
        y = y.squeeze(1).transpose(1, 2).reshape(b * t, c, h, w)
        return _images_to_frames(self.proj(y), b) + identity


def _run(layers: nn.Sequential, x: Tensor, cache: CausalCache) -> Tensor:
    """Runs a stage, handing the cache to the modules that carry state across chunks."""
    for layer in layers:
        if isinstance(layer, (CausalConv3d, ResidualBlock, Resample, AttentionBlock)):
            x = layer(x, cache)
        else:
            x = layer(x)
    return x


class Encoder3d(nn.Module):
    """Pixels [B, 3, T, H, W] -> [B, 2*z_dim, T_lat, H/8, W/8] (mean and log-variance)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        dims = [cfg.dim * u for u in (1, *cfg.dim_mult)]
        scale = 1.0
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResidualBlock(in_dim, out_dim))
                if scale in cfg.attn_scales:
                    layers.append(AttentionBlock(out_dim))
                in_dim = out_dim
            if i != len(cfg.dim_mult) - 1:
                layers.append(Resample(out_dim, "downsample3d" if cfg.temperal_downsample[i]
                                       else "downsample2d"))
                scale /= 2.0
        self.downsamples = nn.Sequential(*layers)
        self.middle = nn.Sequential(ResidualBlock(out_dim, out_dim), AttentionBlock(out_dim),
                                    ResidualBlock(out_dim, out_dim))
        self.head = nn.Sequential(RMSNorm(out_dim, images=False), nn.SiLU(),
                                  CausalConv3d(out_dim, cfg.z_dim * 2, 3, padding=1))

    def forward(self, x: Tensor, cache: CausalCache) -> Tensor:
        x = self.conv1(x, cache)
        x = _run(self.downsamples, x, cache)
        x = _run(self.middle, x, cache)
        return _run(self.head, x, cache)


class Decoder3d(nn.Module):
    """Un-normalised latents [B, z_dim, T, h, w] -> pixels [B, 3, T', 8h, 8w] (T' per §6.4)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        dims = [cfg.dim * u for u in (cfg.dim_mult[-1], *reversed(cfg.dim_mult))]
        scale = 1.0 / 2 ** (len(cfg.dim_mult) - 2)
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(ResidualBlock(dims[0], dims[0]), AttentionBlock(dims[0]),
                                    ResidualBlock(dims[0], dims[0]))
        layers: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if i > 0:
                in_dim //= 2  # the previous Resample halved the channels
            for _ in range(cfg.num_res_blocks + 1):
                layers.append(ResidualBlock(in_dim, out_dim))
                if scale in cfg.attn_scales:
                    layers.append(AttentionBlock(out_dim))
                in_dim = out_dim
            if i != len(cfg.dim_mult) - 1:
                layers.append(Resample(out_dim, "upsample3d" if cfg.temperal_upsample[i]
                                       else "upsample2d"))
                scale *= 2.0
        self.upsamples = nn.Sequential(*layers)
        self.head = nn.Sequential(RMSNorm(out_dim, images=False), nn.SiLU(),
                                  CausalConv3d(out_dim, 3, 3, padding=1))

    def forward(self, x: Tensor, cache: CausalCache) -> Tensor:
        x = self.conv1(x, cache)
        x = _run(self.middle, x, cache)
        x = _run(self.upsamples, x, cache)
        return _run(self.head, x, cache)


class WanVAE(nn.Module):
    """The official ``WanVAE_`` module tree; the encoder half is optional.

    T2V generation only decodes, so the runtime builds ``with_encoder=False`` (saves 54 M
    parameters); the loader still verifies the encoder tensors of the official file.
    """

    def __init__(self, cfg: VAEConfig, with_encoder: bool = True):
        super().__init__()
        if cfg.z_dim != len(LATENT_MEAN):
            raise ValueError(f"z_dim {cfg.z_dim} does not match the {len(LATENT_MEAN)}-channel "
                             "latent statistics")
        self.cfg = cfg
        self.with_encoder = with_encoder
        if with_encoder:
            self.encoder = Encoder3d(cfg)
            self.conv1 = CausalConv3d(cfg.z_dim * 2, cfg.z_dim * 2, 1)
        self.decoder = Decoder3d(cfg)
        self.conv2 = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)

    def latent_stats(self, dtype: torch.dtype, device: torch.device | str) -> tuple[Tensor, Tensor]:
        """(mean, 1/std) as the reference uses them: std rounded to ``dtype`` before the reciprocal."""
        shape = (1, self.cfg.z_dim, 1, 1, 1)
        mean = torch.tensor(LATENT_MEAN, dtype=torch.float32, device=device).to(dtype)
        inv_std = 1.0 / torch.tensor(LATENT_STD, dtype=torch.float32, device=device).to(dtype)
        return mean.view(shape), inv_std.view(shape)

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """Pixels [B, 3, 1+4k, H, W] in [-1, 1] -> normalised latent means [B, z_dim, 1+k, H/8, W/8].

        Chunks of 1, 4, 4, ... frames, as the reference does (the temporal downsamplers rely on it).
        """
        if not self.with_encoder:
            raise RuntimeError("this WanVAE was built without its encoder (with_encoder=False)")
        t = video.shape[2]
        if (t - 1) % 4:
            raise ValueError(f"encode needs 1 + 4k frames, got {t}")
        x = video.to(self.conv2.weight.dtype)
        cache: CausalCache = {}
        chunks = [x[:, :, :1]] + [x[:, :, i:i + 4] for i in range(1, t, 4)]
        out = torch.cat([self.encoder(c, cache) for c in chunks], dim=2)
        mu = self.conv1(out).chunk(2, dim=1)[0]
        mean, inv_std = self.latent_stats(mu.dtype, mu.device)
        return (mu - mean) * inv_std

    @torch.no_grad()
    def decode(self, latents: Tensor, frames_per_call: int | None = 1) -> Tensor:
        """Normalised latents [B, z_dim, T, h, w] -> pixels [B, 3, 4T-3, 8h, 8w] in [-1, 1], float32."""
        return StreamingDecoder(self, frames_per_call).decode(latents)


class StreamingDecoder:
    """Decodes a latent video block by block as the generator produces it.

    One instance per stream: it owns the causal cache. The first call with n latent frames
    returns 1 + 4(n-1) pixel frames, every later one 4n; their concatenation equals a one-shot
    decode. ``frames_per_call=1`` runs the decoder one latent frame at a time exactly like the
    reference loop (and bounds activation memory); larger values batch frames per conv call.
    """

    def __init__(self, vae: WanVAE, frames_per_call: int | None = 1):
        if frames_per_call is not None and frames_per_call < 1:
            raise ValueError(f"frames_per_call must be >= 1 or None, got {frames_per_call}")
        self.vae = vae
        self.frames_per_call = frames_per_call
        self.reset()

    def reset(self) -> None:
        """Starts a new stream: the next frame is treated as the video's first (zero history)."""
        self.cache: CausalCache = {}
        self.latent_frames = 0  # latent frames decoded so far in this stream

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Normalised latents [B, z_dim, F, h, w] (the engine's layout) -> pixels [B, 3, T, 8h, 8w].

        Pixels are float32 in [-1, 1]; T = 1 + 4(F-1) on the stream's first call, else 4F.
        """
        vae = self.vae
        w = vae.conv2.weight
        z = latents.to(device=w.device, dtype=w.dtype)
        mean, inv_std = vae.latent_stats(z.dtype, z.device)
        z = vae.conv2(z / inv_std + mean)  # un-normalise in the latent dtype, as the reference
        step = self.frames_per_call or max(z.shape[2], 1)
        out = [vae.decoder(z[:, :, i:i + step], self.cache) for i in range(0, z.shape[2], step)]
        self.latent_frames += z.shape[2]
        if not out:
            b, _, _, h, w_ = z.shape
            up = 2 ** (len(vae.cfg.dim_mult) - 1)
            return z.new_zeros(b, 3, 0, up * h, up * w_, dtype=torch.float32)
        return torch.cat(out, dim=2).float().clamp_(-1, 1)


def pixel_frames(latent_frames: int, first_call: bool = True) -> int:
    """Pixel frames produced by decoding ``latent_frames`` (as a stream's first call or a later one)."""
    if latent_frames == 0:
        return 0
    return 4 * latent_frames - 3 if first_call else 4 * latent_frames


def to_uint8(pixels: Tensor) -> Tensor:
    """Pixels [B, 3, T, H, W] in [-1, 1] -> uint8 frames [B, T, H, W, 3] (RGB, what writers want).

    Same arithmetic as the reference scripts: (x*0.5+0.5).clamp(0,1)*255, truncated to uint8.
    """
    x = ((pixels.float().clamp(-1, 1) * 0.5 + 0.5).clamp_(0, 1) * 255.0).to(torch.uint8)
    return x.permute(0, 2, 3, 4, 1)

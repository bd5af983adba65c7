"""Flow-matching noise schedule and the few-step sampler rule (spec §3.1-3.3).

x_t = (1 - sigma) * x0 + sigma * noise, the model predicts the flow v ~ noise - x0, so
x0 = x_t - sigma * v. Which steps to take and how to re-noise between them belong to a
model: LongLive's distilled generator wants fresh noise at (1000, 937.5, 833.3, 625); an
undistilled model wants more steps and the deterministic (DDIM-like) rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor


@dataclass(frozen=True)
class ScheduleConfig:
    shift: float = 5.0
    train_steps: int = 1000
    steps: tuple[float, ...] = (1000, 750, 500, 250)  # raw denoising steps
    warp: bool = True  # map raw steps through the shifted schedule (LongLive's warp_denoising_step)
    renoise: Literal["fresh", "deterministic"] = "fresh"


class FlowSchedule:
    def __init__(self, cfg: ScheduleConfig):
        if cfg.renoise not in ("fresh", "deterministic"):
            raise ValueError(f"renoise must be 'fresh' or 'deterministic', got {cfg.renoise!r}")
        self.cfg = cfg
        n = cfg.train_steps
        s = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float32)[:-1]
        self.sigmas = cfg.shift * s / (1 + (cfg.shift - 1) * s)  # float32, 1.0 down to ~0.005
        self.timesteps = self.sigmas * n
        if cfg.warp:
            ext = torch.cat([self.timesteps, torch.zeros(1)])
            idx = [n - int(round(t)) for t in cfg.steps]
            if any(not 0 <= i <= n for i in idx):
                raise ValueError(f"denoising steps {cfg.steps} must lie in [0, {n}]")
            self.step_timesteps = [float(ext[i]) for i in idx]
        else:
            self.step_timesteps = [float(t) for t in cfg.steps]

    def sigma(self, t: float) -> float:
        """sigma of the training timestep nearest to t (the reference's argmin lookup)."""
        return float(self.sigmas[torch.argmin((self.timesteps - t).abs())])

    @property
    def step_sigmas(self) -> list[float]:
        return [self.sigma(t) for t in self.step_timesteps]

    def renoise(self, x_t: Tensor, x0: Tensor, sigma: float, sigma_next: float,
                generator: torch.Generator) -> Tensor:
        """Move from the x0 estimate at ``sigma`` to a sample at ``sigma_next``."""
        if self.cfg.renoise == "fresh":
            noise = torch.randn(x0.shape, generator=generator, device=generator.device,
                                dtype=torch.float32).to(x0.device)
        else:  # the noise the current sample implies
            noise = (x_t.float() - (1 - sigma) * x0.float()) / sigma
        return ((1 - sigma_next) * x0.float() + sigma_next * noise).to(x0.dtype)

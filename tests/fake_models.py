"""A stand-in for ``craft_bench.train.diffusion.DiffusionModel`` with fixed linear 'UNets' (the trained one predicts
0.5 x its input, the reference 0.25 x), so a method's loss can be pinned to its formula by hand."""

from __future__ import annotations

import contextlib

import torch


class FakeModel:
    alphas = torch.linspace(0.99, 0.01, 1000)
    alphas_cumprod = alphas
    family = "sdxl"

    def __init__(self) -> None:
        self.ref = False

    def noisy(self, x, n, t):
        a = self.alphas[t].view(-1, 1, 1, 1)
        return a.sqrt() * x + (1 - a).sqrt() * n

    def target(self, x, n, t):
        return n

    def predict(self, noisy, t, cond):
        return (0.25 if self.ref else 0.5) * noisy + cond["embeds"].mean() * 0

    @contextlib.contextmanager
    def reference(self):
        self.ref = True
        try:
            with torch.no_grad():
                yield
        finally:
            self.ref = False

    def invert(self, x0, t, cond, steps, renoise=False):
        return 0.9 * x0 + 0.1  # any fixed map: SmPO must turn it into eps = (x_inv - sqrt(abar) x0) / sqrt(1 - abar)

"""GLASS's global anomaly synthesis: gradient ascent on Gaussian-noised features.

Chen et al., GLASS (ECCV 2024), and the released code (``glass.py``): starting from
``g = f + N(0, 0.015^2)``, for 20 steps the discriminator's loss on ``g`` as anomalous
(BCE with target 1) is *ascended* along its normalised gradient with step 0.001, so the
anomalies move towards what the discriminator takes for normal; every 5 steps ``g`` is
projected back into a shell around the normal features: with ``h = g - f``,
``h <- h * clamp(|h|, r, 2r) / |h|`` (r = 0.5 without a centre). With a ``center``
(GLASS's hypersphere variant, ``svd=1``) the shell is around the centre and r is the
``radius_quantile`` (0.75) of the normal features' distances to it.

Everything random is the initial noise, drawn from explicit generators; the ascent is
deterministic given the discriminator, so ``params`` replays a draw.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from anomalysynth.features.base import FeatureAnomalies, check_features
from anomalysynth.features.gaussian_noise import GaussianFeatureNoise
from anomalysynth.seeding import GeneratorLike

__all__ = ["GradientAscentAnomalies"]


class GradientAscentAnomalies(torch.nn.Module):
    """GLASS's global anomalies: noise, then gradient ascent with projection.

    Args:
        noise_std: standard deviation of the initial Gaussian noise (GLASS: 0.015).
        steps: gradient-ascent steps (GLASS: 20); 0 gives SimpleNet's plain noise.
        step_size: length of each normalised step (GLASS: 0.001); with ``steps`` the strength knob.
        project_every: project into the shell after every this many steps (GLASS: 5).
        radius: the shell's inner radius r around the normal feature (outer: 2r) when
            no centre is given (GLASS: 0.5).
        radius_quantile: with a centre, r is this quantile of the normal features'
            distances to it (GLASS: 0.75).

    Call with ``features`` (B, N, D) (N positions of D channels per image), a
    ``discriminator`` mapping (M, D) features to (M, 1) anomaly probabilities, and an
    explicit generator; ``center`` (D,) or (N, D) switches to the hypersphere variant.
    """

    def __init__(
        self,
        noise_std: float = 0.015,
        steps: int = 20,
        step_size: float = 0.001,
        project_every: int = 5,
        radius: float = 0.5,
        radius_quantile: float = 0.75,
    ) -> None:
        super().__init__()
        if not isinstance(steps, int) or steps < 0 or not isinstance(project_every, int) or project_every < 1:
            raise ValueError(f"Expected int `steps` >= 0 and `project_every` >= 1; got {steps!r}, {project_every!r}.")
        if not step_size > 0 or not radius > 0 or not 0 < radius_quantile < 1:
            raise ValueError(
                "Expected `step_size` > 0, `radius` > 0 and `radius_quantile` in (0, 1); "
                f"got {step_size}, {radius}, {radius_quantile}."
            )
        self.noise = GaussianFeatureNoise(noise_std)
        self.noise_std = float(noise_std)
        self.steps = steps
        self.step_size = float(step_size)
        self.project_every = project_every
        self.radius = float(radius)
        self.radius_quantile = float(radius_quantile)

    def sample_params(self, features: Tensor, generator: GeneratorLike = None) -> dict[str, Tensor]:
        """The initial noise (one draw per sample)."""
        return self.noise.sample_params(check_features(features, rank=(3,)), generator)

    def forward(
        self,
        features: Tensor,
        discriminator: Callable[[Tensor], Tensor],
        generator: GeneratorLike = None,
        params: dict[str, Tensor] | None = None,
        center: Tensor | None = None,
    ) -> FeatureAnomalies:
        features = check_features(features, rank=(3,))
        if params is None:
            params = self.sample_params(features, generator)
        true = features.detach()
        b, n, d = true.shape
        anomalous = self.noise(true, params=params).features.reshape(b * n, d)
        flat_true = true.reshape(b * n, d)
        shell_centre, r = flat_true, torch.tensor(self.radius, device=true.device, dtype=true.dtype)
        if center is not None:
            shell_centre = center.to(true).expand(b, n, d).reshape(b * n, d)
            # the radius comes from the normal features themselves (GLASS's r_t)
            r = torch.quantile((flat_true - shell_centre).norm(dim=1).float(), self.radius_quantile).to(true.dtype)
        for step in range(self.steps):
            with torch.enable_grad():
                anomalous = anomalous.detach().requires_grad_(True)
                scores = discriminator(anomalous)
                loss = F.binary_cross_entropy(scores, torch.ones_like(scores))
                (grad,) = torch.autograd.grad(loss, [anomalous])
            step_dir = grad / (grad.norm(dim=1, keepdim=True) + 1e-10)
            anomalous = anomalous.detach() + self.step_size * step_dir
            if (step + 1) % self.project_every == 0:
                offset = anomalous - shell_centre
                norm = offset.norm(dim=1, keepdim=True)
                anomalous = shell_centre + offset * (norm.clamp(r, 2 * r) / (norm + 1e-10))
        anomalous = anomalous.detach().reshape(b, n, d)
        strength = (anomalous - true).norm(dim=-1).mean(dim=1)
        return FeatureAnomalies(
            features=anomalous, mask=torch.ones_like(true[..., 0]), strength=strength, params=params
        )

    def extra_repr(self) -> str:
        return f"noise_std={self.noise_std}, steps={self.steps}, step_size={self.step_size}, radius={self.radius}"

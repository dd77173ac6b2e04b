"""Conditional flow matching (OT-CFM) around a velocity estimator, with in-context prefix and CFG.

Follows ReasoningCodec's ``BASECFM`` (UniAudio 2.0 ``models/AudioDiffusion1D.py``, MuCodec lineage):

- Path ``x_t = (1 - (1 - sigma_min) t) z + t x_1`` from noise ``z`` (t = 0) to data ``x_1`` (t = 1), target
  velocity ``u = x_1 - (1 - sigma_min) z``, ``sigma_min = 1e-4``, ``t ~ U(0, 1)`` per item.
- Estimator input: channel concatenation ``[x_t (D) | in-context latent (D, zeros outside the prefix) | cond (C)]``.
- Loss: ``sum(((v - u) w)^2) / sum(w)`` over frames and channels, with frame weight ``w`` = 1 on target frames,
  0.01 on padding and 0 on the in-context prefix (upstream weighs before squaring, so padding effectively
  counts 1e-4 per element; kept as is).
- Sampling: fixed-step Euler from t = 0 to 1. Before every step the prefix frames of the state are reset to the
  exact path point ``(1 - (1 - sigma_min) t) z + t x_prompt``; after the last step they are replaced by the prompt
  itself, so the prefix comes back verbatim.
- Classifier-free guidance: the unconditional branch gets all-zero ``cond`` (zeros, not a learned null
  embedding; upstream's ``zero_cond_embedding1`` only fills padding frames, which is the caller's business);
  ``v = v_u + s (v_c - v_u)``. Upstream uses the guided form only when ``s > 1``; here any ``s != 1`` uses it
  (``s = 1`` is conditional-only in both; ``s = 0`` gives the unconditional model).
- Long inputs (``sample_long``): windows of ``window`` frames with ``overlap`` (25 %) shared between neighbours;
  each window after the first gets the previous window's last ``overlap`` latents as its in-context prefix and
  the windows are joined with a linear cross-fade (upstream ``token2audio``). Upstream takes a prefix shorter
  than the overlap and places it at a position that does not line up with its conditioning; here the prefix
  is exactly the overlap, aligned in time, so the cross-fade of latents changes nothing and is kept for the
  waveform-level join (``crossfade_concat``, what upstream applies after the codec decoder).

Training-time condition dropout (needed for CFG) is not in upstream's released code; ``cond_drop_prob`` zeroes
the whole ``cond`` of an item with that probability in training mode (0 disables it).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConditionalFlowMatching", "crossfade_concat"]

PADDING_WEIGHT = 0.01


def crossfade_concat(chunks: list[torch.Tensor], overlap: int) -> torch.Tensor:
    """Join chunks along the last axis, each sharing ``overlap`` items with the previous one, with a linear fade.

    The fade is upstream's ``linspace(0, 1, overlap)``: the new chunk's weight rises from exactly 0 to exactly 1.
    """
    if not chunks:
        raise ValueError("crossfade_concat needs at least one chunk")
    out = chunks[0]
    for chunk in chunks[1:]:
        if overlap <= 0:
            out = torch.cat([out, chunk], dim=-1)
            continue
        if out.shape[-1] < overlap or chunk.shape[-1] < overlap:
            raise ValueError(f"chunks shorter than the overlap {overlap}")
        ramp = torch.linspace(0.0, 1.0, overlap, device=chunk.device, dtype=chunk.dtype)
        mixed = out[..., -overlap:] * (1 - ramp) + chunk[..., :overlap] * ramp
        out = torch.cat([out[..., :-overlap], mixed, chunk[..., overlap:]], dim=-1)
    return out


class ConditionalFlowMatching(nn.Module):
    """OT-CFM training loss and Euler sampling for an estimator ``f([x | prefix | cond], t, mask) -> v``.

    The estimator must take ``[B, 2 * latent_dim + cond_dim, T]`` and return ``[B, latent_dim, T]`` (e.g.
    ``DiT1d(2 * latent_dim + cond_dim, latent_dim, ...)``).
    """

    def __init__(
        self,
        estimator: nn.Module,
        latent_dim: int,
        cond_dim: int,
        *,
        sigma_min: float = 1e-4,
        cond_drop_prob: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= cond_drop_prob < 1.0:
            raise ValueError(f"cond_drop_prob must be in [0, 1), got {cond_drop_prob}")
        expected_in = getattr(estimator, "in_channels", None)
        if expected_in is not None and expected_in != 2 * latent_dim + cond_dim:
            raise ValueError(
                f"estimator takes {expected_in} channels, but [latent | prefix | cond] has "
                f"{2 * latent_dim + cond_dim} (latent_dim {latent_dim}, cond_dim {cond_dim})"
            )
        self.estimator = estimator
        self.latent_dim = latent_dim
        self.cond_dim = cond_dim
        self.sigma_min = sigma_min
        self.cond_drop_prob = cond_drop_prob

    # ------------------------------------------------------------------ helpers
    def _check(self, name: str, x: torch.Tensor, channels: int) -> None:
        if x.ndim != 3 or x.shape[1] != channels:
            raise ValueError(f"expected {name} of shape [B, {channels}, T], got {tuple(x.shape)}")

    def velocity(
        self,
        x: torch.Tensor,
        prefix: torch.Tensor,
        cond: torch.Tensor,
        t: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Estimator velocity for state ``x``, in-context latent ``prefix`` and conditioning ``cond``."""
        return self.estimator(torch.cat([x, prefix, cond], dim=1), t, mask)

    def path(self, target: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Point of the OT path at time ``t`` (broadcast over ``[B, 1, 1]``)."""
        return (1 - (1 - self.sigma_min) * t) * noise + t * target

    @staticmethod
    def prefix_mask(prompt_len: torch.Tensor, length: int) -> torch.Tensor:
        """``[B, T]`` bool, True on the first ``prompt_len[b]`` frames."""
        return torch.arange(length, device=prompt_len.device)[None] < prompt_len[:, None]

    # ------------------------------------------------------------------ training
    def loss(
        self,
        target: torch.Tensor,
        cond: torch.Tensor,
        prompt_len: torch.Tensor | None = None,
        frame_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """CFM loss for clean latents ``target [B, D, T]`` under ``cond [B, C, T]``.

        ``prompt_len [B]``: the first frames of each item are given to the estimator as in-context prefix (clean
        target) and excluded from the loss. ``frame_weights [B, T]``: the padding mask (1 = real frame,
        0 = padding), mapped to upstream's weights 1.0 / 0.01 (values in between interpolate).
        """
        self._check("target", target, self.latent_dim)
        self._check("cond", cond, self.cond_dim)
        b, _, n = target.shape
        if cond.shape[0] != b or cond.shape[-1] != n:
            raise ValueError(
                f"cond {tuple(cond.shape)} does not match target {tuple(target.shape)} in batch/time"
            )
        weight = torch.ones(b, n, device=target.device, dtype=target.dtype)
        if frame_weights is not None:
            if frame_weights.shape != (b, n):
                raise ValueError(
                    f"expected frame_weights of shape [{b}, {n}], got {tuple(frame_weights.shape)}"
                )
            weight = PADDING_WEIGHT + (1 - PADDING_WEIGHT) * frame_weights.to(target.dtype).clamp(0, 1)
        prefix = torch.zeros_like(target)
        if prompt_len is not None:
            prompt_len = torch.as_tensor(prompt_len, device=target.device).long().reshape(-1)
            if prompt_len.shape != (b,):
                raise ValueError(f"expected prompt_len of shape [{b}], got {tuple(prompt_len.shape)}")
            in_context = self.prefix_mask(prompt_len, n)
            prefix = target * in_context[:, None].to(target.dtype)
            weight = weight.masked_fill(in_context, 0.0)
        if self.training and self.cond_drop_prob > 0:
            keep = torch.rand(b, 1, 1, device=cond.device) >= self.cond_drop_prob
            cond = cond * keep.to(cond.dtype)
        t = torch.rand(b, device=target.device, dtype=target.dtype)
        noise = torch.randn_like(target)
        x_t = self.path(target, noise, t[:, None, None])
        u = target - (1 - self.sigma_min) * noise
        v = self.velocity(x_t, prefix, cond, t)
        w = weight[:, None]
        return ((v - u) * w).square().sum() / (w.sum() * target.shape[1]).clamp_min(1e-8)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        cond: torch.Tensor,
        prompt: torch.Tensor | None = None,
        *,
        steps: int = 10,
        cfg_scale: float = 1.5,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Latents ``[B, D, T]`` for ``cond [B, C, T]`` by ``steps`` Euler steps from Gaussian noise.

        ``prompt [B, D, Tp]`` (Tp < T) is the in-context prefix; it is returned verbatim in the first Tp frames.
        ``noise`` overrides the starting noise (else drawn from ``generator``); ``mask [B, T]`` hides padded
        frames from attention.
        """
        self._check("cond", cond, self.cond_dim)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        b, _, n = cond.shape
        shape = (b, self.latent_dim, n)
        if noise is None:
            noise = torch.randn(shape, generator=generator, device=cond.device, dtype=cond.dtype)
        elif noise.shape != shape:
            raise ValueError(f"expected noise of shape {shape}, got {tuple(noise.shape)}")
        prefix = torch.zeros(shape, device=cond.device, dtype=cond.dtype)
        plen = 0
        if prompt is not None:
            self._check("prompt", prompt, self.latent_dim)
            plen = prompt.shape[-1]
            if prompt.shape[0] != b or plen >= n:
                raise ValueError(
                    f"prompt {tuple(prompt.shape)} must have batch {b} and fewer than {n} frames"
                )
            prefix[..., :plen] = prompt
        guided = cfg_scale != 1.0
        if guided:
            cond_in = torch.cat([torch.zeros_like(cond), cond])
            prefix_in = torch.cat([prefix, prefix])
            mask_in = None if mask is None else torch.cat([mask, mask])
        x = noise.clone()
        t_span = torch.linspace(0, 1, steps + 1, device=cond.device, dtype=cond.dtype)
        for i in range(steps):
            t, dt = t_span[i], t_span[i + 1] - t_span[i]
            if plen:
                x[..., :plen] = self.path(prefix[..., :plen], noise[..., :plen], t)
            if guided:
                v_uncond, v_cond = self.velocity(
                    torch.cat([x, x]), prefix_in, cond_in, t.expand(2 * b), mask_in
                ).chunk(2)
                v = v_uncond + cfg_scale * (v_cond - v_uncond)
            else:
                v = self.velocity(x, prefix, cond, t.expand(b), mask)
            x = x + dt * v
        if plen:
            x[..., :plen] = prompt
        return x

    @torch.no_grad()
    def sample_long(
        self,
        cond: torch.Tensor,
        window: int,
        overlap: float = 0.25,
        prompt: torch.Tensor | None = None,
        *,
        steps: int = 10,
        cfg_scale: float = 1.5,
        generator: torch.Generator | None = None,
        return_windows: bool = False,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Windowed sampling for ``cond`` longer than ``window`` frames (see the module docstring).

        Windows start every ``window - round(overlap * window)`` frames; the last may be shorter. With
        ``return_windows=True`` the per-window latents are returned (to decode each and join the waveforms with
        ``crossfade_concat``, as upstream does); else the cross-faded latents ``[B, D, T]``. An input that fits
        one window gives exactly ``sample(cond, prompt, ...)``.
        """
        self._check("cond", cond, self.cond_dim)
        n = cond.shape[-1]
        kwargs = {"steps": steps, "cfg_scale": cfg_scale, "generator": generator}
        if n <= window:
            out = self.sample(cond, prompt, **kwargs)
            return [out] if return_windows else out
        shared = round(overlap * window)
        hop = window - shared
        if not 0 < shared < window:
            raise ValueError(f"overlap {overlap} of window {window} leaves no shared or no new frames")
        windows: list[torch.Tensor] = []
        start = 0
        while True:
            end = min(start + window, n)
            context = prompt if start == 0 else windows[-1][..., -shared:]
            windows.append(self.sample(cond[..., start:end], context, **kwargs))
            if end == n:
                break
            start += hop
        return windows if return_windows else crossfade_concat(windows, shared)

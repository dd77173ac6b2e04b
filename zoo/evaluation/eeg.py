"""EEG downstream evaluation: how much of a recording survives tokenization, and whether the tokens still
carry what a task needs.

- :func:`reconstruction_metrics`: normalised MSE, Pearson correlation and relative band-power error per
  canonical band between a recording and its reconstruction;
- :func:`codebook_usage`: the fraction of each codebook's codes that occur, and the perplexity of their
  distribution;
- :func:`stimulus_locked_task`: windows locked to stimulus events against random windows elsewhere in the
  same recording, split by time so no training window overlaps a test window;
- :func:`evaluate_tokenizer` / :func:`evaluate_raw`: a linear probe and a small time x channel Transformer
  (BioCodec's downstream shape) on token embeddings, and the same two heads on the raw signal as the
  baseline, scored by :func:`balanced_accuracy` and :func:`cohen_kappa`, with a Wilson interval
  (:func:`wilson_interval`) from the test-set size; :func:`untrained_copy` gives the random-weights
  control.

Everything works on any ``zoo.tokenizer.EEGTokenizer``. Each task window gets exactly the token frames
that lie inside it (:func:`window_ids`, from the tokenizer's :func:`frame_geometry`), from tokenizer
windows of the model's own length (so per-window normalisation sees a whole window, as upstream's did,
not a one-second task window). Per-recording normalisation statistics come from the training span only,
and no tokenizer window reads across the train/test split.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo.io.eeg import EEGRecording
from zoo.model import untrained_copy
from zoo.tokens import Tokens

__all__ = [
    "CANONICAL_BANDS",
    "FrameGeometry",
    "PooledLinearProbe",
    "TimeChannelTransformer",
    "WindowTask",
    "balanced_accuracy",
    "band_powers",
    "codebook_usage",
    "codebook_vectors",
    "cohen_kappa",
    "evaluate_raw",
    "evaluate_tokenizer",
    "frame_geometry",
    "prepare_spans",
    "reconstruction_metrics",
    "recording_statistics",
    "stimulus_locked_task",
    "summarise_runs",
    "token_embeddings",
    "untrained_copy",
    "welch_psd",
    "wilson_interval",
    "window_ids",
]

# Canonical EEG bands in Hz; gamma's upper edge is lowered to the Nyquist frequency when it is below 45 Hz.
CANONICAL_BANDS: dict[str, tuple[float, float]] = {
    "delta": (0.5, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
    "gamma": (30.0, 45.0),
}


# --------------------------------------------------------------------------------------------------
# Reconstruction quality


def _as_channels(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Any ``[..., T]`` signal as float64 ``[channels, T]`` (batch and channel axes merged)."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().cpu().double()
    if t.ndim == 0 or t.shape[-1] == 0:
        raise ValueError(f"expected a signal [..., T] with T > 0, got shape {tuple(t.shape)}")
    return t.reshape(-1, t.shape[-1])


def welch_psd(
    x: torch.Tensor | np.ndarray, sample_rate: float, segment_seconds: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """One-sided power spectral density of ``x [..., T]`` by Welch's method: Hann-windowed segments of
    ``segment_seconds`` (the whole signal when shorter) with 50 % overlap, each with its mean removed,
    periodograms averaged. Returns ``(frequencies [F], psd [..., F])`` in unit^2/Hz (scipy's "density")."""
    t = _as_channels(x)
    length = t.shape[-1]
    size = max(2, min(length, round(segment_seconds * sample_rate)))
    step = max(1, size // 2)
    segments = t.unfold(-1, size, step) if length >= size else t[:, None]
    segments = segments - segments.mean(-1, keepdim=True)
    window = torch.hann_window(size, periodic=False, dtype=torch.float64)
    power = torch.fft.rfft(segments * window, dim=-1).abs().square().mean(-2)
    power = power / (sample_rate * window.square().sum())
    power[..., 1 : size // 2 + (size % 2)] *= 2  # fold negative frequencies (not DC or Nyquist)
    freqs = torch.fft.rfftfreq(size, 1.0 / sample_rate, dtype=torch.float64)
    lead = torch.as_tensor(np.asarray(x)).shape[:-1] if not isinstance(x, torch.Tensor) else x.shape[:-1]
    return freqs, power.reshape(*lead, -1)


def band_powers(
    x: torch.Tensor | np.ndarray,
    sample_rate: float,
    bands: dict[str, tuple[float, float]] | None = None,
    segment_seconds: float = 2.0,
) -> dict[str, torch.Tensor]:
    """Power of ``x [..., T]`` in each band (Welch PSD summed over ``lo <= f < hi`` times the bin width),
    ``[...]`` per band. Bands starting at or above the Nyquist frequency are left out; an upper edge above
    it is lowered to it (and then includes the Nyquist bin)."""
    freqs, psd = welch_psd(x, sample_rate, segment_seconds)
    nyquist = sample_rate / 2
    width = float(freqs[1] - freqs[0]) if len(freqs) > 1 else float(sample_rate)
    out = {}
    for name, (lo, hi) in (bands or CANONICAL_BANDS).items():
        if lo >= nyquist:
            continue
        top = freqs <= nyquist if hi >= nyquist else freqs < hi
        inside = (freqs >= lo) & top
        out[name] = psd[..., inside].sum(-1) * width
    return out


def reconstruction_metrics(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    sample_rate: float,
    *,
    bands: dict[str, tuple[float, float]] | None = None,
    segment_seconds: float = 2.0,
) -> dict[str, Any]:
    """How well ``y`` reconstructs ``x`` (both ``[..., T]``, every leading index a channel), as floats:

    - ``nmse``: per channel ``sum((x - y)^2) / sum((x - mean(x))^2)``, averaged over channels: 0 is exact,
      1 is no better than the channel's mean (so DC offsets neither help nor hurt);
    - ``pearson``: Pearson correlation of each channel with its reconstruction, averaged; a constant
      reconstruction counts as 0, channels where ``x`` is constant are left out;
    - ``band_power_error``: for each canonical band (:data:`CANONICAL_BANDS`, Welch PSD), the relative
      error ``|P_y - P_x| / P_x`` of the band's power per channel, averaged over channels: 0 for identical
      spectra, 1 when the band is lost entirely (or doubled).
    """
    a, b = _as_channels(x), _as_channels(y)
    if a.shape != b.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    centred_a = a - a.mean(-1, keepdim=True)
    centred_b = b - b.mean(-1, keepdim=True)
    energy = centred_a.square().sum(-1)
    varying = energy > 1e-12 * energy.max().clamp_min(1e-300)
    if not bool(varying.any()):
        raise ValueError("every channel of x is constant: NMSE and correlation are undefined")
    nmse = ((a - b).square().sum(-1)[varying] / energy[varying]).mean()
    norm_b = centred_b.square().sum(-1).sqrt()
    corr = (centred_a * centred_b).sum(-1) / (energy.sqrt() * norm_b).clamp_min(1e-300)
    corr = torch.where(norm_b > 0, corr, torch.zeros_like(corr))[varying].mean()
    px = band_powers(a[varying], sample_rate, bands, segment_seconds)
    py = band_powers(b[varying], sample_rate, bands, segment_seconds)
    errors = {name: float(((py[name] - px[name]).abs() / px[name].clamp_min(1e-300)).mean()) for name in px}
    return {"nmse": float(nmse), "pearson": float(corr), "band_power_error": errors}


# --------------------------------------------------------------------------------------------------
# Codebook usage


def codebook_usage(
    tokens: Tokens | torch.Tensor, codebook_sizes: Sequence[int] | None = None
) -> dict[str, list[float]]:
    """Per codebook: ``usage``, the fraction of its codes that occur at least once, and ``perplexity``,
    ``exp`` of the entropy of the code distribution (1 when one code does everything, the codebook size
    when all are equally frequent). ``tokens`` is a ``Tokens`` (ids ``[B, K, ...]`` for ``K > 1``
    codebooks) or an id tensor with ``codebook_sizes`` (``[B, K, ...]`` when it names several). Negative
    ids (padding, dropped positions) are ignored."""
    if isinstance(tokens, Tokens):
        if tokens.ids is None:
            raise ValueError("codebook usage needs discrete ids; these Tokens hold only latents")
        ids, sizes = tokens.ids, list(tokens.codebook_sizes)
    else:
        if codebook_sizes is None:
            raise ValueError("an id tensor needs codebook_sizes")
        ids, sizes = tokens, list(codebook_sizes)
    per_codebook = [ids] if len(sizes) == 1 else [ids[:, k] for k in range(len(sizes))]
    if len(sizes) > 1 and ids.shape[1] != len(sizes):
        raise ValueError(f"ids {tuple(ids.shape)} do not have {len(sizes)} codebooks on axis 1")
    usage, perplexity = [], []
    for k, (codes, size) in enumerate(zip(per_codebook, sizes, strict=True)):
        codes = codes[codes >= 0].long().cpu()
        if codes.numel() and int(codes.max()) >= size:
            raise ValueError(f"codebook {k} has id {int(codes.max())} outside its {size} codes")
        counts = torch.bincount(codes, minlength=size).double()
        p = counts / counts.sum().clamp_min(1)
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        usage.append(float((counts > 0).double().mean()))
        perplexity.append(float(entropy.exp()))
    return {"usage": usage, "perplexity": perplexity, "codebook_sizes": [float(s) for s in sizes]}


# --------------------------------------------------------------------------------------------------
# Classification metrics


def _labels(y: torch.Tensor | np.ndarray | Sequence[int]) -> torch.Tensor:
    return torch.as_tensor(np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)).long().reshape(-1)


def balanced_accuracy(y_true: Any, y_pred: Any) -> float:
    """Mean over the classes present in ``y_true`` of the fraction of that class predicted correctly
    (recall), so a majority-class guess scores ``1 / classes``."""
    t, p = _labels(y_true), _labels(y_pred)
    if t.shape != p.shape or t.numel() == 0:
        raise ValueError(f"need equally many true and predicted labels, got {t.numel()} and {p.numel()}")
    recalls = [float((p[t == c] == c).double().mean()) for c in t.unique()]
    return float(np.mean(recalls))


def cohen_kappa(y_true: Any, y_pred: Any) -> float:
    """Cohen's kappa ``(p_o - p_e) / (1 - p_e)``: observed agreement ``p_o`` corrected for the agreement
    ``p_e = sum_c P(true = c) P(pred = c)`` two independent raters with these label frequencies reach by
    chance. 0 is chance level, 1 perfect. When ``p_e = 1`` (one class in both) it is 1 if they agree."""
    t, p = _labels(y_true), _labels(y_pred)
    if t.shape != p.shape or t.numel() == 0:
        raise ValueError(f"need equally many true and predicted labels, got {t.numel()} and {p.numel()}")
    observed = float((t == p).double().mean())
    classes = torch.cat([t, p]).unique()
    expected = sum(float((t == c).double().mean() * (p == c).double().mean()) for c in classes)
    if expected >= 1.0:
        return 1.0 if observed == 1.0 else 0.0
    return (observed - expected) / (1.0 - expected)


def wilson_interval(fraction: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``fraction`` observed over ``n`` independent items: how far
    an accuracy measured on ``n`` test windows may be from the classifier's true accuracy. Unlike the
    normal approximation it stays inside [0, 1] and is not empty at 0 or 1."""
    if n < 1 or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"need n >= 1 and a fraction in [0, 1], got n={n}, fraction={fraction}")
    z = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.5 + level / 2, dtype=torch.float64)))
    denominator = 1 + z * z / n
    centre = (fraction + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(fraction * (1 - fraction) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


# --------------------------------------------------------------------------------------------------
# Task: stimulus-locked windows against random windows


@dataclass
class WindowTask:
    """Labelled windows of one recording: window ``i`` covers samples ``[starts[i], starts[i] + window)``
    at ``sample_rate``; label 1 is stimulus-locked, 0 random. ``is_test`` marks windows in the test span
    ``[test_start, end)``; training windows and any tokenizer training stay before ``test_start``."""

    starts: torch.Tensor
    labels: torch.Tensor
    is_test: torch.Tensor
    window: int
    test_start: int
    sample_rate: float

    def at_rate(
        self, sample_rate: float, length: int | None = None, split: int | None = None
    ) -> tuple[torch.Tensor, int, int]:
        """``(starts, window, test_start)`` in samples at another rate (a resampled recording of
        ``length`` samples, when given, whose test span starts at ``split``, when given: the spans may be
        resampled apart). Test windows keep their distance from the split. Rounding never moves a window
        across the split or past the end: a window that would reach one sample over is moved back."""
        scale = sample_rate / self.sample_rate
        window = round(self.window * scale)
        test_start = round(self.test_start * scale) if split is None else split
        train_starts = (self.starts.double() * scale).round().long().clamp_max(test_start - window)
        test_starts = test_start + ((self.starts - self.test_start).double() * scale).round().long()
        starts = torch.where(self.is_test, test_starts.clamp_min(test_start), train_starts)
        if length is not None:
            starts = starts.clamp_max(length - window)
        return starts, window, test_start

    def counts(self) -> dict[str, int]:
        train = ~self.is_test
        return {
            "train_stimulus": int(self.labels[train].sum()),
            "train_random": int((1 - self.labels[train]).sum()),
            "test_stimulus": int(self.labels[self.is_test].sum()),
            "test_random": int((1 - self.labels[self.is_test]).sum()),
        }


def stimulus_locked_task(
    recording: EEGRecording,
    labels: Sequence[str] = ("square",),
    *,
    window_seconds: float = 1.0,
    offset_seconds: float = 0.0,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> WindowTask:
    """Windows starting ``offset_seconds`` after each event labelled one of ``labels`` (class 1) against as
    many random windows (class 0) that overlap no stimulus-locked window and no other random window.

    The recording is split by time: the last ``test_fraction`` of it is the test span. Windows that would
    cross the split (or the recording's ends) are dropped, and the random windows of each span are drawn
    inside it, as many as that span has stimulus windows, so both splits are balanced and no training
    window shares a sample with a test window. ``seed`` picks the random windows.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    rate = recording.sample_rate
    window = round(window_seconds * rate)
    if window < 1:
        raise ValueError(f"window_seconds={window_seconds} is shorter than one sample at {rate:g} Hz")
    length = recording.data.shape[1]
    test_start = round(length * (1.0 - test_fraction))
    offset = round(offset_seconds * rate)
    events = recording.events_labelled(*labels)
    if not events:
        found = sorted({e.label for e in recording.events})
        raise ValueError(
            f"no events labelled {list(labels)} in {recording.path or 'the recording'}; found {found}"
        )
    onsets = np.array([e.onset + offset for e in events], dtype=np.int64)
    # every stimulus window, kept or not, is off limits to random windows
    blocked = np.zeros(length + 1, dtype=np.int64)
    for s in onsets:
        lo, hi = max(s, 0), min(s + window, length)
        if lo < hi:
            blocked[lo:hi] = 1

    rng = np.random.default_rng(seed)
    starts, classes, test = [], [], []
    for lo, hi, is_test in ((0, test_start, False), (test_start, length, True)):
        stim = [int(s) for s in onsets if lo <= s and s + window <= hi]
        free = blocked.copy()
        chosen: list[int] = []
        candidates = rng.permutation(np.arange(lo, max(hi - window + 1, lo)))
        for s in candidates:
            if len(chosen) == len(stim):
                break
            if free[s : s + window].any():
                continue
            chosen.append(int(s))
            free[s : s + window] = 1
        if len(chosen) < len(stim):
            raise ValueError(
                f"only {len(chosen)} random {window}-sample windows fit between the {len(stim)} stimulus "
                f"windows of the {'test' if is_test else 'training'} span; use shorter windows"
            )
        for s, c in sorted([(s, 1) for s in stim] + [(s, 0) for s in chosen]):
            starts.append(s)
            classes.append(c)
            test.append(is_test)
    return WindowTask(
        starts=torch.tensor(starts, dtype=torch.long),
        labels=torch.tensor(classes, dtype=torch.long),
        is_test=torch.tensor(test, dtype=torch.bool),
        window=window,
        test_start=test_start,
        sample_rate=rate,
    )


# --------------------------------------------------------------------------------------------------
# Token embeddings


def codebook_vectors(model: nn.Module) -> list[torch.Tensor] | None:
    """The vectors a tokenizer's ids stand for, one ``[K_i, D_i]`` tensor per codebook, or None.

    The protocol: a tokenizer may define ``codebook_vectors()`` returning that list. Otherwise the
    ``zoo.quantizers.VectorQuantizer`` modules it contains are used, in module order, when their sizes
    match ``model.codebook_sizes`` (a single VQ, or a residual VQ's stages).
    """
    if callable(getattr(model, "codebook_vectors", None)):
        return [v.detach().float().cpu() for v in model.codebook_vectors()]
    from zoo.quantizers.vq import VectorQuantizer

    found = [m for m in model.modules() if isinstance(m, VectorQuantizer)]
    sizes = list(getattr(model, "codebook_sizes", ()))
    if found and [m.codebook_size for m in found] == sizes:
        return [m.output_codes().detach().float().cpu() for m in found]
    return None


class TokenEmbedding(nn.Module):
    """Ids ``[N, (K,) C, T]`` -> vectors ``[N, C, T, D]``: each codebook's vectors (frozen) or, without
    them, a learned ``nn.Embedding`` of ``dim`` per codebook. Codebooks of one width are summed, which for
    a residual VQ gives the quantized vector itself (and is BioCodec's downstream input); codebooks of
    different widths are concatenated, each standardised so none dominates by scale."""

    def __init__(self, codebook_sizes: Sequence[int], vectors: list[torch.Tensor] | None, dim: int = 8):
        super().__init__()
        if vectors is None:
            tables = [nn.Embedding(size, dim) for size in codebook_sizes]
        else:
            tables = [nn.Embedding.from_pretrained(v.float(), freeze=True) for v in vectors]
        widths = {t.embedding_dim for t in tables}
        self.concatenate = len(widths) > 1
        if self.concatenate:
            for t in tables:
                w = t.weight.data
                t.weight.data = (w - w.mean(0)) / w.std(0).clamp_min(1e-6) if len(w) > 1 else w
        self.tables = nn.ModuleList(tables)
        self.dim = sum(t.embedding_dim for t in tables) if self.concatenate else tables[0].embedding_dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if len(self.tables) == 1:
            return self.tables[0](ids)
        parts = [table(ids[:, k]) for k, table in enumerate(self.tables)]
        return torch.cat(parts, -1) if self.concatenate else torch.stack(parts).sum(0)


def token_embeddings(model: nn.Module, tokens: Tokens | torch.Tensor, dim: int = 8) -> torch.Tensor:
    """Vectors ``[..., D]`` for a tokenizer's ids ``[B, (K,) ...]``: its codebook vectors where
    :func:`codebook_vectors` finds them, else a randomly initialised ``nn.Embedding`` of ``dim`` per
    codebook (what a classifier would then learn); codebooks combine as in :class:`TokenEmbedding`."""
    ids = tokens.ids if isinstance(tokens, Tokens) else tokens
    return TokenEmbedding(model.codebook_sizes, codebook_vectors(model), dim)(ids)


# --------------------------------------------------------------------------------------------------
# Classifiers


class PooledLinearProbe(nn.Module):
    """A linear probe: features ``[N, C, T, D]`` averaged over ``time_bins`` equal stretches of time, each
    standardised with training-set statistics, then one linear layer (logistic regression). ``embed``
    maps ids to features first (for tokens); its learned tables, if any, train with the probe."""

    def __init__(self, features: int, channels: int, classes: int, time_bins: int, embed: nn.Module | None):
        super().__init__()
        self.embed = embed
        self.time_bins = time_bins
        size = channels * time_bins * features
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("std", torch.ones(size))
        self.linear = nn.Linear(size, classes)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) if self.embed is not None else x  # [N, C, T, D]
        n, c, t, d = h.shape
        h = F.adaptive_avg_pool1d(h.permute(0, 1, 3, 2).reshape(n, c * d, t), self.time_bins)
        return h.reshape(n, c, d, -1).permute(0, 1, 3, 2).reshape(n, -1)

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        h = self.pooled(x)
        self.mean.copy_(h.mean(0))
        self.std.copy_(h.std(0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((self.pooled(x) - self.mean) / self.std)


def _sinusoids(length: int, dim: int) -> torch.Tensor:
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq)[:, : dim // 2]
    return pe


class TimeChannelTransformer(nn.Module):
    """BioCodec's downstream shape, small: features ``[N, C, T, D]`` -> linear to ``d_model`` -> a
    Transformer layer over time (each channel, sinusoidal time positions) -> a layer over channels (each
    frame, sinusoidal channel positions) -> mean over time -> channels flattened -> dropout -> linear.
    Inputs are standardised per feature with training-set statistics; ``embed`` maps ids first."""

    def __init__(
        self,
        features: int,
        channels: int,
        classes: int,
        *,
        d_model: int = 16,
        heads: int = 4,
        ff: int = 32,
        dropout: float = 0.2,
        embed: nn.Module | None = None,
    ):
        super().__init__()
        self.embed = embed
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))
        self.project = nn.Linear(features, d_model)

        def layer() -> nn.Module:
            return nn.TransformerEncoderLayer(
                d_model, heads, ff, dropout, activation="gelu", batch_first=True, norm_first=True
            )

        self.time_layer, self.channel_layer = layer(), layer()
        self.register_buffer("channel_pe", _sinusoids(channels, d_model), persistent=False)
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(channels * d_model, classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x) if self.embed is not None else x

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        h = self.features(x).reshape(-1, self.mean.numel())
        self.mean.copy_(h.mean(0))
        self.std.copy_(h.std(0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.project((self.features(x) - self.mean) / self.std)  # [N, C, T, d]
        n, c, t, d = h.shape
        h = h + _sinusoids(t, d).to(h)
        h = self.time_layer(h.reshape(n * c, t, d)).reshape(n, c, t, d)
        h = h.transpose(1, 2) + self.channel_pe.to(h)
        h = self.channel_layer(h.reshape(n * t, c, d)).reshape(n, t, c, d)
        return self.head(h.mean(1).reshape(n, c * d))


def fit_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 150,
    lr: float = 3e-3,
    weight_decay: float = 1e-2,
    batch_size: int = 32,
    label_smoothing: float = 0.1,
    seed: int = 0,
) -> nn.Module:
    """Train with AdamW and label-smoothed cross-entropy on shuffled mini-batches (BioCodec's recipe,
    shortened); the model's ``calibrate`` first sets its input standardisation from ``x``."""
    torch.manual_seed(seed)
    if hasattr(model, "calibrate"):
        model.calibrate(x)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            batch = order[i : i + batch_size]
            loss = F.cross_entropy(model(x[batch]), y[batch], label_smoothing=label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def _scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    predicted = model(x).argmax(-1)
    return {
        "balanced_accuracy": balanced_accuracy(y, predicted),
        "accuracy": float((predicted == y).double().mean()),
        "kappa": cohen_kappa(y, predicted),
    }


def summarise_runs(runs: Sequence[dict[str, float]], test_items: int) -> dict[str, Any]:
    """Mean and spread over seeds, and the 95 % Wilson interval of the mean accuracy for ``test_items``
    test windows (one seed's test set, not the seeds pooled: the seeds share their stimulus windows, so
    pooling would overstate the evidence). The tasks' test sets are balanced, so accuracy and balanced
    accuracy are the same number and the interval is the balanced accuracy's too."""
    accuracy = float(np.mean([r["accuracy"] for r in runs]))
    low, high = wilson_interval(accuracy, test_items)
    return {
        "balanced_accuracy": float(np.mean([r["balanced_accuracy"] for r in runs])),
        "balanced_accuracy_std": float(np.std([r["balanced_accuracy"] for r in runs])),
        "accuracy": accuracy,
        "ci_low": low,
        "ci_high": high,
        "ci": "Wilson 95 % (accuracy, test windows)",
        "test_windows": test_items,
        "kappa": float(np.mean([r["kappa"] for r in runs])),
        "seeds": len(runs),
        "runs": [dict(r) for r in runs],
    }


def _run_heads(
    name: str,
    inputs: torch.Tensor,
    task: WindowTask,
    make: dict[str, Callable[[], nn.Module]],
    seeds: Sequence[int],
    fit: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    rows = []
    train, test = ~task.is_test, task.is_test
    for head, build in make.items():
        runs = []
        for seed in seeds:
            torch.manual_seed(seed)
            model = fit_classifier(build(), inputs[train], task.labels[train], seed=seed, **fit.get(head, {}))
            runs.append(_scores(model, inputs[test], task.labels[test]))
        rows.append({"model": name, "classifier": head, **summarise_runs(runs, int(test.sum()))})
    return rows


# Training settings per head: the probe is convex and small, so full-batch-like steps; the Transformer
# follows BioCodec's downstream optimiser settings (lr 1e-3 range, weight decay 1e-2).
_FIT = {"linear": {"epochs": 100, "lr": 1e-2, "weight_decay": 1e-1}, "transformer": {"epochs": 30}}


def evaluate_raw(
    recording: EEGRecording,
    task: WindowTask,
    *,
    time_bins: int = 4,
    patch_seconds: float = 0.125,
    seeds: Sequence[int] = (0,),
    heads: Sequence[str] = ("linear", "transformer"),
) -> list[dict[str, Any]]:
    """The baseline: the same heads on the raw signal. The linear probe sees each channel averaged over
    ``time_bins`` stretches of the window (a downsampled waveform); the Transformer sees patches of
    ``patch_seconds`` as its frames."""
    starts, window, _ = task.at_rate(recording.sample_rate)
    data = recording.data.float()
    windows = torch.stack([data[:, s : s + window] for s in starts.tolist()])  # [N, C, L]
    patch = max(1, round(patch_seconds * recording.sample_rate))
    frames = window // patch
    patches = windows[..., : frames * patch].reshape(len(windows), data.shape[0], frames, patch)
    samples = windows[..., None]  # [N, C, L, 1]
    channels = data.shape[0]
    make = {
        "linear": lambda: PooledLinearProbe(1, channels, 2, time_bins, None),
        "transformer": lambda: TimeChannelTransformer(patch, channels, 2),
    }
    inputs = {"linear": samples, "transformer": patches}
    rows = []
    for head in heads:
        rows += _run_heads("raw", inputs[head], task, {head: make[head]}, seeds, _FIT)
    return rows


def tokenize_recording(model: nn.Module, data: torch.Tensor) -> Tokens:
    """Tokens of a whole recording ``[C, T]`` at the model's rate, windows without overlap."""
    return model.encode(data[None].float(), overlap=0.0)


@dataclass(frozen=True)
class FrameGeometry:
    """Where a tokenizer's frames sit inside one of its windows of ``window`` samples: frame ``f`` (of
    ``frames``) covers samples ``[offset + f * hop, offset + f * hop + extent)``. ``offset`` is negative
    for a centred STFT (its first frames reach into padding); frames that reach outside the window see
    padding, not signal, and are never handed to a classifier."""

    hop: int
    offset: int
    extent: int
    frames: int
    window: int

    def start(self, frame: int) -> int:
        return self.offset + frame * self.hop

    @property
    def first_whole(self) -> int:
        """The first frame that lies wholly inside the window."""
        return max(0, -(self.offset // self.hop))

    @property
    def whole(self) -> int:
        """How many consecutive frames, from :attr:`first_whole`, lie wholly inside the window."""
        last = min(self.frames - 1, (self.window - self.extent - self.offset) // self.hop)
        return max(0, last - self.first_whole + 1)

    def frames_within(self, length: int) -> int:
        """Frames that fit wholly inside ``length`` samples when the first starts at its first sample."""
        if length < self.extent:
            raise ValueError(
                f"a {length}-sample task window is shorter than one token frame ({self.extent} samples): "
                "use longer windows"
            )
        return (length - self.extent) // self.hop + 1


def frame_geometry(model: nn.Module) -> FrameGeometry:
    """The :class:`FrameGeometry` of an ``EEGTokenizer``: an STFT tokenizer (one with ``n_fft``) has
    frames of ``n_fft`` samples every ``hop_length``, shifted back by ``n_fft // 2`` when ``center`` is
    set (``torch.stft``'s centring); a convolutional codec's frame ``f`` stands for its hop
    ``[f * hop, (f + 1) * hop)``."""
    hop = int(model.hop_length)
    n_fft = getattr(model, "n_fft", None)
    if n_fft is not None:
        offset = -(int(n_fft) // 2) if getattr(model, "center", False) else 0
        extent = int(n_fft)
    else:
        offset, extent = 0, hop
    geometry = FrameGeometry(hop, offset, extent, int(model.frames_per_window), int(model.window_samples))
    if geometry.whole == 0:
        raise ValueError(
            f"{type(model).__name__}: no token frame lies wholly inside its {geometry.window}-sample window"
        )
    return geometry


def recording_statistics(
    model: nn.Module, data: torch.Tensor, end: int | None = None
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The per-channel ``(offset, gain)`` ``[C]`` a tokenizer that normalises whole recordings would take,
    from ``data [C, T]``'s samples before ``end`` only (the training span), so nothing of the test span
    reaches any token; None for tokenizers that normalise each window on its own."""
    if getattr(model, "normalise_windows", False):
        return None
    span = data[:, :end] if end is not None else data
    if span.shape[-1] == 0:
        raise ValueError("the training span is empty: no samples to take normalisation statistics from")
    return model.channel_statistics(span.float())


@torch.no_grad()
def window_ids(
    model: nn.Module,
    data: torch.Tensor,
    starts: torch.Tensor,
    window: int,
    *,
    split: int | None = None,
    statistics: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The token frames of each task window ``[s, s + window)`` of ``data [C, T]`` (at the model's rate):
    ids ``[N, (K,) C, n]``, exactly the ``n`` frames (:meth:`FrameGeometry.frames_within`) that lie
    wholly inside the window, the first starting at ``s``, in time order.

    A recording tokenized on one fixed grid cannot give that: its frames start at multiples of the hop
    from each tokenizer window's start, and an STFT tokenizer's grid has gaps at window boundaries, so a
    task window would get frames up to a frame late. Here every task window is tokenized with its own
    tokenizer windows, placed so that a frame starts at ``s`` (the first window starts at ``s`` or, near
    the end of its span, a whole number of hops earlier); later windows follow at the stride that keeps
    the frames one hop apart, so windows longer than a tokenizer window work too.

    ``split`` (the test span's first sample) cuts the recording in two spans: a tokenizer window never
    reads a sample of the other span (those positions are zero), per-window statistics
    (``normalise_windows``) come from the window's own samples inside its span, and per-recording
    statistics are ``statistics`` or, by default, :func:`recording_statistics` of the training span.
    """
    geometry = frame_geometry(model)
    hop, per_window = geometry.hop, geometry.whole
    stride = per_window * hop  # consecutive tokenizer windows continue each other's frames
    n = geometry.frames_within(window)
    length = data.shape[-1]
    data = data.float()
    if statistics is None:
        statistics = recording_statistics(model, data, split)
    source = data if statistics is None else model.normalise(data, statistics[0], statistics[1])

    positions = torch.arange(geometry.window)
    segments, picks = [], []  # picks[i]: (tokenizer window, frame) of each of task window i's frames
    for s in starts.tolist():
        if split is None:
            lo, hi = 0, length
        else:
            lo, hi = (0, split) if s < split else (split, length)
        if s < lo or s + window > hi:
            raise ValueError(
                f"the task window [{s}, {s + window}) leaves its span [{lo}, {hi}) of the {length}-sample recording"
            )
        chosen = 0
        for shift in range(per_window):  # frames skipped at the front, to keep the windows in the span
            first = s - geometry.start(geometry.first_whole + shift)
            count = -(-(shift + n) // per_window)
            if first < lo:
                break
            if first + (count - 1) * stride + geometry.window <= hi:
                chosen = shift
                break
        first = s - geometry.start(geometry.first_whole + chosen)
        count = -(-(chosen + n) // per_window)
        base = len(segments)
        for w in range(count):
            index = first + w * stride + positions
            inside = (index >= lo) & (index < hi)
            segment = source[:, index.clamp(0, length - 1)] * inside
            if statistics is None:  # the window's own statistics, from its samples inside the span
                offset, gain = model.channel_statistics(segment[:, inside])
                segment = model.normalise(segment, offset, gain) * inside
            segments.append(segment)
        frames = [chosen + j for j in range(n)]
        picks.append([(base + g // per_window, geometry.first_whole + g % per_window) for g in frames])

    windows = torch.stack(segments)  # [W, C, L]
    channels = windows.shape[1]
    flat = windows.reshape(-1, 1, geometry.window)
    ids = torch.cat(
        [model.encode_windows(chunk.to(model.device)).cpu() for chunk in flat.split(model.window_batch)]
    )
    multi = ids.ndim == 3  # [windows x channels, K, F] for several codebooks
    ids = ids.reshape(len(segments), channels, -1, ids.shape[-1])  # [W, C, K, F]
    which = torch.tensor(picks, dtype=torch.long)  # [N, n, 2]: tokenizer window, frame
    out = ids[which[..., 0], :, :, which[..., 1]].permute(0, 3, 2, 1)  # [N, n, C, K] -> [N, K, C, n]
    return out if multi else out[:, 0]


def prepare_spans(
    model: nn.Module, recording: EEGRecording, split: int, channels: list[str] | None = None
) -> tuple[torch.Tensor, int]:
    """``(data [C, T'], split')``: the training span (samples before ``split``) and the test span run
    through ``model.prepare`` apart and joined, ``split'`` the first test sample at the model's rate.
    Apart, because preparation reaches across time: zero-phase filters and FFT resampling (TFM's)
    would otherwise carry test-span samples into the training span's last seconds (or its whole)."""
    length = recording.data.shape[-1]
    if not 0 < split < length:
        raise ValueError(f"the split {split} must fall inside the {length}-sample recording")
    parts = [
        EEGRecording(recording.data[:, lo:hi], recording.sample_rate, recording.channel_names, recording.path)
        for lo, hi in ((0, split), (split, length))
    ]
    train, test = (model.prepare(part, channels=channels)[0] for part in parts)
    return torch.cat([train, test], -1), train.shape[-1]


def evaluate_tokenizer(
    model: nn.Module,
    recording: EEGRecording,
    task: WindowTask,
    *,
    name: str = "tokenizer",
    time_bins: int = 4,
    embedding_dim: int = 8,
    seeds: Sequence[int] = (0,),
    heads: Sequence[str] = ("linear", "transformer"),
    channels: list[str] | None = None,
) -> dict[str, Any]:
    """Classification rows (the heads on token embeddings), reconstruction metrics and codebook usage of
    the test span, for any ``EEGTokenizer``. Returns ``{"rows", "reconstruction", "usage", "original",
    "reconstructed", "sample_rate", "embeddings"}``; the last pair of signals is the test span at the
    model's rate, for plots.

    Each task window gets exactly the frames inside it (:func:`window_ids`); the spans are prepared
    apart (:func:`prepare_spans`) and normalised with statistics of the training span only, so no test
    sample reaches a training feature. The reconstruction is of the test span tokenized
    on its own, as a user would tokenize a new recording (its statistics are the test span's own)."""
    model = model.eval()
    data, split = prepare_spans(model, recording, task.test_start, channels)  # [C, T] at the model's rate
    rate = float(model.sample_rate)
    starts, window, test_start = task.at_rate(rate, data.shape[-1], split)
    ids = window_ids(model, data, starts, window, split=test_start)
    time_bins = min(time_bins, ids.shape[-1])  # no more bins than frames (TFM: one frame per second)
    vectors = codebook_vectors(model)
    sizes = list(model.codebook_sizes)
    c = data.shape[0]

    def embed() -> TokenEmbedding:
        return TokenEmbedding(sizes, vectors, embedding_dim)

    dim = embed().dim
    make = {
        "linear": lambda: PooledLinearProbe(dim, c, 2, time_bins, embed()),
        "transformer": lambda: TimeChannelTransformer(dim, c, 2, embed=embed()),
    }
    label = f"{name} ({'codebook' if vectors is not None else 'learned'} emb.)"
    rows = _run_heads(label, ids, task, {h: make[h] for h in heads}, seeds, _FIT)

    test_span = data[:, test_start:]
    test_tokens = tokenize_recording(model, test_span)
    with torch.no_grad():
        recon = model.decode(test_tokens)[0]
    return {
        "rows": rows,
        "reconstruction": reconstruction_metrics(test_span, recon, rate),
        "usage": codebook_usage(test_tokens),
        "original": test_span,
        "reconstructed": recon,
        "sample_rate": rate,
        "embeddings": "codebook" if vectors is not None else "learned",
    }

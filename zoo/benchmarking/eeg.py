"""EEG benchmark: bits per channel-second against NMSE, correlation and band-power error, beside
decimation + uniform quantization and lossless FLAC.

Items are whole recordings (``zoo.io.read_eeg``), measured one at a time since montages and lengths
differ. Channels that no codec should be scored on are left out and the report says which: those
``zoo.io.eeg.bad_channels`` rejects (flat, clipped, stair-stepped status lines) and trigger, status and
accelerometer lines, which are not biosignals.

Learned rows follow ``zoo encode``: ``model.prepare`` (the model's rate, and TFM-Tokenizer's filters),
``encode``, ``decode``, and the reconstruction is compared with the *prepared* recording. Their rate
counts the token ids at log2 of the codebook sizes and the offset and gain that ``Tokens.side`` carries
(per channel, or per window and channel for TFM-Tokenizer) at 16 bits each, since a decode needs them.
Classic codecs compress each recording at its own rate, in microvolts, and are scored against it:
what a user would otherwise store.

NMSE is the primary metric: it is the distortion a rate buys, and it sees errors of gain and offset
that Pearson correlation, invariant to both, forgives (a decoder that halves every amplitude keeps
r = 1). Correlation and the per-band power errors are reported beside it.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import MediaError
from ..evaluation.eeg import CANONICAL_BANDS, reconstruction_metrics
from ..io.eeg import EEG_SUFFIXES, EEGRecording, bad_channels, read_eeg
from ..tokenizer import Tokenizer
from ..tokens import Tokens
from .rate import codebook_summary, token_rate
from .report import Metric, Row
from .suite import Items, PeakMemory, Suite, Timer, shared_data

__all__ = [
    "DECIMATE_FAMILY",
    "FLAC_FAMILY",
    "EEGItem",
    "EEGSuite",
    "decimate_quantize",
    "eeg_metrics",
    "flac_bits",
]

DECIMATE_FAMILY = "decimate+quantize"
FLAC_FAMILY = "FLAC"
SIDE_FLOAT_BITS = 16  # each learned offset / gain, as the brief's convention for side statistics
RANGE_BITS = 64  # the classic quantizer's per-channel [min, max], two float32 (exact: offsets reach 1e5 uV)
FLAC_STEP_UV = 0.1  # FLAC stores the signal rounded to this step, as 24-bit integers
# The classic codec's reduced sample rates (Hz) and bits per sample that the rate search tries.
DECIMATED_RATES = (4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
QUANTIZER_BITS = range(1, 17)
RATE_LADDER = (16, 32, 64, 128, 256, 512, 1024, 2048)  # bit/ch·s, operating points besides the learned rates
CHANNEL_BLOCK = 1 << 20  # samples (channels x time) per metric call, so long recordings stay bounded
SHOWN_CHANNELS = 3  # traces in the samples picture
BAND_METRICS = {name: f"{name} err" for name in CANONICAL_BANDS}
# Lines recorded beside the EEG that are not biosignals: triggers, status words, accelerometers.
NOT_BIOSIGNAL = re.compile(
    r"^(status|trigger|trig|stim\w*|sti\s?\d*|acc\w*|accel\w*|annotations?)$", re.IGNORECASE
)


@dataclass
class EEGItem:
    """One recording: where it is, the channels measured and those left out (with why)."""

    path: Path
    channels: list[str]
    sample_rate: float
    samples: int
    dropped: dict[str, str] = field(default_factory=dict)

    @property
    def channel_seconds(self) -> float:
        return len(self.channels) * self.samples / self.sample_rate

    def read(self) -> EEGRecording:
        """The recording with only the measured channels (read again each time: memory stays per item)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # signals at other rates: listed in ``dropped`` already
            rec = read_eeg(self.path)
        return rec.pick(self.channels) if len(self.channels) != len(rec.channel_names) else rec


def _listed(dropped: dict[str, str]) -> str:
    """``{channel: why}`` as "A, B (why); C (other why)"."""
    by_reason: dict[str, list[str]] = {}
    for name, why in dropped.items():
        by_reason.setdefault(why, []).append(name)
    return "; ".join(f"{', '.join(names)} ({why})" for why, names in by_reason.items())


def _scan(path: Path) -> EEGItem:
    """Read ``path`` once to choose its channels; a ``MediaError`` when none is left to measure."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # other-rate EDF signals: left out, which is what is wanted
        rec = read_eeg(path)
    dropped = {name: "not a biosignal" for name in rec.channel_names if NOT_BIOSIGNAL.match(name.strip())}
    dropped.update(bad_channels(rec.data, rec.channel_names))
    dropped.update({name: f"stored at {rate:g} Hz" for name, rate in rec.other_rate_channels.items()})
    kept = [name for name in rec.channel_names if name not in dropped]
    if not kept:
        raise MediaError(path, f"no usable channel ({_listed(dropped)})")
    return EEGItem(path, kept, rec.sample_rate, rec.data.shape[-1], dropped)


# --------------------------------------------------------------------------------------------------
# Metrics


def _channel_blocks(shape: tuple[int, ...] | torch.Size) -> Iterator[slice]:
    """Runs of whole channels of a ``[C, T]`` signal, about ``CHANNEL_BLOCK`` samples each."""
    channels, length = shape
    step = max(1, CHANNEL_BLOCK // max(length, 1))
    for start in range(0, channels, step):
        yield slice(start, start + step)


def eeg_metrics(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: float) -> dict[str, float]:
    """NMSE, Pearson r, mean band-power error and the error of each canonical band of one recording
    ``[C, T]`` against its reconstruction, each averaged over channels.

    NMSE and the band-power errors are ``zoo.evaluation.eeg.reconstruction_metrics``' (so the numbers
    match the downstream benchmark's); the correlation is torchmetrics' ``pearson_corrcoef`` per channel
    (a constant reconstruction counts as 0). Channels go through in blocks of about ``CHANNEL_BLOCK``
    samples (whole channels), so the float64 copies the metrics make (Welch segments, about 20 in all) are
    of a block, not of the recording: memory grows with one channel's length only. A band that
    starts at or above the Nyquist frequency is NaN."""
    from torchmetrics.functional import pearson_corrcoef

    if reference.shape != estimate.shape or reference.ndim != 2:
        raise ValueError(
            f"expected a reference and estimate [C, T] of one shape, got {tuple(reference.shape)} "
            f"and {tuple(estimate.shape)}"
        )
    channels = reference.shape[0]
    sums: dict[str, float] = {}
    for rows in _channel_blocks(reference.shape):
        ref = reference[rows].detach().cpu().double()
        est = estimate[rows].detach().cpu().double()
        weight = ref.shape[0]
        found = reconstruction_metrics(ref, est, sample_rate)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a constant reconstruction: NaN, counted as 0 below
            r = pearson_corrcoef(est.T, ref.T).reshape(-1)
        r = torch.nan_to_num(r, nan=0.0)
        values = {"NMSE": found["nmse"], "Pearson r": float(r.mean())}
        bands = found["band_power_error"]
        values["band-power err"] = float(np.mean(list(bands.values()))) if bands else math.nan
        for band, name in BAND_METRICS.items():
            values[name] = bands.get(band, math.nan)
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value * weight
    return {name: total / channels for name, total in sums.items()}


def _mean_metrics(per_item: list[dict[str, float]]) -> dict[str, float]:
    """Each metric averaged over recordings (every recording weighs the same); NaN where any is NaN."""
    return {name: float(np.mean([m[name] for m in per_item])) for name in per_item[0]}


# --------------------------------------------------------------------------------------------------
# Classic codecs


def _ratio(rate: float, target: float) -> tuple[int, int]:
    """``(up, down)`` with ``rate * up / down`` = ``target`` (small terms)."""
    fraction = (
        Fraction(target).limit_denominator(1000) / Fraction(rate).limit_denominator(1000)
    ).limit_denominator(1000)
    return fraction.numerator, fraction.denominator


def _decimated_length(samples: int, rate: float, target: float) -> int:
    if target >= rate:
        return samples
    up, down = _ratio(rate, target)
    return -(-samples * up // down)  # scipy.signal.resample_poly's output length


def decimate_quantize(x: np.ndarray, rate: float, target: float, bits: int) -> tuple[np.ndarray, int]:
    """``x [C, T]`` at ``rate`` Hz resampled down to ``target`` Hz (``scipy.signal.resample_poly``'s
    anti-aliasing FIR; not at all when ``target >= rate``), each channel quantized uniformly to ``bits``
    bits between its own minimum and maximum (2 ** bits levels, both ends included), dequantized and
    resampled back. Returns the reconstruction ``[C, T]`` and the bits it takes: every channel's samples
    packed at ``bits`` bits into whole bytes, plus its range as two float32."""
    from scipy.signal import resample_poly

    channels, length = x.shape
    low = np.asarray(x, dtype=np.float64)
    up = down = 1
    if target < rate:
        up, down = _ratio(rate, target)
        low = resample_poly(low, up, down, axis=-1)
    lo = low.min(-1, keepdims=True).astype(np.float32).astype(np.float64)
    hi = low.max(-1, keepdims=True).astype(np.float32).astype(np.float64)
    step = (hi - lo) / (2**bits - 1)
    step[step == 0] = 1.0
    levels = np.clip(np.round((low - lo) / step), 0, 2**bits - 1)
    restored = lo + levels * step
    if up != down:
        restored = resample_poly(restored, down, up, axis=-1)[:, :length]
        if restored.shape[-1] < length:
            restored = np.pad(restored, ((0, 0), (0, length - restored.shape[-1])), mode="edge")
    used = channels * (8 * -(-low.shape[-1] * bits // 8) + RANGE_BITS)
    return restored, used


def flac_bits(x: np.ndarray, rate: float) -> tuple[np.ndarray, int]:
    """``x [C, T]`` (microvolts) rounded to ``FLAC_STEP_UV`` and stored as 24-bit FLAC, one mono file per
    channel: the rounded signal and the files' bytes in bits, headers included. 0.1 uV is about the
    resolution EEG amplifiers record at (EDF files commonly store 16 bits at 0.03-0.5 uV per step), so
    this is the lossless rate of the recording as stored; a ``ValueError`` when a value leaves 24 bits."""
    import soundfile

    steps = np.round(np.asarray(x, dtype=np.float64) / FLAC_STEP_UV)
    if np.abs(steps).max(initial=0) >= 2**23:
        raise ValueError(
            f"values beyond +-{2**23 * FLAC_STEP_UV:g} uV do not fit 24-bit FLAC at {FLAC_STEP_UV} uV"
        )
    total = 0
    for channel in steps:
        buffer = io.BytesIO()
        # libsndfile's PCM_24 takes int32 with the sample in the top 24 bits
        soundfile.write(
            buffer, (channel.astype(np.int32) << 8), max(1, round(rate)), format="FLAC", subtype="PCM_24"
        )
        total += 8 * len(buffer.getvalue())  # soundfile rewinds to patch the header on close
    return steps * FLAC_STEP_UV, total


def _scored(
    x: torch.Tensor, rate: float, codec: Callable[[np.ndarray], tuple[np.ndarray, int]]
) -> tuple[dict[str, float], int]:
    """:func:`eeg_metrics` of ``codec`` on the recording ``x [C, T]`` and the bits it took, a block of
    channels at a time (the codecs work per channel), so float64 copies of a long recording never coexist."""
    sums: dict[str, float] = {}
    used = 0
    for rows in _channel_blocks(x.shape):
        reference = x[rows].double()
        restored, bits = codec(reference.numpy())
        used += bits
        for name, value in eeg_metrics(reference, torch.from_numpy(restored), rate).items():
            sums[name] = sums.get(name, 0.0) + value * reference.shape[0]
    return {name: total / x.shape[0] for name, total in sums.items()}, used


def _decimate_at(x: np.ndarray, *, rate: float, setting: tuple[float, int]) -> tuple[np.ndarray, int]:
    return decimate_quantize(x, rate, *setting)


def _rate_of(items: list[EEGItem], target: float, bits: int) -> float:
    """Bits per channel-second ``decimate_quantize`` spends on ``items``, known from their shapes alone."""
    used = sum(
        len(i.channels)
        * (8 * -(-_decimated_length(i.samples, i.sample_rate, target) * bits // 8) + RANGE_BITS)
        for i in items
    )
    return used / sum(i.channel_seconds for i in items)


# --------------------------------------------------------------------------------------------------
# The suite


class EEGSuite(Suite):
    """EEG recordings: rate in bits per channel-second (``bit/ch·s``); NMSE (primary), Pearson r and
    relative Welch band-power errors; decimation + uniform quantization and FLAC as classic codecs."""

    modality = "eeg"
    rate_unit = "bit/ch·s"
    metrics: ClassVar[list[Metric]] = [
        Metric("NMSE", higher_is_better=False, digits=3),
        Metric("Pearson r", higher_is_better=True, digits=3),
        Metric("band-power err", higher_is_better=False, digits=3),
        *(Metric(name, higher_is_better=False, digits=3) for name in BAND_METRICS.values()),
    ]
    default_limit = 100  # recordings

    def __init__(self) -> None:
        self.learned_rate: float | None = None
        self._sample: tuple[torch.Tensor, torch.Tensor, float] | None = None  # prepared, decoded, rate

    # ------------------------------------------------------------------ items
    def load_items(self, data: str | None, limit: int | None) -> Items:
        """Recordings of the folder or file ``data`` (default: ``eeg/`` of the shared data bundle; a name
        like ``eeglab`` picks that folder of it), in path order, the first ``limit`` readable ones.
        Unreadable files in a folder (a format that needs MNE, no usable channel) are skipped with a
        note; a single unreadable file is an error."""
        limit = self.default_limit if limit is None else limit
        if limit < 1:
            raise ValueError(f"limit must be at least 1 recording, got {limit}")
        if data is None:
            bundle = shared_data()
            if bundle is None or not (bundle / "eeg").is_dir():
                raise MediaError(
                    None,
                    "no EEG data given and no shared data bundle found (set ZOO_SHARED_DATA); "
                    "pass a folder of EEG recordings (.edf .bdf .set .npz ...)",
                )
            root, split = bundle / "eeg", "all recordings (the bundle's EEG has no test split)"
        else:  # a path, or a folder of the bundle's eeg/ by name ("eeglab", "mne_testing")
            root, split = Path(data), "all recordings"
            bundle = shared_data()
            if not root.exists() and bundle is not None and data and (bundle / "eeg" / data).exists():
                root = bundle / "eeg" / data
        if not root.exists():
            raise MediaError(root, "not found: pass an EEG recording or a folder of them")
        notes: list[str] = []
        if root.is_file():
            found = [_scan(root)]
        else:
            files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in EEG_SUFFIXES)
            found = []
            for path in files:
                if len(found) >= limit:
                    break
                try:
                    found.append(_scan(path))
                except Exception as exc:  # noqa: BLE001 (one unreadable file never costs the benchmark)
                    notes.append(f"skipped {path.relative_to(root)}: {exc}")
            if not found:
                raise MediaError(
                    root, "no readable EEG recording (" + "; ".join(notes or ["no EEG files"]) + ")"
                )
        for item in found:
            if item.dropped:
                notes.append(f"{item.path.name}: left out {_listed(item.dropped)}")
        notes += [
            (
                "learned rows are scored against the recording as the model's prepare makes it (its rate and "
                "filters); classic codecs compress and are scored against each recording at its own rate"
            ),
            (
                f"learned rates count each side statistic (offset, gain) at {SIDE_FLOAT_BITS} bits and the ids "
                "at log2 of the codebook sizes, the zero-padded last window included; classic rates count the "
                "packed samples plus each channel's range as two float32, FLAC whole files with headers"
            ),
            (
                "metrics are averaged over channels, then over recordings; band-power errors use "
                "zoo.evaluation.eeg's Welch PSD (2 s Hann segments) and bands (delta from 0.5 Hz)"
            ),
        ]
        shown = str(root) if data is not None else "shared data eeg/"
        return Items(found, shown, split, notes)

    # ------------------------------------------------------------------ learned
    def measure_learned(
        self, model: Tokenizer, items: Items, *, device: torch.device, name: str, kind: str = "learned"
    ) -> Row:
        """Prepare, encode and decode each recording on its own (montages and lengths differ, so there is
        no batch), scoring the decode against the prepared recording."""
        rate = float(model.sample_rate)
        encode_timer, decode_timer, memory = Timer(), Timer(), PeakMemory(device)
        tokens_all: list[Tokens] = []
        per_item: list[dict[str, float]] = []
        side_bits = 0
        channel_seconds = 0.0
        with torch.inference_mode():
            warm = 10 * torch.randn(
                1, 1, int(model.window_samples), generator=torch.Generator().manual_seed(0)
            )
            model.decode(model.encode(warm.to(device)))  # warm-up, untimed: one window of one channel
            for index, item in enumerate(
                tqdm(items.items, desc=f"{name} encode/decode", unit="rec", leave=False)
            ):
                x = model.prepare(item.read(), path=item.path)  # [1, C, T'] at the model's rate
                with memory.measure():
                    with encode_timer(device):
                        tokens = model.encode(x.to(device))
                    with decode_timer(device):
                        y = model.decode(tokens)[0].float().cpu()
                tokens = tokens.to("cpu")
                tokens_all.append(tokens)
                side_bits += SIDE_FLOAT_BITS * sum(int(v.numel()) for v in tokens.side.values())
                channel_seconds += x.shape[1] * x.shape[-1] / rate
                per_item.append(eeg_metrics(x[0], y, rate))
                if index == 0 and kind == "learned":  # for the picture: the channels it shows
                    self._sample = (x[0, :SHOWN_CHANNELS].clone(), y[:SHOWN_CHANNELS].clone(), rate)
        measured = token_rate(tokens_all)
        token_bits = measured.raw_bits * measured.items
        row_rate = (token_bits + side_bits) / channel_seconds
        extra: dict[str, Any] = {
            "token_rate": token_bits / channel_seconds,
            "side_rate": side_bits / channel_seconds,
            "side": f"offset and gain ({', '.join(sorted(tokens_all[0].side))}) at {SIDE_FLOAT_BITS} bits each",
            "reference": f"the recording after {type(model).__name__}.prepare, at {rate:g} Hz",
            "channel_seconds": channel_seconds,
        }
        entropy_rate = None
        if tokens_all[0].discrete:
            entropy_rate = (measured.entropy_bits * measured.items + side_bits) / channel_seconds
            extra.update(codebook_summary(tokens_all))
        else:
            extra["continuous"] = "latents counted at 16 bits per value"
        count = len(items.items)
        speed = {
            "encode rec/s": count / max(encode_timer.seconds, 1e-9),
            "decode rec/s": count / max(decode_timer.seconds, 1e-9),
            "encode ch·s/s": channel_seconds / max(encode_timer.seconds, 1e-9),
            "decode ch·s/s": channel_seconds / max(decode_timer.seconds, 1e-9),
        }
        if memory.peak_bytes is not None:
            speed["peak MiB"] = memory.peak_bytes / 2**20
        if kind == "learned":
            self.learned_rate = row_rate
        return Row(
            name,
            kind,
            row_rate,
            _mean_metrics(per_item),
            setting=f"{rate:g} Hz, {model.window_samples}-sample windows",
            entropy_rate=entropy_rate,
            speed=speed,
            extra=extra,
        )

    # ------------------------------------------------------------------ classic
    def classic_rows(self, items: Items, rates: list[float]) -> tuple[list[Row], list[str]]:
        """Decimation + uniform quantization at the operating points below, and lossless FLAC.

        A rate can be spent on samples or on bits per sample, so each target rate (``RATE_LADDER`` and every
        learned rate in ``rates``) is met the way this codec meets it best: for every reduced sample rate in
        ``DECIMATED_RATES`` (up to the recordings' own), the fewest bits per sample that reach the target,
        and of those the one with the lowest NMSE on the items (an encoder with a bit budget would search
        the same way). Each point's rate is therefore at or above its target, so every learned rate has a
        point at the same or a higher rate."""
        recs: list[EEGItem] = items.items
        targets = sorted(set(RATE_LADDER) | {float(r) for r in rates if math.isfinite(r) and r > 0})
        top = max(i.sample_rate for i in recs)
        reduced = [float(f) for f in DECIMATED_RATES if f < top] + [top]
        candidates: dict[float, list[tuple[float, int]]] = {}  # target -> (sample rate, bits)
        for target in targets:
            for hz in reduced:
                bits = next(
                    (b for b in QUANTIZER_BITS if _rate_of(recs, hz, b) >= target * (1 - 1e-12)), None
                )
                if bits is not None:
                    candidates.setdefault(target, []).append((hz, bits))
        settings = sorted({s for points in candidates.values() for s in points})
        # first pass: NMSE of every candidate, each recording read once
        errors = {s: 0.0 for s in settings}
        for item in tqdm(recs, desc="decimate+quantize search", unit="rec", leave=False):
            data = item.read().data
            for rows in _channel_blocks(data.shape):
                x = data[rows].double().numpy()
                energy = np.square(x - x.mean(-1, keepdims=True)).sum(-1)
                for s in settings:
                    y, _ = decimate_quantize(x, item.sample_rate, *s)
                    nmse = np.square(x - y).sum(-1) / energy
                    errors[s] += float(nmse.sum()) / data.shape[0] / len(recs)
        chosen = sorted(
            {min(points, key=lambda s: (errors[s], _rate_of(recs, *s))) for points in candidates.values()},
            key=lambda s: _rate_of(recs, *s),
        )
        # second pass: every metric of the chosen points, and FLAC
        skipped: list[str] = []
        try:
            import soundfile  # noqa: F401
        except ImportError:
            flac = False
            skipped.append("FLAC: the soundfile package is not installed (pip install soundfile)")
        else:
            flac = True
        scores: dict[Any, list[dict[str, float]]] = {s: [] for s in chosen}
        used: dict[Any, int] = dict.fromkeys(chosen, 0)
        if flac:
            scores[FLAC_FAMILY], used[FLAC_FAMILY] = [], 0
        for item in tqdm(recs, desc="classic codecs", unit="rec", leave=False):
            x = item.read().data
            for s in chosen:
                metrics, bits = _scored(
                    x, item.sample_rate, partial(_decimate_at, rate=item.sample_rate, setting=s)
                )
                scores[s].append(metrics)
                used[s] += bits
            if flac:
                try:
                    metrics, bits = _scored(x, item.sample_rate, partial(flac_bits, rate=item.sample_rate))
                except (ValueError, RuntimeError) as exc:
                    skipped.append(f"FLAC: {item.path.name}: {exc}")
                    del scores[FLAC_FAMILY], used[FLAC_FAMILY]
                    flac = False
                else:
                    scores[FLAC_FAMILY].append(metrics)
                    used[FLAC_FAMILY] += bits
        channel_seconds = sum(i.channel_seconds for i in recs)
        rows = []
        for s in chosen:
            hz, bits = s
            shown = "native rate" if hz >= top else f"{hz:g} Hz"
            rows.append(
                Row(
                    "decimation + uniform quantization",
                    "classic",
                    used[s] / channel_seconds,
                    _mean_metrics(scores[s]),
                    family=DECIMATE_FAMILY,
                    setting=f"{shown} x {bits} bit",
                    extra={
                        "sample_rate_hz": hz,
                        "bits": bits,
                        "targets": [t for t in targets if s in candidates[t]],
                    },
                )
            )
        if flac:
            rows.append(
                Row(
                    "FLAC (lossless at 0.1 uV)",
                    "classic",
                    used[FLAC_FAMILY] / channel_seconds,
                    _mean_metrics(scores[FLAC_FAMILY]),
                    family=FLAC_FAMILY,
                    setting=f"24-bit, {FLAC_STEP_UV} uV steps",
                    extra={"bytes": "whole mono files per channel, headers counted"},
                )
            )
        return rows, skipped

    # ------------------------------------------------------------------ picture
    def samples(
        self, model: Tokenizer, items: Items, classic: list[Row], path: Path, *, device: torch.device
    ) -> Path | None:
        """Four seconds of up to three channels of the first recording: the prepared original, the
        tokenizer's decode and decimation + quantization at the cheapest point at or above the learned rate."""
        from matplotlib.figure import Figure

        item: EEGItem = items.items[0]
        if self._sample is None:
            with torch.inference_mode():
                x = model.prepare(item.read(), path=item.path)
                y = model.decode(model.encode(x.to(device)))[0].float().cpu()
            self._sample = (x[0, :SHOWN_CHANNELS], y[:SHOWN_CHANNELS], float(model.sample_rate))
        prepared, decoded, rate = self._sample
        learned = self.learned_rate if self.learned_rate is not None else float(model.bits_per_second)
        points = sorted((r for r in classic if r.family == DECIMATE_FAMILY), key=lambda r: r.rate)
        match = next((r for r in points if r.rate >= learned), points[-1] if points else None)
        native = item.read().data[:SHOWN_CHANNELS]
        seconds = 4.0
        start = 0.0 if prepared.shape[-1] / rate < 3 * seconds else prepared.shape[-1] / rate / 2
        shown = list(range(prepared.shape[0]))
        figure = Figure(figsize=(10, 2.2 * len(shown)), layout="constrained")
        axes = figure.subplots(len(shown), 1, squeeze=False)[:, 0]
        classic_signal = None
        if match is not None:
            classic_signal, _ = decimate_quantize(
                native.double().numpy(), item.sample_rate, match.extra["sample_rate_hz"], match.extra["bits"]
            )

        def span(signal: torch.Tensor | np.ndarray, hz: float) -> tuple[np.ndarray, slice]:
            lo, hi = round(start * hz), min(round((start + seconds) * hz), signal.shape[-1])
            return np.arange(lo, hi) / hz, slice(lo, hi)

        for axis, channel in zip(axes, shown, strict=True):
            t, cut = span(prepared, rate)
            axis.plot(
                t, prepared[channel, cut].numpy(), color="black", lw=1.0, label=f"original ({rate:g} Hz)"
            )
            axis.plot(
                t,
                decoded[channel, cut].numpy(),
                color="tab:blue",
                lw=0.9,
                label=getattr(model, "arch", None) or type(model).__name__,
            )
            if classic_signal is not None and match is not None:
                tc, cut_c = span(classic_signal, item.sample_rate)
                axis.plot(
                    tc,
                    classic_signal[channel, cut_c],
                    color="tab:orange",
                    lw=0.9,
                    label=f"{DECIMATE_FAMILY} {match.setting} ({match.rate:.3g} {self.rate_unit})",
                )
            axis.set_ylabel(f"{item.channels[channel]} (uV)")
        axes[0].set_title(f"{item.path.name}: tokenizer at {learned:.3g} {self.rate_unit}")
        axes[0].legend(loc="upper right", fontsize=8)
        axes[-1].set_xlabel("time (s)")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
        return path

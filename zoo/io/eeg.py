"""EEG reading, writing and preprocessing (normalisation statistics, MNE's default FIR filters and FFT
resampling, written out so that no MNE is needed): EDF, EDF+, BDF, BDF+ and EEGLAB .set natively, NumPy arrays, and other
formats via MNE.

EDF/BDF are read by a small reader written from the format specification rather than through MNE,
so the core package needs no heavy dependency for the formats most public EEG corpora ship in,
and so that damaged files fail with a message that says what is wrong (which header field, how
many records are missing) instead of producing silently shortened or misscaled signals.

Every recording is returned in microvolts, float32 [C, T], with its events (EEGLAB ``EEG.event``,
EDF+/BDF+ annotations) as sample indices, so stimulus-locked analyses need no second reader.
"""

from __future__ import annotations

import functools
import importlib
import io
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF

from zoo._atomic import atomic_path, atomic_write_bytes
from zoo.errors import MediaError

__all__ = [
    "EEG_SUFFIXES",
    "NORMALISATIONS",
    "EEGEvent",
    "EEGRecording",
    "apply_fir",
    "bad_channels",
    "blockwise_resample",
    "channel_key",
    "channel_statistics",
    "fft_resample",
    "fir_kernel",
    "notch_kernel",
    "read_eeg",
    "write_eeg",
]

# Formats handed to MNE when it is installed (`pip install zoo[eeg]`).
_MNE_SUFFIXES = frozenset(
    {".fif", ".vhdr", ".ahdr", ".cnt", ".gdf", ".mff", ".nedf", ".eeg", ".egi", ".nxe", ".lay"}
)
# Formats read here without MNE.
NATIVE_SUFFIXES = frozenset({".edf", ".bdf", ".set", ".npy", ".npz"})
EEG_SUFFIXES = NATIVE_SUFFIXES | _MNE_SUFFIXES

# Physical dimension (as written in the header, case-insensitive) -> factor to microvolts.
# Channels in any other unit (Boolean status lines, accelerometer "G", ...) keep their own unit.
_TO_MICROVOLTS = {"uv": 1.0, "\u00b5v": 1.0, "\u03bcv": 1.0, "mv": 1e3, "v": 1e6, "nv": 1e-3}

# Largest numerator/denominator used to express a non-integer resampling ratio. torchaudio's
# kernel has about p * (q + 2 * width) taps, so this bounds its memory to a few megabytes.
_MAX_RATIO_TERM = 1000


# --------------------------------------------------------------------------------------------------
# Recording


@dataclass(frozen=True)
class EEGEvent:
    """A marked moment of a recording: ``onset`` and ``duration`` in samples of the recording it belongs to
    (0-based), ``label`` the event type ("square", "T1", an EDF+ annotation text)."""

    onset: int
    label: str
    duration: int = 0


def channel_key(name: str) -> str:
    """A channel name reduced for matching across files: case-folded, without the "EEG " type prefix,
    reference suffixes ("-REF", "-LE", "-AVG"), padding dots and spaces."""
    key = name.strip().casefold()
    key = key.removeprefix("eeg ").strip()
    for suffix in ("-ref", "-le", "-avg", "-a1", "-a2"):
        key = key.removesuffix(suffix)
    return key.strip(". ").replace(" ", "")


def _match_channels(
    names: list[str] | tuple[str, ...], labels: list[str]
) -> tuple[list[int], list[str], list[str]]:
    """Rows of `labels` that `names` pick, in order, and the names that match none or several: a name
    matches a label exactly or, failing that, after `channel_key`, as long as that identifies one label."""
    exact = {n: i for i, n in enumerate(labels)}
    loose: dict[str, list[int]] = {}
    for i, n in enumerate(labels):
        loose.setdefault(channel_key(n), []).append(i)
    rows, missing, ambiguous = [], [], []
    for name in names:
        found = [exact[name]] if name in exact else loose.get(channel_key(name), [])
        if len(found) == 1:
            rows.append(found[0])
        else:
            (ambiguous if found else missing).append(name)
    return rows, missing, ambiguous


def _unmatched(missing: list[str], ambiguous: list[str]) -> str:
    why = [f"no channel(s) {missing}"] if missing else []
    return "; ".join(why + ([f"ambiguous channel(s) {ambiguous}"] if ambiguous else []))


def _rates_listed(rates: dict[str, float]) -> str:
    """``"A1 (1 Hz), A2 (2 Hz)"``: signals with their own sample rates, for messages."""
    return ", ".join(f"{name} ({rate:g} Hz)" for name, rate in rates.items())


@dataclass
class EEGRecording:
    """A multichannel EEG signal: float32 [C, T] in microvolts, one sample rate for all channels.

    ``events`` (``EEGEvent`` or ``(onset_sample, label)`` pairs) mark stimuli, responses and annotations;
    ``pick`` keeps them and ``resample`` moves them to the new rate.

    ``other_rate_signals`` holds the signals of the file that ``data`` cannot (an EDF/BDF stores each signal
    at its own rate), by name: ``(sample_rate, samples [T'])``. They are not channels of ``data``, so
    nothing sees them unless asked for by name: ``pick`` resamples them onto the recording then.
    """

    data: torch.Tensor
    sample_rate: float
    channel_names: list[str]
    path: Path | None = field(default=None)
    events: list[EEGEvent] = field(default_factory=list)
    other_rate_signals: dict[str, tuple[float, torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.data, torch.Tensor):
            self.data = torch.as_tensor(np.asarray(self.data))
        if self.data.ndim != 2:
            raise MediaError(self.path, f"EEG data must be [C, T], got shape {tuple(self.data.shape)}")
        self.data = self.data.to(torch.float32)
        self.sample_rate = float(self.sample_rate)
        if not math.isfinite(self.sample_rate) or self.sample_rate <= 0:
            raise MediaError(self.path, f"sample rate must be positive, got {self.sample_rate}")
        self.channel_names = [str(n) for n in self.channel_names]
        if len(self.channel_names) != self.data.shape[0]:
            raise MediaError(
                self.path,
                f"{len(self.channel_names)} channel names for {self.data.shape[0]} channels of data",
            )
        if self.path is not None:
            self.path = Path(self.path)
        self.events = [e if isinstance(e, EEGEvent) else EEGEvent(int(e[0]), str(e[1])) for e in self.events]
        self.other_rate_signals = {
            str(name): (float(rate), torch.as_tensor(samples, dtype=torch.float32))
            for name, (rate, samples) in self.other_rate_signals.items()
        }

    def events_labelled(self, *labels: str) -> list[EEGEvent]:
        """The events whose label is one of `labels`, in time order."""
        return sorted((e for e in self.events if e.label in labels), key=lambda e: e.onset)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.data.shape[1] / self.sample_rate

    @property
    def other_rate_channels(self) -> dict[str, float]:
        """Names and sample rates of the file's signals left out of ``data`` for their rate (see ``pick``)."""
        return {name: rate for name, (rate, _) in self.other_rate_signals.items()}

    def channel_indices(self, names: list[str] | tuple[str, ...] | str) -> list[int]:
        """Rows of `names`, in that order. A name matches a channel exactly or, failing that, after
        `channel_key` ("Cz" finds BCI2000's "Cz..", "fp1" finds "EEG Fp1-REF"), as long as that
        identifies one channel; otherwise a `MediaError` lists the channels there are."""
        if isinstance(names, str):
            names = [names]
        rows, missing, ambiguous = _match_channels(names, self.channel_names)
        if missing or ambiguous:
            raise MediaError(self.path, self._unknown(missing, ambiguous))
        return rows

    def _unknown(self, missing: list[str], ambiguous: list[str]) -> str:
        listed = f"{_unmatched(missing, ambiguous)}; available: {', '.join(self.channel_names)}"
        if self.other_rate_signals:
            listed += f"; at other sample rates: {_rates_listed(self.other_rate_channels)}"
        return listed

    def stored_names(self, names: list[str] | tuple[str, ...] | str) -> list[str]:
        """The recording's own names of `names` (matched as `channel_indices` does), among its channels
        and then its ``other_rate_signals``: the channel names ``pick(names)`` gives."""
        return [name for name, _ in self._sources(names)]

    def _sources(self, names: list[str] | tuple[str, ...] | str) -> list[tuple[str, int | str]]:
        """``(stored name, row of data or key of other_rate_signals)`` for each of `names`."""
        if isinstance(names, str):
            names = [names]
        others = list(self.other_rate_signals)
        sources: list[tuple[str, int | str]] = []
        missing, ambiguous = [], []
        for name in names:
            rows, lost, _ = _match_channels([name], self.channel_names)
            if rows:
                sources.append((self.channel_names[rows[0]], rows[0]))
                continue
            found, lost_too, _ = _match_channels([name], others) if lost else ([], [], [])
            if found:
                sources.append((others[found[0]], others[found[0]]))
            else:
                (missing if lost_too else ambiguous).append(name)
        if missing or ambiguous:
            raise MediaError(self.path, self._unknown(missing, ambiguous))
        return sources

    def pick(self, names: list[str] | tuple[str, ...] | str) -> EEGRecording:
        """Return a recording with only `names` (matched as `channel_indices` does), in that order; the
        channels keep the recording's own names. Montages must match across files.

        A name of one of ``other_rate_signals`` gives that signal resampled (`fft_resample`) onto the
        recording's rate and length, so a channel stored at another rate is there when asked for; a
        `MediaError` naming it and its rate says when its duration no longer matches the recording's."""
        sources = self._sources(names)
        if all(isinstance(source, int) for _, source in sources):
            data = self.data[[source for _, source in sources]]  # indexing by a list copies
        else:
            data = torch.stack(
                [
                    self.data[source]
                    if isinstance(source, int)
                    else self._onto_data(name, *self.other_rate_signals[source])
                    for name, source in sources
                ]
            )
        return EEGRecording(
            data,
            self.sample_rate,
            [name for name, _ in sources],
            self.path,
            list(self.events),
            dict(self.other_rate_signals),
        )

    def _onto_data(self, name: str, rate: float, samples: torch.Tensor) -> torch.Tensor:
        """``samples`` at ``rate`` resampled to the recording's rate and cut to its length."""
        length = self.data.shape[1]
        moved = fft_resample(samples.numpy(), rate, self.sample_rate)
        # The resampled length is round(n * ratio); one sample of slack either way is rounding, more means
        # the recording was cut or changed after reading and the two no longer line up in time.
        slack = max(1, math.ceil(self.sample_rate / rate))
        if abs(moved.shape[-1] - length) > slack:
            raise MediaError(
                self.path,
                f"channel {name!r} is stored at {rate:g} Hz and covers {samples.shape[-1] / rate:g} s, but the "
                f"recording ({self.sample_rate:g} Hz) covers {self.duration:g} s; read it with "
                f"read_eeg(path, channel_names=[...]) to get it resampled with the others",
            )
        moved = np.pad(moved[:length], (0, max(length - moved.shape[-1], 0)), mode="edge")
        return torch.from_numpy(moved.astype(np.float32))

    def resample(self, new_rate: float) -> EEGRecording:
        """Return the recording resampled to `new_rate` Hz with a band-limited sinc filter.

        Non-integer rates (e.g. 128.5 Hz) are handled by expressing new/old as a fraction p/q with
        small terms; if that fraction is not exact the achieved rate (old * p / q) is stored and a
        warning says so, so `sample_rate` always describes the data truthfully.
        """
        new_rate = float(new_rate)
        if not math.isfinite(new_rate) or new_rate <= 0:
            raise MediaError(self.path, f"cannot resample to {new_rate} Hz")
        if new_rate == self.sample_rate:
            return EEGRecording(
                self.data.clone(),
                self.sample_rate,
                list(self.channel_names),
                self.path,
                list(self.events),
                dict(self.other_rate_signals),
            )
        ratio = _small_fraction(Fraction(new_rate) / Fraction(self.sample_rate))
        achieved = self.sample_rate * ratio.numerator / ratio.denominator
        if not math.isclose(achieved, new_rate, rel_tol=1e-9):
            warnings.warn(
                f"{self.path or 'EEG'}: resampling {self.sample_rate} Hz -> {new_rate} Hz approximated by "
                f"the ratio {ratio}, giving {achieved:.6f} Hz",
                stacklevel=2,
            )
        else:
            achieved = new_rate
        out = AF.resample(self.data, ratio.denominator, ratio.numerator)
        scale = achieved / self.sample_rate
        events = [EEGEvent(round(e.onset * scale), e.label, round(e.duration * scale)) for e in self.events]
        others = dict(self.other_rate_signals)  # at their own rates, which this does not change
        return EEGRecording(out.contiguous(), achieved, list(self.channel_names), self.path, events, others)


def _small_fraction(r: Fraction) -> Fraction:
    """The closest fraction to `r` whose numerator and denominator are both <= _MAX_RATIO_TERM."""
    if r.numerator <= _MAX_RATIO_TERM and r.denominator <= _MAX_RATIO_TERM:
        return r
    best = r.limit_denominator(_MAX_RATIO_TERM)
    if best.numerator > _MAX_RATIO_TERM:  # large upsampling: bound the numerator instead
        inv = (1 / r).limit_denominator(_MAX_RATIO_TERM)
        best = 1 / inv
    if best <= 0:
        raise MediaError(None, f"resampling ratio {float(r)} is too extreme")
    return best


def _check_finite(data: np.ndarray, path: Path | None) -> None:
    if np.isnan(data).any():
        raise MediaError(path, "contains NaN")
    if np.isinf(data).any():
        raise MediaError(path, "contains infinite values")


# --------------------------------------------------------------------------------------------------
# EDF / BDF reader


@dataclass
class _Signal:
    label: str
    unit: str
    pmin: float
    pmax: float
    dmin: int
    dmax: int
    n: int  # samples per data record
    offset: int = 0  # sample offset inside a data record


def _field(raw: bytes, path: Path, name: str) -> str:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        # The spec says ASCII, but real files carry latin-1 in free-text fields ("\xb5V").
        text = raw.decode("latin-1")
    if any(ord(ch) < 32 for ch in text):
        raise MediaError(path, f"header field '{name}' contains control characters: {raw!r}")
    return text.strip()


def _int_field(raw: bytes, path: Path, name: str) -> int:
    text = _field(raw, path, name)
    try:
        value = float(text)
    except ValueError:
        raise MediaError(path, f"header field '{name}' is not a number: {text!r}") from None
    if not math.isfinite(value) or value != int(value):
        raise MediaError(path, f"header field '{name}' is not an integer: {text!r}")
    return int(value)


def _float_field(raw: bytes, path: Path, name: str) -> float:
    text = _field(raw, path, name)
    try:
        value = float(text)
    except ValueError:
        raise MediaError(path, f"header field '{name}' is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise MediaError(path, f"header field '{name}' is not finite: {text!r}")
    return value


def _read_edf(path: Path, channel_names: list[str] | None) -> EEGRecording:
    """Parse EDF/EDF+/BDF/BDF+: a 256-byte header, 256 bytes per signal, then whole data records."""
    with open(path, "rb") as f:
        head = f.read(256)
        if len(head) < 256:
            raise MediaError(path, f"truncated header: {len(head)} bytes, an EDF/BDF header needs 256")
        version = head[:8]
        if version == b"\xffBIOSEMI":
            bytes_per_sample, kind = 3, "BDF"
        elif version.strip() == b"0":
            bytes_per_sample, kind = 2, "EDF"
        else:
            raise MediaError(
                path, f"header field 'version' is {version!r}; expected '0' (EDF) or '\\xffBIOSEMI' (BDF)"
            )
        header_bytes = _int_field(head[184:192], path, "number of bytes in header")
        reserved = _field(head[192:236], path, "reserved")
        n_records = _int_field(head[236:244], path, "number of data records")
        record_seconds = _float_field(head[244:252], path, "duration of a data record")
        ns = _int_field(head[252:256], path, "number of signals")
        if ns <= 0:
            raise MediaError(path, f"header field 'number of signals' is {ns}")
        if header_bytes != 256 * (ns + 1):
            raise MediaError(
                path,
                f"header field 'number of bytes in header' is {header_bytes}, but {ns} signals need "
                f"{256 * (ns + 1)}",
            )
        if n_records < -1:
            raise MediaError(path, f"header field 'number of data records' is {n_records}")
        sig = f.read(256 * ns)
        if len(sig) < 256 * ns:
            raise MediaError(
                path, f"truncated header: signal headers end after {256 + len(sig)} of {header_bytes} bytes"
            )

        # Signal header: ns labels (16), transducers (80), units (8), pmin, pmax, dmin, dmax (8 each),
        # prefiltering (80), samples per record (8), reserved (32); each block holds all ns values.
        def column(start: int, width: int, i: int) -> bytes:
            return sig[start * ns + i * width : start * ns + (i + 1) * width]

        signals: list[_Signal] = []
        for i in range(ns):
            label = _field(column(0, 16, i), path, f"label of signal {i}")
            who = f"signal {i} ({label!r})"
            s = _Signal(
                label=label,
                unit=_field(column(96, 8, i), path, f"physical dimension of {who}"),
                pmin=_float_field(column(104, 8, i), path, f"physical minimum of {who}"),
                pmax=_float_field(column(112, 8, i), path, f"physical maximum of {who}"),
                dmin=_int_field(column(120, 8, i), path, f"digital minimum of {who}"),
                dmax=_int_field(column(128, 8, i), path, f"digital maximum of {who}"),
                n=_int_field(column(216, 8, i), path, f"number of samples in each data record of {who}"),
            )
            if s.n < 0:
                raise MediaError(
                    path, f"header field 'number of samples in each data record' of {who} is {s.n}"
                )
            signals.append(s)
        offset = 0
        for s in signals:
            s.offset, offset = offset, offset + s.n
        samples_per_record = offset
        record_bytes = samples_per_record * bytes_per_sample

        if record_bytes == 0:
            raise MediaError(path, "header says every data record is empty")
        f.seek(0, io.SEEK_END)
        available = (f.tell() - header_bytes) // record_bytes
        if n_records == -1:  # allowed while recording; the file size is then the truth
            n_records = available
        elif available < n_records:
            raise MediaError(
                path,
                f"truncated {kind}: header says {n_records} records of {record_bytes} bytes, "
                f"file has {available} full records",
            )
        f.seek(header_bytes)
        raw = f.read(n_records * record_bytes)

    if reserved.startswith(("EDF+D", "BDF+D")):
        warnings.warn(
            f"{path}: discontinuous {reserved[:5]} file; records are joined without gaps", stacklevel=3
        )

    data_signals = [s for s in signals if s.label not in ("EDF Annotations", "BDF Annotations")]
    if not data_signals:
        raise MediaError(path, "has no signals other than annotations")
    if n_records == 0:
        raise MediaError(path, "contains no data records")
    if record_seconds <= 0:
        raise MediaError(path, f"header field 'duration of a data record' is {record_seconds}")

    def rate(s: _Signal) -> float:
        return s.n / record_seconds

    counts = Counter(s.n for s in data_signals if s.n > 0)
    if not counts:
        raise MediaError(path, "every signal has 0 samples per data record")
    # The recording's rate: that of most signals; on a tie the higher (more information kept).
    n_common = max(counts, key=lambda n: (counts[n], n))
    if channel_names is not None:
        rows, missing, ambiguous = _match_channels(channel_names, [s.label for s in data_signals])
        if missing or ambiguous:
            others = {s.label: rate(s) for s in data_signals if s.n != n_common}
            listed = ", ".join(s.label for s in data_signals if s.n == n_common)
            if others:
                listed += (
                    f" (at {n_common / record_seconds:g} Hz); at other sample rates: {_rates_listed(others)}"
                )
            raise MediaError(path, f"{_unmatched(missing, ambiguous)}; available: {listed}")
        chosen = [data_signals[r] for r in rows]
        empty = [s.label for s in chosen if s.n == 0]
        if empty:
            raise MediaError(path, f"channel(s) {empty} store no samples (0 per data record)")
        # The requested channels' own rate when they share one, else the recording's: the others are
        # resampled onto it.
        n = chosen[0].n if len({s.n for s in chosen}) == 1 else n_common
        left_out: list[_Signal] = []
    else:
        n = n_common
        chosen = [s for s in data_signals if s.n == n]
        left_out = [s for s in data_signals if s.n != n]
        if left_out:
            warnings.warn(
                f"{path}: signals have different sample rates; keeping the {len(chosen)} at "
                f"{n / record_seconds:g} Hz and dropping {len(left_out)}: "
                f"{', '.join(f'{s.label} ({rate(s):g} Hz)' for s in left_out)}; name them "
                f"(read_eeg(channel_names=...), zoo encode --channels) to get them resampled to "
                f"{n / record_seconds:g} Hz, or see EEGRecording.other_rate_channels",
                stacklevel=3,
            )

    if bytes_per_sample == 2:
        records = np.frombuffer(raw, dtype="<i2").reshape(n_records, samples_per_record)
    else:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(n_records, samples_per_record, 3).astype(np.int32)
        records = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
        records = np.where(records >= 1 << 23, records - (1 << 24), records)  # 24-bit two's complement

    def physical(s: _Signal) -> np.ndarray:
        """Signal `s` in microvolts (other units kept), float64, at its own rate."""
        if s.dmax == s.dmin:
            raise MediaError(path, f"signal {s.label!r}: digital minimum equals digital maximum ({s.dmin})")
        if s.pmax == s.pmin:
            raise MediaError(path, f"signal {s.label!r}: physical minimum equals physical maximum ({s.pmin})")
        digital = records[:, s.offset : s.offset + s.n].reshape(-1).astype(np.float64)
        gain = (s.pmax - s.pmin) / (s.dmax - s.dmin)
        values = (digital - s.dmin) * gain + s.pmin
        values *= _TO_MICROVOLTS.get(s.unit.lower(), 1.0)
        return values

    out = np.empty((len(chosen), n_records * n), dtype=np.float32)
    for row, s in enumerate(chosen):
        values = physical(s)
        if s.n != n:  # round(n_records * s.n * (n / s.n)): exactly n samples per record
            # from float32, as `EEGRecording.pick` resamples other_rate_signals, so both give the same samples
            values = fft_resample(values.astype(np.float32), rate(s), n / record_seconds)
        out[row] = values
    other_rate_signals = {}
    for s in (s for s in left_out if s.n > 0):
        values = physical(s).astype(np.float32)
        _check_finite(values, path)
        other_rate_signals.setdefault(s.label, (rate(s), torch.from_numpy(values)))
    _check_finite(out, path)
    annotation_signals = [s for s in signals if s.label in ("EDF Annotations", "BDF Annotations")]
    raw_records = np.frombuffer(raw, dtype=np.uint8).reshape(n_records, record_bytes)
    events = _edf_annotations(raw_records, annotation_signals, bytes_per_sample, n, record_seconds, path)
    return EEGRecording(
        torch.from_numpy(out), n / record_seconds, [s.label for s in chosen], path, events, other_rate_signals
    )


def _edf_annotations(
    records: np.ndarray,
    signals: list[_Signal],
    bytes_per_sample: int,
    samples_per_record: int,
    record_seconds: float,
    path: Path,
) -> list[EEGEvent]:
    """Events from the EDF+/BDF+ annotation signals' time-stamped annotation lists (TALs).

    Each TAL is ``+onset[\x15duration]\x14text\x14...\x00``, onsets in seconds from the file's start
    time. A record's first TAL carries no text: it is the record's own start time, which maps an onset
    to a sample of that record (so discontinuous EDF+D files place events in the records they belong to).
    """
    rate = samples_per_record / record_seconds
    events: list[EEGEvent] = []
    skipped = 0
    for r, record in enumerate(records):
        record_start: float | None = None
        for s in signals:
            block = record[s.offset * bytes_per_sample : (s.offset + s.n) * bytes_per_sample].tobytes()
            for tal in block.split(b"\x00"):
                if not tal:
                    continue
                head, *texts = tal.split(b"\x14")
                onset_text, _, duration_text = head.partition(b"\x15")
                try:
                    onset = float(onset_text)
                    duration = float(duration_text) if duration_text else 0.0
                except ValueError:
                    skipped += 1
                    continue
                labels = [t.decode("utf-8", "replace").strip() for t in texts if t.strip()]
                if not labels:
                    if record_start is None:
                        record_start = onset
                    continue
                start = record_start if record_start is not None else r * record_seconds
                onset_sample = r * samples_per_record + round((onset - start) * rate)
                events += [EEGEvent(onset_sample, label, round(duration * rate)) for label in labels]
    if skipped:
        warnings.warn(f"{path}: skipped {skipped} unreadable EDF+ annotation(s)", stacklevel=4)
    return sorted(events, key=lambda e: e.onset)


# --------------------------------------------------------------------------------------------------
# NumPy and MNE


def _scalar_rate(value: np.ndarray, path: Path, key: str) -> float:
    try:
        rate = float(np.asarray(value).reshape(()))
    except (TypeError, ValueError):
        raise MediaError(path, f"'{key}' must be a single number, got shape {np.shape(value)}") from None
    if not math.isfinite(rate) or rate <= 0:
        raise MediaError(path, f"'{key}' must be a positive sample rate, got {rate}")
    return rate


def _array_data(data: np.ndarray, path: Path) -> np.ndarray:
    if data.dtype.kind not in "biuf":
        raise MediaError(path, f"EEG data must be a real numeric array, got dtype {data.dtype}")
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2:
        raise MediaError(path, f"EEG data must be [C, T], got shape {data.shape}")
    if data.shape[1] == 0:
        raise MediaError(path, "EEG data has no samples")
    data = data.astype(np.float32)
    _check_finite(data, path)
    return data


def _named(data: np.ndarray, rate: float, stored: list[str] | None, wanted: list[str] | None, path: Path):
    """Build the recording; `wanted` selects among stored names, or names the rows when none are stored."""
    if stored is None:
        if wanted is not None:
            if len(wanted) != data.shape[0]:
                raise MediaError(
                    path,
                    f"{len(wanted)} channel names given for {data.shape[0]} channels (file stores no names)",
                )
            return EEGRecording(torch.from_numpy(data), rate, list(wanted), path)
        stored = [f"ch{i}" for i in range(data.shape[0])]
    rec = EEGRecording(torch.from_numpy(data), rate, stored, path)
    return rec.pick(wanted) if wanted is not None else rec


def _read_npy(path: Path, sample_rate: float | None, channel_names: list[str] | None) -> EEGRecording:
    if sample_rate is None:
        raise MediaError(
            path, "a .npy file stores no sample rate; give it (sample_rate=, or zoo encode --sample-rate HZ)"
        )
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise MediaError(path, f"not a readable .npy array ({e})") from e
    return _named(
        _array_data(data, path), _scalar_rate(sample_rate, path, "sample_rate"), None, channel_names, path
    )


def _read_npz(path: Path, sample_rate: float | None, channel_names: list[str] | None) -> EEGRecording:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
        raise MediaError(path, f"not a readable .npz archive ({e})") from e
    data_key = next((k for k in ("data", "x") if k in arrays), None)
    if data_key is None:
        raise MediaError(path, f"no 'data' or 'x' array; keys are {sorted(arrays)}")
    data = _array_data(arrays[data_key], path)
    rate_key = next((k for k in ("sample_rate", "sfreq", "fs") if k in arrays), None)
    names_key = next((k for k in ("channel_names", "ch_names") if k in arrays), None)
    stored = None
    if names_key is not None:
        stored = [str(n) for n in np.asarray(arrays[names_key]).reshape(-1)]
    if rate_key is None:
        if sample_rate is None:
            raise MediaError(
                path, "stores no 'sample_rate', 'sfreq' or 'fs'; sample_rate= is needed to read it"
            )
        return _named(data, _scalar_rate(sample_rate, path, "sample_rate"), stored, channel_names, path)
    rec = _named(data, _scalar_rate(arrays[rate_key], path, rate_key), stored, channel_names, path)
    return rec if sample_rate is None else rec.resample(sample_rate)


# --------------------------------------------------------------------------------------------------
# EEGLAB .set reader


def _as_list(value: object) -> list:
    """MATLAB struct arrays and cell arrays as a list (scipy squeezes a 1-element array to its element)."""
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return list(value.ravel()) if value.dtype == object else ([] if value.size == 0 else [value])
    return [value]


def _mat_text(value: object) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, np.ndarray) and value.size == 0:
        return ""
    number = float(np.asarray(value).ravel()[0])
    return str(int(number)) if number == int(number) else str(number)


def _mat_int(eeg: object, name: str, path: Path) -> int:
    value = getattr(eeg, name, None)
    try:
        number = float(np.asarray(value).ravel()[0])
    except (TypeError, ValueError, IndexError):
        raise MediaError(path, f"EEG.{name} is missing or not a number ({value!r})") from None
    if not math.isfinite(number) or number != int(number) or number <= 0:
        raise MediaError(path, f"EEG.{name} must be a positive integer, got {number}")
    return int(number)


def _read_eeglab(path: Path, channel_names: list[str] | None) -> EEGRecording:
    """Read an EEGLAB dataset saved as a MATLAB v5/v7 file: the samples inline in ``EEG.data`` or in the
    float32 ``.fdt`` file it names (channels x samples, column-major, so the channels of a sample are
    adjacent). EEGLAB keeps data in microvolts. Epoched data (``trials > 1``) is joined epoch after epoch,
    as EEGLAB's own event latencies assume."""
    from scipy.io import loadmat  # a core dependency, imported here to keep `import zoo` light

    with open(path, "rb") as f:
        head = f.read(128)
    if len(head) == 128 and head[124:126] in (b"\x00\x02", b"\x02\x00"):
        raise MediaError(
            path,
            "is a MATLAB v7.3 (HDF5) .set file, which is not read natively; re-save it in EEGLAB as "
            "version 7 (pop_saveset(EEG, 'version', '7')) or read it with MNE (pip install zoo[eeg])",
        )
    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False, appendmat=False)
    except NotImplementedError as e:  # another HDF5 signature scipy spotted
        raise MediaError(path, f"is a MATLAB v7.3 (HDF5) file, not read natively ({e})") from e
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError... for broken files
        raise MediaError(path, f"not a readable MATLAB .set file ({type(e).__name__}: {e})") from e
    eeg = mat.get("EEG")
    if eeg is None:  # EEGLAB can also save the struct's fields as top-level variables
        if "srate" not in mat or "data" not in mat:
            keys = sorted(k for k in mat if not k.startswith("__"))
            raise MediaError(path, f"no EEG struct (and no top-level 'data' and 'srate'); variables: {keys}")
        eeg = type("EEG", (), {k: v for k, v in mat.items() if not k.startswith("__")})()

    n_channels = _mat_int(eeg, "nbchan", path)
    n_samples = _mat_int(eeg, "pnts", path)
    trials = _mat_int(eeg, "trials", path) if getattr(eeg, "trials", None) is not None else 1
    try:
        rate = float(np.asarray(eeg.srate).ravel()[0])
    except (AttributeError, TypeError, ValueError, IndexError):
        raise MediaError(path, "EEG.srate is missing or not a number") from None
    expected = n_channels * n_samples * trials
    stored = getattr(eeg, "data", None)
    if isinstance(stored, str):
        data = _read_fdt(path, stored, expected)
    else:
        array = np.asarray(stored)
        if array.dtype.kind not in "biuf":
            raise MediaError(path, f"EEG.data must be numbers or a .fdt file name, got {array.dtype}")
        if array.size != expected:
            raise MediaError(
                path,
                f"EEG.data holds {array.size} values, but nbchan x pnts x trials = {n_channels} x {n_samples} "
                f"x {trials} = {expected}",
            )
        data = np.asarray(array, dtype=np.float32)
    data = data.reshape(n_channels, n_samples * trials, order="F")
    data = np.ascontiguousarray(data, dtype=np.float32)
    _check_finite(data, path)
    if trials > 1:
        warnings.warn(f"{path}: {trials} epochs of {n_samples} samples joined end to end", stacklevel=3)

    chanlocs = _as_list(getattr(eeg, "chanlocs", None))
    labels = [_mat_text(getattr(c, "labels", "")) for c in chanlocs]
    if len(labels) != n_channels or not all(labels):
        labels = [f"ch{i}" for i in range(n_channels)]

    events = []
    for e in _as_list(getattr(eeg, "event", None)):
        try:
            latency = float(np.asarray(e.latency).ravel()[0])
        except (AttributeError, TypeError, ValueError, IndexError):
            continue  # an event without a usable latency marks no sample
        try:
            duration = float(np.asarray(getattr(e, "duration", 0)).ravel()[0])
        except (TypeError, ValueError, IndexError):  # absent or empty: an instant
            duration = 0.0
        duration = round(duration) if math.isfinite(duration) else 0
        if math.isfinite(latency):  # latencies are 1-based sample positions, possibly fractional
            events.append(EEGEvent(round(latency - 1), _mat_text(getattr(e, "type", "")), duration))
    events.sort(key=lambda e: e.onset)
    rec = EEGRecording(torch.from_numpy(data), rate, labels, path, events)
    return rec.pick(channel_names) if channel_names is not None else rec


def _read_fdt(path: Path, name: str, expected: int) -> np.ndarray:
    """The float32 samples of the data file a .set names, looked up next to the .set file."""
    candidates = [path.parent / Path(name).name, path.with_suffix(".fdt"), path.with_suffix(".FDT")]
    fdt = next((c for c in candidates if c.is_file()), None)
    if fdt is None:
        raise MediaError(
            path,
            f"its samples are in {Path(name).name!r}, which is not next to it (looked for {candidates[0]})",
        )
    size = fdt.stat().st_size
    if size != 4 * expected:
        problem = "truncated" if size < 4 * expected else "longer than the header says"
        raise MediaError(
            path,
            f"data file {fdt.name} is {problem}: {size} bytes, but {expected} float32 samples need {4 * expected}",
        )
    return np.fromfile(fdt, dtype="<f4")


def _read_with_mne(path: Path, channel_names: list[str] | None) -> EEGRecording:
    try:
        mne = importlib.import_module("mne")
    except ImportError:
        raise MediaError(
            path, f"reading {path.suffix or 'this'} files needs MNE-Python: pip install zoo[eeg] (mne)"
        ) from None
    try:
        raw = mne.io.read_raw(path, preload=True, verbose="error")
    except Exception as e:  # MNE raises many types for unreadable files
        raise MediaError(path, f"MNE could not read it ({type(e).__name__}: {e})") from e
    data = raw.get_data()  # SI units: volts for every voltage channel
    volt = mne.io.constants.FIFF.FIFF_UNIT_V
    scale = np.array([1e6 if ch["unit"] == volt else 1.0 for ch in raw.info["chs"]])
    data = (data * scale[:, None]).astype(np.float32)
    _check_finite(data, path)
    rec = EEGRecording(torch.from_numpy(data), float(raw.info["sfreq"]), list(raw.ch_names), path)
    return rec.pick(channel_names) if channel_names is not None else rec


def read_eeg(
    path: str | Path, sample_rate: float | None = None, channel_names: list[str] | None = None
) -> EEGRecording:
    """Read an EEG recording in microvolts.

    `channel_names` selects (and orders) channels. `sample_rate` resamples the recording to it;
    for arrays that store no rate (`.npy`, `.npz` without one) it is instead the rate of the data,
    and `channel_names` then names the rows. One tensor cannot hold several rates, so EDF/BDF signals
    at a rate other than the most common one are left out of ``data`` with a warning and kept in
    ``other_rate_signals``; named in `channel_names` (or picked later) they are resampled onto the
    recording's rate (the named channels' own rate when they all share one).
    """
    p = Path(path)
    if not p.exists():
        raise MediaError(p, "file not found")
    if not p.is_file():
        raise MediaError(p, "not a regular file")
    if isinstance(channel_names, str):
        channel_names = [channel_names]
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return _read_npy(p, sample_rate, channel_names)
    if suffix == ".npz":
        return _read_npz(p, sample_rate, channel_names)
    if suffix in (".edf", ".bdf"):
        rec = _read_edf(p, channel_names)
    elif suffix == ".set":
        rec = _read_eeglab(p, channel_names)
    else:
        rec = _read_with_mne(p, channel_names)
    if sample_rate is None or float(sample_rate) == rec.sample_rate:
        return rec
    return rec.resample(sample_rate)


# --------------------------------------------------------------------------------------------------
# Writers


def _fit8(value: float, direction: int) -> str:
    """Format `value` in at most 8 ASCII characters, rounding down (-1) or up (+1).

    The physical range must still contain the data after it is shortened to fit the header.
    """
    for decimals in range(7, -1, -1):
        scaled = value * 10**decimals
        q = math.floor(scaled) if direction < 0 else math.ceil(scaled)
        text = f"{q / 10**decimals:.{decimals}f}"
        if direction < 0 and float(text) > value:
            text = f"{(q - 1) / 10**decimals:.{decimals}f}"
        if direction > 0 and float(text) < value:
            text = f"{(q + 1) / 10**decimals:.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if text == "-0":
            text = "0"
        if len(text) <= 8:
            return text
    raise MediaError(None, f"value {value} does not fit an 8-character EDF header field")


def _ascii(text: str, width: int, what: str, path: Path) -> bytes:
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise MediaError(path, f"{what} {text!r} is not ASCII, which EDF requires") from None
    if len(raw) > width:
        raise MediaError(path, f"{what} {text!r} is longer than the {width} characters EDF allows")
    return raw.ljust(width, b" ")


def _edf_bytes(rec: EEGRecording, path: Path) -> bytes:
    """Encode as 16-bit EDF with 1-second records (longer if needed for whole samples per record)."""
    rate = Fraction(rec.sample_rate).limit_denominator(1000)
    if not math.isclose(float(rate), rec.sample_rate, rel_tol=1e-12):
        raise MediaError(
            path, f"sample rate {rec.sample_rate} Hz cannot be stored with whole samples per record"
        )
    seconds = rate.denominator  # 1 s for any integer rate
    n = rate.numerator  # samples per record per signal
    data = rec.data.detach().cpu().numpy().astype(np.float64)
    c, t = data.shape
    _check_finite(data, path)
    if t == 0:
        raise MediaError(path, "EEG data has no samples")
    n_records = -(-t // n)
    if n_records * n != t:
        warnings.warn(
            f"{path}: {t} samples is not a whole number of {seconds}-s records; "
            f"the last record is padded with {n_records * n - t} copies of the final sample",
            stacklevel=3,
        )
        data = np.pad(data, ((0, 0), (0, n_records * n - t)), mode="edge")
    if len(str(n_records)) > 8 or c > 9999:
        raise MediaError(path, f"{n_records} records of {c} signals do not fit the EDF header")

    dmin, dmax = -32768, 32767
    pmins, pmaxs, digital = [], [], np.empty((c, n_records * n), dtype="<i2")
    for i in range(c):
        lo, hi = float(data[i].min()), float(data[i].max())
        if hi - lo < 1e-6 * max(1.0, abs(lo), abs(hi)):  # flat channel: any valid range will do
            lo, hi = lo - 1.0, hi + 1.0
        try:
            lo_s, hi_s = _fit8(lo, -1), _fit8(hi, +1)
        except MediaError as e:
            raise MediaError(path, f"channel {rec.channel_names[i]!r}: {e.problem}") from None
        p_lo, p_hi = float(lo_s), float(hi_s)
        pmins.append(lo_s)
        pmaxs.append(hi_s)
        scaled = (data[i] - p_lo) * ((dmax - dmin) / (p_hi - p_lo)) + dmin
        digital[i] = np.clip(np.rint(scaled), dmin, dmax).astype("<i2")

    header = b"".join(
        [
            _ascii("0", 8, "version", path),
            _ascii("X X X X", 80, "patient", path),
            _ascii("Startdate X X X zoo", 80, "recording", path),
            b"01.01.85",
            b"00.00.00",
            _ascii(str(256 * (c + 1)), 8, "header size", path),
            b" " * 44,
            _ascii(str(n_records), 8, "record count", path),
            _ascii(str(seconds), 8, "record duration", path),
            _ascii(str(c), 4, "signal count", path),
        ]
    )
    cols = [
        [_ascii(name, 16, "channel name", path) for name in rec.channel_names],
        [b" " * 80] * c,  # transducer
        [_ascii("uV", 8, "unit", path)] * c,
        [_ascii(v, 8, "physical minimum", path) for v in pmins],
        [_ascii(v, 8, "physical maximum", path) for v in pmaxs],
        [_ascii(str(dmin), 8, "digital minimum", path)] * c,
        [_ascii(str(dmax), 8, "digital maximum", path)] * c,
        [b" " * 80] * c,  # prefiltering
        [_ascii(str(n), 8, "samples per record", path)] * c,
        [b" " * 32] * c,
    ]
    signal_header = b"".join(b"".join(col) for col in cols)
    body = digital.reshape(c, n_records, n).transpose(1, 0, 2).tobytes()
    return header + signal_header + body


def write_eeg(path: str | Path, rec: EEGRecording) -> None:
    """Write a recording atomically as `.npz` (lossless) or `.edf` (16-bit, per-channel range).

    EDF quantises each channel to 65,536 levels between its own minimum and maximum, so the
    round-trip error is at most half of (max - min) / 65535 per channel.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        data = rec.data.detach().cpu().numpy().astype(np.float32)
        _check_finite(data, p)
        with atomic_path(p) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                data=data,
                sample_rate=np.float64(rec.sample_rate),
                channel_names=np.array(rec.channel_names, dtype=str),
            )
    elif suffix == ".edf":
        atomic_write_bytes(p, _edf_bytes(rec, p))
    else:
        raise MediaError(p, f"cannot write EEG as {suffix!r}; use .npz or .edf")


def bad_channels(
    data: torch.Tensor, names: list[str], *, clip_fraction: float = 0.005, min_clipped: int = 5
) -> dict[str, str]:
    """Channels of ``data [C, T]`` that no tokenizer should see, with the reason: non-finite values,
    a flat signal, a stair-step signal, or clipping. A stair-step channel repeats its previous sample
    more than 90 % of the time (trigger and status lines, traces stored at a far lower rate than the
    file's). A clipped channel has flat tops: at least ``clip_fraction`` of its samples (and
    ``min_clipped``) sit inside runs of three or more equal samples at its maximum or minimum, as a
    saturated amplifier or a hard-limited export leaves (isolated extreme samples do not count)."""
    problems: dict[str, str] = {}
    for name, row in zip(names, data, strict=True):
        finite = torch.isfinite(row)
        if not bool(finite.all()):
            problems[name] = f"{int((~finite).sum())} NaN or infinite samples"
            continue
        peak, trough = row.max(), row.min()
        if peak == trough:
            problems[name] = "flat (constant signal)"
            continue
        repeats = float((row[1:] == row[:-1]).float().mean())
        if repeats > 0.9:
            problems[name] = f"stair-step ({repeats:.0%} of samples repeat the previous one)"
            continue
        rail = (row == peak) | (row == trough)
        held = int((rail[:-2] & rail[1:-1] & rail[2:]).sum())
        if held >= max(min_clipped, clip_fraction * row.numel()):
            problems[name] = f"clipped ({held} of {row.numel()} samples held at its extreme values)"
    return problems


# ---------------------------------------------------------------------------------------------- statistics
NORMALISATIONS = ("zscore", "percentile95", "median_iqr", "none")

# Added to the scale by upstream's own normalisations: TFM-Tokenizer's loaders divide by
# ``quantile(|x|, 0.95) + 1e-8``, BioCodec's ``ch2file.py`` by ``iqr + 1e-6``.
DEFAULT_EPS = {"percentile95": 1e-8, "median_iqr": 1e-6}


def channel_statistics(
    x: torch.Tensor, how: str, eps: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(offset, gain)`` of ``x [..., T]`` (shapes ``[...]``) for a normalisation:
    "zscore" (mean, standard deviation), "percentile95" (0, 95th percentile of ``|x|`` plus ``eps``:
    TFM-Tokenizer's loaders, ``np.quantile(..., method="linear")`` in float64), "median_iqr" (median,
    interquartile range plus ``eps``: BioCodec's ``ch2file.py``, computed in float32 as upstream, the IQR of
    the median-subtracted signal) or "none" (0, 1). ``eps`` defaults to upstream's (`DEFAULT_EPS`), so a
    flat channel maps to zeros; "zscore" gives flat channels gain 1 instead."""
    lead = x.shape[:-1]
    if how == "none":
        return x.new_zeros(lead), x.new_ones(lead)
    as_tensor = functools.partial(torch.as_tensor, dtype=x.dtype, device=x.device)
    eps = DEFAULT_EPS.get(how, 0.0) if eps is None else float(eps)
    if how == "zscore":
        x64 = x.double()
        mean = x64.mean(-1)
        std = x64.std(-1) if x.shape[-1] > 1 else torch.ones_like(mean)
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
        return mean.to(x.dtype), std.to(x.dtype)
    if how == "percentile95":
        scale = np.quantile(np.abs(x.detach().cpu().double().numpy()), 0.95, axis=-1, method="linear")
        return x.new_zeros(lead), as_tensor(scale + eps).reshape(lead)
    if how == "median_iqr":
        from scipy.stats import iqr

        x32 = x.detach().cpu().float().numpy()
        median = np.median(x32, axis=-1, keepdims=True)
        gain = iqr(x32 - median, axis=-1) + np.float32(eps)
        return as_tensor(median[..., 0]).reshape(lead), as_tensor(gain).reshape(lead)
    raise ValueError(f"normalise must be one of {', '.join(NORMALISATIONS)}, got {how!r}")


# ---------------------------------------------------------------------------------------------- filters
# MNE-Python's default FIR design, written out so that the core package reproduces upstream data scripts
# (``raw.filter(l_freq, h_freq)``, ``raw.notch_filter(freq)``, ``raw.resample(rate)``, all with MNE's
# defaults) without depending on MNE: zero-phase firwin design with a Hamming window, "auto" transition
# bandwidths and filter lengths, odd-reflection ("reflect_limited") edge padding. The parity command
# (benchmarks/upstream_parity.py) checks the whole chain against MNE itself on real recordings.
_HAMMING_LENGTH_FACTOR = 3.3  # filter length x transition bandwidth, MNE's ``_length_factors["hamming"]``


def _auto_length(sfreq: float, transition: float) -> int:
    """MNE's "auto" filter length: 3.3 / transition seconds, rounded up to an odd number of samples."""
    n = max(int(np.ceil(float(f"{_HAMMING_LENGTH_FACTOR / transition!r}") * sfreq)), 1)
    return n + (n - 1) % 2


def _firwin_design(n: int, freq: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Sum of Hamming-windowed low-passes, one per gain step of the piecewise 0/1 response ``(freq, gain)``
    (``freq`` relative to Nyquist), each as long as its own transition band needs (MNE's ``firwin`` design)."""
    from scipy.signal import firwin

    h = np.zeros(n)
    if gain[-1] == 1:
        h[n // 2] = 1.0
    prev_freq, prev_gain = freq[-1], gain[-1]
    for this_freq, this_gain in zip(freq[::-1][1:], gain[::-1][1:], strict=True):
        if this_gain != prev_gain:
            this_n = round(_HAMMING_LENGTH_FACTOR / ((prev_freq - this_freq) / 2.0))
            this_n += 1 - this_n % 2
            if this_n > n:
                raise ValueError(f"filter length {n} is too short for a transition band needing {this_n}")
            low = firwin(this_n, (prev_freq + this_freq) / 2.0, window="hamming", pass_zero=True, fs=2.0)
            offset = (n - this_n) // 2
            h[offset : n - offset] += low if this_gain else -low
        prev_freq, prev_gain = this_freq, this_gain
    return h


def fir_kernel(sfreq: float, highpass: float | None, lowpass: float | None) -> np.ndarray | None:
    """The zero-phase FIR of ``mne.filter.create_filter(None, sfreq, highpass, lowpass)``: a band-pass,
    high-pass or low-pass with MNE's automatic transition bands (high-pass ``min(max(f / 4, 2), f)``,
    low-pass ``min(max(f / 4, 2), nyquist - f)``) and length (3.3 / narrowest transition s, odd).
    ``None`` when both edges are ``None``."""
    nyq = sfreq / 2.0
    freq: list[float] = []
    gain: list[float] = []
    transitions = []
    if highpass is not None:
        if not 0 < highpass < nyq:
            raise ValueError(f"high-pass edge {highpass} Hz must lie in (0, {nyq:g}) Hz")
        trans = min(max(0.25 * highpass, 2.0), highpass)
        transitions.append(trans)
        freq += [highpass - trans, highpass]
        gain += [0.0, 1.0]
    else:
        freq, gain = [0.0], [1.0]
    if lowpass is not None:
        if not 0 < lowpass < nyq or (highpass is not None and lowpass <= highpass):
            raise ValueError(f"low-pass edge {lowpass} Hz must lie in ({highpass or 0:g}, {nyq:g}) Hz")
        trans = min(max(0.25 * lowpass, 2.0), nyq - lowpass)
        transitions.append(trans)
        freq += [lowpass, lowpass + trans]
        gain += [1.0, 0.0]
        if freq[-1] != nyq:
            freq, gain = [*freq, nyq], [*gain, 0.0]
    elif highpass is not None:
        freq, gain = [*freq, nyq], [*gain, 1.0]
    else:
        return None
    if freq[0] != 0:
        freq, gain = [0.0, *freq], [gain[0], *gain]
    n = _auto_length(sfreq, min(transitions))
    return _firwin_design(n, np.asarray(freq) / nyq, np.asarray(gain))


def notch_kernel(sfreq: float, freq: float) -> np.ndarray:
    """The FIR of ``mne.filter.notch_filter(x, sfreq, freq)`` with its defaults: a band-stop whose stop
    band is ``freq / 200`` wide, with 0.5 Hz transition bands on either side (length 6.6 s)."""
    nyq = sfreq / 2.0
    width = freq / 200.0  # the stop band; the pass bands end 0.5 Hz (half the transition) further out
    pass_lo, pass_hi = freq - width / 2.0 - 0.5, freq + width / 2.0 + 0.5  # MNE's order of operations
    if pass_lo < 0 or pass_hi > nyq:
        raise ValueError(f"a {freq:g} Hz notch does not fit below the Nyquist frequency ({nyq:g} Hz)")
    edges = np.array([0.0, pass_lo, pass_lo + 0.5, pass_hi - 0.5, pass_hi])
    gain = np.array([1.0, 1.0, 0.0, 0.0, 1.0])
    if pass_lo == 0:
        edges, gain = edges[1:], gain[1:]
    if pass_hi != nyq:
        edges, gain = np.r_[edges, nyq], np.r_[gain, 1.0]
    return _firwin_design(_auto_length(sfreq, 0.5), edges / nyq, gain)


def reflect_limited_pad(x: np.ndarray, left: int, right: int) -> np.ndarray:
    """Pad the last axis by odd reflection about the end samples (``2 x[0] - x[k]``), as far as the signal
    reaches, then with zeros (MNE's "reflect_limited"); a constant signal stays constant."""
    n = x.shape[-1]
    parts = [
        np.zeros((*x.shape[:-1], max(left - n + 1, 0)), dtype=x.dtype),
        2 * x[..., :1] - x[..., left:0:-1],
        x,
        2 * x[..., -1:] - x[..., -2 : -right - 2 : -1],
        np.zeros((*x.shape[:-1], max(right - n + 1, 0)), dtype=x.dtype),
    ]
    return np.concatenate(parts, axis=-1)


def apply_fir(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Zero-phase FIR filtering of ``x [..., T]`` (float64) by an odd-length linear-phase ``h``: the signal
    is padded by `reflect_limited_pad` on both sides by ``min(len(h), T) - 1`` samples and convolved, as
    MNE's overlap-add filter does (which computes the same linear convolution block by block)."""
    from scipy.signal import oaconvolve

    n_h, n = len(h), x.shape[-1]
    edge = max(min(n_h, n) - 1, 0)
    padded = reflect_limited_pad(x, edge, edge) if edge else x
    full = oaconvolve(padded, h.reshape((1,) * (x.ndim - 1) + (-1,)), mode="full", axes=-1)
    shift = (n_h - 1) // 2 + edge
    return full[..., shift : shift + n]


def fft_resample(x: np.ndarray, old_rate: float, new_rate: float) -> np.ndarray:
    """``x [..., T]`` resampled along the last axis as ``mne.io.Raw.resample(new_rate)`` does by default:
    reflect_limited padding up to a power of two ("auto" npad), FFT, the spectrum cut or zero-extended
    with a boxcar window (the Nyquist bin halved or doubled), inverse FFT, padding trimmed. Rates equal
    to within 1e-6 return ``x`` unchanged, as MNE does."""
    from scipy import fft

    if abs(new_rate - old_rate) <= 1e-6 * old_rate:
        return x
    ratio = float(new_rate) / float(old_rate)
    n = x.shape[-1]
    final_len = max(round(ratio * n), 1)
    min_add = min(n // 8, 100) * 2
    pad, extra = divmod(2 ** int(np.ceil(np.log2(n + min_add))) - n, 2)
    pads = (pad, pad + extra)
    orig_len = n + sum(pads)
    new_len = max(round(ratio * orig_len), 1)
    cut_left = round(ratio * pads[0])
    cut_right = new_len - final_len - cut_left
    spectrum = fft.rfft(reflect_limited_pad(x.astype(np.float64), *pads), axis=-1)
    use_len = min(new_len, orig_len)
    if use_len % 2 == 0:
        spectrum[..., use_len // 2] *= 2.0 if new_len < orig_len else 0.5
    spectrum *= float(new_len) / float(orig_len)
    y = fft.irfft(spectrum, new_len, axis=-1)
    return y[..., cut_left : new_len - cut_right]


def blockwise_resample(x: np.ndarray, block: int, new_block: int) -> np.ndarray:
    """Cut ``x [..., T]`` into blocks of ``block`` samples and resample each on its own to ``new_block``
    samples with ``scipy.signal.resample`` (FFT, the block taken as periodic), as TFM-Tokenizer's loaders
    do to each stored window; a final partial block of ``r`` samples becomes ``round(r * new_block /
    block)``."""
    from scipy.signal import resample

    n = x.shape[-1]
    whole = n // block
    parts = []
    if whole:
        blocks = x[..., : whole * block].reshape(*x.shape[:-1], whole, block)
        parts.append(resample(blocks, new_block, axis=-1).reshape(*x.shape[:-1], whole * new_block))
    rest = n - whole * block
    rest_new = round(rest * new_block / block)
    if rest and rest_new:
        parts.append(resample(x[..., whole * block :], rest_new, axis=-1))
    if not parts:
        return x[..., :0]
    return np.concatenate(parts, axis=-1)

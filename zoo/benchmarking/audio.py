"""Audio benchmark: kbit/s against PESQ, STOI, SI-SDR and a multi-resolution mel distance, beside Opus,
Codec 2 and lossless FLAC.

Every row is scored against the same reference: each clip as the tokenizer's ``prepare`` makes it (mixed
to its channel count and resampled to its rate, as ``zoo encode`` does). The classic codecs compress the
mono mix of that reference and their output is brought back to the model's rate, so all rows describe the
same samples. SI-SDR and the mel distance are computed at the model's rate; PESQ (wide band) and STOI are
defined on 16 kHz speech, so reference and estimate are both resampled to 16 kHz for them. A clip PESQ or
STOI cannot score (shorter than a quarter second, or too little speech) counts as missing for that metric,
not as a zero; the row's ``extra`` says how many clips each mean covers.

Rates: the tokenizer's from its ids (``zoo.benchmarking.rate``), including the side id streams its decoder reads
(ReasoningCodec's ``side["reasoning"]``), over the total duration; the classic codecs' from the bytes they
actually produced: Opus counts its packets only (no Ogg pages or headers), Codec 2 its frames (each padded
to whole bytes, so 700C's 28-bit frames cost 32), FLAC the whole file.
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm

from ..errors import MediaError
from ..io.audio import AUDIO_SUFFIXES, read_audio, read_packed_arrays, resample
from ..losses.audio import MultiResolutionMelLoss
from ..tokenizer import Tokenizer
from ..tokens import Tokens
from .rate import codebook_summary, token_rate
from .report import Metric, Row
from .suite import Items, PeakMemory, Suite, Timer, shared_data

__all__ = [
    "AudioItem",
    "AudioSuite",
    "codec2_roundtrip",
    "flac_roundtrip",
    "opus_roundtrip",
    "speech_metrics",
]

METRIC_RATE = 16000  # PESQ wide band and STOI are defined on 16 kHz speech
OPUS_LADDER = (6, 8, 10, 12)  # kbit/s, always run: the speech operating points
OPUS_HIGHER = (16, 24, 32, 48, 64, 96, 128, 192, 256)  # run as needed to reach a learned rate
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # input rates libopus takes as they are
CODEC2_MODES = ("700C", "1200", "3200")
CODEC2_BITRATE = {"700C": 700, "1200": 1200, "3200": 3200}  # pycodec2's names of the modes
CODEC2_FRAME = {"700C": 320, "1200": 320, "3200": 160}  # samples at 8 kHz (40 or 20 ms)
CODEC2_RATE = 8000
CODEC2_MAX_DELAY = 400  # samples at 8 kHz (50 ms): the decoder's lag is searched up to this
# the codec2 test files that are clean speech: m2400/f2400 are already vocoded, ve9qrp, vk5qi and
# vk2tpm_004 were received over radio, all.wav repeats the others
CODEC2_CLEAN = (
    "hts1a.wav",
    "hts2a.wav",
    "mmt1.wav",
    "morig.wav",
    "forig.wav",
    "big_dog.wav",
    "cross.wav",
    "david4.wav",
    "speech_orig_16k.wav",
    "wia_16kHz.wav",
)
REFERENCE_NOTE = (
    "every row is scored against each clip as the tokenizer's prepare makes it (its rate and channels): "
    "SI-SDR and mel distance (DAC's: log10-mel L1 summed over 7 windows of 32-2048 samples) at that rate, "
    f"PESQ (wide band) and STOI on reference and estimate resampled to {METRIC_RATE} Hz; the classic codecs "
    "code its mono mix"
)


@dataclass
class AudioItem:
    """One clip as stored: float32 ``[C, T]`` at its own ``rate``."""

    name: str
    wav: torch.Tensor
    rate: int

    @property
    def seconds(self) -> float:
        return self.wav.shape[-1] / self.rate


# ---------------------------------------------------------------------------------------------- metrics
_MEL: dict[int, MultiResolutionMelLoss] = {}


def mel_distance(reference: torch.Tensor, estimate: torch.Tensor, rate: int) -> float:
    """DAC's mel distance: log10-mel L1 summed over seven windows (32 to 2048 samples), at ``rate``."""
    if rate not in _MEL:
        _MEL[rate] = MultiResolutionMelLoss(rate)
    try:
        return float(_MEL[rate](estimate[None].float(), reference[None].float()))
    except RuntimeError:  # shorter than the largest window's reflect padding
        return math.nan


def _pesq(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    from pesq import PesqError
    from torchmetrics.functional.audio import perceptual_evaluation_speech_quality

    try:
        return float(perceptual_evaluation_speech_quality(estimate, reference, METRIC_RATE, "wb"))
    except PesqError:  # under a quarter second, or no utterance found
        return math.nan


def _stoi(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    from torchmetrics.functional.audio import short_time_objective_intelligibility

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(short_time_objective_intelligibility(estimate, reference, METRIC_RATE))
    # pystoi returns 1e-5 with a warning when too few frames are left once silence is removed
    return math.nan if any("Not enough STFT frames" in str(w.message) for w in caught) else value


def speech_metrics(reference: torch.Tensor, estimate: torch.Tensor, rate: int) -> dict[str, float]:
    """PESQ (wide band) and STOI at 16 kHz, SI-SDR (dB) and the mel distance at ``rate``, of one clip.

    ``reference`` and ``estimate`` are ``[C, T]`` at ``rate``; channels are averaged for PESQ and STOI
    (mono measures), SI-SDR is averaged over channels. NaN marks a clip a measure cannot score."""
    from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

    reference, estimate = reference.float().cpu(), _fit(estimate.float().cpu(), reference.shape[-1])
    ref16 = resample(reference.mean(0), rate, METRIC_RATE)
    est16 = resample(estimate.mean(0), rate, METRIC_RATE)
    return {
        "PESQ": _pesq(ref16, est16),
        "STOI": _stoi(ref16, est16),
        "SI-SDR": float(scale_invariant_signal_distortion_ratio(estimate, reference).mean()),
        "mel distance": mel_distance(reference, estimate, rate),
    }


def _fit(wav: torch.Tensor, length: int) -> torch.Tensor:
    """Cut or zero-pad the last axis to ``length`` (a codec's output may overhang by part of a frame)."""
    if wav.shape[-1] >= length:
        return wav[..., :length]
    return torch.nn.functional.pad(wav, (0, length - wav.shape[-1]))


# ---------------------------------------------------------------------------------------------- codecs
def _pyav_opus() -> bool:
    try:
        import av
    except ImportError:
        return False
    try:
        av.codec.Codec("libopus", "w")
    except Exception:  # noqa: BLE001 (an FFmpeg build without libopus raises its own error type)
        return False
    return True


def opus_backend() -> tuple[str | None, str]:
    """``("pyav" | "cli" | None, reason)``: PyAV's bundled libopus, else the opus-tools programs."""
    if _pyav_opus():
        return "pyav", ""
    if shutil.which("opusenc") and shutil.which("opusdec"):
        return "cli", ""
    return None, (
        "Opus: neither PyAV with libopus (pip install av) nor the opusenc/opusdec tools "
        "(apt install opus-tools) are available"
    )


def codec2_backend() -> tuple[str | None, str]:
    """``("pycodec2" | "cli" | None, reason)``: the pycodec2 wheel (bundles libcodec2), else c2enc/c2dec."""
    try:
        import pycodec2  # noqa: F401
    except ImportError:
        pass
    else:
        return "pycodec2", ""
    if shutil.which("c2enc") and shutil.which("c2dec"):
        return "cli", ""
    return None, (
        "Codec2: neither pycodec2 (pip install pycodec2) nor the c2enc/c2dec tools (apt install codec2) "
        "are available"
    )


def _ogg_packet_bytes(data: bytes) -> int:
    """Bytes of the Opus audio packets in an Ogg Opus file: page headers and the two header packets
    (OpusHead, OpusTags) are left out."""
    sizes: list[int] = []
    current, pos = 0, 0
    while pos + 27 <= len(data):
        if data[pos : pos + 4] != b"OggS":
            raise ValueError("not an Ogg stream")
        segments = data[pos + 26]
        lacing = data[pos + 27 : pos + 27 + segments]
        for value in lacing:
            current += value
            if value < 255:
                sizes.append(current)
                current = 0
        pos += 27 + segments + sum(lacing)
    return sum(sizes[2:])


def opus_roundtrip(wav: np.ndarray, rate: int, kbps: float, backend: str = "pyav") -> tuple[np.ndarray, int]:
    """Mono ``wav`` (float32 ``[T]`` at ``rate``) through Opus at a target of ``kbps`` (libopus defaults:
    VBR, 20 ms frames): the decoded ``[T]`` at ``rate`` and the bytes of its audio packets."""
    if backend == "cli":
        return _opus_cli(wav, rate, kbps)
    import av

    codec_rate = rate if rate in OPUS_RATES else 48000
    x = wav if codec_rate == rate else resample(torch.from_numpy(wav), rate, codec_rate).numpy()
    x = np.ascontiguousarray(x, dtype=np.float32)
    buffer = io.BytesIO()
    packet_bytes = 0
    with av.open(buffer, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=codec_rate, layout="mono")
        stream.bit_rate = int(kbps * 1000)
        stream.codec_context.format = "flt"
        frame_size = stream.codec_context.frame_size or codec_rate // 50
        for start in range(0, len(x), frame_size):
            chunk = x[start : start + frame_size]
            frame = av.AudioFrame.from_ndarray(chunk[None], format="flt", layout="mono")
            frame.sample_rate, frame.pts = codec_rate, start
            for packet in stream.encode(frame):
                packet_bytes += packet.size
                container.mux(packet)
        for packet in stream.encode(None):
            packet_bytes += packet.size
            container.mux(packet)
    parts, out_rate = [], 48000
    with av.open(io.BytesIO(buffer.getvalue())) as container:  # the demuxer applies the pre-skip
        for frame in container.decode(audio=0):
            parts.append(frame.to_ndarray().reshape(-1).astype(np.float32))
            out_rate = frame.sample_rate
    decoded = resample(torch.from_numpy(np.concatenate(parts)), out_rate, rate).numpy()
    return _fit(torch.from_numpy(decoded), len(wav)).numpy(), packet_bytes


def _opus_cli(wav: np.ndarray, rate: int, kbps: float) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory(prefix="zoo-opus-") as folder:
        source, coded, decoded = (Path(folder) / n for n in ("in.wav", "coded.opus", "out.wav"))
        sf.write(source, wav, rate, subtype="FLOAT")
        subprocess.run(
            ["opusenc", "--quiet", "--bitrate", f"{kbps:g}", str(source), str(coded)],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["opusdec", "--quiet", "--rate", "48000", "--float", str(coded), str(decoded)],
            check=True,
            capture_output=True,
        )
        packet_bytes = _ogg_packet_bytes(coded.read_bytes())
        out, out_rate = sf.read(decoded, dtype="float32", always_2d=True)
    y = resample(torch.from_numpy(np.ascontiguousarray(out[:, 0])), out_rate, rate)
    return _fit(y, len(wav)).numpy(), packet_bytes


def _pcm16(wav: np.ndarray) -> np.ndarray:
    return np.clip(np.round(wav * 32768), -32768, 32767).astype(np.int16)


def codec2_roundtrip(
    wav: np.ndarray, rate: int, mode: str, backend: str = "pycodec2"
) -> tuple[np.ndarray, int]:
    """Mono ``wav`` at ``rate`` through Codec 2 in ``mode`` (700C, 1200 or 3200), which codes 8 kHz
    speech: resampled to 8 kHz and back, the last frame completed with silence (c2enc would drop it).
    Returns the decoded ``[T]`` at ``rate`` and the coded bytes."""
    x = _pcm16(resample(torch.from_numpy(wav), rate, CODEC2_RATE).numpy())
    x = np.pad(x, (0, -len(x) % CODEC2_FRAME[mode]))
    if backend == "cli":
        y, size = _codec2_cli(x, mode)
    else:
        import pycodec2

        encoder, decoder = pycodec2.Codec2(CODEC2_BITRATE[mode]), pycodec2.Codec2(CODEC2_BITRATE[mode])
        n = encoder.samples_per_frame()
        frames = [encoder.encode(np.ascontiguousarray(x[i : i + n])) for i in range(0, len(x), n)]
        size = sum(len(f) for f in frames)
        y = np.concatenate([decoder.decode(f) for f in frames])
    y = _undelay(x, y, CODEC2_MAX_DELAY)
    decoded = resample(torch.from_numpy(y.astype(np.float32) / 32768), CODEC2_RATE, rate)
    return _fit(decoded, len(wav)).numpy(), size


def _undelay(reference: np.ndarray, decoded: np.ndarray, most: int) -> np.ndarray:
    """``decoded`` moved earlier by the delay (0 to ``most`` samples) that best correlates it with
    ``reference``. Codec 2's decoder lags its input by some 20-30 ms and, being a vocoder, keeps no
    waveform phase to fix one delay from, so the lag is found per clip."""
    ref, out = reference.astype(np.float64), decoded.astype(np.float64)
    span = min(len(ref), len(out) - most)
    if span <= 0:
        return decoded
    scores = [float(np.dot(ref[:span], out[lag : lag + span])) for lag in range(most + 1)]
    return decoded[int(np.argmax(scores)) :]


def _codec2_cli(x: np.ndarray, mode: str) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory(prefix="zoo-codec2-") as folder:
        source, coded, decoded = (Path(folder) / n for n in ("in.raw", "coded.bit", "out.raw"))
        source.write_bytes(x.astype("<i2").tobytes())
        subprocess.run(["c2enc", mode, str(source), str(coded)], check=True, capture_output=True)
        subprocess.run(["c2dec", mode, str(coded), str(decoded)], check=True, capture_output=True)
        return np.frombuffer(decoded.read_bytes(), dtype="<i2"), coded.stat().st_size


def flac_roundtrip(wav: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """Mono ``wav`` as a 16-bit FLAC file: the decoded samples and the whole file's size (headers too)."""
    buffer = io.BytesIO()
    sf.write(buffer, _pcm16(wav), rate, format="FLAC", subtype="PCM_16")
    size = len(buffer.getvalue())  # libsndfile seeks back to finish the header: tell() is not the size
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32")
    return decoded, size


# ---------------------------------------------------------------------------------------------- items
def _read_files(files: list[Path], root: Path | None) -> list[AudioItem]:
    items = []
    for path in files:
        wav, rate = read_audio(path)
        items.append(AudioItem(str(path.relative_to(root)) if root else path.name, wav, rate))
    return items


def _read_packed(path: Path, limit: int | None) -> tuple[list[AudioItem], str]:
    """A packed ``.npz`` in the FSDD layout that ``zoo.data.audio.AudioClips`` reads (``audio`` samples
    concatenated, ``offsets``, ``sample_rate``): its test split (``is_test``) when marked, and, when
    ``speaker`` is stored, each speaker's clips joined in stored order into one item (FSDD's half-second
    digits are too short for PESQ and STOI on their own). Read here rather than through ``AudioClips``,
    whose module imports Lightning."""
    arrays = read_packed_arrays(path, ("audio", "offsets", "sample_rate", "is_test", "speaker"))
    audio, offsets = arrays["audio"], np.asarray(arrays["offsets"], dtype=np.int64)
    rate = int(np.asarray(arrays["sample_rate"]).reshape(()))
    test = np.asarray(arrays["is_test"], dtype=bool) if "is_test" in arrays else None
    speakers = arrays.get("speaker")
    if audio.dtype.kind not in "if":
        raise MediaError(path, f"array 'audio' must hold signed PCM or floats, got {audio.dtype}")
    scale = float(np.iinfo(audio.dtype).max + 1) if audio.dtype.kind == "i" else 1.0  # as soundfile reads PCM
    chosen = np.flatnonzero(test) if test is not None else np.arange(len(offsets) - 1)
    groups: dict[str, list[int]] = {}
    for index in chosen:
        groups.setdefault(str(speakers[index]) if speakers is not None else str(index), []).append(int(index))
    items = []
    for key, indices in list(groups.items())[:limit]:
        samples = np.concatenate([audio[offsets[i] : offsets[i + 1]] for i in indices]).astype(np.float32)
        wav = torch.from_numpy(samples / scale)
        items.append(
            AudioItem(f"{path.stem}/{key}", wav[None] if wav.ndim == 1 else wav.T.contiguous(), rate)
        )
    split = "test split" if test is not None else "all clips"
    if speakers is not None:
        split += ", each speaker's clips joined"
    return items, split


def _default_items(limit: int) -> tuple[list[AudioItem], str, str, list[str]]:
    """The bundle's clean speech, taking in turn from PocketSphinx, Codec 2's test files and FSDD's test
    speakers, so a small ``limit`` still mixes 16 kHz read speech, 8 kHz test sentences and digits."""
    root = shared_data()
    if root is None:
        raise MediaError(
            "zoo bench",
            "no audio given and the data bundle ($ZOO_SHARED_DATA or ../shared/data) is not here: pass a "
            "folder of audio files, one audio file or a packed FSDD-style .npz",
        )
    sources: list[list[AudioItem]] = []
    notes = []
    pocketsphinx = root / "audio/pocketsphinx"
    if pocketsphinx.is_dir():
        sources.append(_read_files(sorted(pocketsphinx.rglob("*.wav")), root / "audio"))
    codec2 = [root / "audio/codec2" / name for name in CODEC2_CLEAN]
    if all(p.is_file() for p in codec2):
        sources.append(_read_files(codec2, root / "audio"))
        notes.append(
            "Codec 2 test files: the clean ones only (not the vocoded m2400/f2400 or radio recordings)"
        )
    fsdd = root / "audio/fsdd/fsdd.npz"
    if fsdd.is_file():
        sources.append(_read_packed(fsdd, None)[0])
        notes.append("FSDD: the test split (takes 0-4), each speaker's 50 clips joined into one item")
    if not sources:
        raise MediaError(root / "audio", "holds none of pocketsphinx/, codec2/ or fsdd/fsdd.npz")
    items: list[AudioItem] = []
    for turn in range(max(len(s) for s in sources)):
        items += [s[turn] for s in sources if turn < len(s)]
    return items[:limit], "shared data audio/", "clean speech (PocketSphinx, Codec 2, FSDD test)", notes


# ---------------------------------------------------------------------------------------------- suite
class AudioSuite(Suite):
    """Speech tokenizers against Opus, Codec 2 and FLAC; see the module docstring for what is compared."""

    modality = "audio"
    rate_unit = "kbit/s"
    metrics: ClassVar[list[Metric]] = [
        Metric("PESQ", True, "WB", 3),
        Metric("STOI", True, "", 3),
        Metric("SI-SDR", True, "dB", 3),
        Metric("mel distance", False, "", 3),
    ]
    default_limit = 100

    def __init__(self) -> None:
        self.rate = 0  # the measured model's sample rate: every row is scored there
        self.prepared: dict[str, torch.Tensor] = {}  # name -> [C, T] at self.rate
        self.reconstructions: dict[str, torch.Tensor] = {}
        self.learned_rate: float | None = None

    # ------------------------------------------------------------------ items
    def load_items(self, data: str | None, limit: int | None) -> Items:
        """``data``: a folder of audio files (searched recursively), one audio file, or a packed FSDD-style
        ``.npz``; ``None``: the bundle's clean speech (see `_default_items`)."""
        limit = limit or self.default_limit
        if data is None:
            items, source, split, notes = _default_items(limit)
            return Items(items, source, split, [*notes, REFERENCE_NOTE])
        path = Path(data).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            if not files:
                raise MediaError(path, f"no audio files ({' '.join(sorted(AUDIO_SUFFIXES))}) found")
            return Items(_read_files(files[:limit], path), str(path), "all files", [REFERENCE_NOTE])
        if path.suffix.lower() == ".npz" and path.is_file():
            items, split = _read_packed(path, limit)
            return Items(items, str(path), split, [REFERENCE_NOTE])
        if path.is_file():
            return Items(_read_files([path], None), str(path), "one file", [REFERENCE_NOTE])
        raise MediaError(path, "not a folder of audio files, an audio file or a packed .npz of clips")

    # ------------------------------------------------------------------ learned
    def measure_learned(
        self, model: Tokenizer, items: Items, *, device: torch.device, name: str, kind: str = "learned"
    ) -> Row:
        """One clip at a time (lengths differ, and padding a batch would change what the encoder sees)."""
        rate = int(model.sample_rate)
        prepared = {
            item.name: model.prepare((item.wav, item.rate), path=item.name)[0] for item in items.items
        }
        first = next(iter(prepared.values()))
        with torch.no_grad():  # warm-up on a second of the first clip, not timed
            model.decode(model.encode(first[None, :, :rate].to(device)))
        encode_timer, decode_timer, memory = Timer(), Timer(), PeakMemory(device)
        tokens_by_item: dict[str, Tokens] = {}
        recon: dict[str, torch.Tensor] = {}
        with torch.no_grad(), memory.measure():
            for key, x in tqdm(prepared.items(), desc=f"{name} encode/decode", unit="clip", leave=False):
                with encode_timer(device):
                    tokens = model.encode(x[None].to(device))
                with decode_timer(device):
                    y = model.decode(tokens)
                recon[key] = y[0].float().clamp(-1, 1).cpu()  # as `zoo decode` writes it
                tokens_by_item[key] = tokens.to("cpu")
        self.rate, self.prepared, self.reconstructions = rate, prepared, recon
        scores = [speech_metrics(prepared[k], recon[k], rate) for k in prepared]
        seconds = sum(x.shape[-1] for x in prepared.values()) / rate
        batches = list(tokens_by_item.values())
        extra: dict[str, Any] = {"sample_rate": rate, "seconds": round(seconds, 3), **_covered(scores)}
        rate_all = token_rate(batches)
        raw_bits, entropy_bits = rate_all.raw_bits * rate_all.items, rate_all.entropy_bits
        if rate_all.continuous:
            extra["continuous"] = "latents counted at 16 bits per value"
        else:
            assert entropy_bits is not None
            entropy_bits *= rate_all.items
            extra.update(codebook_summary(batches))
        side_raw, side_entropy, side_notes = _side_bits(batches)
        if side_notes:
            extra["side streams"] = side_notes
            raw_bits += side_raw
            entropy_bits = None if entropy_bits is None else entropy_bits + side_entropy
        count = len(prepared)
        speed = {
            "encode clips/s": count / max(encode_timer.seconds, 1e-9),
            "decode clips/s": count / max(decode_timer.seconds, 1e-9),
            "encode audio-s/s": seconds / max(encode_timer.seconds, 1e-9),
            "decode audio-s/s": seconds / max(decode_timer.seconds, 1e-9),
        }
        if memory.peak_bytes is not None:
            speed["peak MiB"] = memory.peak_bytes / 2**20
        if kind == "learned":
            self.learned_rate = raw_bits / seconds / 1000
        return Row(
            name,
            kind,
            raw_bits / seconds / 1000,
            _mean(scores),
            entropy_rate=None if entropy_bits is None else entropy_bits / seconds / 1000,
            speed=speed,
            extra=extra,
            setting=f"{rate} Hz",
        )

    # ------------------------------------------------------------------ classic
    def classic_rows(self, items: Items, rates: list[float]) -> tuple[list[Row], list[str]]:
        """Opus at 6, 8, 10 and 12 kbit/s, then for each learned rate higher targets (16, 24, 32, 48, 64, 96,
        128, 192, 256) one by one until the *measured* rate reaches it (VBR lands near its target, not on
        it), up to 256 kbit/s, libopus' most for one channel; Codec 2 700C, 1200 and 3200; FLAC. All code
        the mono mix of the reference the tokenizer was scored against. A codec that is missing, or fails
        on these clips, is reported in the returned reasons instead of stopping the benchmark."""
        if not self.prepared:
            raise RuntimeError("measure_learned first: the classic codecs code the clips it prepared")
        refs = {k: x.mean(0).numpy() for k, x in self.prepared.items()}
        rows: list[Row] = []
        skipped: list[str] = []

        def attempt(
            family: str,
            setting: str,
            codec: Callable[[np.ndarray, int], tuple[np.ndarray, int]],
            **extra: str,
        ) -> Row | None:
            try:
                row = self._classic(family, setting, refs, codec)
            except Exception as error:  # noqa: BLE001 (a codec's failure costs its row, not the report)
                skipped.append(f"{family} {setting}: failed on these clips ({type(error).__name__}: {error})")
                return None
            row.extra.update(extra)
            rows.append(row)
            return row

        opus, why = opus_backend()
        if opus is None:
            skipped.append(why)
        else:
            opus_extra = {
                "backend": "PyAV (libopus)" if opus == "pyav" else "opusenc/opusdec",
                "counted": "Opus packets only (Ogg pages and headers not counted)",
            }

            def run_opus(kbps: float) -> Row | None:
                codec = partial(opus_roundtrip, kbps=kbps, backend=opus)
                return attempt("Opus", f"{kbps:g} kbit/s", codec, **opus_extra)

            measured = {kbps: run_opus(kbps) for kbps in OPUS_LADDER}
            for target in rates:
                for kbps in OPUS_HIGHER:
                    if any(r is not None and r.rate >= target for r in measured.values()):
                        break
                    if kbps not in measured:
                        measured[kbps] = run_opus(kbps)
                reached = [r.rate for r in measured.values() if r is not None]
                if reached and max(reached) < target:
                    skipped.append(
                        f"Opus stops at {OPUS_HIGHER[-1]} kbit/s, libopus' most for one channel (measured "
                        f"{max(reached):.4g}); the learned rate {target:.4g} kbit/s is above every Opus point, "
                        "so it is not compared with Opus"
                    )
        codec2, why = codec2_backend()
        if codec2 is None:
            skipped.append(why)
        else:
            for mode in CODEC2_MODES:
                attempt(
                    "Codec2",
                    mode,
                    partial(codec2_roundtrip, mode=mode, backend=codec2),
                    backend="pycodec2" if codec2 == "pycodec2" else "c2enc/c2dec",
                    counted="coded frames, each padded to whole bytes",
                    note=f"codes 8 kHz speech: resampled to {CODEC2_RATE} Hz and back, decoder delay removed",
                )
        attempt("FLAC", "lossless 16-bit", flac_roundtrip, counted="the whole file, headers included")
        return rows, skipped

    def _classic(
        self,
        family: str,
        setting: str,
        refs: dict[str, np.ndarray],
        codec: Callable[[np.ndarray, int], tuple[np.ndarray, int]],
    ) -> Row:
        scores, size = [], 0
        for key, wav in tqdm(refs.items(), desc=f"{family} {setting}", unit="clip", leave=False):
            decoded, nbytes = codec(wav, self.rate)
            size += nbytes
            scores.append(
                speech_metrics(torch.from_numpy(wav)[None], torch.from_numpy(decoded)[None], self.rate)
            )
        seconds = sum(len(w) for w in refs.values()) / self.rate
        extra: dict[str, Any] = {"bytes": size, **_covered(scores)}
        return Row(
            f"{family} {setting}",
            "classic",
            8 * size / seconds / 1000,
            _mean(scores),
            family,
            setting,
            extra=extra,
        )

    # ------------------------------------------------------------------ pictures
    def samples(
        self, model: Tokenizer, items: Items, classic: list[Row], path: Path, *, device: torch.device
    ) -> Path | None:
        """Log-mel spectrograms of two clips: the reference, the tokenizer's reconstruction and Opus at the
        cheapest measured setting at or above the tokenizer's rate (the highest when none reaches it)."""
        keys = list(self.prepared)[:2]
        if not keys:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        columns = [("original", {k: self.prepared[k].mean(0) for k in keys})]
        columns.append(
            (getattr(model, "arch", "tokenizer"), {k: self.reconstructions[k].mean(0) for k in keys})
        )
        opus_rows = sorted((r for r in classic if r.family == "Opus"), key=lambda r: r.rate)
        backend, _ = opus_backend()
        if opus_rows and backend is not None:
            learned = self.learned_rate or 0.0
            row = next((r for r in opus_rows if r.rate >= learned), opus_rows[-1])
            kbps = float(row.setting.split()[0])
            coded = {
                k: torch.from_numpy(
                    opus_roundtrip(self.prepared[k].mean(0).numpy(), self.rate, kbps, backend)[0]
                )
                for k in keys
            }
            columns.append((f"Opus {row.setting} ({row.rate:.3g} kbit/s)", coded))
        figure, axes = plt.subplots(
            len(keys), len(columns), figsize=(4 * len(columns), 2.6 * len(keys)), squeeze=False
        )
        for r, key in enumerate(keys):
            for c, (label, clips) in enumerate(columns):
                mel = _log_mel(clips[key], self.rate)
                axes[r][c].imshow(
                    mel,
                    origin="lower",
                    aspect="auto",
                    vmin=-100,
                    vmax=0,
                    cmap="magma",
                    extent=(0, clips[key].shape[-1] / self.rate, 0, mel.shape[0]),
                )
                axes[r][c].set_title(f"{label}\n{key}", fontsize=8)
                axes[r][c].set_xlabel("s", fontsize=7)
                axes[r][c].set_ylabel("mel band", fontsize=7)
                axes[r][c].tick_params(labelsize=6)
        figure.tight_layout()
        from .._atomic import atomic_path

        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
        plt.close(figure)
        return path


def _log_mel(wav: torch.Tensor, rate: int) -> np.ndarray:
    """80-band log-mel power (dB re full scale) for the pictures: 1024-sample windows at 24 kHz, scaled."""
    import torchaudio

    n_fft = 2 ** round(math.log2(1024 * rate / 24000))
    mel = torchaudio.transforms.MelSpectrogram(rate, n_fft=n_fft, hop_length=n_fft // 4, n_mels=80)(
        wav.float()
    )
    return (10 * torch.log10(mel.clamp_min(1e-10) / (n_fft / 2) ** 2)).numpy()


def _side_bits(batches: list[Tokens]) -> tuple[float, float, list[str]]:
    """Raw and empirical-entropy bits (summed over items) of the side id streams the decoder reads: an
    integer ``side[name]`` with ``meta[name + "_codebook_sizes"]`` counts like ids; any other side tensor
    at 16 bits a value."""
    raw = entropy = 0.0
    notes = []
    for name in batches[0].side:
        sizes = batches[0].meta.get(f"{name}_codebook_sizes")
        tensors = [t.side[name] for t in batches]
        if sizes and not tensors[0].is_floating_point():
            grid_from = 2 if len(sizes) > 1 else 1
            streams = [
                Tokens(ids=s.long(), grid=tuple(s.shape[grid_from:]), codebook_sizes=tuple(sizes))
                for s in tensors
            ]
            rate = token_rate(streams)
            raw += rate.raw_bits * rate.items
            entropy += (rate.entropy_bits or 0.0) * rate.items
            notes.append(f"{name}: {len(sizes)} codebook(s) of {sizes[0]} counted like the ids")
        else:
            bits = 16.0 * sum(s.numel() for s in tensors)
            raw += bits
            entropy += bits
            notes.append(f"{name}: {tensors[0].dtype} values counted at 16 bits each")
    return raw, entropy, notes


def _covered(scores: list[dict[str, float]]) -> dict[str, Any]:
    """How many clips each mean covers, where a measure could not score them all."""
    out = {}
    for name in scores[0]:
        scored = sum(not math.isnan(s[name]) for s in scores)
        if scored < len(scores):
            out[f"{name} clips"] = f"{scored} of {len(scores)}"
    return out


def _mean(scores: list[dict[str, float]]) -> dict[str, float]:
    out = {}
    for name in scores[0]:
        values = [s[name] for s in scores if not math.isnan(s[name])]
        out[name] = sum(values) / len(values) if values else math.nan
    return out

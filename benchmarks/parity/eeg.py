"""TFM-Tokenizer and BioCodec against their upstream repositories, on real EEG recordings.

**TFM-Tokenizer** (Jathurshan0330/TFM-Tokenizer). Upstream's official pipeline for its released
tokenizers is its data preparation plus its loaders: ``datasets_processing/TUAB/process.py`` and
``TUEV/process.py`` read each EDF with ``mne.io.read_raw_edf``, run ``raw.filter(l_freq=0.1, h_freq=75.0)``,
``raw.notch_filter(50.0)`` and ``raw.resample(256)`` (MNE defaults throughout) and store 10 s (TUAB, in
volts) or 5 s (TUEV, ``get_data(units="uV")``) windows; ``CHB-MIT/process_*.py`` stores its 256 Hz
recordings unfiltered in 10 s windows. ``datasets/data_loaders.py`` resamples each stored window to
200 Hz with ``scipy.signal.resample`` and divides it by ``np.quantile(|X|, 0.95, axis=-1) + 1e-8``;
``tfm_tokenizer_inference.py`` then takes ``utils.utils.get_stft_torch`` of the window and calls
``TFM_VQVAE2_deep.tokenize`` (here ``forward``, which also gives the decoded spectrogram). The network is
``models.tfm_token.get_tfm_tokenizer_2x2x8`` and its checkpoint is the bare ``state_dict`` that
``tfm_tokenizer_token_learning.py`` saves as ``tfm_tokenizer_last.pth``. ``--option tag=tuev`` (default),
``tuab``, ``chbmit`` or ``multi_dataset`` picks the dataset recipe on both sides (the zoo side by loading
that registry tag). Upstream's scripts read TUH EDFs; here the same steps run on the shared recordings
MNE reads. Where a recording's Nyquist frequency is at or below 75 Hz, upstream's ``raw.filter`` would
refuse it; both sides then apply the high-pass alone (the zoo's documented fallback).

**BioCodec** (klean2050/BioCodec-release). Its released codec was pretrained on windows made by
``biocodec/datasets/ch2file.py`` (per channel of a whole recording: subtract the median, divide by
``scipy.stats.iqr + 1e-6`` in float32, cut 5 s windows of 250 Hz, whole windows only) and loaded by
``datasets/h5_dataset_eeg.py`` (``torch.clamp`` to +-10; ``torchaudio.functional.resample`` to the model's
250 Hz). The shared recordings are not at 250 Hz, so they are resampled first with that same
``torchaudio`` call; the recording itself is read with ``mne.io.read_raw`` as BioCodec's downstream
dataset scripts do. Tokens come from ``BioCodecModel.encode`` and reconstructions from
``BioCodecModel.decode`` of ``BioCodecModel._get_optimized_model`` built with ``configs/ft_config.yaml``'s
``pretrained`` block; the checkpoint layout is the trainer's ``{"model_state_dict": ...}`` with the
``_orig_mod.`` prefix that ``torch.compile`` leaves.

Both sides use the same channels: those of type EEG in MNE, in microvolts for both readers, that
``zoo.io.bad_channels`` accepts (the zoo's ``prepare`` refuses flat, clipped and stair-step channels). Upstream's scripts keep whole windows
only; the zoo also tokenizes the remainder (zero-padded) unless ``encode(..., drop_partial=True)``, which
these adapters pass by default (``--option drop_partial=0`` shows the zoo's default).

Needs MNE (``pip install mne``), and for TFM ``linear-attention-transformer`` 0.19.1 (with
``product-key-memory`` < 0.2 and ``local-attention`` < 1.9, the versions of its time) on the path.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .common import Adapter, Output, randomize, through_converter

# Real recordings MNE and the zoo both read, each with channels the zoo accepts: 256, 200, 200, 512 and
# 128 Hz (so every resampling branch and the high-pass-only fallback are exercised).
EEG_FILES = (
    "eeg/eeglab/test.bdf",
    "eeg/mne_testing/NihonKohden/MB0400FU.EEG",
    "eeg/eeglab/testbva.vhdr",
    "eeg/mne_testing/EDF/test_reduced.edf",
    "eeg/eeglab/eeglab_data.set",
    "eeg/mne_testing/EDF/test_edf_overlapping_annotations.edf",
    "eeg/mne_testing/BDF/multiple_annotation_chans.bdf",
)

# Each TFM tag's upstream recipe: band-pass + 50 Hz notch?, window seconds, unit of the stored data.
TFM_RECIPES: dict[str, tuple[bool, int, str]] = {
    "tuev": (True, 5, "uV"),
    "multi_dataset": (True, 5, "uV"),
    "tuab": (True, 10, "V"),
    "chbmit": (False, 10, "uV"),
}


def _flag(options: dict[str, Any], key: str, default: bool) -> bool:
    value = str(options.get(key, int(default))).lower()
    return value in ("1", "true", "yes")


@functools.lru_cache(maxsize=16)
def shared_channels(path: str) -> tuple[str, ...]:
    """Channels both sides tokenize: MNE types them EEG and ``zoo.io.bad_channels`` accepts them."""
    import mne

    from zoo.io import read_eeg
    from zoo.io.eeg import bad_channels

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = read_eeg(path)
        raw = mne.io.read_raw(path, preload=False, verbose="error")
        raw.load_data()
    bad = bad_channels(rec.data, rec.channel_names)
    eeg = set(np.array(raw.ch_names)[mne.pick_types(raw.info, eeg=True, exclude=[])])
    # both readers must give the same microvolts: channels in another unit (accelerometers in g, which the
    # zoo keeps in their own unit and MNE scales as volts) are left out
    same = {
        n
        for n, x in zip(rec.channel_names, rec.data.double().numpy(), strict=True)
        if n in eeg
        and np.allclose(
            x, raw.get_data(picks=[n], units="uV")[0], rtol=1e-5, atol=1e-3 * (np.abs(x).max() + 1)
        )
    }
    names = tuple(n for n in rec.channel_names if n not in bad and n in same)
    if not names:
        raise SystemExit(f"{path}: no EEG channel that both MNE and the zoo accept")
    return names


def read_mne(path: Path, channels: tuple[str, ...]) -> Any:
    """``mne.io.read_raw`` of the file (preloaded), picked to ``channels``."""
    import mne

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = mne.io.read_raw(str(path), preload=True, verbose="error")
    return raw.pick(list(channels))


class _EEGAdapter(Adapter):
    modality = "eeg"

    def files(self, data: Path, limit: int) -> list[Path]:
        found = [data / f for f in EEG_FILES if (data / f).exists()]
        if not found:
            raise SystemExit(f"no EEG recordings under {data}; pass --data or --files")
        return found[:limit]

    @property
    def drop_partial(self) -> bool:
        return _flag(self.options, "drop_partial", True)

    def zoo_tokens(self, model: Any, path: Path) -> tuple[torch.Tensor, Any]:
        """The zoo's path for one file: ``zoo.io.read_eeg``, ``prepare`` on the channels both sides read,
        ``encode``; returns the prepared recording and its tokens."""
        from zoo.io import read_eeg

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rec = read_eeg(path)
        x = model.prepare(rec, channels=list(shared_channels(str(path))))
        return x, model.encode(x, drop_partial=self.drop_partial)


# ---------------------------------------------------------------------------------------------- TFM
class TFMAdapter(_EEGAdapter):
    model = "tfm_tokenizer"
    tag = "tfm_tokenizer.tuev"
    card = "tfm"
    upstream_files = ("models/tfm_token.py", "utils/utils.py")
    # utils/utils.py imports PyHealth's metrics and matplotlib at top level, for evaluation and plots only
    stubs = ("pyhealth", "pyhealth.metrics", "matplotlib", "matplotlib.pyplot")
    description = "TFM-Tokenizer 2x2x8: upstream's data scripts + loaders + tokenize vs prepare/encode"

    def __init__(self, upstream: Path, *, seed: int = 0, options: dict[str, Any] | None = None) -> None:
        super().__init__(upstream, seed=seed, options=options)
        self.recipe = str(self.options.get("tag", "tuev"))
        if self.recipe not in TFM_RECIPES:
            raise SystemExit(f"--option tag= must be one of {', '.join(TFM_RECIPES)}, got {self.recipe!r}")
        self.tag = f"tfm_tokenizer.{self.recipe}"

    def build(self) -> tuple[Any, Any]:
        # Lightning (imported by parts of the zoo) probes find_spec("matplotlib") at import, which fails on a
        # stub: import it while matplotlib is still plainly missing
        with contextlib.suppress(ImportError):
            import lightning  # noqa: F401
        with self.imports():
            from models.tfm_token import get_tfm_tokenizer_2x2x8  # type: ignore[import-not-found]

        torch.manual_seed(self.seed)
        net = randomize(get_tfm_tokenizer_2x2x8(code_book_size=8192, emb_size=64), self.seed).eval()
        # upstream's uniform +-1/8192 init leaves every code within 1e-4 of the origin, where float32
        # rounding decides the nearest one; trained codes lie on the unit sphere like the encoder's output
        gen = torch.Generator().manual_seed(self.seed + 1)
        with torch.no_grad():
            codes = F.normalize(torch.randn(8192, 64, generator=gen), dim=-1)
            net.quantizer.embedding.weight.copy_(codes)
            net.quantizer.ema_w.copy_(codes)
            net.quantizer.cluster_size.fill_(1.0)
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}  # tfm_tokenizer_last.pth
        return net, through_converter(self.tag, state)

    def run_upstream(self, net: Any, path: Path) -> Output:
        from einops import rearrange
        from scipy.signal import resample
        from utils.utils import get_stft_torch  # type: ignore[import-not-found]

        filtered, seconds, unit = TFM_RECIPES[self.recipe]
        raw = read_mne(path, shared_channels(str(path)))
        if filtered:
            nyquist = raw.info["sfreq"] / 2
            raw.filter(l_freq=0.1, h_freq=75.0 if 75.0 < nyquist else None, verbose="error")
            if 50.0 + 50.0 / 400 + 0.5 <= nyquist:
                raw.notch_filter(50.0, verbose="error")
        raw.resample(256, verbose="error")  # a no-op for CHB-MIT's own 256 Hz files
        signals = raw.get_data(units="uV") if unit == "uV" else raw.get_data()
        block = 256 * seconds
        ids, latents, decoded = [], [], []
        for i in range(signals.shape[1] // block):
            x = resample(signals[:, i * block : (i + 1) * block], 200 * seconds, axis=-1)
            scale = np.quantile(np.abs(x), q=0.95, axis=-1, method="linear", keepdims=True) + 1e-8
            x = torch.FloatTensor(x / scale)[None]  # [B=1, C, T]
            spec = rearrange(get_stft_torch(x, resampling_rate=200), "B C F T -> (B C) F T")
            recon, indices, _, quant_in = net(spec, rearrange(x, "B C T -> (B C) T"))
            ids.append(indices)
            latents.append(quant_in)
            decoded.append(recon)  # the decoder's spectrogram, in the window's normalised units
        if not ids:
            raise SystemExit(f"{path}: shorter than one {seconds} s window")
        return Output(
            ids=torch.stack(ids, 1),  # [C, W, F]
            latent=torch.stack(latents, 1),  # [C, W, F, 64]
            decoded=torch.stack(decoded, 1),  # [C, W, 100, F]
        )

    def run_zoo(self, model: Any, path: Path) -> Output:
        x, tokens = self.zoo_tokens(model, path)
        # TFM's decode is a Griffin-Lim waveform, which upstream lacks; its decoder output is the spectrogram,
        # compared in normalised units (recordings with large offsets have windows scaled by 1e5 and more)
        spec = model.decode_spectrogram(tokens)[0] / tokens.side["gain"][0][..., None, None]
        c, w, frames = tokens.grid
        windows = model.to_windows(x[..., : w * model.window_samples].float(), model.window_samples)
        offset, gain = model.channel_statistics(windows)
        normalised = model.normalise(windows, offset, gain).reshape(-1, 1, model.window_samples)
        latent = model._encode(model.spectrogram(normalised), model._temporal_features(normalised))
        latent = latent.reshape(c, w, -1, frames).transpose(-1, -2)  # [C, W, F, 64]
        return Output(ids=tokens.ids[0], latent=latent, decoded=spec)


# ---------------------------------------------------------------------------------------------- BioCodec
class BioCodecAdapter(_EEGAdapter):
    model = "biocodec"
    tag = "biocodec.tueg"
    card = "biocodec"
    upstream_files = (
        "biocodec/model.py",
        "biocodec/modules/seanet.py",
        "biocodec/modules/conv.py",
        "biocodec/quantization/core_vq.py",
        "biocodec/quantization/quantizer.py",
    )
    description = "BioCodec: ch2file normalisation + 5 s windows + encode/decode vs prepare/encode/decode"

    def build(self) -> tuple[Any, Any]:
        with self.imports():
            from biocodec.model import BioCodecModel  # type: ignore[import-not-found]

        torch.manual_seed(self.seed)
        net = BioCodecModel._get_optimized_model(
            sample_rate=250,
            causal=True,
            model_norm="weight_norm",
            signal_normalize=False,
            segment=None,
            name="my_biocodec",
            n_q=6,
            q_bins=256,
        )
        net = randomize(net, self.seed).eval()
        gen = torch.Generator().manual_seed(self.seed + 1)
        with torch.no_grad():  # k-means-initialised codebooks start at zero: give them trained-like codes
            for layer in net.quantizer.vq.layers:
                book = layer._codebook
                codes = F.normalize(torch.randn(book.embed.shape, generator=gen), dim=-1)
                book.embed.copy_(codes)
                book.embed_avg.copy_(codes)
                book.cluster_size.fill_(1.0)
                book.inited.fill_(1.0)
        state = {f"_orig_mod.{k}": v.detach().clone() for k, v in net.state_dict().items()}
        return net, through_converter(self.tag, {"epoch": 0, "model_state_dict": state})

    def run_upstream(self, net: Any, path: Path) -> Output:
        import torchaudio.functional as AF
        from scipy.stats import iqr

        raw = read_mne(path, shared_channels(str(path)))
        rate = raw.info["sfreq"]
        data = torch.from_numpy(raw.get_data(units="uV")).float()
        if rate != 250:
            data = AF.resample(data, int(rate), 250)
        data = data.numpy()
        median = np.median(data, axis=1, keepdims=True)  # ch2file.py, in float32
        data = data - median
        scale = iqr(data, axis=1, keepdims=True) + 1e-6
        data = data / scale
        seq_len = 1250
        count = data.shape[1] // seq_len
        if count == 0:
            raise SystemExit(f"{path}: shorter than one 5 s window")
        segments = torch.from_numpy(data[:, : count * seq_len].reshape(-1, seq_len).copy())
        segments = torch.clamp(segments, max=10, min=-10)[:, None]  # h5_dataset_eeg.py
        frames = net.encode(segments)
        codes = frames[0][0]  # [N, K, T]
        latent = net.encoder(segments)
        recon = net.decode(frames)[..., :seq_len]  # [N, 1, 1250], normalised units
        c = data.shape[0]
        return Output(
            ids=codes.reshape(c, count, *codes.shape[1:]),  # [C, W, K, F]
            latent=latent.reshape(c, count, *latent.shape[1:]),
            decoded=recon.reshape(c, count * seq_len) * torch.from_numpy(scale) + torch.from_numpy(median),
        )

    def run_zoo(self, model: Any, path: Path) -> Output:
        x, tokens = self.zoo_tokens(model, path)
        decoded = model.decode(tokens)[0]  # [C, T] microvolts
        offset, gain = tokens.side["offset"], tokens.side["gain"]
        c, w, _ = tokens.grid
        covered = model.normalise(x[..., : w * model.window_samples].float(), offset, gain)
        latent = model.encoder(
            model.to_windows(covered, model.window_samples).reshape(-1, 1, model.window_samples)
        )
        return Output(
            ids=tokens.ids[0].permute(1, 2, 0, 3),  # [K, C, W, F] -> [C, W, K, F]
            latent=latent.reshape(c, w, *latent.shape[1:]),
            decoded=decoded,
        )


ADAPTERS = {"tfm_tokenizer": TFMAdapter, "biocodec": BioCodecAdapter}

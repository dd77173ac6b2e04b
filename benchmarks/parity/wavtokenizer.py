"""WavTokenizer against jishengpeng/WavTokenizer: upstream's README inference path next to the zoo's.

Upstream's official tokenization (README "Infer", parts 1 and 2; ``infer.py`` does the same in a loop):
``torchaudio.load`` the file, ``encoder.utils.convert_audio(wav, sr, 24000, 1)`` (average the channels,
then ``torchaudio.transforms.Resample``), ``WavTokenizer.encode_infer(wav, bandwidth_id=0)`` for the
quantized features and codes, and ``WavTokenizer.decode(features, bandwidth_id=0)`` for the audio. The
network comes from the paper config ``configs/wavtokenizer_smalldata_frame75_..._attn.yaml`` through
``decoder.pretrained.WavTokenizer.from_hparams0802``, as ``from_pretrained0802`` builds it, and its
Lightning ``.ckpt`` layout (``{"state_dict": ...}``) goes through the zoo's converter.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from .common import DEFAULT_DATA, Adapter, Output, randomize, real_files, through_converter

CONFIGS = {
    "75": "configs/wavtokenizer_smalldata_frame75_3s_nq1_code4096_dim512_kmeans200_attn.yaml",
    "40": "configs/wavtokenizer_smalldata_frame40_3s_nq1_code4096_dim512_kmeans200_attn.yaml",
}


def speech_files(data: Path, limit: int) -> list[Path]:
    """pocketsphinx's 16 kHz speech and then codec2's 8 kHz clips (``common.real_files``)."""
    return real_files("audio", data, limit)


def read_like_torchaudio(path: Path) -> tuple[torch.Tensor, int]:
    """``torchaudio.load(path)``: float32 ``[C, T]`` scaled to [-1, 1].

    torchaudio >= 2.9 hands ``load`` to TorchCodec; where that is missing, this reads the file the way
    torchaudio's own soundfile backend did (libsndfile's float decode of the PCM/mu-law samples).
    """
    import torchaudio

    with contextlib.suppress(ImportError, RuntimeError):
        return torchaudio.load(str(path))
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(data.T.copy()), int(rate)


class _Capture:
    """Keeps the output of the module it hooks (the pre-quantization latents)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.value: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module: Any, args: Any, output: torch.Tensor) -> None:
        self.value = output.detach().clone()


class WavTokenizerAdapter(Adapter):
    model = "wavtokenizer_75"
    tag = "wavtokenizer_75.small_libritts"
    card = "wavtokenizer"
    modality = "audio"
    upstream_files = (
        "decoder/pretrained.py",
        "decoder/feature_extractors.py",
        "decoder/models.py",
        "decoder/heads.py",
        "decoder/modules.py",
        "decoder/spectral_ops.py",
        "encoder/utils.py",
        "encoder/model.py",
        "encoder/modules/seanet.py",
        "encoder/modules/conv.py",
        "encoder/quantization/vq.py",
        "encoder/quantization/core_vq.py",
    )
    description = "paper config (frame75 yaml; --option rate=40 for frame40), README encode_infer/decode"

    def files(self, data: Path, limit: int) -> list[Path]:
        return speech_files(data, limit)

    def build(self) -> tuple[Any, Any]:
        rate = str(self.options.get("rate", "75"))
        if rate not in CONFIGS:
            raise SystemExit(f"--option rate= takes one of {sorted(CONFIGS)}, got {rate!r}")
        with self.imports():
            from decoder.pretrained import WavTokenizer
            from encoder.utils import convert_audio

        self.convert_audio = convert_audio
        upstream = WavTokenizer.from_hparams0802(str(self.upstream / CONFIGS[rate]))
        randomize(upstream, self.seed)
        self._condition(upstream)
        upstream.eval()
        # the Lightning checkpoint keeps the whole module under "state_dict" (feature_extractor.*, backbone.*,
        # head.*); from_pretrained0802 reads exactly that key.
        checkpoint = {"state_dict": dict(upstream.state_dict()), "pytorch-lightning_version": "1.8.6"}
        tag = self.tag if rate == "75" else "wavtokenizer_40.small_libritts"
        ours = through_converter(tag, checkpoint)
        self.up_latent = _Capture(upstream.feature_extractor.encodec.encoder)
        self.zoo_latent = _Capture(ours.encoder)
        return upstream, ours

    def _condition(self, upstream: Any) -> None:
        """Centre and scale the random encoder's output and give the quantizer a k-means-like codebook.

        Near-initial weights barely respond to speech: latents are a constant part plus a variation
        about 30 times smaller, so either codes lie within float32 rounding of one another or, scaled
        up, the rounding of the constant part decides near ties. The first conv's gain is raised 30x so
        the audio drives the network, then the last conv is shifted and scaled to zero-mean, unit
        latents on three speech files of the shared data (seeded noise where there are none). Upstream
        fills its codebook by k-means on the first training batch of speech; as a stand-in, codes are
        such latents plus jitter, so real speech spreads over many codes.
        """
        gen = torch.Generator().manual_seed(self.seed + 1)
        encodec = upstream.feature_extractor.encodec
        last = encodec.encoder.model[-1].conv.conv  # weight-normed Conv1d: weight_g, weight_v, bias
        book = encodec.quantizer.vq.layers[0]._codebook
        clips = []
        with contextlib.suppress(SystemExit):
            for path in speech_files(DEFAULT_DATA, 3):
                wav, sr = read_like_torchaudio(path)
                clips.append(self.convert_audio(wav, sr, 24000, 1)[None])
        if not clips:
            clips = [torch.randn(1, 1, 24000 * 4, generator=gen) * 0.1]
        with torch.no_grad():
            encodec.encoder.model[0].conv.conv.weight_g.mul_(30.0)
            latents = torch.cat([encodec.encoder(c)[0] for c in clips], dim=1)  # [512, frames]
            mean = latents.mean(1)
            std = (latents - mean[:, None]).std()
            last.weight_g.mul_(1 / std)
            last.bias.copy_((last.bias - mean) / std)
            latents = torch.cat([encodec.encoder(c)[0] for c in clips], dim=1).t()  # about N(0, 1)
            picks = latents[torch.randint(len(latents), (book.embed.shape[0],), generator=gen)]
            embed = picks + torch.randn(picks.shape, generator=gen) * 0.5
            book.embed.copy_(embed)
            book.embed_avg.copy_(embed)
            book.cluster_size.fill_(1.0)
            book.inited.fill_(1.0)

    def run_upstream(self, upstream_model: Any, path: Path) -> Output:
        wav, sr = read_like_torchaudio(path)
        wav = self.convert_audio(wav, sr, 24000, 1)
        bandwidth_id = torch.tensor([0])
        features, codes = upstream_model.encode_infer(wav, bandwidth_id=bandwidth_id)
        audio = upstream_model.decode(features, bandwidth_id=bandwidth_id)
        # upstream decodes whole frames (frames * hop samples); the zoo trims to the clip, so compare that
        return Output(ids=codes[0], latent=self.up_latent.value, decoded=audio[..., : wav.shape[-1]])

    def run_zoo(self, zoo_model: Any, path: Path) -> Output:
        from zoo.io import read_audio

        x = zoo_model.prepare(read_audio(path), path=path)
        tokens = zoo_model.encode(x)
        audio = zoo_model.decode(tokens)
        return Output(ids=tokens.ids, latent=self.zoo_latent.value, decoded=audio[:, 0])


ADAPTERS = {"wavtokenizer": WavTokenizerAdapter}

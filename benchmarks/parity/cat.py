"""CAT against OpenMOSS/MOSS-Audio-Tokenizer: upstream's README / ``demo/test_reconstruction.py`` path.

Upstream's official tokenization (``demo/test_reconstruction.py``, README "Usage"): ``torchaudio.load``
the file, ``torchaudio.functional.resample`` to ``model.sampling_rate`` when the rates differ,
``wav.unsqueeze(0)``, ``model.encode(wav, return_dict=True).audio_codes`` (``[n_q, B, T']``) and
``model.decode(audio_codes, return_dict=True).audio``. The network is ``MossAudioTokenizerModel`` built
from the checkout's ``config.json`` (the paper model, 1.6 B parameters) with seeded random weights,
saved with ``save_pretrained`` as the released Hub folder is (``config.json`` plus F32 safetensors
shards and their ``model.safetensors.index.json``), and that index goes through the zoo's converter.

Options: ``size=tiny`` builds the zoo's ``cat_tiny`` shape on both sides instead (seconds instead of
minutes; the paper size peaks at about 15 GB of memory); ``upstream_last_frame=1`` asks the zoo for
upstream's filler ids on a last partial token (the zoo's default quantizes that token's audio);
``chunk_duration=SECONDS`` runs both sides chunked (upstream ``encode/decode(chunk_duration=...)``, the
zoo ``encode_stream/decode_stream``), with ``upstream_cache=1`` giving the zoo upstream's KV ring.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from .common import Adapter, Output, randomize
from .wavtokenizer import read_like_torchaudio, speech_files

PACKAGE = "moss_audio_tokenizer_checkout"


def _flag(value: Any) -> bool:
    return str(value).lower() in {"1", "true", "yes", "on"}


def tiny_config(base: dict[str, Any]) -> dict[str, Any]:
    """``config.json`` reshaped to the zoo's ``cat_tiny``: same module types and options, smaller numbers."""
    from zoo.models.audio.cat import _TINY

    t = _TINY
    stage = {k: v for k, v in base["encoder_kwargs"][1].items() if k not in _STAGE_NUMBERS}
    encoder: list[dict[str, Any]] = [{"module_type": "PatchedPretransform", "patch_size": t["patch_size"]}]
    in_dim = t["patch_size"]
    for i, dim in enumerate(t["dims"]):
        encoder.append(
            {
                **stage,
                "input_dimension": in_dim,
                "output_dimension": t["out_dims"][i],
                "d_model": dim,
                "num_heads": t["heads"][i],
                "num_layers": t["depths"][i],
                "dim_feedforward": t["ffn_dims"][i],
            }
        )
        if i < len(t["dims"]) - 1:
            encoder.append({"module_type": "PatchedPretransform", "patch_size": t["patches"][i]})
            in_dim = t["out_dims"][i] * t["patches"][i]
    decoder: list[dict[str, Any]] = []
    for block in reversed(encoder):
        if block["module_type"] == "PatchedPretransform":
            decoder.append(dict(block))
        else:
            decoder.append(
                {
                    **block,
                    "input_dimension": block["output_dimension"],
                    "output_dimension": block["input_dimension"],
                }
            )
    hop = t["patch_size"]
    for p in t["patches"]:
        hop *= p
    quantizer = {
        **base["quantizer_kwargs"],
        "input_dim": t["out_dims"][-1],
        "output_dim": t["out_dims"][-1],
        "rvq_dim": t["rvq_dim"],
        "num_quantizers": t["num_quantizers"],
        "codebook_size": t["codebook_size"],
        "codebook_dim": t["codebook_dim"],
    }
    return {
        **base,
        "encoder_kwargs": encoder,
        "decoder_kwargs": decoder,
        "downsample_rate": hop,
        "causal_transformer_context_duration": t["context_seconds"],
        "quantizer_kwargs": quantizer,
    }


_STAGE_NUMBERS = (
    "input_dimension",
    "output_dimension",
    "d_model",
    "num_heads",
    "num_layers",
    "dim_feedforward",
)


class CATAdapter(Adapter):
    model = "cat"
    tag = "cat.moss"
    card = "cat"
    modality = "audio"
    upstream_files = (
        "__init__.py",
        "configuration_moss_audio_tokenizer.py",
        "modeling_moss_audio_tokenizer.py",
    )
    description = "paper config.json (--option size=tiny for a small one), demo/test_reconstruction.py path"

    def files(self, data: Path, limit: int) -> list[Path]:
        return speech_files(data, limit)

    def _import(self) -> tuple[Any, Any]:
        """Upstream's remote-code package, imported from the checkout (as ``trust_remote_code`` would)."""
        with self.imports():
            if PACKAGE not in sys.modules:
                spec = importlib.util.spec_from_file_location(
                    PACKAGE, self.upstream / "__init__.py", submodule_search_locations=[str(self.upstream)]
                )
                assert spec is not None and spec.loader is not None
                package = importlib.util.module_from_spec(spec)
                sys.modules[PACKAGE] = package
                spec.loader.exec_module(package)
            config = importlib.import_module(f"{PACKAGE}.configuration_moss_audio_tokenizer")
            modeling = importlib.import_module(f"{PACKAGE}.modeling_moss_audio_tokenizer")
        return config.MossAudioTokenizerConfig, modeling.MossAudioTokenizerModel

    def build(self) -> tuple[Any, Any]:
        import zoo

        size = self.options.get("size", "paper")
        if size not in ("paper", "tiny"):
            raise SystemExit(f"--option size= takes paper or tiny, got {size!r}")
        self.last_frame = _flag(self.options.get("upstream_last_frame", 0))
        self.upstream_cache = _flag(self.options.get("upstream_cache", 0))
        chunk = self.options.get("chunk_duration")
        self.chunk_duration = None if chunk is None else float(chunk)
        config_cls, model_cls = self._import()
        raw = json.loads((self.upstream / "config.json").read_text())
        config = config_cls(**(raw if size == "paper" else tiny_config(raw)))
        upstream = model_cls(config).eval()
        randomize(upstream, self.seed)
        self._condition(upstream)
        with tempfile.TemporaryDirectory() as tmp:
            # the released folder: config.json and two F32 safetensors shards with their index
            total = sum(t.numel() * t.element_size() for t in upstream.state_dict().values())
            upstream.save_pretrained(tmp, max_shard_size=total * 3 // 5)
            index = Path(tmp) / "model.safetensors.index.json"
            if size == "paper":  # free upstream's copy while the zoo loads, then reload it from the folder
                del upstream
                gc.collect()
            ours = zoo.load_upstream(self.tag, index, arch=None if size == "paper" else "cat_tiny").eval()
            if size == "paper":
                upstream = model_cls.from_pretrained(tmp).eval()
        self.up_latent: torch.Tensor | None = None
        self.zoo_latent: list[torch.Tensor] = []
        ours.encoder[-1].register_forward_hook(lambda m, a, out: self.zoo_latent.append(out.detach().clone()))
        return upstream, ours

    def _condition(self, upstream: Any) -> None:
        """Scale the random network so every part of it matters to the comparison.

        Near-initial weights leave latents around 1e-3, so each stage's input-projection bias decides
        its code alone (two ids per stage on real speech) and decodes are near silence. Measured on
        seeded noise: the encoder's last projection is scaled to unit latents, the quantizer's input
        gain to a unit residual, and the decoder's last projection to audio of about 0.1 RMS; every
        stage's codebook is a fresh Gaussian draw (cosine search sees directions only).
        """
        gen = torch.Generator().manual_seed(self.seed + 1)
        hop = upstream.downsample_rate
        noise = torch.randn(1, 1, hop * 40, generator=gen) * 0.1
        with torch.no_grad():
            for q in upstream.quantizer.quantizers:
                q.codebook.weight.copy_(torch.randn(q.codebook.weight.shape, generator=gen))
            latent = upstream.encode(noise, return_dict=True).encoder_hidden_states
            upstream.encoder[-1].output_proj.weight.mul_(1 / latent.std())
            latent = upstream.encode(noise, return_dict=True).encoder_hidden_states
            gain = upstream.quantizer.input_proj.parametrizations.weight.original0
            gain.mul_(1 / upstream.quantizer.input_proj(latent).std())
            codes = upstream.encode(noise, return_dict=True).audio_codes
            audio = upstream.decode(codes, return_dict=True).audio
            upstream.decoder[-2].output_proj.weight.mul_(0.1 / audio.std())

    def run_upstream(self, upstream_model: Any, path: Path) -> Output:
        import torchaudio

        wav, sr = read_like_torchaudio(path)
        if sr != upstream_model.sampling_rate:
            wav = torchaudio.functional.resample(wav, sr, upstream_model.sampling_rate)
        wav = wav.unsqueeze(0)
        enc = upstream_model.encode(wav, return_dict=True, chunk_duration=self.chunk_duration)
        dec = upstream_model.decode(enc.audio_codes, return_dict=True, chunk_duration=self.chunk_duration)
        # upstream decodes whole tokens (T' * 1920 samples); the zoo trims to the clip, so compare that
        return Output(
            ids=enc.audio_codes.permute(1, 0, 2),
            latent=enc.encoder_hidden_states,
            decoded=dec.audio[..., : wav.shape[-1]],
        )

    def run_zoo(self, zoo_model: Any, path: Path) -> Output:
        from zoo.io import read_audio

        x = zoo_model.prepare(read_audio(path), path=path)
        self.zoo_latent.clear()
        if self.chunk_duration is None:
            tokens = zoo_model.encode(x, upstream_last_frame=self.last_frame)
            audio = zoo_model.decode(tokens)
        else:
            samples = round(self.chunk_duration * zoo_model.sample_rate)
            tokens = zoo_model.encode_stream(
                x, samples, upstream_cache=self.upstream_cache, upstream_last_frame=self.last_frame
            )
            frames = samples // zoo_model.hop_length
            audio = zoo_model.decode_stream(tokens, frames, upstream_cache=self.upstream_cache)
        ids = tokens.ids if tokens.ids.ndim == 3 else tokens.ids[:, None]
        latent = torch.cat(self.zoo_latent, dim=-1)[..., : ids.shape[-1]]  # a dropped last token: no latent
        return Output(ids=ids, latent=latent, decoded=audio)


ADAPTERS = {"cat": CATAdapter}

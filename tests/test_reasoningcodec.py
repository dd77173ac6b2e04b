"""ReasoningCodec: sizes and rates of both streams, the upstream parameter count, real-speech round trips, batching,
each stream alone, gradients and stages, training, save/load and Hub, the converter and the teacher adapters."""

from __future__ import annotations

import pytest
import torch
from reasoningcodec_layout import CODEC_BUFFER_SUFFIXES, count, dit_shapes, reasoningcodec_shapes
from tokenizer_checks import (
    assert_batch_equals_single_items,
    assert_every_parameter_has_a_gradient,
    assert_round_trips,
    assert_training_reduces_loss,
    random_state_dict,
)

import zoo
from zoo.hub import load_weights
from zoo.losses import MultiResolutionMelLoss
from zoo.models.audio.reasoningcodec import ReasoningCodec, convert_reasoningcodec, split_teacher_weights
from zoo.nn.teachers import FrozenTeacher, MelConvTeacher

# The codec's own modules in upstream's checkpoint (AudioThinking, reconstruction branch with its VQs, FiLM
# heads and semantic decoders, the flow-matching DiT), counted from reasoningcodec_layout.py, which follows
# AudioDiffusion1D.py, modules/transformer.py, semantic_decoder.py and model_config.json key by key.
UPSTREAM_PARAMS = {"reasoningcodec": 1_048_775_408, "reasoningcodec_1024": 1_048_775_408}
UPSTREAM_PARTS = {"dit": 931_823_952, "reasoning": 51_052_352, "reconstruction": 65_899_104}
TINY_LAYOUT = {
    "dit": {"in_channels": 64, "out_channels": 16, "heads": 4, "head_dim": 16, "depth": 2},
    "reasoning": {
        "dim": 32,
        "whisper_dim": 24,
        "ssl_dim": 24,
        "depth": 1,
        "head_dim": 16,
        "num_quantizers": 2,
        "codebook_size": 64,
        "codebook_dim": 8,
    },
    "reconstruction": {
        "dim": 32,
        "whisper_dim": 24,
        "wavlm_dim": 16,
        "ssl_dim": 24,
        "acoustic_quantizers": 2,
        "codebook_size": 64,
        "codebook_dim": 8,
    },
}


@pytest.fixture(scope="module")
def tiny() -> ReasoningCodec:
    torch.manual_seed(0)
    return zoo.create("reasoningcodec_tiny").eval()


def own_parameters(model: ReasoningCodec) -> int:
    """Parameters of the codec itself: everything but the SQ-Codec (a separate upstream file)."""
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("sqcodec."))


@pytest.mark.parametrize("name", ["reasoningcodec", "reasoningcodec_1024"])
def test_paper_sizes_rates_and_upstream_parameter_count(name: str) -> None:
    with torch.device("meta"):
        model = zoo.create(name)
    size = 8192 if name == "reasoningcodec" else 1024
    assert model.sample_rate == 24000 and model.hop_length == 1920
    assert model.codebook_sizes == (size,) * 8 and model.tokens_per_second == 12.5
    assert model.tokens_per_second * model.num_codebooks == 100
    assert model.bits_per_second == (1300 if size == 8192 else 1000)
    assert model.reasoning_codebook_sizes == (4096,) * 8 and model.reasoning_tokens_per_second == 5
    assert model.reasoning_bits_per_second == 480
    layout = model.token_layout()["streams"]
    assert (
        layout["reasoning"]["tokens_per_second"] == 40
        and layout["reconstruction"]["tokens_per_second"] == 100
    )
    assert tuple(model.audio_thinking.reasoning_vq.layers[0].codebook.shape) == (4096, 64)
    assert tuple(model.vq_acoustic.layers[5].codebook.shape) == (size, 32)
    assert len(model.audio_thinking.encoder_transformers) == 5 and model.cfm_wrapper.latent_dim == 136
    assert not model.teachers  # nothing is loaded without local teacher paths
    upstream = count(reasoningcodec_shapes(), CODEC_BUFFER_SUFFIXES)
    assert upstream == UPSTREAM_PARAMS[name]
    assert count(dit_shapes()) == UPSTREAM_PARTS["dit"]
    # Same modules, same weight-norm parametrisation: the count matches exactly (codebooks are EMA buffers).
    assert own_parameters(model) == upstream
    assert sum(p.numel() for p in model.cfm_wrapper.parameters()) == UPSTREAM_PARTS["dit"]
    assert sum(p.numel() for p in model.audio_thinking.parameters()) == UPSTREAM_PARTS["reasoning"]


def test_real_speech_round_trip_at_any_rate_and_length(tiny, speech) -> None:
    for wav, rate in speech.values():
        x = tiny.prepare((wav, rate))[..., : 3 * 24000]
        tokens = tiny.encode(x)
        frames = -(-x.shape[-1] // 1920)
        assert tokens.ids.shape == (1, 4, frames) and tokens.grid == (frames,)
        assert tokens.side["reasoning"].shape == (1, 2, -(-x.shape[-1] // 4800))
        assert (
            tokens.meta["reasoning_codebook_sizes"] == [64, 64] and tokens.meta["reasoning_frame_rate"] == 5
        )
        out = tiny.decode(tokens)
        assert out.shape == x.shape and torch.isfinite(out).all()
        wav_out, out_rate = tiny.finish(out, tokens)
        assert out_rate == 24000 and wav_out.shape == x.shape[1:]
    for length in (1, 1919, 4801, 9600, 12345):
        x = torch.randn(1, 1, length) * 0.1
        assert tiny.decode(tiny.encode(x)).shape == x.shape


def test_batch_equals_single_items(tiny, speech) -> None:
    x = tiny.prepare(speech["16k"])[..., :9000]
    assert_batch_equals_single_items(tiny, torch.cat([x, x.flip(-1), 0.5 * x]))
    batch = tiny.encode(torch.cat([x, 0.5 * x]))
    assert torch.equal(batch[1].side["reasoning"], tiny.encode(0.5 * x).side["reasoning"])


def test_each_stream_alone_and_decoding_without_reasoning(tiny, speech) -> None:
    x = tiny.prepare(speech["16k"])[..., :12000]
    both = tiny.encode(x)
    reasoning = tiny.encode(x, streams=("reasoning",))
    assert reasoning.meta["stream"] == "reasoning" and reasoning.codebook_sizes == (64, 64)
    assert torch.equal(reasoning.ids, both.side["reasoning"]) and not reasoning.side
    with pytest.raises(ValueError, match="reasoning tokens alone cannot be decoded"):
        tiny.decode(reasoning)
    rec = tiny.encode(x, streams=("reconstruction",))
    assert torch.equal(rec.ids, both.ids) and not rec.side and "reasoning_frame_rate" not in rec.meta
    without, with_reasoning = tiny.decode(rec), tiny.decode(both)
    assert without.shape == with_reasoning.shape == x.shape
    assert not torch.equal(without, with_reasoning)  # the reasoning embedding enters the decoder condition
    with pytest.raises(ValueError, match="streams"):
        tiny.encode(x, streams=("semantic",))


def test_bad_inputs_are_rejected(tiny) -> None:
    with pytest.raises(ValueError, match=r"expected audio \[B, 1, T\]"):
        tiny.encode(torch.zeros(1, 2, 100))
    with pytest.raises(ValueError, match="NaN"):
        tiny.encode(torch.full((1, 1, 64), float("nan")))
    tokens = tiny.encode(torch.zeros(1, 1, 4000))
    tokens.ids[0, 0, 0] = 64
    with pytest.raises(ValueError, match="outside the codebook"):
        tiny.decode(tokens)
    tokens = tiny.encode(torch.zeros(1, 1, 4000))
    tokens.side["reasoning"][0, 0, 0] = 64
    with pytest.raises(ValueError, match="reasoning ids outside"):
        tiny.decode(tokens)
    with pytest.raises(RuntimeError, match="needs its frozen teachers"):
        zoo.create("reasoningcodec_tiny", teachers="pretrained").encode(torch.zeros(1, 1, 4000))


def test_every_trainable_parameter_gets_a_gradient_and_teachers_stay_frozen(speech) -> None:
    model = zoo.create("reasoningcodec_tiny", cond_dropout=0.0, cfg_dropout=0.0).train()
    # 0.35 s: the padded tail of the 0.4 s encoder block trains the padding embedding as well.
    x = model.prepare(speech["16k"])[..., : 2 * 8400].reshape(2, 1, 8400)
    out = model.training_output(x, 0)
    assert set(out.losses) == {
        "vq/reasoning/commit",
        "vq/phone/commit",
        "vq/semantic/commit",
        "vq/acoustic/commit",
        "rec/feature_semantic",
        "rec/feature_phone",
        "rec/cfm",
    }
    loss = (out.recon - x).abs().mean() + sum(out.losses.values())
    loss.backward()
    assert_every_parameter_has_a_gradient(model)
    teachers = model.teachers
    assert set(teachers) == {"whisper", "phone", "ssl"}
    for teacher in teachers.values():
        assert isinstance(teacher, FrozenTeacher) and not teacher.training
        assert not any(p.requires_grad for p in teacher.parameters())
    assert not any(k.startswith(("_teachers", "teacher")) for k in model.state_dict())


def test_stages_freeze_what_upstream_freezes(speech) -> None:
    model = zoo.create("reasoningcodec_tiny", stage="reconstruction").train()
    assert not any(p.requires_grad for p in model.audio_thinking.parameters())
    assert all(p.requires_grad for p in model.sqcodec.parameters())  # the tiny trains its SQ-Codec jointly
    assert not model.audio_thinking.training  # frozen codebooks keep their EMA state
    before = {k: v.clone() for k, v in model.audio_thinking.state_dict().items()}
    x = model.prepare(speech["16k"])[..., : 2 * 9600].reshape(2, 1, 9600)
    out = model.training_output(x, 0)
    assert "vq/reasoning/commit" not in out.losses and "rec/cfm" in out.losses
    after = model.audio_thinking.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    decoder = zoo.create("reasoningcodec_tiny", stage="decoder", train_sqcodec=False)
    trainable = {n.split(".")[0] for n, p in decoder.named_parameters() if p.requires_grad}
    assert trainable == {"time_film_phone", "time_film_semantic", "time_film_acoustic", "reason_adaptor"} | {
        "cond_feature_emb",
        "zero_cond_embedding1",
        "cfm_wrapper",
    }
    reasoning = zoo.create("reasoningcodec_tiny", stage="reasoning")
    assert {n.split(".")[0] for n, p in reasoning.named_parameters() if p.requires_grad} == {"audio_thinking"}
    with pytest.raises(ValueError, match="stage must be one of"):
        zoo.create("reasoningcodec_tiny", stage="A")


def test_text_alignment_loss_trains_the_reasoning_branch(speech) -> None:
    """A toy LM on bytes stands in for upstream's Llama: it reads the quantized query embeddings as a prefix."""

    class ByteLM(torch.nn.Module):
        def __init__(self, dim: int) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(256, dim)
            self.rnn = torch.nn.GRU(dim, dim, batch_first=True)
            self.head = torch.nn.Linear(dim, 256)

        def forward(self, prefix: torch.Tensor, texts: list[str]) -> torch.Tensor:
            ids = torch.tensor([list(t.encode()) for t in texts])
            h, _ = self.rnn(torch.cat([prefix, self.embed(ids[:, :-1])], 1))
            logits = self.head(h[:, prefix.shape[1] - 1 :])
            return torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids)

    model = zoo.create("reasoningcodec_tiny", stage="reasoning").train()
    model.attach_text_lm(ByteLM(32))
    x = model.prepare(speech["16k"])[..., : 2 * 9600].reshape(2, 1, 9600)
    out = model.training_output(x, 0, texts=["one", "two"])
    assert set(out.losses) == {"vq/reasoning/commit", "align/text"}
    out.losses["align/text"].backward()
    assert model.audio_thinking.cls_token.grad is not None
    assert model.audio_thinking.semantic_merge_proj.weight.grad.abs().sum() > 0


def test_training_steps_reduce_the_loss(speech, single_thread) -> None:
    torch.manual_seed(0)
    model = zoo.create("reasoningcodec_tiny").train()
    x = model.prepare(speech["8k"])[..., 4800 : 4800 + 2 * 9600].reshape(2, 1, 9600)
    mel = MultiResolutionMelLoss(sample_rate=24000, window_lengths=(256, 1024), n_mels=(40, 80))
    assert_training_reduces_loss(model, x, steps=25, lr=2e-3, ratio=0.85, reconstruction=mel, grad_clip=1.0)


def test_save_load_and_hub_round_trip(tmp_path, tiny, hub) -> None:
    x = torch.randn(2, 1, 5000) * 0.1
    assert_round_trips(tmp_path, tiny, x, repo_id="zoo-tests/reasoningcodec-tiny")
    assert_round_trips(
        tmp_path / "rec",
        tiny,
        x,
        encode=lambda model, audio: model.encode(audio, streams=("reconstruction",)),
    )


def _tiny_upstream() -> dict[str, torch.Tensor]:
    shapes = reasoningcodec_shapes(**TINY_LAYOUT)
    upstream = {f"module.{k}": v for k, v in random_state_dict(shapes).items()}
    for key in list(upstream):
        if key.endswith("cluster_size"):
            upstream[key] = upstream[key].abs()
    upstream["module.whisper_encoder.layers.0.fc1.weight"] = torch.zeros(2, 2)
    upstream["module.wavlm_encoder.encoder.layers.0.fc1.weight"] = torch.zeros(2, 2)
    upstream["module.pretrained_model.model.conv.weight"] = torch.zeros(2)
    return upstream


def test_converter_loads_the_upstream_layout_strictly(tiny) -> None:
    upstream = _tiny_upstream()
    model = zoo.create("reasoningcodec_tiny")
    converted = convert_reasoningcodec(upstream, model, sqcodec_state_dict=tiny.sqcodec.state_dict())
    assert not any(k.startswith(("whisper_encoder", "wavlm_encoder", "pretrained_model")) for k in converted)
    load_weights(model, converted, "tiny upstream")
    embed = upstream["module.vq_acoustic.layers.1._codebook.embed"][0]
    torch.testing.assert_close(model.vq_acoustic.layers[1].codebook, embed)
    block = model.audio_thinking.encoder_transformers[0].self_attn.to_qkv
    v = upstream[
        "module.audio_thinking.encoder_transformers.0.self_attn.to_qkv.parametrizations.weight.original1"
    ]
    torch.testing.assert_close(block.parametrizations.weight.original1, v)
    teachers = split_teacher_weights(upstream)
    assert list(teachers["whisper"]) == ["layers.0.fc1.weight"] and list(teachers["music_ssl"]) == [
        "model.conv.weight"
    ]
    x = torch.randn(1, 1, 9600) * 0.1
    model.eval()
    assert model.decode(model.encode(x)).shape == x.shape


def test_converter_maps_every_paper_key_onto_the_model() -> None:
    with torch.device("meta"):
        model = zoo.create("reasoningcodec")
        upstream = {f"module.{k}": torch.empty(s) for k, s in reasoningcodec_shapes().items()}
        sq = {k: torch.empty_like(v) for k, v in model.sqcodec.state_dict().items()}
    converted = convert_reasoningcodec(upstream, model, sqcodec_state_dict=sq)
    expected = model.state_dict()
    assert set(converted) == set(expected)
    assert all(converted[k].shape == expected[k].shape for k in expected)


def test_mel_conv_teacher_is_frozen_deterministic_and_framed() -> None:
    a = MelConvTeacher(sample_rate=24000, frame_rate=25, dim=8, roles=("acoustic", "semantic"), layers=(0, 1))
    b = MelConvTeacher(sample_rate=24000, frame_rate=25, dim=8, roles=("acoustic", "semantic"), layers=(0, 1))
    x = torch.randn(2, 1, 9600)
    out = a(x, 24000)
    assert set(out) == {"acoustic", "semantic"} and out["semantic"].shape == (2, 8, 10)
    assert torch.equal(out["semantic"], b(x, 24000)["semantic"])
    assert a(x[..., ::3].contiguous(), 8000)["acoustic"].shape == (2, 8, 10)  # resampled to its own rate
    a.train()
    assert not a.training


def test_pretrained_teacher_adapters_load_local_folders(tmp_path) -> None:
    """Whisper and WavLM through transformers from tiny random configs saved locally; the music SSL model as
    TorchScript; all plugged into the codec at matching widths."""
    import transformers

    from zoo.nn.teachers import MusicSSLTeacher, WavLMTeacher, WhisperEncoderTeacher

    whisper_cfg = transformers.WhisperConfig(
        d_model=24,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_mel_bins=80,
        vocab_size=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )
    transformers.WhisperModel(whisper_cfg).save_pretrained(tmp_path / "whisper")
    transformers.WhisperFeatureExtractor().save_pretrained(tmp_path / "whisper")
    wavlm_cfg = transformers.WavLMConfig(
        hidden_size=16,
        num_hidden_layers=10,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(16, 16, 16, 16, 16, 16, 16),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    transformers.WavLMModel(wavlm_cfg).save_pretrained(tmp_path / "wavlm")

    class FakeSSL(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Conv1d(1, 24, 960, stride=960)

        def forward(self, wav: torch.Tensor) -> list[torch.Tensor]:
            h = self.proj(wav[:, None]).transpose(1, 2)
            return [h * (i + 1) for i in range(12)]

    torch.jit.script(FakeSSL()).save(str(tmp_path / "ssl.pt"))
    whisper = WhisperEncoderTeacher(tmp_path / "whisper")
    wavlm = WavLMTeacher(tmp_path / "wavlm")
    ssl = MusicSSLTeacher(tmp_path / "ssl.pt", dim=24)
    x = torch.randn(1, 1, 9600) * 0.1
    assert whisper(x, 24000)["whisper"].shape == (1, 24, 20)
    assert wavlm(x, 24000)["phone"].shape == (1, 16, 20)
    feats = ssl(x, 24000)
    assert feats["acoustic"].shape == (1, 24, 10) and torch.allclose(
        feats["semantic"], 12 / 5 * feats["acoustic"]
    )
    assert not any(p.requires_grad for t in (whisper, wavlm, ssl) for p in t.parameters())
    model = zoo.create(
        "reasoningcodec_tiny",
        teachers="pretrained",
        whisper_path=str(tmp_path / "whisper"),
        wavlm_path=str(tmp_path / "wavlm"),
        music_ssl_path=str(tmp_path / "ssl.pt"),
    ).eval()
    assert not model._teachers  # loaded on first use, so a saved model loads where the teachers are absent
    tokens = model.encode(x)
    assert set(model.teachers) == {"whisper", "phone", "ssl"}
    assert tokens.ids.shape == (1, 4, 5) and tokens.side["reasoning"].shape == (1, 2, 2)
    assert all(not k.startswith(("encoder.", "model.")) for k in model.state_dict())


def test_padding_follows_upstream_wave_pad(tiny) -> None:
    """Upstream's ``wave_pad`` pads to a multiple of 9,600 samples (0.4 s); attention is global, so padding to
    more (the zoo once padded to 19,200) changes ids."""
    assert tiny.pad_multiple == 9600 and not tiny.encode_repeat
    assert tiny._pad(torch.zeros(1, 1, 5000)).shape[-1] == 9600
    assert tiny._pad(torch.zeros(1, 1, 9601)).shape[-1] == 19200
    assert tiny._pad(torch.zeros(1, 1, 9600)).shape[-1] == 9600
    torch.manual_seed(1)
    x = torch.randn(1, 1, 5000) * 0.1
    tokens = tiny.encode(x)
    with torch.no_grad():
        enc = tiny._encode(torch.nn.functional.pad(x, (0, 4600)))
    assert torch.equal(tokens.ids, tiny._rec_ids(enc)[..., :3])
    assert torch.equal(tokens.side["reasoning"], enc["reasoning"].ids[..., :2])


def test_encode_repeats_the_clip_into_30s_windows_as_upstream_tokenize(tiny) -> None:
    """Upstream's official ``tokenize`` doubles a clip until it fills 30 s + 240 samples, cuts windows of that
    size from it doubled once more, encodes each and concatenates their tokens; the paper size does this."""
    with torch.device("meta"):
        paper = zoo.create("reasoningcodec")
    assert paper.encode_repeat and (paper.encode_window, paper.encode_overhang, paper.encode_batch) == (
        720000,
        240,
        6,
    )
    model = zoo.create("reasoningcodec_tiny", encode_repeat=True, encode_window=19200).eval()
    model.load_state_dict(tiny.state_dict())
    torch.manual_seed(2)
    short = torch.randn(1, 1, 5000) * 0.1
    # 5000 -> 10000 -> 20000 samples (>= 19440), 2 windows cut from 40000: eight copies of the clip
    windows = short.repeat(1, 1, 8)[..., : 2 * 19440].reshape(2, 1, 19440)
    assert torch.equal(model.repeat_windows(short), windows)
    long = torch.randn(1, 1, 30000) * 0.1
    expected = torch.cat([long, long], -1)[..., : 2 * 19440].reshape(2, 1, 19440)  # wraps round to the start
    assert torch.equal(model.repeat_windows(long), expected)
    for x, wins in ((short, windows), (long, expected)):
        tokens = model.encode(x)
        with torch.no_grad():
            enc = model._encode(wins)
        rec = model._rec_ids(enc).permute(1, 0, 2).reshape(1, 4, -1)  # windows follow each other in time
        reasoning = enc["reasoning"].ids.permute(1, 0, 2).reshape(1, 2, -1)
        assert rec.shape[-1] == 2 * (19440 // 1920)
        assert torch.equal(tokens.ids, rec[..., : -(-x.shape[-1] // 1920)])
        assert torch.equal(tokens.side["reasoning"], reasoning[..., : -(-x.shape[-1] // 4800)])


def test_load_upstream_uses_a_local_sqcodec_offline(tmp_path, monkeypatch, tiny) -> None:
    """A local ``sqcodec.pth`` (or SQ-Codec model) is used as is: nothing is downloaded; without one, the error
    names the missing file."""
    import zoo.hub

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("no network in this test")

    monkeypatch.setattr(zoo.hub, "download", offline)
    ckpt = tmp_path / "ReasoningCodec.checkpoint"
    torch.save({"model": _tiny_upstream()}, ckpt)
    sq_file = tmp_path / "sqcodec.pth"
    torch.save({"codec_model": tiny.sqcodec.state_dict()}, sq_file)
    model = zoo.load_upstream(
        "reasoningcodec.uniaudio2", ckpt, arch="reasoningcodec_tiny", sqcodec_pretrained=str(sq_file)
    )
    for key, value in tiny.sqcodec.state_dict().items():
        assert torch.equal(model.sqcodec.state_dict()[key], value)
    # the weights travel in the model's own state dict: a saved model does not point at the file
    assert model.config["sqcodec_pretrained"] is None
    with pytest.raises(FileNotFoundError, match=r"sqcodec\.pth.*sqcodec_pretrained"):
        zoo.load_upstream("reasoningcodec.uniaudio2", ckpt, arch="reasoningcodec_tiny")
    with pytest.raises(FileNotFoundError, match="no such file"):
        zoo.create("reasoningcodec_tiny", sqcodec_pretrained=str(tmp_path / "missing.pth"))

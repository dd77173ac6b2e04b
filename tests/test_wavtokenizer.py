"""WavTokenizer: sizes and rates, real-speech round trips, batching, gradients, training, save/load, Hub and
the upstream converter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizer_checks import (
    assert_batch_equals_single_items,
    assert_every_parameter_has_a_gradient,
    assert_round_trips,
    assert_training_reduces_loss,
    random_state_dict,
)
from wavtokenizer_layout import inference_parameter_count, wavtokenizer_shapes

import zoo
from zoo.errors import CheckpointError
from zoo.hub import load_weights
from zoo.losses import MultiResolutionMelLoss
from zoo.models.audio.wavtokenizer import convert_wavtokenizer

# Generator parameters upstream uses at inference, counted from its code (encoder with weight_g/v,
# VocosBackbone, ISTFTHead), which the layout in wavtokenizer_layout.py reproduces key for key.
UPSTREAM_PARAMS = {"wavtokenizer_75": 71_750_146, "wavtokenizer_40": 72_111_714}
RATIOS = {"wavtokenizer_75": (8, 5, 4, 2), "wavtokenizer_40": (6, 5, 5, 4)}
# The tiny size in the upstream layout: no k-means flag differences matter to the converter.
TINY_UPSTREAM = {"n_filters": 8, "latent_dim": 32, "dim": 64, "intermediate_dim": 128, "num_layers": 2}


@pytest.fixture
def tiny() -> zoo.Tokenizer:
    return zoo.create("wavtokenizer_tiny").eval()


@pytest.mark.parametrize("name", ["wavtokenizer_75", "wavtokenizer_40"])
def test_paper_sizes_rates_and_upstream_parameter_count(name: str) -> None:
    with torch.device("meta"):
        model = zoo.create(name)
    rate = {"wavtokenizer_75": 75, "wavtokenizer_40": 40}[name]
    assert model.sample_rate == 24000 and model.hop_length == 24000 // rate
    assert model.tokens_per_second == rate and model.bits_per_token == 12
    assert model.bits_per_second == 12 * rate
    assert model.codebook_sizes == (4096,) and tuple(model.quantizer.codebook.shape) == (4096, 512)
    assert model.head.n_fft == 4 * model.hop_length
    upstream = inference_parameter_count(wavtokenizer_shapes(RATIOS[name]))
    assert upstream == UPSTREAM_PARAMS[name]
    # Folding weight norm removes one gain per output channel of each encoder conv (2,704 in all).
    assert model.num_parameters() == upstream - 2704
    assert abs(model.num_parameters() / upstream - 1) < 0.02


def test_real_speech_round_trip_at_any_rate_and_length(tiny, speech) -> None:
    for wav, rate in speech.values():
        x = tiny.prepare((wav, rate))
        assert x.shape == (1, 1, round(wav.shape[-1] * 24000 / rate))
        tokens = tiny.encode(x)
        assert tokens.ids.shape == (1, -(-x.shape[-1] // tiny.hop_length))
        out = tiny.decode(tokens)
        assert out.shape == x.shape and torch.isfinite(out).all()
        wav_out, out_rate = tiny.finish(out, tokens)
        assert out_rate == 24000 and wav_out.shape == x.shape[1:]
    stereo = torch.stack([speech["16k"][0][0], -speech["16k"][0][0]])
    assert tiny.prepare((stereo, 16000)).abs().max() == 0  # channels are averaged
    for length in (1, 31, 33, 1000):
        x = torch.randn(1, 1, length) * 0.1
        assert tiny.decode(tiny.encode(x)).shape == x.shape


def test_batch_equals_single_items(tiny, speech) -> None:
    x = tiny.prepare(speech["16k"])[..., :9600]
    batch = torch.cat([x, x.flip(-1), 0.5 * x])
    assert_batch_equals_single_items(tiny, batch)


def test_bad_inputs_are_rejected(tiny) -> None:
    with pytest.raises(ValueError, match=r"expected audio \[B, 1, T\]"):
        tiny.encode(torch.zeros(1, 2, 100))
    with pytest.raises(ValueError, match="NaN"):
        tiny.encode(torch.full((1, 1, 64), float("nan")))
    tokens = tiny.encode(torch.zeros(1, 1, 64))
    tokens.ids[0, 0] = 64
    with pytest.raises(ValueError, match="outside the codebook"):
        tiny.decode(tokens)


def test_every_parameter_gets_a_gradient(speech) -> None:
    model = zoo.create("wavtokenizer_tiny").train()
    x = model.prepare(speech["16k"])[..., :4800]
    out = model(x.repeat(2, 1, 1))
    loss = (out.recon - x).abs().mean() + sum(out.losses.values())
    loss.backward()
    assert_every_parameter_has_a_gradient(model)
    assert set(out.losses) == {"vq/commit"} and bool(model.quantizer.initted)


def test_training_steps_reduce_the_loss(speech, single_thread) -> None:
    """Mel loss plus the quantizer's, with the trainer's default gradient clipping (1.0): the exp-magnitude
    iSTFT head needs it, as upstream's training does, or early steps spike."""
    model = zoo.create("wavtokenizer_tiny").train()
    x = model.prepare(speech["8k"])[..., 4800 : 4800 + 4 * 6000].reshape(4, 1, 6000)
    mel = MultiResolutionMelLoss(sample_rate=24000, window_lengths=(256, 1024), n_mels=(40, 80))
    assert_training_reduces_loss(model, x, steps=60, lr=5e-3, ratio=0.85, reconstruction=mel, grad_clip=1.0)


def test_save_load_and_hub_round_trip(tmp_path, tiny, hub) -> None:
    x = torch.randn(2, 1, 2000) * 0.1
    assert_round_trips(tmp_path, tiny, x, repo_id="zoo-tests/wavtokenizer-tiny")


def test_converter_loads_upstream_lightning_state_dict_strictly() -> None:
    shapes = wavtokenizer_shapes((8, 5, 4, 2))
    upstream = random_state_dict(shapes)
    upstream["multiperioddisc.discriminators.0.convs.0.weight"] = torch.zeros(1)  # dropped: training only
    upstream["melspec_loss.mel_spec.spectrogram.window"] = torch.zeros(1)
    model = zoo.create("wavtokenizer_75")
    converted = convert_wavtokenizer(upstream, model)
    assert not any(k.startswith(("feature_extractor", "multiperiod", "melspec")) for k in converted)
    load_weights(model, converted, "upstream WavTokenizer")
    torch.testing.assert_close(
        model.quantizer.codebook, upstream["feature_extractor.encodec.quantizer.vq.layers.0._codebook.embed"]
    )


def test_converter_folds_weight_norm_and_reports_foreign_layouts() -> None:
    upstream = random_state_dict(wavtokenizer_shapes((4, 4, 2), codebook_size=64, **TINY_UPSTREAM))
    model = zoo.create("wavtokenizer_tiny", lstm_layers=2)
    load_weights(model, convert_wavtokenizer(upstream, model), "tiny upstream")
    g = upstream["feature_extractor.encodec.encoder.model.0.conv.conv.weight_g"]
    v = upstream["feature_extractor.encodec.encoder.model.0.conv.conv.weight_v"]
    weight = model.encoder.model[0].conv.weight
    torch.testing.assert_close(weight.flatten(1).norm(dim=1), g.flatten().abs())
    torch.testing.assert_close(weight, g * v / v.flatten(1).norm(dim=1)[:, None, None])
    upstream["backbone.extra.weight"] = torch.zeros(1)
    del upstream["head.out.bias"]
    with pytest.raises(CheckpointError, match="missing keys: head.out.bias.*unexpected keys: backbone.extra"):
        load_weights(model, convert_wavtokenizer(upstream, model), "upstream")
    del upstream["feature_extractor.encodec.encoder.model.0.conv.conv.weight_v"]
    with pytest.raises(KeyError, match="weight_v"):
        convert_wavtokenizer(upstream, model)


def test_paper_recipe_discriminators_combine_into_one(tmp_path) -> None:
    """The recipe's discriminator as the trainer builds it: WavTokenizer's MPD and MRD judged with the hinge
    loss, DAC's MPD and band MRD with least squares."""
    import yaml
    from jsonargparse import ArgumentParser

    from zoo.nn import CombinedDiscriminator

    recipe = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "recipes/wavtokenizer_75.yaml").read_text()
    )
    parser = ArgumentParser()
    parser.add_argument("--discriminator", type=CombinedDiscriminator)
    config = parser.parse_object({"discriminator": recipe["model"]["init_args"]["discriminator"]})
    d = parser.instantiate_classes(config).discriminator
    assert recipe["model"]["init_args"]["gan_loss"] == "hinge"
    out = d(torch.randn(1, 1, 4800) * 0.1)
    dac = d.discriminators[2](torch.randn(1, 1, 4800) * 0.1)
    assert len(out.logits) == len(out.features) == 5 + 3 + len(dac.logits)
    assert out.loss_names() == [None] * 8 + ["least_squares"] * len(dac.logits)


def _encodec_reference(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """EnCodec's SEANet forward written out here: every conv reflect-pads its own input by
    ``kernel - stride`` (the larger half on the left) plus, on the right, what its last window lacks."""
    from torch.nn import functional as F

    from zoo.nn.audio import SamePadConv1d, _SEANetResBlock

    if isinstance(module, torch.nn.Sequential):
        for child in module:
            x = _encodec_reference(child, x)
        return x
    if isinstance(module, _SEANetResBlock):
        return _encodec_reference(module.shortcut, x) + _encodec_reference(module.block, x)
    if isinstance(module, SamePadConv1d):
        conv = module.conv
        kernel, stride = (conv.kernel_size[0] - 1) * conv.dilation[0] + 1, conv.stride[0]
        total = kernel - stride
        frames = -(-(x.shape[-1] - kernel + total) // stride) + 1
        extra = (frames - 1) * stride + kernel - total - x.shape[-1]
        padded = F.pad(x, (total - total // 2, total // 2 + extra), mode="reflect")
        return F.conv1d(padded, conv.weight, conv.bias, stride, dilation=conv.dilation)
    return module(x)


def test_clips_of_any_length_encode_as_upstream_without_zero_padding(tiny, speech) -> None:
    """Fix 3 of issue 16: upstream's ``encode_infer`` feeds the clip itself to the SEANet encoder, whose
    convs reflect-pad inside; zero-padding the clip to a whole hop first changed its last frames."""
    torch.manual_seed(0)
    with torch.no_grad():  # a codebook spread over the encoder's outputs, so ids depend on the latents
        z = tiny.encoder(torch.randn(1, 1, 9600) * 0.1)[0].t()
        tiny.quantizer.codebook.copy_(z[torch.randint(len(z), (64,))] + 0.3 * z.std(0) * torch.randn(64, 32))
    x = tiny.prepare(speech["16k"])[..., :4000]
    seen: list[int] = []
    for length in (4000, 3999, 3985, 3970):  # hop 32: whole, and 31, 17, 2 samples into a frame
        clip = x[..., :length]
        hook = tiny.encoder.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[-1]))
        tokens = tiny.encode(clip)
        hook.remove()
        assert seen.pop() == length and not seen  # the encoder sees the clip, not a zero-padded copy
        with torch.no_grad():
            reference = _encodec_reference(tiny.encoder.model, clip)
            zero_padded = tiny.encoder(tiny.pad_to_hop(clip))
        assert tokens.ids.shape == (1, -(-length // tiny.hop_length)) == reference.shape[::2]
        torch.testing.assert_close(tiny.encoder(clip), reference, rtol=0, atol=1e-6)
        assert torch.equal(tokens.ids, tiny.quantizer.encode(reference))
        if length % tiny.hop_length:  # the old zero-padding gives other last frames
            assert (zero_padded[..., -4:] - reference[..., -4:]).abs().max() > 1e-4
        assert tiny.decode(tokens).shape == clip.shape


def test_prepare_matches_upstreams_convert_audio(tiny, speech) -> None:
    """Upstream's README reads with torchaudio, then ``convert_audio``: average the channels and
    resample with ``torchaudio.transforms.Resample`` to 24 kHz."""
    import torchaudio

    wav, rate = speech["16k"]
    stereo = torch.cat([wav, 0.5 * wav])
    reference = torchaudio.transforms.Resample(rate, 24000)(stereo.mean(0, keepdim=True))
    torch.testing.assert_close(tiny.prepare((stereo, rate))[0], reference, rtol=0, atol=1e-6)

"""HMN vs mean vs random initialisation of HiVG's new token embeddings in a small causal LM.

    python benchmarks/hivg_hmn.py                  # MDI icons from ../shared/data, ~2 min on 2 idle cores
    python benchmarks/hivg_hmn.py --untied --seeds 0 1 2 3 --inits hmn:0.1 hmn:0.5 random

HiVG adds 784 special tokens to a pretrained LLM and initialises them by Hierarchical Mean-Noise
(`zoo.models.svg.hf_vocab.extend_lm`) so that the new rows start from what the model already knows. Without
hub weights this is checked at toy scale, as the reference notes suggest: a tiny Llama is pretrained on
the icons' *plain* SVG text (``<path d="M 37 19 a 19 19 0 0 0 -18 18 ...">``, the quantised geometry the
HiVG tokens encode, written as ordinary numbers), then extended with the HiVG vocabulary once per init
(same base weights, same batches, same seed) and fine-tuned on the HiVG smart-space strings of other
icons. The inits: HMN with the default noise (0.1 x the rows' std) and with noise 1 x std, the noise-free
mean, and random rows. Reported: held-out loss per LM token before fine-tuning and after 50 and 100
steps, the same over the targets that are new tokens only, and the training loss around those steps.
Pretraining and fine-tuning use disjoint icons; the held-out icons are in neither. The description texts
behind element and command tokens never occur in the pretraining text, so at this scale only the numeral
parts of HMN carry knowledge; a real LLM knows the words too.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "svg" / "mdi" / "icons.jsonl"
DEFAULT_INITS = ("hmn:0.1", "hmn:1", "mean", "random")


def parse_init(spec: str) -> tuple[str, float]:
    """``"hmn:0.5"`` -> ``("hmn", 0.5)``: an `extend_lm` init mode and its noise scale (0.1 if not given)."""
    mode, _, scale = spec.partition(":")
    return mode, float(scale) if scale else 0.1


def init_label(spec: str) -> str:
    mode, scale = parse_init(spec)
    return f"hmn, noise {scale:g}σ" if mode == "hmn" else mode


def load_icons(path: Path, count: int, seed: int) -> list[str]:
    """``count`` SVG texts from a JSONL file (one object with an ``"svg"`` field per line), shuffled."""
    svgs = [json.loads(line)["svg"] for line in path.read_text().splitlines() if line.strip()]
    random.Random(seed).shuffle(svgs)
    return svgs[:count]


def encode_icons(svgs: list[str]) -> tuple[list[list[str]], list[str], int]:
    """HiVG token strings of each icon, the plain SVG text they stand for (the 224 canvas, quantised), and
    how many icons could not be read."""
    import zoo

    tok = zoo.create("hivg")
    strings, plain, failed = [], [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what HiVG has no tokens for is left out; that is fine here
        for svg in svgs:
            try:
                ids = tok.encode_atomic(svg)
            except (ValueError, zoo.errors.MediaError):
                failed += 1
                continue
            strings.append(tok.ids_to_strings(ids))
            plain.append(tok.detokenize(ids))
    return strings, plain, failed


def train_bpe(texts: list[str], vocab_size: int, folder: Path) -> object:
    """A byte-level BPE over the pretraining text, saved as a ``transformers`` tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tok.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def batches(tok: object, texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``[N, max_len]`` (each text then end of text, cut to ``max_len``, padded) and labels with
    the padding masked out."""
    eos = tok.eos_token_id
    rows = [(tok(t, add_special_tokens=False)["input_ids"] + [eos])[:max_len] for t in texts]
    ids = torch.full((len(rows), max_len), eos, dtype=torch.long)
    labels = torch.full((len(rows), max_len), -100, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        labels[i, : len(row)] = torch.tensor(row)
    return ids, labels


def batch_order(n: int, steps: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(n, generator=g) for _ in range(steps * batch_size // n + 1)])
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(steps)]


def lm_loss(
    model: torch.nn.Module, ids: torch.Tensor, labels: torch.Tensor, new_from: int | None = None
) -> float:
    """Mean next-token loss over the labelled targets (only those with id ``>= new_from`` if given)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids), 32):
            x, y = ids[start : start + 32], labels[start : start + 32]
            logits = model(input_ids=x).logits[:, :-1].float()
            target = y[:, 1:].clone()
            if new_from is not None:
                target[target < new_from] = -100
            losses = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
            )
            total += losses.item()
            count += int((target != -100).sum())
    model.train()
    return total / max(count, 1)


def train(
    model: torch.nn.Module,
    ids: torch.Tensor,
    labels: torch.Tensor,
    order: list[torch.Tensor],
    lr: float,
    evaluate: Callable[[int], None] | None = None,
) -> list[float]:
    """AdamW steps over the given batches, calling ``evaluate(step)`` after each."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for step, index in enumerate(order, start=1):
        loss = model(input_ids=ids[index], labels=labels[index]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if evaluate is not None:
            evaluate(step)
    return losses


def finetune(
    base: Path, spec: str, seed: int, ft_text: list[str], ev_text: list[str], args: argparse.Namespace
) -> tuple[dict[str, float], dict]:
    """Extend the pretrained base as ``spec`` says (`parse_init`) and fine-tune it; losses at the reported
    steps."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zoo.models.svg.hf_vocab import extend_lm

    model = AutoModelForCausalLM.from_pretrained(base / "model")
    tok = AutoTokenizer.from_pretrained(base / "tokenizer")
    old = len(tok)
    mode, noise_scale = parse_init(spec)
    report = extend_lm(model, tok, init=mode, noise_scale=noise_scale, seed=seed)
    ft_ids, ft_labels = batches(tok, ft_text, args.max_len)
    ev_ids, ev_labels = batches(tok, ev_text, args.max_len)
    steps = args.steps
    row: dict[str, float] = {}

    def evaluate(step: int) -> None:
        if step == 0 or step in steps:
            row[f"eval@{step}"] = lm_loss(model, ev_ids, ev_labels)
            row[f"new@{step}"] = lm_loss(model, ev_ids, ev_labels, new_from=old)

    evaluate(0)
    order = batch_order(len(ft_ids), max(steps), args.batch_size, seed)  # the same batches for every mode
    losses = train(model, ft_ids, ft_labels, order, 1e-3, evaluate)
    for s in steps:
        row[f"train@{s}"] = sum(losses[s - 10 : s]) / len(losses[s - 10 : s])
    return row, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="JSONL of icons with an 'svg' field")
    parser.add_argument("--pretrain-icons", type=int, default=1200)
    parser.add_argument("--finetune-icons", type=int, default=600)
    parser.add_argument("--eval-icons", type=int, default=96)
    parser.add_argument("--pretrain-steps", type=int, default=500)
    parser.add_argument("--steps", type=int, nargs=2, default=[50, 100], help="fine-tuning steps reported")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-len", type=int, default=128, help="LM tokens per sequence")
    parser.add_argument("--bpe-vocab", type=int, default=512)
    parser.add_argument("--width", type=int, default=64, help="hidden size of the tiny Llama")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument(
        "--untied", action="store_true", help="separate lm_head (default: tied, as Qwen2.5-3B)"
    )
    parser.add_argument(
        "--inits",
        nargs="+",
        default=list(DEFAULT_INITS),
        help="extend_lm init modes to compare; hmn:S sets the noise scale S (times the rows' std)",
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="fine-tuning / HMN noise seeds"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    for spec in args.inits:
        if parse_init(spec)[0] not in ("hmn", "mean", "random"):
            parser.error(f"unknown init {spec!r}: use hmn, hmn:SCALE, mean or random")
    data = Path(args.data)
    if not data.is_file():
        print(f"no icon data at {data} (pass --data FILE.jsonl with one {{'svg': ...}} per line); skipped")
        return 0
    try:
        import transformers  # noqa: F401
    except ImportError:
        print("this benchmark needs `transformers`: pip install 'zoo[reasoning]'; skipped")
        return 0
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    from zoo.models.svg.hf_vocab import tokens_to_string

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    n_pre, n_ft, n_ev = args.pretrain_icons, args.finetune_icons, args.eval_icons
    svgs = load_icons(data, n_pre + n_ft + n_ev, seed=0)
    strings, plain, failed = encode_icons(svgs)
    if len(strings) < n_pre + n_ft + n_ev:
        n_pre = max(len(strings) - n_ft - n_ev, 1)
    pre_text = plain[:n_pre]
    ft_text = [tokens_to_string(s) for s in strings[n_pre : n_pre + n_ft]]
    ev_text = [tokens_to_string(s) for s in strings[n_pre + n_ft : n_pre + n_ft + n_ev]]
    print(
        f"{data}: {len(pre_text)} icons of plain SVG text to pretrain, {len(ft_text)} of HiVG strings to "
        f"fine-tune, {len(ev_text)} held out; {failed} unreadable "
        f"({time.perf_counter() - started:.0f} s to encode)"
    )

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        tok = train_bpe(pre_text, args.bpe_vocab, base / "tokenizer")
        config = LlamaConfig(
            vocab_size=len(tok),
            hidden_size=args.width,
            intermediate_size=args.width * 2,
            num_hidden_layers=args.layers,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=args.max_len,
            tie_word_embeddings=not args.untied,
            bos_token_id=tok.eos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.eos_token_id,
        )
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        ids, labels = batches(tok, pre_text, args.max_len)
        t0 = time.perf_counter()
        losses = train(
            model, ids, labels, batch_order(len(ids), args.pretrain_steps, args.batch_size, 0), 3e-3
        )
        print(
            f"pretrained {sum(p.numel() for p in model.parameters()):,} parameters for {args.pretrain_steps} "
            f"steps on plain SVG text: loss {losses[0]:.2f} -> {sum(losses[-20:]) / 20:.2f} "
            f"({time.perf_counter() - t0:.0f} s)"
        )
        model.save_pretrained(base / "model")

        results: dict[str, list[dict[str, float]]] = {spec: [] for spec in args.inits}
        for seed in args.seeds:
            for spec in args.inits:
                t0 = time.perf_counter()
                row, report = finetune(base, spec, seed, ft_text, ev_text, args)
                results[spec].append(row)
                print(
                    f"seed {seed} {init_label(spec):>16}: {report['added']} tokens added; held-out loss "
                    + ", ".join(f"{row[f'eval@{s}']:.3f} @{s}" for s in (0, *args.steps))
                    + f" ({time.perf_counter() - t0:.0f} s)"
                )

    def cell(mode: str, key: str) -> str:
        values = torch.tensor([r[key] for r in results[mode]])
        if len(values) == 1:
            return f"{values.item():.3f}"
        return f"{values.mean():.3f} ± {values.std():.3f}"

    first, second = args.steps
    keys = [f"eval@{s}" for s in (0, first, second)]
    keys += [f"new@{s}" for s in (0, first, second)]
    keys += [f"train@{s}" for s in (first, second)]
    heads = [f"held-out @{s}" for s in (0, first, second)]
    heads += [f"new-token targets @{s}" for s in (0, first, second)]
    heads += [f"train @{s} (mean of 10)" for s in (first, second)]
    print(
        f"\nHiVG vocabulary in a tiny Llama ({args.width}-d, {args.layers} layers, "
        f"{'untied' if args.untied else 'tied'}): loss per LM token (nats) after N fine-tuning steps, "
        f"seeds {args.seeds}\n"
    )
    print("| init | " + " | ".join(heads) + " |")
    print("|---|" + "---|" * len(heads))
    for spec in args.inits:
        print(f"| {init_label(spec)} | " + " | ".join(cell(spec, k) for k in keys) + " |")
    command = " ".join(
        shlex.quote(a) for a in (sys.argv if argv is None else ["benchmarks/hivg_hmn.py", *argv])
    )
    print(f"\n{time.perf_counter() - started:.0f} s. Rerun: python {command}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

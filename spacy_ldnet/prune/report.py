"""What ``spacy-ldnet prune`` reports: ``prune.json``, the mask plot, and the
machine the speeds were measured on."""
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .costs import SPEED_BATCH_SIZE
from .state import RunResult


def _cpuinfo(field: str) -> str:
    """The value of ``field`` in the first CPU's block of ``/proc/cpuinfo``
    ("" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` ("" where there is none)."""
    return _cpuinfo("model name")


def cpu_has_vnni() -> bool:
    """True when ``/proc/cpuinfo`` lists AVX-512 VNNI or AVX-VNNI, the int8
    dot-product instructions behind torch's fast int8 kernels."""
    return bool({"avx512_vnni", "avx_vnni"} & set(_cpuinfo("flags").split()))


def machine_info() -> Dict[str, Any]:
    """CPU count and model, the CPU kernels torch picked (e.g. AVX2, AVX512:
    float results, and so training runs, differ between them), whether the CPU
    has VNNI (int8 speed depends on it), and the torch and Python versions."""
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "vnni": cpu_has_vnni(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def plot_masks(history: Sequence[Dict[str, Any]], path: Path, *, title: str = "") -> Optional[Path]:
    """Draw each mask z_i against the selection step into a PNG (matplotlib, Agg),
    one panel per LM.

    history: :attr:`spacy_ldnet.prune.state.RunResult.mask_history`.

    Returns the path, or None if ``history`` is empty or matplotlib is not
    installed (``pip install spacy-ldnet[plots]``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not history:
        return None
    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, direction in zip(axes, ("forward", "backward")):
        n = len(history[0][direction])
        cmap = plt.get_cmap("viridis", max(n, 2))
        for i in range(n):
            ax.plot(steps, [h[direction][i] for h in history], color=cmap(i), label=f"layer {i}")
        ax.set_title(f"{direction} LM")
        ax.set_xlabel("selection step")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("layer mask z_i")
    axes[1].legend(fontsize=7, ncol=2, loc="center right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _before_after(before: Dict[str, Any], after: Dict[str, Any], key: str) -> Dict[str, Any]:
    return {"before": before[key], "after": after[key]}


def build_report(
    *,
    paths: Dict[str, str],
    key: str,
    kept: Dict[str, List[int]],
    masks: Dict[str, List[float]],
    selection: RunResult,
    settings: Any,
    before: Dict[str, Any],
    after: Dict[str, Any],
    finetune: Optional[Dict[str, Any]],
    threads: int,
) -> Dict[str, Any]:
    """The ``prune.json`` of one ``spacy-ldnet prune`` run.

    paths: ``trained_pipeline``, ``pruned_pipeline``, ``plot`` (or None) and
        ``measured_on`` (the data of test F1 and words/s).
    before, after: ``cost`` (:func:`spacy_ldnet.prune.costs.lm_cost`),
        ``dev_f1``, ``test_f1``, ``words_per_second`` of the unpruned and the
        written pipeline.
    """
    cost_b, cost_a = before["cost"], after["cost"]
    macs_b, macs_a = cost_b["multiply_adds_per_token"], cost_a["multiply_adds_per_token"]
    return {
        "trained_pipeline": paths["trained_pipeline"],
        "pruned_pipeline": paths["pruned_pipeline"],
        "score": key,
        "kept_layers": kept,
        "masks_at_best_step": masks,
        "best_step": selection.best_step,
        "best_dev_f1_during_selection": selection.best_dev_f1,
        "settings": asdict(settings),
        "lm_parameters": _before_after(cost_b, cost_a, "lstm_parameters"),
        "lm_embedding_parameters": _before_after(cost_b, cost_a, "embedding_parameters"),
        "lm_multiply_adds_per_token": {"before": macs_b, "after": macs_a, "ratio": macs_a / max(macs_b, 1)},
        "dev_f1": _before_after(before, after, "dev_f1"),
        "test_f1": {**_before_after(before, after, "test_f1"), "data": paths["measured_on"]},
        "words_per_second": {
            **_before_after(before, after, "words_per_second"),
            "ratio": after["words_per_second"] / max(before["words_per_second"], 1e-9),
            "measured_on": paths["measured_on"],
            "batch_size": SPEED_BATCH_SIZE,
            "torch_threads": threads,
        },
        "evaluations": selection.evaluations,
        "finetune": finetune,
        "plot": paths["plot"],
        "machine": machine_info(),
    }


def summary_lines(report: Dict[str, Any]) -> List[str]:
    """Human-readable lines: kept layers, cost, F1 and speed before -> after."""
    key, macs, params = report["score"], report["lm_multiply_adds_per_token"], report["lm_parameters"]
    dev, test, wps = report["dev_f1"], report["test_f1"], report["words_per_second"]
    lines = [
        f"Kept layers: forward {report['kept_layers']['forward']}, backward {report['kept_layers']['backward']}",
        f"LM multiply-adds/token: {macs['before']:,} -> {macs['after']:,} ({macs['ratio']:.1%})",
        f"LM LSTM parameters: {params['before']:,} -> {params['after']:,}",
    ]
    finetune = report["finetune"]
    if finetune:
        sel = finetune["selected_before_finetune"]
        lines.append(
            f"pruned as selected: dev {sel['dev_f1'] * 100:.2f}, test {sel['test_f1'] * 100:.2f}; "
            f"fine-tuned {finetune['settings']['steps']} steps, best at step {finetune['best_step']}"
        )
    lines += [
        f"dev {key}: {dev['before'] * 100:.2f} -> {dev['after'] * 100:.2f}",
        f"test {key}: {test['before'] * 100:.2f} -> {test['after'] * 100:.2f}",
        f"words/s: {wps['before']:,.0f} -> {wps['after']:,.0f} ({wps['ratio']:.1f}x)",
    ]
    return lines

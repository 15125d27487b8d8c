"""A short Markdown report with PNG plots: training curves and the evaluation's numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmcr.records import METRICS_NAME, read_jsonl, write_text


def plot_training_curves(records: list[dict[str, Any]], path: Path) -> bool:
    """Loss, PPE and validation kNN accuracy over training; False if there is nothing to plot."""
    steps = [r for r in records if r.get("kind") == "step"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    if not steps:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot([r["step"] for r in steps], [r["loss"] for r in steps])
    axes[0].set(xlabel="step", ylabel="loss", title="training loss")
    ppe = [(r["step"], r["ppe"]) for r in steps if r.get("ppe") is not None]
    if ppe:
        axes[1].plot(*zip(*ppe, strict=True), label="train batch")
    val_ppe = [(r["step"], r["val_ppe"]) for r in epochs if "val_ppe" in r]
    if val_ppe:
        axes[1].plot(*zip(*val_ppe, strict=True), "o-", label="validation")
    axes[1].set(xlabel="step", ylabel="PPE", title="pretraining percent error")
    if ppe or val_ppe:  # a paired run logs no PPE: no legend for an empty panel
        axes[1].legend()
    knn = [(r["epoch"], r["knn_val_acc"]) for r in epochs if "knn_val_acc" in r]
    if knn:
        axes[2].plot(*zip(*knn, strict=True), "o-")
    axes[2].set(xlabel="epoch", ylabel="accuracy", title="validation kNN accuracy")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_eval(results: dict[str, Any], path: Path) -> None:
    """kNN validation accuracy over (k, temperature), and the probe's L2 sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = results["knn"]["grid"]
    ks = sorted({g["k"] for g in grid})
    ts = sorted({g["temperature"] for g in grid})
    table = [
        [next(g["val_accuracy"] for g in grid if g["k"] == k and g["temperature"] == t) for t in ts]
        for k in ks
    ]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    im = axes[0].imshow(table, aspect="auto", cmap="viridis")
    axes[0].set_xticks(range(len(ts)), [str(t) for t in ts])
    axes[0].set_yticks(range(len(ks)), [str(k) for k in ks])
    axes[0].set(xlabel="temperature", ylabel="k", title="kNN validation accuracy")
    fig.colorbar(im, ax=axes[0])
    if "linear_probe" in results:
        probe = results["linear_probe"]["grid"]
        axes[1].semilogx([g["weight_decay"] for g in probe], [g["val_accuracy"] for g in probe], "o-")
        axes[1].set(xlabel="L2 weight", ylabel="accuracy", title="linear probe (validation)")
        axes[1].grid(alpha=0.3)
    else:
        axes[1].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict[str, Any], out: Path, run_dir: Path | None = None) -> Path:
    """Write ``report.md`` (and its PNGs) into ``out``; returns the report's path."""
    lines = [f"# Evaluation: {results['dataset']}, {results['encoder']}, {results['mode']}", ""]
    if results.get("checkpoint"):
        lines += [f"Checkpoint `{results['checkpoint']}` (step {results.get('train_step')}).", ""]
    knn = results["knn"]
    lines += [
        "Hyper-parameters chosen on the validation split held out of the training set; the test",
        "split is used once, for the numbers below.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| kNN test accuracy | {100 * knn['test_accuracy']:.2f} % "
        f"(k = {knn['k']}, T = {knn['temperature']}) |",
    ]
    if "linear_probe" in results:
        lp = results["linear_probe"]
        lines.append(
            f"| linear-probe test accuracy | {100 * lp['test_accuracy']:.2f} % (L2 {lp['weight_decay']}) |"
        )
    lines.append(f"| effective rank of test features | {results['feature_effective_rank']:.1f} |")
    for key, value in results.get("geometry", {}).items():
        lines.append(f"| {key.replace('_', ' ')} (test embeddings) | {value:.4f} |")
    lines.append("")
    if run_dir is not None:
        if plot_training_curves(read_jsonl(run_dir / METRICS_NAME), out / "training_curves.png"):
            lines += ["## Training", "", "![training curves](training_curves.png)", ""]
    plot_eval(results, out / "evaluation.png")
    lines += ["## Model selection", "", "![evaluation](evaluation.png)", ""]
    return write_text(out / "report.md", "\n".join(lines))


def write_paired_report(results: dict[str, Any], out: Path, run_dir: Path | None = None) -> Path:
    """``report.md`` of a paired (image-text) checkpoint: retrieval, its recall@k plot, zero-shot, probes."""
    from mmcr.evaluation.retrieval import plot_recall_at_k

    lines = [
        f"# Evaluation: {results['dataset']}, {results['encoder']} + {results['text_encoder']}, "
        f"objective {results['objective']}",
        "",
    ]
    if results.get("checkpoint"):
        lines += [f"Checkpoint `{results['checkpoint']}` (step {results.get('train_step')}).", ""]
    retrieval = results["retrieval"]
    lines += [
        f"## Retrieval on the test split ({retrieval['num_images']} images, "
        f"{retrieval['num_captions']} captions)",
        "",
        "| protocol | direction | R@1 | R@5 | R@10 | median rank |",
        "|---|---|---|---|---|---|",
    ]
    protocols = [("1:1 primary caption", retrieval)]
    if "multi_caption" in retrieval:
        protocols.append(("multi-caption", retrieval["multi_caption"]))
    for name, section in protocols:
        for direction in ("image_to_text", "text_to_image"):
            r = section[direction]
            lines.append(
                f"| {name} | {direction.replace('_', ' ')} | {100 * r['recall@1']:.2f} % | "
                f"{100 * r['recall@5']:.2f} % | {100 * r['recall@10']:.2f} % | {r['median_rank']} |"
            )
    plot_recall_at_k(retrieval, out / "recall_at_k.png")
    lines += ["", "![recall@k](recall_at_k.png)", ""]
    zero_shot = results.get("zero_shot")
    if zero_shot:
        lines += [
            "## Zero-shot classification",
            "",
            "Templates: " + ", ".join(f"`{t}`" for t in zero_shot["templates"]) + ".",
            "",
            "| labels | classes | top-1 | top-5 |",
            "|---|---|---|---|",
        ]
        for kind, z in zero_shot.items():
            if kind != "templates":
                lines.append(
                    f"| {kind} | {z['num_classes']} | {100 * z['top1']:.2f} % | {100 * z['top5']:.2f} % |"
                )
        lines.append("")
    probes = results.get("image_probes", {})
    if probes:
        lines += [
            "## Image tower: kNN and linear probe (chosen on the validation split)",
            "",
            "| labels | kNN test | linear-probe test |",
            "|---|---|---|",
        ]
        for kind, section in probes.items():
            probe = section.get("linear_probe")
            lines.append(
                f"| {kind} | {100 * section['knn']['test_accuracy']:.2f} % | "
                + (f"{100 * probe['test_accuracy']:.2f} % |" if probe else "- |")
            )
        lines.append("")
    if run_dir is not None:
        if plot_training_curves(read_jsonl(run_dir / METRICS_NAME), out / "training_curves.png"):
            lines += ["## Training", "", "![training curves](training_curves.png)", ""]
    return write_text(out / "report.md", "\n".join(lines))

"""``mmcr eval``: score a checkpoint with kNN, a linear probe and the geometry of its embeddings.

The job that joins the assembly layer (:mod:`mmcr.build`: the checkpoint's recipe, data and
network) to the scoring pieces of :mod:`mmcr.evaluation`.

Model selection never looks at the test split: kNN's k and temperature and the probe's
L2 weight are chosen on the validation split held out of the training set (the same
seeded split as pretraining), and the test split gives the final numbers only.

The same code scores two references, so that gains are measured, not assumed:
``random_init=True`` (the same architecture, untrained, seeded like the run) and
``raw_pixels=True`` (the evaluation view's pixels as features).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmcr.build import (
    Checkpoint,
    Data,
    augment_config,
    build_network,
    load_data,
    load_test,
    load_test_stream,
    load_weights,
    loader_options,
    resolve_device,
)
from mmcr.config import PretrainConfig, build_config
from mmcr.data import ImageDataset, MultiViewAugment
from mmcr.evaluation.embed import batched_apply, streamed_apply, view_geometry
from mmcr.evaluation.knn import knn_accuracy, select_knn
from mmcr.evaluation.linear_probe import PROBE_WEIGHT_DECAYS, evaluate_linear_probe
from mmcr.geometry.metrics import effective_rank
from mmcr.records import write_json


@dataclass
class EvalOptions:
    checkpoint: str | None = None
    config: str | None = None  # a recipe, for --raw-pixels / --random-init without a checkpoint
    out: str | None = None  # where eval.json and report.md go (default: beside the checkpoint)
    random_init: bool = False
    raw_pixels: bool = False
    data_dir: str | None = None
    device: str = "auto"
    geometry_views: int | None = None  # views per test image for the geometry (default: the run's K)
    geometry_images: int = 4096
    probe: bool = True
    probe_weight_decays: tuple[float, ...] = PROBE_WEIGHT_DECAYS  # the L2 grid, chosen on val
    probe_max_iter: int = 200  # L-BFGS iterations per probe fit
    report: bool = True


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def evaluate(options: EvalOptions) -> dict[str, Any]:
    """Run the evaluation; returns (and writes) the results dict."""
    t0 = time.perf_counter()
    _check_options(options)
    cfg, checkpoint, mode, out = _resolve(options)
    device = resolve_device(options.device)
    torch.manual_seed(cfg.seed)
    if cfg.paired:
        if checkpoint is None or mode != "trained":
            raise ValueError("a paired (image-text) recipe is evaluated from its checkpoint only")
        return evaluate_paired(cfg, checkpoint, options, out, device, t0)

    data = load_data(cfg)
    test = load_test(cfg)
    network = build_network(cfg, data.channels).to(device)
    if checkpoint is not None and mode == "trained":
        load_weights(network, checkpoint.model, options.checkpoint or "the checkpoint")
    network.eval()
    features = _flatten if mode == "raw-pixels" else network.encoder

    sizes, embedded = _embed_splits(features, data, test, cfg, device, mode)
    train, val, (f_test, test_labels) = embedded["train"], embedded["val"], embedded["test"]
    results: dict[str, Any] = {
        "mode": mode,
        "checkpoint": options.checkpoint,
        "dataset": cfg.dataset,
        "encoder": cfg.encoder,
        "objective": cfg.objective,
        "train_step": None if checkpoint is None else checkpoint.step,
        "feature_dim": int(train[0].shape[1]),
        "num_train": sizes["train"],
        "num_val": sizes["val"],
        "num_test": sizes["test"],
        "knn": _knn(train, val, (f_test, test_labels), data.num_classes),
    }
    if options.probe:
        results["linear_probe"] = _probe(train, val, (f_test, test_labels), data.num_classes, options)
    results["feature_effective_rank"] = effective_rank(f_test[:4096])
    if mode != "raw-pixels":
        results["geometry"] = embedding_geometry(network, test.images, cfg, options, device)
        _log(
            "[eval] geometry of test embeddings: "
            + ", ".join(f"{k} {v:.4f}" for k, v in results["geometry"].items())
        )
        results["mi_reliability"] = _mi_reading(results["geometry"])
        _log(f"[eval] MI bound: {results['mi_reliability']}")
    results["seconds"] = time.perf_counter() - t0
    write_json(out / "eval.json", results)
    if options.report:
        from mmcr.evaluation.report import write_report

        run_dir = Path(options.checkpoint).parent if options.checkpoint else None
        write_report(results, out, run_dir=run_dir)
    _log(f"[eval] wrote {out / 'eval.json'}")
    return results


def _mi_reading(geometry: dict[str, float]) -> str:
    """The MI bound read below the uniform maximum, and whether N images suffice for D."""
    from mmcr.geometry.mutual_information import mi_reliability

    n, dim = int(geometry["mi_n_samples"]), int(geometry["mi_dim"])
    reliable, reason = mi_reliability(n, dim, geometry["mi_kappa"])
    bound, gain = geometry["mi_lower_bound"], geometry["mi_reconstruction_gain"]
    return (
        f"{'reliable' if reliable else 'reliable: false'} ({reason}); bound {bound:.2f} = "
        f"gain {gain:.2f} - entropy deficit {geometry['mi_entropy_deficit']:.2f} nats, "
        "the gain being the most the bound can be at this alignment (uniform embeddings)"
    )


def _check_options(options: EvalOptions) -> None:
    if options.probe:
        decays = tuple(options.probe_weight_decays)
        if not decays or not all(math.isfinite(d) and d >= 0 for d in decays):
            raise ValueError(f"probe_weight_decays must be a non-empty list of numbers >= 0, got {decays}")
        if options.probe_max_iter < 1:
            raise ValueError(f"probe_max_iter must be >= 1, got {options.probe_max_iter}")


def _resolve(options: EvalOptions) -> tuple[PretrainConfig, Checkpoint | None, str, Path]:
    """The recipe, the checkpoint (if any), the mode and the output folder (created)."""
    checkpoint: Checkpoint | None = None
    if options.checkpoint is not None:
        checkpoint = Checkpoint.load(options.checkpoint)
        cfg = checkpoint.recipe()
    else:
        if not (options.raw_pixels or options.random_init):
            raise ValueError("give a checkpoint, or --raw-pixels / --random-init with --config")
        cfg = build_config(options.config, None)
    if options.data_dir is not None:
        cfg.data_dir = options.data_dir
    mode = "raw-pixels" if options.raw_pixels else "random-init" if options.random_init else "trained"
    if options.out is not None:
        out = Path(options.out)
    elif options.checkpoint is not None:
        out = Path(options.checkpoint).parent / ("eval" if mode == "trained" else f"eval-{mode}")
    else:
        out = Path(cfg.out) / f"eval-{mode}"
    out.mkdir(parents=True, exist_ok=True)
    return cfg, checkpoint, mode, out


def _flatten(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1)


Split = tuple[torch.Tensor, torch.Tensor]  # features (N, F), labels (N,)


def _embed_splits(
    features: Any, data: Data, test: ImageDataset, cfg: PretrainConfig, device: torch.device, mode: str
) -> tuple[dict[str, int], dict[str, Split]]:
    """Features and labels of the train (kNN memory), val and test splits, and their sizes.

    On the streaming path every image of a split is read from its file as it is embedded
    (``data.memory``, ``data.val`` and ``test`` are then only samples for the monitor).
    """
    aug, options = augment_config(cfg), loader_options(cfg)
    parts = {
        "train": (data.memory, data.stream_memory),
        "val": (data.val, data.stream_val),
        "test": (test, load_test_stream(cfg)),
    }
    sizes = {name: len(whole if stream is None else stream) for name, (whole, stream) in parts.items()}
    counts = f"{sizes['train']} train / {sizes['val']} val / {sizes['test']} test"
    _log(f"[eval] embedding {counts} images ({mode})")
    embedded: dict[str, Split] = {}
    for name, (whole, stream) in parts.items():
        if stream is None:
            embedded[name] = (batched_apply(features, whole.images, aug, device=device), whole.labels)
        else:
            embedded[name] = (streamed_apply(features, stream, aug, options, device=device), stream.labels)
    return sizes, embedded


def _knn(train: Split, val: Split, test: Split, classes: int) -> dict[str, Any]:
    """k and temperature chosen on val; the test accuracy with train + val as the memory bank."""
    _log("[eval] kNN: choosing k and temperature on the validation split")
    sel = select_knn(*train, *val, num_classes=classes)
    knn_test = knn_accuracy(
        torch.cat([train[0], val[0]]),
        torch.cat([train[1], val[1]]),
        *test,
        k=sel.k,
        temperature=sel.temperature,
        num_classes=classes,
    )
    _log(
        f"[eval] kNN test accuracy {knn_test:.4f} "
        f"(k={sel.k}, T={sel.temperature}, val {sel.val_accuracy:.4f})"
    )
    return {
        "k": sel.k,
        "temperature": sel.temperature,
        "val_accuracy": sel.val_accuracy,
        "test_accuracy": knn_test,
        "grid": sel.grid,
    }


def _probe(train: Split, val: Split, test: Split, classes: int, options: EvalOptions) -> dict[str, Any]:
    _log("[eval] linear probe: choosing the L2 weight on the validation split")
    probe = evaluate_linear_probe(
        train,
        val,
        test,
        classes,
        weight_decays=tuple(options.probe_weight_decays),
        max_iter=options.probe_max_iter,
    )
    _log(f"[eval] linear-probe test accuracy {probe.test_accuracy:.4f} (L2 {probe.weight_decay})")
    return {
        "weight_decay": probe.weight_decay,
        "val_accuracy": probe.val_accuracy,
        "test_accuracy": probe.test_accuracy,
        "grid": probe.grid,
        "protocol": "softmax regression on standardised frozen features, L-BFGS, L2 chosen on val "
        "(grid fitted on <= 20000 training samples), refit on all of train+val",
    }


@torch.no_grad()
def embedding_geometry(
    network: torch.nn.Module,
    images: torch.Tensor,
    cfg: PretrainConfig,
    options: EvalOptions,
    device: torch.device,
) -> dict[str, float]:
    """Alignment, uniformity, effective rank, PPE and the MI bound of K-view test embeddings.

    Computed on batches of the training batch size (PPE depends on the number of
    points P) and averaged.
    """
    geometry, mi = view_geometry(
        network,
        images[: options.geometry_images],
        MultiViewAugment(augment_config(cfg)),
        options.geometry_views or max(cfg.num_views, 2),
        points=cfg.batch_size,
        seed=cfg.seed + 11,
        device=device,
    )
    geometry["mi_lower_bound"] = mi["bound"]
    # The bound in nats below the uniform maximum (gain - deficit), the plain kNN bound,
    # and whether the number of images suffices for the dimension (1.0 / 0.0).
    for key in (
        "reconstruction",
        "entropy",
        "kappa",
        "reconstruction_gain",
        "entropy_deficit",
        "bound_knn",
        "bound_debiased",
        "reliable",
    ):
        geometry[f"mi_{key}"] = mi[key]
    geometry["mi_dim"] = mi["dim"]
    geometry["mi_n_samples"] = mi["n_samples"]
    geometry.update(exemplar_capacity(network, images, cfg, device))
    return geometry


@torch.no_grad()
def exemplar_capacity(
    network: torch.nn.Module,
    images: torch.Tensor,
    cfg: PretrainConfig,
    device: torch.device,
    *,
    manifolds: int = 32,
    views: int = 8,
    n_t: int = 50,
) -> dict[str, float]:
    """Mean-field capacity, radius, dimension and centre correlation of exemplar manifolds.

    ``manifolds`` test images, each in ``views`` augmented views, through the encoder (the
    final features); small by default so that it takes a second or two (at most 3 shared
    centre directions are removed, from one start each). With 8 views the
    samples span 7 dimensions, so the capacity is that of 8-point clouds: compare runs at
    equal settings (``mmcr geometry`` measures larger ones at every depth).
    """
    from mmcr.geometry.capacity import manifold_capacity

    generator = torch.Generator().manual_seed(cfg.seed + 13)
    chosen = torch.randperm(images.shape[0], generator=generator)[:manifolds]
    augment = MultiViewAugment(augment_config(cfg))
    batch = augment(images[chosen].to(device), views, generator=generator)  # (P, M, C, H, W)
    features = network.encoder(batch.flatten(0, 1)).float().cpu()  # type: ignore[operator]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the simplex warning: expected at 8 views
        clouds = list(features.double().reshape(len(chosen), views, -1))
        result = manifold_capacity(clouds, 0.0, n_t, cfg.seed, max_center_components=3, restarts=1)
    return {
        "exemplar_capacity": result.capacity,
        "exemplar_radius": result.radius,
        "exemplar_dimension": result.dimension,
        "exemplar_center_correlation": result.center_correlation,
    }


# ----------------------------------------------------------------------------- paired image-text


def _load_paired_split(cfg: PretrainConfig, split: str) -> Any:
    """A split of the run's paired data set, or ``None`` where the data set has no such split."""
    from mmcr.data.paired import load_paired
    from mmcr.training.paired import image_size, paired_options

    try:
        return load_paired(
            cfg.dataset, split, cfg.data_dir, image_size=image_size(cfg), options=paired_options(cfg)
        )
    except (FileNotFoundError, ValueError) as exc:
        if split == "test":
            raise
        _log(f"[eval] no {split} split ({exc})")
        return None


def _paired_zero_shot(test: Any, kinds: list[str], z_images: torch.Tensor, encode: Any) -> dict[str, Any]:
    """Zero-shot classification of the test images on each label kind, through the templates.

    Data without a label of a kind (label -1) are left out of that kind's scores.
    """
    from mmcr.evaluation.zero_shot import DEFAULT_TEMPLATES, zero_shot_report

    section: dict[str, Any] = {"templates": list(DEFAULT_TEMPLATES)}
    for kind in kinds:
        known = test.labels[kind] >= 0
        label_set = {kind: (test.labels[kind][known], list(test.label_names[kind]))}
        section.update(zero_shot_report(z_images[known], label_set, encode, DEFAULT_TEMPLATES))
        _log(f"[eval] zero-shot {kind}: top-1 {section[kind]['top1']:.4f}")
    return section


def _paired_image_probe(
    splits: dict[str, Any], features: dict[str, torch.Tensor], kind: str, options: EvalOptions
) -> dict[str, Any]:
    """The image tower's kNN (and linear probe) on one label kind, its unlabelled data left out."""
    classes = len(splits["test"].label_names[kind])
    parts = {}
    for name, split in splits.items():
        known = split.labels[kind] >= 0
        parts[name] = (features[name][known], split.labels[kind][known])
    _log(f"[eval] image tower on {kind} labels ({classes} classes)")
    section: dict[str, Any] = {"knn": _knn(parts["train"], parts["val"], parts["test"], classes)}
    if options.probe:
        section["linear_probe"] = _probe(parts["train"], parts["val"], parts["test"], classes, options)
    return section


def _paired_image_probes(
    splits: dict[str, Any],
    kinds: list[str],
    encoder: torch.nn.Module,
    aug: Any,
    device: torch.device,
    options: EvalOptions,
) -> dict[str, Any]:
    """The image tower's kNN and probe on every label kind that train, val and test all have.

    Empty when no kind qualifies; else ``image_probes`` per kind, and the first kind's
    ``knn`` (and ``linear_probe``) where the image-only report reads them.
    """
    train, val, test = splits["train"], splits["val"], splits["test"]
    if train is None or val is None:
        return {}
    probe_kinds = [k for k in kinds if k in train.labels and k in val.labels]
    if not probe_kinds:
        return {}
    parts = {"train": train, "val": val, "test": test}
    with torch.no_grad():
        features = {
            name: batched_apply(encoder, split.images, aug, device=device) for name, split in parts.items()
        }
    section: dict[str, Any] = {
        "feature_dim": int(features["test"].shape[1]),
        "num_train": len(train),
        "num_val": len(val),
        "image_probes": {kind: _paired_image_probe(parts, features, kind, options) for kind in probe_kinds},
        "probe_label": probe_kinds[0],
        "feature_effective_rank": effective_rank(features["test"][:4096]),
    }
    first = section["image_probes"][probe_kinds[0]]
    section["knn"] = first["knn"]
    if "linear_probe" in first:
        section["linear_probe"] = first["linear_probe"]
    return section


def evaluate_paired(
    cfg: PretrainConfig,
    checkpoint: Checkpoint,
    options: EvalOptions,
    out: Path,
    device: torch.device,
    t0: float,
) -> dict[str, Any]:
    """Retrieval and zero-shot on the test split, and the image tower's kNN and probe on its labels.

    Retrieval ranks the test split's captions by the projector outputs (1:1 on the primary
    caption, and multi-caption); zero-shot puts each label kind's class names through the
    prompt templates. Where the data set has a validation split, ``val_retrieval`` holds the
    same retrieval report on it, for model selection. The kNN and the linear probe read the
    image encoder's features of the training split (memory), the validation split (model
    selection) and the test split, for every label kind that all three have.
    """
    from mmcr.evaluation.retrieval import retrieval_report
    from mmcr.training.paired import build_paired_network, paired_augment_config

    test = _load_paired_split(cfg, "test")
    val = _load_paired_split(cfg, "val")
    network = build_paired_network(cfg, checkpoint.in_channels, device)  # a locked text model runs there
    load_weights(network, checkpoint.model, options.checkpoint or "the checkpoint")
    network = network.to(device).eval()
    aug = paired_augment_config(cfg)

    @torch.no_grad()
    def encode(texts: list[str]) -> torch.Tensor:
        parts = [
            network.embed_texts(network.tokenize(texts[i : i + 512]).to(device)).float().cpu()
            for i in range(0, len(texts), 512)
        ]
        return torch.cat(parts) if parts else torch.zeros(0, cfg.projector_dim)

    def project(x: torch.Tensor) -> torch.Tensor:
        return network.embed_images(x)[1]

    def split_retrieval(split: Any) -> tuple[dict[str, Any], torch.Tensor]:
        with torch.no_grad():
            z_images = batched_apply(project, split.images, aug, device=device)
            texts, owner = split.flat_captions()
            z_texts = encode(texts)
        _log(f"[eval] retrieval on {len(split)} images and {len(texts)} captions")
        return retrieval_report(z_images, z_texts, owner), z_images

    retrieval, z_images = split_retrieval(test)
    for direction in ("image_to_text", "text_to_image"):
        r = retrieval[direction]
        _log(
            f"[eval] {direction} (1:1): R@1 {r['recall@1']:.4f} R@5 {r['recall@5']:.4f} "
            f"R@10 {r['recall@10']:.4f}"
        )
    results: dict[str, Any] = {
        "mode": "trained",
        "checkpoint": options.checkpoint,
        "dataset": cfg.dataset,
        "encoder": cfg.encoder,
        "text_encoder": cfg.text_encoder,
        "objective": cfg.objective,
        "image_views": cfg.image_views,
        "text_views": cfg.text_views,
        "train_step": checkpoint.step,
        "num_test": len(test),
        "retrieval": retrieval,
    }
    if val is not None:  # for model selection (e.g. the lr of a comparison), never test
        results["val_retrieval"] = split_retrieval(val)[0]
    kinds = [kind for kind in test.labels if kind in test.label_names]
    if kinds:
        results["zero_shot"] = _paired_zero_shot(test, kinds, z_images, encode)
        # the training split is read for the probes only: unlabelled test data need none of it
        splits = {"train": _load_paired_split(cfg, "train"), "val": val, "test": test}
        results.update(_paired_image_probes(splits, kinds, network.image.encoder, aug, device, options))
    results["seconds"] = time.perf_counter() - t0
    write_json(out / "eval.json", results)
    if options.report:
        from mmcr.evaluation.report import write_paired_report

        write_paired_report(
            results, out, run_dir=Path(options.checkpoint).parent if options.checkpoint else None
        )
    _log(f"[eval] wrote {out / 'eval.json'}")
    return results

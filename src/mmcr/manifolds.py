"""``mmcr geometry``: manifold capacity, radius and dimension through the depth of trained encoders.

Two kinds of manifolds, from the test split of each checkpoint's data set:

* **exemplar** manifolds (the protocol of Yerxa et al. 2023): P test images, each seen in M
  augmented views (the training augmentation); a manifold is the point cloud of one image;
* **class** manifolds: P classes (at most the data set's), M test images of each, in the
  evaluation view.

Each is measured at every depth of the network: ``input`` (the view's pixels), each stage
of the encoder (ConvNet stages, ResNet layer1-4; read by forward hooks), ``pooled`` (the
encoder's output features) and ``projector`` (the embedding the objective sees), with
:func:`mmcr.geometry.capacity.manifold_capacity` and the participation ratio of all the
samples.

Very wide layers (a stage of a ConvNet on 28 x 28 images has tens of thousands of
activations) are mapped to ``max_features`` dimensions by a seeded Gaussian random
projection, the same for every checkpoint at a given depth. A random projection to k
dimensions keeps distances and inner products up to a relative error of about
``1 / sqrt(k)`` (Johnson-Lindenstrauss), so radii and dimensions are kept, while the
capacity, a ratio of P to a number of dimensions the analysis never uses directly, is
unchanged to that accuracy as long as k is well above the samples per manifold. Layers no
wider than ``max_features`` are used as they are.

Outputs in ``out``: ``geometry.json`` (every number, per checkpoint, kind and depth, with the
trend of the capacity over M at the last depth) and ``geometry_<kind>.png`` (capacity,
radius and dimension against depth, one line per checkpoint).
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmcr.build import augment_config, load_network, load_test, resolve_device
from mmcr.data import MultiViewAugment, plain_view
from mmcr.geometry.capacity import capacity_vs_samples, manifold_capacity
from mmcr.geometry.dimension import participation_ratio
from mmcr.records import output_folder, write_json

__all__ = ["GeometryOptions", "encoder_stages", "measure_geometry", "plot_geometry"]

KINDS = ("exemplar", "class")


@dataclass
class GeometryOptions:
    checkpoints: list[str] = field(default_factory=list)
    out: str = "geometry"
    manifolds: int = 50  # P: test images (exemplar) / at most this many classes (class)
    views: int = 20  # M for exemplar manifolds: augmented views per image
    images_per_class: int = 50  # M for class manifolds
    kappa: float = 0.0
    n_t: int = 100  # Gaussian vectors per manifold
    max_features: int = 512  # wider layers are randomly projected to this many dimensions
    max_center_components: int = 10  # shared centre directions tried for removal (each an optimisation)
    restarts: int = 2  # random starts of each of those optimisations
    kinds: tuple[str, ...] = KINDS
    seed: int = 0
    device: str = "cpu"
    data_dir: str | None = None
    plots: bool = True


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_options(options: GeometryOptions) -> None:
    """Every setting, checked before any work."""
    if not options.checkpoints:
        raise ValueError("give at least one checkpoint")
    for path in options.checkpoints:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
    for name, least in (
        ("manifolds", 2),
        ("views", 2),
        ("images_per_class", 2),
        ("n_t", 1),
        ("max_features", 2),
    ):
        if getattr(options, name) < least:
            raise ValueError(f"{name} must be >= {least}, got {getattr(options, name)}")
    if options.kappa < 0:
        raise ValueError(f"kappa must be >= 0, got {options.kappa}")
    unknown = set(options.kinds) - set(KINDS)
    if unknown or not options.kinds:
        raise ValueError(f"kinds must be among {', '.join(KINDS)}, got {', '.join(options.kinds) or 'none'}")


def encoder_stages(encoder: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules whose outputs end the stages of an encoder, named ``stage1``, ``stage2``, ...

    ResNets: ``layer1`` ... ``layer4``. The ConvNet: the last ReLU before the number of
    channels changes (one stage per width). Other encoders: none (only the input, the
    pooled features and the projector output are measured).
    """
    if all(hasattr(encoder, f"layer{i}") for i in range(1, 5)):
        return [(f"stage{i}", getattr(encoder, f"layer{i}")) for i in range(1, 5)]
    features = getattr(encoder, "features", None)
    if not isinstance(features, nn.Sequential):
        return []
    stages: list[nn.Module] = []
    channels, last_relu = None, None
    for module in features:
        if isinstance(module, nn.Conv2d):
            if channels is not None and module.out_channels != channels and last_relu is not None:
                stages.append(last_relu)
            channels = module.out_channels
        elif isinstance(module, nn.ReLU):
            last_relu = module
    if last_relu is not None:
        stages.append(last_relu)
    return [(f"stage{i + 1}", m) for i, m in enumerate(stages)]


@contextmanager
def _recording(stages: list[tuple[str, nn.Module]], store: dict[str, torch.Tensor]) -> Iterator[None]:
    handles = []
    for name, module in stages:

        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor, name: str = name) -> None:
            store[name] = output.detach().flatten(1)

        handles.append(module.register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class _Projections:
    """One seeded Gaussian projection per depth, for layers wider than ``width``."""

    def __init__(self, width: int, seed: int) -> None:
        self.width, self.seed = width, seed
        self.matrices: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] <= self.width:
            return x.float().cpu()
        if name not in self.matrices:
            gen = torch.Generator().manual_seed(self.seed + sum(map(ord, name)))
            self.matrices[name] = torch.randn(x.shape[1], self.width, generator=gen) / self.width**0.5
        return (x.float().cpu() @ self.matrices[name]).contiguous()


@torch.no_grad()
def _representations(
    network: nn.Module, views: torch.Tensor, projections: _Projections, device: torch.device, batch: int = 256
) -> dict[str, torch.Tensor]:
    """Every depth's ``(N, F)`` representation of float views ``(N, C, H, W)``."""
    stages = encoder_stages(network.encoder)  # type: ignore[arg-type]
    out: dict[str, list[torch.Tensor]] = {}
    for start in range(0, views.shape[0], batch):
        x = views[start : start + batch].to(device)
        store: dict[str, torch.Tensor] = {}
        with _recording(stages, store):
            features, projected = network(x)
        rows = {"input": x.flatten(1), **store, "pooled": features, "projector": projected}
        for name, value in rows.items():
            out.setdefault(name, []).append(projections(name, value))
    return {name: torch.cat(parts) for name, parts in out.items()}


def _exemplar_views(images: torch.Tensor, cfg: Any, options: GeometryOptions) -> torch.Tensor:
    """``(P * M, C, H, W)`` views: M augmented views of each of P test images, image-major."""
    gen = torch.Generator().manual_seed(options.seed)
    chosen = torch.randperm(images.shape[0], generator=gen)[: options.manifolds]
    augment = MultiViewAugment(augment_config(cfg))
    views = augment(images[chosen], options.views, generator=gen)  # (P, M, C, H, W)
    return views.flatten(0, 1)


def _class_views(test: Any, cfg: Any, options: GeometryOptions) -> tuple[torch.Tensor, int, int]:
    """Plain views of M test images of each of P classes, class-major; returns (views, P, M)."""
    gen = torch.Generator().manual_seed(options.seed + 1)
    classes = torch.unique(test.labels)
    classes = classes[torch.randperm(len(classes), generator=gen)[: options.manifolds]].sort().values
    per_class = min(options.images_per_class, *(int((test.labels == c).sum()) for c in classes))
    if len(classes) < 2 or per_class < 2:
        raise ValueError(
            f"class manifolds need 2 classes with 2 test images each; the test split has {len(classes)} "
            f"classes and {per_class} images in its smallest"
        )
    picks = []
    for c in classes:
        idx = (test.labels == c).nonzero().squeeze(1)
        picks.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    return plain_view(test.images[torch.cat(picks)], augment_config(cfg)), len(classes), per_class


def _analyse(reps: dict[str, torch.Tensor], p: int, m: int, options: GeometryOptions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, x in reps.items():
        manifolds = list(x.double().reshape(p, m, -1))
        with warnings.catch_warnings():  # M samples of wide layers: saturated, reported below
            warnings.simplefilter("ignore", UserWarning)
            result = manifold_capacity(
                manifolds,
                options.kappa,
                options.n_t,
                options.seed,
                max_center_components=options.max_center_components,
                restarts=options.restarts,
            )
        out[name] = {
            **result.to_dict(),
            "features": int(x.shape[1]),
            "participation_ratio": participation_ratio(x),
        }
    last = list(reps)[-1]
    manifolds = list(reps[last].double().reshape(p, m, -1))
    # the trend over M removes the shared centre directions chosen at full M (one fit per
    # subset, not a new search over K with the library's default restarts)
    out[last]["capacity_vs_samples"] = capacity_vs_samples(
        manifolds,
        None,
        options.kappa,
        options.n_t,
        options.seed,
        center_components=out[last]["center_components"],
        restarts=options.restarts,
    )
    return out


def measure_geometry(options: GeometryOptions) -> dict[str, Any]:
    """Run the job; returns (and writes to ``options.out``) the results dict."""
    check_options(options)
    device = resolve_device(options.device)
    out = output_folder(options.out)
    results: dict[str, Any] = {
        "options": {**asdict(options), "kinds": list(options.kinds)},
        "checkpoints": [],
    }
    for path in options.checkpoints:
        t0 = time.perf_counter()
        network, checkpoint = load_network(path, device)
        cfg = checkpoint.recipe()
        if options.data_dir is not None:
            cfg.data_dir = options.data_dir
        test = load_test(cfg)
        projections = _Projections(options.max_features, options.seed)
        entry: dict[str, Any] = {
            "checkpoint": path,
            "label": _label(path, cfg),
            "objective": cfg.objective,
            "encoder": cfg.encoder,
            "dataset": cfg.dataset,
            "step": checkpoint.step,
        }
        if "exemplar" in options.kinds:
            p = min(options.manifolds, test.images.shape[0])
            views = _exemplar_views(test.images, cfg, options)
            entry["exemplar"] = _analyse(
                _representations(network, views, projections, device), p, options.views, options
            )
        if "class" in options.kinds:
            views, p, m = _class_views(test, cfg, options)
            entry["class"] = _analyse(_representations(network, views, projections, device), p, m, options)
            entry["class_manifolds"], entry["class_samples"] = p, m
        entry["seconds"] = time.perf_counter() - t0
        _log(f"[geometry] {path}: {entry['seconds']:.1f} s")
        for kind in KINDS:
            if kind in entry:
                line = ", ".join(f"{d} {v['capacity']:.3f}" for d, v in entry[kind].items())
                _log(f"[geometry]   {kind} capacity by depth: {line}")
        results["checkpoints"].append(entry)
    write_json(out / "geometry.json", results)
    if options.plots:
        results["plots"] = [str(p) for p in plot_geometry(results, out)]
    _log(f"[geometry] wrote {out / 'geometry.json'}")
    return results


def _label(path: str, cfg: Any) -> str:
    return f"{cfg.objective} ({Path(path).parent.name or path})"


def plot_geometry(results: dict[str, Any], out: Path) -> list[Path]:
    """``geometry_<kind>.png``: capacity, radius and dimension against depth, one line per checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    panels: list[tuple[str, str, Callable[[dict[str, Any]], float]]] = [
        ("capacity", "capacity alpha_M", lambda v: v["capacity"]),
        ("radius", "radius R_M", lambda v: v["radius"]),
        ("dimension", "dimension D_M", lambda v: v["dimension"]),
    ]
    for kind in KINDS:
        entries = [e for e in results["checkpoints"] if kind in e]
        if not entries:
            continue
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
        for entry in entries:
            depths = list(entry[kind])
            for ax, (_, title, value) in zip(axes, panels, strict=True):
                ax.plot(
                    range(len(depths)),
                    [value(entry[kind][d]) for d in depths],
                    marker="o",
                    label=entry["label"],
                )
                ax.set_xticks(range(len(depths)), depths, rotation=30)
                ax.set_title(title)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"{kind} manifolds through the network")
        fig.tight_layout()
        path = out / f"geometry_{kind}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written

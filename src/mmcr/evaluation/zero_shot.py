"""Zero-shot classification with a text tower: class names through prompts, scored by cosine.

Each class name is put into every prompt template (``"an emoji of {}."``); the text tower
embeds the prompts; each prompt's embedding is L2-normalised, the class's embedding is the
mean over its templates, normalised again (the prompt ensembling of CLIP). An image is
assigned the classes whose embeddings are most cosine-similar to its own embedding, and
top-1 / top-5 accuracy are the fractions of images whose true class is among the first
one / five.

>>> import torch
>>> from mmcr.evaluation.zero_shot import class_embeddings, zero_shot_accuracy
>>> encode = lambda texts: torch.randn(len(texts), 8)           # the text tower + projector
>>> classes = class_embeddings(["animal", "food", "flag"], encode)  # (3, 8)
>>> scores = zero_shot_accuracy(torch.randn(10, 8), torch.randint(0, 3, (10,)), classes)
>>> sorted(scores)
['num_classes', 'num_images', 'top1', 'top5']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

__all__ = ["DEFAULT_TEMPLATES", "class_embeddings", "zero_shot_accuracy", "zero_shot_report"]

#: Prompt templates for emoji categories; ``{}`` is replaced by the class name.
DEFAULT_TEMPLATES = ("{}", "an emoji of {}.", "a {} emoji.", "an icon of {}.")


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def class_embeddings(
    names: Sequence[str],
    encode: Callable[[list[str]], torch.Tensor],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    *,
    batch_size: int = 256,
) -> torch.Tensor:
    """The ``(C, D)`` unit embeddings of the classes: the normalised mean over templates.

    Args:
        names: the ``C`` class names, non-empty strings, by label.
        encode: maps a list of ``n`` texts to their ``(n, D)`` embeddings (the text tower
            and its projector, in eval mode); called on at most ``batch_size`` texts at a time.
        templates: prompts with one ``{}`` each.
    """
    names = list(names)
    if not names:
        raise ValueError("zero-shot classification needs at least one class name")
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"class {index} has no name (got {name!r}); every class needs one")
    templates = list(templates)
    if not templates:
        raise ValueError("zero-shot classification needs at least one prompt template")
    for template in templates:
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ValueError(
                f"a prompt template must contain '{{}}' once, where the class name goes, got {template!r}"
            )
    prompts = [template.format(name.strip()) for name in names for template in templates]
    parts = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        out = encode(chunk)
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(chunk):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"encode must return ({len(chunk)}, D) embeddings for {len(chunk)} texts, got {shape}"
            )
        parts.append(out.detach().float() if out.dtype != torch.float64 else out.detach())
    embeddings = _unit(torch.cat(parts)).reshape(len(names), len(templates), -1)
    if not bool(torch.isfinite(embeddings).all()):
        raise ValueError("the text embeddings of the prompts have NaN or infinite values")
    return _unit(embeddings.mean(dim=1))


@torch.no_grad()
def zero_shot_accuracy(
    image_embeddings: torch.Tensor,
    labels: torch.Tensor,
    classes: torch.Tensor,
    ks: Sequence[int] = (1, 5),
    *,
    chunk: int = 4096,
) -> dict[str, Any]:
    """Top-k accuracy of cosine scoring: ``{"top1", "top5", "num_classes", "num_images"}``.

    ``image_embeddings`` ``(N, D)``, ``labels`` ``(N,)`` in ``[0, C)``, ``classes`` the
    ``(C, D)`` class embeddings of :func:`class_embeddings`. ``"top{k}"`` is ``None`` where
    ``k > C`` (every image would be right). Classes with exactly equal scores are ordered
    as ``torch.topk`` returns them, which matters only for degenerate embeddings.
    """
    if image_embeddings.ndim != 2 or classes.ndim != 2 or image_embeddings.shape[1] != classes.shape[1]:
        raise ValueError(
            f"image embeddings (N, D) and class embeddings (C, D) must share D, got "
            f"{tuple(image_embeddings.shape)} and {tuple(classes.shape)}"
        )
    n, c = image_embeddings.shape[0], classes.shape[0]
    if labels.ndim != 1 or labels.shape[0] != n or labels.is_floating_point():
        raise ValueError(f"labels must be a ({n},) integer tensor, got {tuple(labels.shape)} {labels.dtype}")
    if n == 0:
        raise ValueError("zero-shot classification needs at least one image")
    labels = labels.long()
    if int(labels.min()) < 0 or int(labels.max()) >= c:
        raise ValueError(
            f"labels must lie in [0, {c}) for {c} classes, "
            f"got values from {int(labels.min())} to {int(labels.max())}"
        )
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"top-k cut-offs must be positive integers, got {k!r}")
    dtype = torch.promote_types(image_embeddings.dtype, classes.dtype)
    keys = _unit(classes.to(dtype)).T
    top = min(max(ks), c)
    hits = torch.zeros(top, dtype=torch.float64)
    for start in range(0, n, chunk):
        scores = _unit(image_embeddings[start : start + chunk].to(dtype)) @ keys
        predicted = scores.topk(top, dim=1).indices  # (n_chunk, top)
        position = predicted == labels[start : start + chunk, None].to(predicted.device)
        hits += position.double().sum(dim=0).cpu()
    cumulative = hits.cumsum(0) / n  # [j]: true class within the first j + 1
    out: dict[str, Any] = {f"top{k}": float(cumulative[k - 1]) if k <= c else None for k in ks}
    out.update({"num_classes": c, "num_images": n})
    return out


def zero_shot_report(
    image_embeddings: torch.Tensor,
    label_sets: Mapping[str, tuple[torch.Tensor, Sequence[str]]],
    encode: Callable[[list[str]], torch.Tensor],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
) -> dict[str, Any]:
    """The ``zero_shot`` section of ``eval.json``: one entry per label set, and the templates.

    ``label_sets`` maps a name (``"category"``, ``"subcategory"``) to ``(labels, class
    names)``, labels ``(N,)`` indexing the names. Returns ``{"templates": [...], name:
    {"top1", "top5", "num_classes", "num_images"}, ...}``.
    """
    report: dict[str, Any] = {"templates": list(templates)}
    for name, (labels, names) in label_sets.items():
        classes = class_embeddings(names, encode, templates)
        report[name] = zero_shot_accuracy(image_embeddings, labels, classes)
    return report

"""X-Sample Contrastive loss (X-CLR): contrastive learning with soft targets from a similarity graph.

Sobal, Ibrahim, Balestriero, Cabannes, Bouchacourt, Astolfi, Cho, LeCun. "X-Sample
Contrastive Loss: Improving Contrastive Learning with Sample Similarity Graphs". ICLR 2025,
arXiv 2407.18134.

NT-Xent's target puts all its mass on the other view of the same image; X-CLR spreads it
over the batch by a graph ``G`` of how similar the samples are (from their class names or
captions, :mod:`mmcr.objectives.graphs`), so that a dog is pulled a little towards other
dogs and less towards cars.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from mmcr.distributed import gather_with_grad, is_distributed
from mmcr.objectives.base import Objective, check_coefficient, check_views, full_precision
from mmcr.objectives.graphs import (
    CAPTION_POOLINGS,
    DEFAULT_TEMPLATE,
    TextEncoder,
    check_class_names,
    check_graph,
    check_labels,
    class_name_graph,
    default_cache_dir,
    load_class_graph,
    sample_caption_graph,
)
from mmcr.objectives.registry import register_objective
from mmcr.objectives.simclr import view_log_probs

#: The sources of the graph a recipe can name (``objective_args = {graph = ...}``): a class
#: graph (the first three) or the per-sample graph of the training images' captions.
GRAPH_SOURCES = ("class-names", "matrix", "identity", "captions")


@register_objective
class XCLRLoss(Objective):
    """X-CLR on ``K`` views: cross entropy between graph targets and NT-Xent's predictions.

    Input ``z`` of shape ``(B, K, D)``, the raw projector outputs of ``B`` samples with
    ``K >= 2`` views each, and the target graph of the samples, one of: ``graph``, a
    ``(B, B)`` matrix ``G`` of similarities; ``labels`` ``(B,)``, from which
    ``G_ij = class_graph[labels_i, labels_j]`` with the ``(C, C)`` class graph of the data set;
    or ``indices`` ``(B,)``, the samples' rows in the ``(N, N)`` graph of the whole training
    split (``graph = "captions"``), ``G_ij = sample_graph[indices_i, indices_j]``.

    The ``M = B * K`` views are laid out and compared exactly as in
    :class:`~mmcr.objectives.simclr.SimCLRLoss` (row ``r`` is view ``r % K`` of sample
    ``n(r) = r // K``; ``u_r`` the L2-normalised view). For an anchor ``r`` every other view
    ``c != r`` of the batch is a candidate, and::

        p_rc  = exp(u_r . u_c / tau)     / sum_{a != r} exp(u_r . u_a / tau)       (predictions)
        s_rc  = exp(G[n(r), n(c)] / tau_s) / sum_{a != r} exp(G[n(r), n(a)] / tau_s)  (targets)
        loss  = -(1 / M) * sum_r sum_{c != r} s_rc * log p_rc

    How the per-sample graph extends to ``K`` views: view ``a`` of sample ``i`` against view
    ``b`` of sample ``j != i`` gets target weight from ``G_ij``; the ``K - 1`` other views of
    the same sample are candidates like the rest, with weight from ``G_ii``; the anchor's
    own view (the self pair) is masked out of both softmaxes, as in NT-Xent. Row ``r``'s
    targets therefore sum to one over the ``M - 1`` other views.

    **Reduction to SimCLR.** When ``G_ii`` exceeds every ``G_ij`` (``j != i``) and
    ``tau_s -> 0``, the targets are ``1 / (K - 1)`` on the sample's other views and 0
    elsewhere, and the loss is the project's multi-positive NT-Xent (``L_out`` of
    :class:`~mmcr.objectives.simclr.SimCLRLoss`) at ``temperature = tau``. With ``G`` the
    identity of the samples (or the identity class graph and distinct labels) and
    ``tau_s <= 1e-3`` the other targets underflow to exactly 0 in float32 and float64, so
    the values and gradients are SimCLR's (bit for bit where ``1 / (K - 1)`` is a power of
    two, ``K = 2, 3``; to rounding otherwise).

    With a class graph, images of one class share ``G_ii`` with the anchor's own views, so
    they are positives as strong as its own augmentation; ``tau_s`` sets how much mass goes
    to the other classes, by their similarity.

    Defaults ``tau = tau_s = 0.1``. The paper's text available here (its abstract and
    overview) gives the loss's form (InfoNCE with softmax targets from a sample graph whose
    entries are cosine similarities of text embeddings, class names in prompts such as
    "a photo of a {}") but not these two values, so the defaults are not checked against it.

    Under ``torch.distributed`` with ``distributed=True`` the views are gathered with
    gradient (:func:`mmcr.distributed.gather_with_grad`) and the labels (or sample indices)
    with them, so the graph's rows follow the gathered batch (rank 0's samples first): every rank computes
    the loss of the global batch and DDP's averaging gives the single-process gradient. A
    ``graph`` passed directly must then be the ``(N, N)`` graph of the global batch of
    ``N`` samples, in that order, the same on every rank.

    Args:
        tau: temperature of the predictions.
        tau_s: temperature of the targets.
        graph: where :meth:`bind_classes` (the training loop) takes the class graph from:
            ``"class-names"`` (cosine similarities of the class names' sentence embeddings,
            :func:`~mmcr.objectives.graphs.class_name_graph`, the optional ``mmcr[text]``
            model, cached under ``cache_dir``), ``"matrix"`` (a ``(C, C)`` file at
            ``graph_path``: ``.npy``, ``.pt`` or ``.csv``), ``"identity"`` (``G = I``: the
            classes alone, no similarity between them), or ``"captions"``: a graph of the
            samples, not the classes, the cosine similarities of each training image's
            caption embedding (paired image-text data used image-only, e.g. ``dataset =
            "emoji-images"``), made by :meth:`bind_samples` from the training split's captions
            (:func:`~mmcr.objectives.graphs.sample_caption_graph`, cached under
            ``cache_dir``); the training step then passes each batch's sample indices, not
            its labels.
        graph_path: the matrix file of ``graph = "matrix"``.
        template: the prompt of each class name (``{}`` is the name).
        caption_pooling: how ``"captions"`` makes one embedding per datum from its captions:
            ``"mean"`` (default: the mean of its captions' unit embeddings, renormalised; for
            the emoji set its name and its keyword list) or ``"primary"`` (its caption 0).
        cache_dir: the cache folder of class-name graphs and caption embeddings (default
            :func:`~mmcr.objectives.graphs.default_cache_dir`).
        class_graph: a ``(C, C)`` class graph given directly (then ``graph`` is not used).
        text_encoder: the frozen text model of ``"class-names"`` and ``"captions"`` (default
            all-MiniLM-L6-v2).
        distributed: gather the global batch under an initialised process group.

    ``forward`` returns the scalar loss and stores detached components: ``"loss"``,
    ``"positive_cosine"`` and ``"negative_cosine"`` (mean cosine of views of the same and of
    different samples, as SimCLR logs them), ``"target_own_views"`` (mean target mass on the
    anchor's own other views: 1 for SimCLR) and ``"target_entropy"`` (mean entropy of the
    target rows, nats). The image network alone is trained; the graph carries no gradient.

    Example::

        >>> import torch
        >>> from mmcr.objectives.xclr import XCLRLoss
        >>> loss_fn = XCLRLoss(class_graph=torch.tensor([[1.0, 0.5], [0.5, 1.0]]))
        >>> z = torch.randn(8, 2, 16, requires_grad=True)  # 8 samples, 2 views, D = 16
        >>> loss = loss_fn(z, labels=torch.tensor([0, 1, 0, 1, 1, 0, 0, 1]))
        >>> loss.backward()
    """

    name = "xclr"
    min_views = 2
    uses_labels = True

    class_graph: torch.Tensor | None
    train_graph: torch.Tensor | None

    def __init__(
        self,
        tau: float = 0.1,
        tau_s: float = 0.1,
        graph: str = "class-names",
        graph_path: str | None = None,
        template: str = DEFAULT_TEMPLATE,
        caption_pooling: str = "mean",
        cache_dir: str | None = None,
        class_graph: torch.Tensor | None = None,
        text_encoder: TextEncoder | None = None,
        distributed: bool = True,
    ) -> None:
        super().__init__()
        self.tau = check_coefficient("tau", tau, positive=True, note="the temperature of the predictions")
        self.tau_s = check_coefficient(
            "tau_s", tau_s, positive=True, note="the temperature of the targets (small: sharper targets)"
        )
        source = str(graph).strip().lower().replace("_", "-")
        if source not in GRAPH_SOURCES:
            raise ValueError(f"unknown X-CLR graph {graph!r}; valid: {', '.join(GRAPH_SOURCES)}")
        if source == "matrix" and not graph_path:
            raise ValueError('graph = "matrix" needs graph_path, a (C, C) .npy, .pt or .csv file')
        if graph_path and source != "matrix":
            raise ValueError(f'graph_path is the file of graph = "matrix"; graph is {source!r}')
        if not isinstance(template, str) or "{}" not in template:
            raise ValueError(f"template must contain '{{}}' where the class name goes, got {template!r}")
        if caption_pooling not in CAPTION_POOLINGS:
            raise ValueError(
                f"unknown caption_pooling {caption_pooling!r}; valid: {', '.join(CAPTION_POOLINGS)}"
            )
        if source == "captions" and class_graph is not None:
            raise ValueError('graph = "captions" is a graph of the samples: it takes no class_graph')
        self.caption_pooling = caption_pooling
        self.graph_source = "given" if class_graph is not None else source
        self.graph_path = graph_path
        self.template = template
        self.cache_dir = cache_dir
        self.text_encoder = text_encoder
        self.distributed = bool(distributed)
        given = None if class_graph is None else check_graph(class_graph, name="class_graph").detach().clone()
        self.register_buffer("class_graph", given, persistent=False)
        self.register_buffer("train_graph", None, persistent=False)

    @property
    def uses_sample_indices(self) -> bool:
        """Whether the step passes each batch's sample indices (``graph = "captions"``), not labels."""
        return self.graph_source == "captions"

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, tau_s={self.tau_s}, graph={self.graph_source!r}, distributed={self.distributed}"
        )

    def bind_classes(
        self, names: Sequence[str | None] | None, num_classes: int, *, dataset: str = ""
    ) -> None:
        """Make the ``(C, C)`` class graph of the training data from the configured source.

        ``names`` are the class names by label (needed by ``"class-names"`` only),
        ``num_classes`` their count. A class graph given to the constructor is kept (its
        size is checked).
        """
        if self.graph_source == "captions":
            raise ValueError(
                'graph = "captions" is a graph of the training images, not of their classes: '
                "bind_samples(captions) makes it (the training loop does it)"
            )
        if self.graph_source == "given":
            assert self.class_graph is not None
            check_graph(self.class_graph, num_classes, name="class_graph")
            return
        if self.graph_source == "class-names":
            classes = check_class_names(names, num_classes)
            cache = Path(self.cache_dir) if self.cache_dir else default_cache_dir()
            graph = class_name_graph(
                classes, encoder=self.text_encoder, template=self.template, cache_dir=cache, dataset=dataset
            )
        elif self.graph_source == "matrix":
            assert self.graph_path is not None
            graph = load_class_graph(self.graph_path, num_classes)
        else:
            graph = torch.eye(num_classes, dtype=torch.float64)
        device = self.class_graph.device if self.class_graph is not None else None
        self.class_graph = graph.to(device) if device is not None else graph

    def bind_samples(self, captions: Sequence[Sequence[str]] | None, *, dataset: str = "") -> None:
        """Make the ``(N, N)`` graph of the training split from its ``N`` images' captions.

        ``captions[i]`` are the captions of training image ``i`` (the row the step's sample
        indices name). Only for ``graph = "captions"``.
        """
        if self.graph_source != "captions":
            raise ValueError(
                f'bind_samples is for graph = "captions"; this X-CLR has graph {self.graph_source!r}'
            )
        cache = Path(self.cache_dir) if self.cache_dir else default_cache_dir()
        graph = sample_caption_graph(
            captions,
            encoder=self.text_encoder,
            pooling=self.caption_pooling,
            cache_dir=cache,
            dataset=dataset,
        )
        device = self.train_graph.device if self.train_graph is not None else None
        self.train_graph = graph.to(device) if device is not None else graph

    def sample_graph(
        self,
        n: int,
        labels: torch.Tensor | None,
        graph: torch.Tensor | None,
        indices: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The ``(n, n)`` graph of a (gathered) batch of ``n`` samples.

        From ``indices`` (rows of the training split's graph), ``labels`` (with the class
        graph) or ``graph`` (given, checked).
        """
        if indices is not None:
            assert self.train_graph is not None
            indices = indices.to(self.train_graph.device)
            return self.train_graph[indices][:, indices]
        if labels is not None:
            assert self.class_graph is not None
            class_graph = self.class_graph
            labels = labels.to(class_graph.device)
            return class_graph[labels][:, labels]
        gathered = self.distributed and is_distributed()
        where = " (the global batch, gathered over the processes)" if gathered else ""
        return check_graph(graph, n, name=f"graph of the N = {n} samples{where}")

    def terms(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        graph: torch.Tensor | None = None,
        indices: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The loss and its logging terms for ``z`` of shape ``(B, K, D)``, with gradient.

        Exactly one of ``labels`` ``(B,)`` (with a class graph), ``graph`` ``(B, B)`` or
        ``indices`` ``(B,)`` (rows of the training split's graph, after :meth:`bind_samples`).
        """
        check_views(z, min_views=self.min_views, name="z")
        given = sum(x is not None for x in (labels, graph, indices))
        if given != 1:
            got = {0: "got neither", 2: "not both"}.get(given, "not all three")
            raise ValueError(
                "X-CLR needs the targets' graph: pass one of graph= (a (B, B) matrix), labels= "
                "(the (B,) class labels, with a class graph) or indices= (the (B,) sample indices, "
                f'with graph = "captions"), {got}'
            )
        if indices is not None:
            if self.train_graph is None:
                raise ValueError(
                    'indices need the graph of the training split: graph = "captions" and '
                    "bind_samples(captions) first (the training loop does it)"
                )
            indices = check_labels(indices, self.train_graph.shape[0], name="indices")
            if indices.shape[0] != z.shape[0]:
                raise ValueError(f"indices has {indices.shape[0]} entries for the {z.shape[0]} samples of z")
        elif self.graph_source == "captions" and labels is not None:
            raise ValueError(
                'graph = "captions" takes the batch\'s sample indices (indices=), not its labels'
            )
        if labels is not None:
            if self.class_graph is None:
                raise ValueError(
                    "labels need a class graph: XCLRLoss(class_graph=...), or bind_classes(names, "
                    "num_classes) first (the training loop does it)"
                )
            labels = check_labels(labels, self.class_graph.shape[0])
            if labels.shape[0] != z.shape[0]:
                raise ValueError(f"labels has {labels.shape[0]} entries for the {z.shape[0]} samples of z")
        if self.distributed:
            z = gather_with_grad(z)
            if labels is not None:  # forward only: the labels travel with their samples
                labels = gather_with_grad(labels.to(z.device))
            if indices is not None:  # so do the sample indices
                indices = gather_with_grad(indices.to(z.device))
        target_graph = self.sample_graph(z.shape[0], labels, graph, indices)
        # Softmax over many logits: keep it out of half precision and autocast.
        with full_precision(z):
            v = view_log_probs(z, self.tau)  # NT-Xent's predictions, shared with SimCLRLoss
            cosine, log_prob, self_pair = v.cosine, v.log_prob, v.self_pair
            positive, negative, k = v.positive, v.negative, z.shape[1]
            g = target_graph.detach().to(device=cosine.device, dtype=cosine.dtype)
            view_graph = g.repeat_interleave(k, dim=0).repeat_interleave(k, dim=1)  # (M, M)
            targets = torch.softmax((view_graph / self.tau_s).masked_fill(self_pair, -math.inf), dim=1)
            per_anchor = -(log_prob * targets).sum(dim=1)  # the self pair has target 0
            loss = per_anchor.mean()
            return {
                "loss": loss,
                "positive_cosine": (cosine * positive).sum() / positive.sum(),
                "negative_cosine": (cosine * negative).sum() / negative.sum(),
                "target_own_views": (targets * positive).sum(dim=1).mean(),
                "target_entropy": -torch.special.xlogy(targets, targets).sum(dim=1).mean(),
            }

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        graph: torch.Tensor | None = None,
        indices: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The X-CLR loss (a scalar) of ``z`` ``(B, K, D)``, given ``labels``, ``graph`` or ``indices``."""
        parts = self.terms(z, labels=labels, graph=graph, indices=indices)
        self._components = {name: value.detach() for name, value in parts.items()}
        return parts["loss"]

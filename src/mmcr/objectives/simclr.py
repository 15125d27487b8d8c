"""SimCLR's NT-Xent objective, generalised to ``K`` views per sample.

Chen, Kornblith, Norouzi, Hinton. "A Simple Framework for Contrastive Learning of
Visual Representations". ICML 2020, arXiv 2002.05709.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from mmcr.distributed import gather_with_grad
from mmcr.objectives.base import Objective, check_coefficient, check_views, full_precision, normalize_views
from mmcr.objectives.registry import register_objective


class ViewLogProbs(NamedTuple):
    """The NT-Xent quantities over the ``M = B K`` views of a batch (row ``i``: sample ``i // K``)."""

    cosine: torch.Tensor  # (M, M) cosine similarities of the L2-normalised views
    log_prob: torch.Tensor  # (M, M) log-softmax of cosine / temperature over all views but the row's own
    self_pair: torch.Tensor  # (M, M) bool, the diagonal
    positive: torch.Tensor  # (M, M) bool, the other views of the same sample
    negative: torch.Tensor  # (M, M) bool, the views of the other samples


def view_log_probs(z: torch.Tensor, temperature: float) -> ViewLogProbs:
    """The predictions shared by NT-Xent and X-CLR, in float32 (or float64) for ``z`` ``(B, K, D)``.

    Call it inside :func:`~mmcr.objectives.base.full_precision`: a softmax over many logits
    must stay out of half precision and autocast.
    """
    z = z if z.dtype == torch.float64 else z.float()
    b, k, d = z.shape
    views = normalize_views(z).reshape(b * k, d)  # row i = sample i // k, view i % k
    cosine = views @ views.T  # (M, M)
    sample = torch.arange(b, device=z.device).repeat_interleave(k)
    same_sample = sample[:, None] == sample[None, :]
    self_pair = torch.eye(b * k, dtype=torch.bool, device=z.device)
    logits = cosine / temperature
    log_denominator = torch.logsumexp(logits.masked_fill(self_pair, -math.inf), dim=1)
    log_prob = logits - log_denominator[:, None]  # finite everywhere, diagonal unused
    return ViewLogProbs(cosine, log_prob, self_pair, same_sample & ~self_pair, ~same_sample)


@register_objective
class SimCLRLoss(Objective):
    """NT-Xent (normalised temperature-scaled cross entropy) over ``K`` views.

    Input ``z`` of shape ``(B, K, D)``: the raw projector outputs of ``B`` samples with
    ``K >= 2`` views each. The ``M = B * K`` views are L2-normalised to ``u_i`` and
    compared by ``s_ij = u_i . u_j / temperature``. For an anchor ``i``, its positives
    ``P(i)`` are the other ``K - 1`` views of the same sample, and its denominator runs
    over every other view ``a != i`` of the batch (positives and negatives)::

        l_i  = -(1 / (K - 1)) * sum_{p in P(i)} log( exp(s_ip) / sum_{a != i} exp(s_ia) )
        loss = (1 / M) * sum_i l_i

    This is the multi-positive form that averages the log-likelihood over positives
    outside the logarithm (``L_out`` of Khosla et al., "Supervised Contrastive
    Learning", NeurIPS 2020, with the sample index as the label). For ``K = 2`` it is
    exactly SimCLR's NT-Xent: ``2B`` anchors, one positive each, ``2B - 2`` negatives.

    Under ``torch.distributed`` with ``distributed=True`` the views of every rank are
    gathered (with gradient, :func:`mmcr.distributed.gather_with_grad`), so the
    negatives and the mean run over the global batch: every rank returns the loss of
    the global batch and DDP's gradient averaging gives the single-process gradient.

    Default ``temperature = 0.5``: the value of the SimCLR authors' CIFAR-10 recipe
    (their public code's CIFAR-10 command and Appendix B.9 of the paper; the ImageNet
    recipe uses 0.1).

    ``forward`` returns the scalar loss and stores detached components in
    ``components``: ``"loss"``, ``"positive_cosine"`` (mean cosine similarity of
    positive pairs) and ``"negative_cosine"`` (mean cosine similarity of views of
    different samples). :meth:`terms` returns the same terms with gradient.

    Example::

        >>> import torch
        >>> from mmcr.objectives.simclr import SimCLRLoss
        >>> loss_fn = SimCLRLoss(temperature=0.5)
        >>> z = torch.randn(8, 2, 16, requires_grad=True)  # 8 samples, 2 views, D = 16
        >>> loss = loss_fn(z)
        >>> loss.backward()
    """

    name = "simclr"
    min_views = 2

    def __init__(self, temperature: float = 0.5, distributed: bool = True) -> None:
        super().__init__()
        self.temperature = check_coefficient(
            "temperature",
            temperature,
            positive=True,
            note="SimCLR uses 0.5 for CIFAR-10 and 0.1 for ImageNet",
        )
        self.distributed = bool(distributed)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, distributed={self.distributed}"

    def terms(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss and its logging terms for ``z`` of shape ``(B, K, D)``, with gradient.

        Returns scalar tensors ``"loss"``, ``"positive_cosine"`` and ``"negative_cosine"``.
        """
        check_views(z, min_views=self.min_views, name="z")
        if self.distributed:
            z = gather_with_grad(z)
        # Softmax over many logits: keep it out of half precision and autocast.
        with full_precision(z):
            v = view_log_probs(z, self.temperature)
            cosine, positive, negative = v.cosine, v.positive, v.negative
            per_anchor = -(v.log_prob * positive).sum(dim=1) / (z.shape[1] - 1)
            loss = per_anchor.mean()
            return {
                "loss": loss,
                "positive_cosine": (cosine * positive).sum() / positive.sum(),
                "negative_cosine": (cosine * negative).sum() / negative.sum(),
            }

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """NT-Xent loss (scalar tensor) of ``z`` of shape ``(B, K, D)``."""
        parts = self.terms(z)
        self._components = {name: value.detach() for name, value in parts.items()}
        return parts["loss"]

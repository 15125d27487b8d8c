"""The Barlow Twins redundancy-reduction objective, generalised to ``K`` views.

Zbontar, Jing, Misra, LeCun, Deny. "Barlow Twins: Self-Supervised Learning via
Redundancy Reduction". ICML 2021, arXiv 2103.03230.
"""

from __future__ import annotations

import torch

from mmcr.distributed import gather_with_grad
from mmcr.objectives.base import Objective, check_coefficient, check_views, full_precision
from mmcr.objectives.registry import register_objective


@register_objective
class BarlowTwinsLoss(Objective):
    """Barlow Twins loss: drive the cross-correlation of two views to the identity.

    Input ``z`` of shape ``(B, K, D)``: the raw projector outputs of ``B`` samples with
    ``K >= 2`` views each. Every view ``k`` is standardised along the batch, as a
    batch-norm layer without affine parameters does in training mode (biased variance
    over the ``N`` samples of the global batch, and the same ``eps``)::

        x_k[n, i] = (z[n, k, i] - mean_n z[n, k, i]) / sqrt(var_n z[n, k, i] + eps)

    For a pair of views ``(a, b)`` the cross-correlation matrix ``C`` (``D x D``) and loss
    are::

        C_ij      = (1 / N) * sum_n x_a[n, i] * x_b[n, j]
        L(a, b)   = sum_i (1 - C_ii)^2  +  lambd * sum_{i != j} C_ij^2

    and ``loss = scale * mean over pairs a < b of L(a, b)`` (for ``K = 2``, the one pair:
    the paper's loss). ``L(a, b) = L(b, a)`` since ``C(b, a) = C(a, b)^T``.

    Under ``torch.distributed`` with ``distributed=True`` the embeddings of every rank are
    gathered with gradient (:func:`mmcr.distributed.gather_with_grad`), so the batch
    statistics and ``C`` are those of the global batch (like the SyncBatchNorm and
    all-reduced ``C`` of the authors' code) and DDP's gradient averaging gives the
    single-process gradient.

    Defaults: ``lambd = 0.0051`` is the authors' public code default (the paper reports
    ``5e-3``); ``scale = 1.0`` as in that code (an early version multiplied the loss by
    ``1/32`` with ``lambd = 3.9e-3``); ``eps = 1e-5`` is ``torch.nn.BatchNorm1d``'s
    (``eps = 0`` standardises exactly but is undefined, NaN, for a constant feature).

    ``forward`` returns the scalar loss and stores detached components in
    ``components``: ``"loss"``, ``"on_diagonal"`` (mean over pairs of
    ``sum_i (1 - C_ii)^2``) and ``"off_diagonal"`` (mean over pairs of
    ``sum_{i != j} C_ij^2``, before ``lambd``), so that
    ``loss = scale * (on_diagonal + lambd * off_diagonal)``. :meth:`terms` returns
    the same terms with gradient.

    Example::

        >>> import torch
        >>> from mmcr.objectives.barlow_twins import BarlowTwinsLoss
        >>> loss_fn = BarlowTwinsLoss(lambd=0.0051)
        >>> z = torch.randn(32, 2, 64, requires_grad=True)  # 32 samples, 2 views, D = 64
        >>> loss = loss_fn(z)
        >>> loss.backward()
    """

    name = "barlow_twins"
    min_views = 2

    def __init__(
        self,
        lambd: float = 0.0051,
        scale: float = 1.0,
        eps: float = 1e-5,
        distributed: bool = True,
    ) -> None:
        super().__init__()
        self.lambd = check_coefficient("lambd", lambd, note="the weight of the off-diagonal terms")
        self.scale = check_coefficient("scale", scale, positive=True)
        self.eps = check_coefficient("eps", eps)
        self.distributed = bool(distributed)

    def extra_repr(self) -> str:
        return f"lambd={self.lambd}, scale={self.scale}, eps={self.eps}, distributed={self.distributed}"

    def terms(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss and its terms for ``z`` of shape ``(B, K, D)``, with gradient.

        Returns scalar tensors ``"loss"``, ``"on_diagonal"`` and ``"off_diagonal"``.
        """
        check_views(z, min_views=self.min_views, name="z")
        if self.distributed:
            z = gather_with_grad(z)
        # Cross-correlations near 1 need more precision than half floats carry.
        with full_precision(z):
            z = z if z.dtype == torch.float64 else z.float()
            n, k, d = z.shape
            centred = z - z.mean(dim=0, keepdim=True)
            variance = centred.pow(2).mean(dim=0, keepdim=True)  # biased, as batch norm
            standardised = centred / torch.sqrt(variance + self.eps)  # (N, K, D)

            identity = torch.eye(d, dtype=torch.bool, device=z.device)
            on_diagonal = z.new_zeros(())
            off_diagonal = z.new_zeros(())
            for a in range(k):
                for b in range(a + 1, k):
                    correlation = standardised[:, a].T @ standardised[:, b] / n  # (D, D)
                    on_diagonal = on_diagonal + (1 - torch.diagonal(correlation)).pow(2).sum()
                    # Masked, not ||C||_F^2 - sum C_ii^2: that difference cancels in float32.
                    off_diagonal = off_diagonal + correlation.pow(2).masked_fill(identity, 0).sum()
            pairs = k * (k - 1) // 2
            on_diagonal = on_diagonal / pairs
            off_diagonal = off_diagonal / pairs
            loss = self.scale * (on_diagonal + self.lambd * off_diagonal)
            return {"loss": loss, "on_diagonal": on_diagonal, "off_diagonal": off_diagonal}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Barlow Twins loss (scalar tensor) of ``z`` of shape ``(B, K, D)``."""
        parts = self.terms(z)
        self._components = {name: value.detach() for name, value in parts.items()}
        return parts["loss"]

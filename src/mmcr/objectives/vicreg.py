"""The VICReg objective (variance, invariance, covariance), generalised to ``K`` views.

Bardes, Ponce, LeCun. "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning". ICLR 2022, arXiv 2105.04906.
"""

from __future__ import annotations

import torch

from mmcr.distributed import gather_with_grad
from mmcr.objectives.base import Objective, check_coefficient, check_views, full_precision
from mmcr.objectives.registry import register_objective


@register_objective
class VICRegLoss(Objective):
    """VICReg loss: invariance between views plus variance and covariance regularisers.

    Input ``z`` of shape ``(B, K, D)``: the raw projector outputs of ``B`` samples with
    ``K >= 2`` views each; ``z_k`` is the ``N x D`` matrix of view ``k`` over the (global)
    batch of ``N`` samples. The three terms::

        invariance = mean over pairs a < b of (1 / (N D)) * sum_{n, i} (z_a[n, i] - z_b[n, i])^2
        variance   = mean over k of (1 / D) * sum_i relu(1 - sqrt(Var_n z_k[n, i] + eps))
        covariance = mean over k of (1 / D) * sum_{i != j} Cov(z_k)_ij^2
        loss       = sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance

    with the unbiased variance and covariance ``Cov(z_k) = (z_k - mean)^T (z_k - mean) /
    (N - 1)``, as in the authors' code. For ``K = 2`` the invariance is the paper's MSE
    ``s(Z, Z')`` and the variance is the authors' code's ``(v(Z) + v(Z')) / 2``; the
    covariance is ``(c(Z) + c(Z')) / 2``, half of the sum that the paper and the code use,
    so that every term is a mean over views whatever ``K``; the default ``cov_coeff=2.0``
    therefore weighs it exactly as the paper (weight 1 on the two-view sum) does.

    Under ``torch.distributed`` with ``distributed=True`` the embeddings of every rank are
    gathered with gradient (:func:`mmcr.distributed.gather_with_grad`): all three terms
    are statistics of the global batch, every rank returns the global loss, and DDP's
    gradient averaging gives the single-process gradient.

    Defaults are the paper's weighting: ``sim_coeff = std_coeff = 25``, covariance weight 1
    on the two-view sum (``cov_coeff = 2`` on the mean over views), ``eps = 1e-4``.

    ``forward`` returns the scalar loss and stores detached components in
    ``components``: ``"loss"``, ``"invariance"``, ``"variance"`` and
    ``"covariance"`` (the unweighted terms above). :meth:`terms` returns the same
    terms with gradient.

    Example::

        >>> import torch
        >>> from mmcr.objectives.vicreg import VICRegLoss
        >>> loss_fn = VICRegLoss()
        >>> z = torch.randn(32, 2, 64, requires_grad=True)  # 32 samples, 2 views, D = 64
        >>> loss = loss_fn(z)
        >>> loss.backward()
    """

    name = "vicreg"
    min_views = 2

    def __init__(
        self,
        sim_coeff: float = 25.0,
        std_coeff: float = 25.0,
        cov_coeff: float = 2.0,
        eps: float = 1e-4,
        distributed: bool = True,
    ) -> None:
        super().__init__()
        self.sim_coeff = check_coefficient("sim_coeff", sim_coeff)
        self.std_coeff = check_coefficient("std_coeff", std_coeff)
        self.cov_coeff = check_coefficient("cov_coeff", cov_coeff)
        self.eps = check_coefficient(
            "eps", eps, positive=True, note="it keeps sqrt differentiable at a zero variance"
        )
        self.distributed = bool(distributed)

    def extra_repr(self) -> str:
        return (
            f"sim_coeff={self.sim_coeff}, std_coeff={self.std_coeff}, "
            f"cov_coeff={self.cov_coeff}, eps={self.eps}, distributed={self.distributed}"
        )

    def terms(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss and its unweighted terms for ``z`` of shape ``(B, K, D)``, with gradient.

        Returns scalar tensors ``"loss"``, ``"invariance"``, ``"variance"`` and
        ``"covariance"``.
        """
        check_views(z, min_views=self.min_views, name="z")
        if self.distributed:
            z = gather_with_grad(z)
        with full_precision(z):
            z = z if z.dtype == torch.float64 else z.float()
            n, k, d = z.shape
            # sum_{a<b} ||z_a - z_b||^2 = K * sum_k ||z_k - zbar||^2 (zbar: mean over views),
            # which costs O(K) instead of O(K^2) view pairs.
            spread = (z - z.mean(dim=1, keepdim=True)).pow(2).sum()
            pairs = k * (k - 1) // 2
            invariance = k * spread / (pairs * n * d)

            centred = z - z.mean(dim=0, keepdim=True)  # (N, K, D)
            std = torch.sqrt(centred.pow(2).sum(dim=0) / (n - 1) + self.eps)  # (K, D)
            variance = torch.relu(1 - std).mean()

            identity = torch.eye(d, dtype=torch.bool, device=z.device)
            covariance = z.new_zeros(())
            for view in range(k):  # one D x D matrix at a time: D can be 8192
                cov = centred[:, view].T @ centred[:, view] / (n - 1)
                covariance = covariance + cov.pow(2).masked_fill(identity, 0).sum() / d
            covariance = covariance / k

            loss = self.sim_coeff * invariance + self.std_coeff * variance + self.cov_coeff * covariance
            return {
                "loss": loss,
                "invariance": invariance,
                "variance": variance,
                "covariance": covariance,
            }

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """VICReg loss (scalar tensor) of ``z`` of shape ``(B, K, D)``."""
        parts = self.terms(z)
        self._components = {name: value.detach() for name, value in parts.items()}
        return parts["loss"]

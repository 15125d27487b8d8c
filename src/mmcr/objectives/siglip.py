"""SigLIP's pairwise sigmoid loss between the image views and the caption views of paired data.

Zhai, Mustafa, Kolesnikov, Beyer. "Sigmoid Loss for Language Image Pre-Training".
ICCV 2023, arXiv 2303.15343.

The input convention is CLIP's (:mod:`mmcr.objectives.clip`): ``z`` of shape
``(B, K_img + K_txt, D)``, the image views first; the objective is built with
``image_views = K_img``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmcr.objectives.base import Objective, full_precision
from mmcr.objectives.clip import check_image_views, cosine_terms, gathered_modalities, pair_cosines
from mmcr.objectives.registry import register_objective

#: SigLIP's initial log-temperature ``t'`` (the temperature ``t = exp(t') = 10``).
INIT_LOG_TEMPERATURE = math.log(10.0)
#: SigLIP's initial bias.
INIT_BIAS = -10.0


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@register_objective
class SigLIPLoss(Objective):
    """The pairwise sigmoid loss, with a learned temperature and bias.

    Input ``z`` of shape ``(B, K_img + K_txt, D)``: the raw projector outputs of ``B`` data,
    views ``0 .. K_img - 1`` from the image tower and the rest from the text tower
    (``K_img = image_views``). Views are L2-normalised to ``u`` (images) and ``v``
    (captions). For image view ``a`` and caption ``c`` every one of the ``B x B`` pairs is
    an independent binary problem, positive on the diagonal::

        x_ij = t * u_ia . v_jc + b,   y_ij = +1 if i = j else -1,   t = exp(t')
        l_ac = -(1 / B) * sum_i sum_j log sigmoid(y_ij * x_ij)
        loss = mean over the K_img x K_txt pairs (a, c) of l_ac

    ``l_ac`` is the paper's loss (its normalisation by ``|B|``, not by ``B^2``). With several
    image views or captions every (image view, caption) pair is one such problem and the
    loss is their mean, as in :class:`~mmcr.objectives.clip.CLIPLoss`.

    :attr:`log_temperature` (``t'``, initialised to ``ln 10``) and :attr:`bias` (``b``,
    initialised to ``-10``) are learned ``nn.Parameter`` scalars: the optimiser must be
    given this module's parameters as well as the towers'. The paper does not clamp
    them, so :meth:`after_step` does nothing; it exists so that a training loop can call it
    after every step for every image-text objective alike.

    Under ``torch.distributed`` with ``distributed=True`` both modalities are gathered
    with gradient and every rank computes the loss of the global batch, as for CLIP: the
    loss and the gradients equal one process's on the full batch (after DDP's averaging
    for the towers; the temperature's and the bias's gradients are the single-process
    ones on every rank). The paper's chunked ring of rank-to-rank exchanges saves memory
    at large ``W``; it gives the same loss, and is not needed at the sizes this runs.

    ``components`` after a call: ``"loss"``, ``"temperature"`` (``t``), ``"bias"``,
    ``"positive_cosine"`` and ``"negative_cosine"``.

    Example::

        >>> import torch
        >>> from mmcr.objectives.siglip import SigLIPLoss
        >>> loss_fn = SigLIPLoss(image_views=1)
        >>> z = torch.randn(8, 3, 16, requires_grad=True)  # 1 image view + 2 captions per datum
        >>> loss_fn(z).backward()
    """

    name = "siglip"
    min_views = 2

    def __init__(
        self,
        image_views: int = 1,
        init_log_temperature: float = INIT_LOG_TEMPERATURE,
        init_bias: float = INIT_BIAS,
        distributed: bool = True,
    ) -> None:
        super().__init__()
        self.image_views = check_image_views(image_views)
        self.log_temperature = nn.Parameter(
            torch.tensor(_finite("init_log_temperature", init_log_temperature))
        )
        self.bias = nn.Parameter(torch.tensor(_finite("init_bias", init_bias)))
        self.distributed = bool(distributed)

    def extra_repr(self) -> str:
        return f"image_views={self.image_views}, distributed={self.distributed}"

    def after_step(self) -> None:
        """Called by the training loop after every optimiser step; SigLIP clamps nothing."""

    def terms(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss and its logging terms for ``z`` ``(B, K_img + K_txt, D)``, with gradient."""
        images, captions = gathered_modalities(
            z, self.image_views, objective="siglip", min_views=self.min_views, distributed=self.distributed
        )
        with full_precision(z):
            cosine = pair_cosines(images, captions)  # (K_img, K_txt, B, B)
            b = cosine.shape[-1]
            dtype = cosine.dtype
            logits = self.log_temperature.to(dtype).exp() * cosine + self.bias.to(dtype)
            matched = torch.eye(b, dtype=torch.bool, device=z.device)
            signs = torch.where(matched, 1.0, -1.0).to(dtype)
            per_pair = -F.logsigmoid(signs * logits).sum(dim=(-2, -1)) / b  # (K_img, K_txt)
            return {
                "loss": per_pair.mean(),
                "temperature": self.log_temperature.exp(),
                "bias": self.bias * 1.0,
                **cosine_terms(cosine, matched),
            }

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The SigLIP loss (scalar tensor) of ``z`` of shape ``(B, K_img + K_txt, D)``."""
        parts = self.terms(z)
        self._components = {name: value.detach() for name, value in parts.items()}
        return parts["loss"]

"""CLIP's symmetric InfoNCE between the image views and the caption views of paired data.

Radford, Kim, Hallacy, Ramesh, Goh, Agarwal, Sastry, Askell, Mishkin, Clark, Krueger,
Sutskever. "Learning Transferable Visual Models From Natural Language Supervision".
ICML 2021, arXiv 2103.00020.

**The input convention of paired data** (shared with :class:`~mmcr.objectives.MMCRLoss`
and :class:`~mmcr.objectives.siglip.SigLIPLoss`): every modality is a view of the datum.
The projector outputs of the two towers are stacked along the view axis, images first,
``z = cat([z_image, z_text], dim=1)`` of shape ``(B, K_img + K_txt, D)``. MMCR needs no
more; the image-text objectives are built with ``image_views = K_img`` and read views
``0 .. K_img - 1`` as images and the remaining ``K_txt`` as captions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmcr.distributed import gather_with_grad
from mmcr.objectives.base import Objective, check_coefficient, check_views, full_precision, normalize_views
from mmcr.objectives.registry import register_objective

#: CLIP's initial logit scale, ``ln(1 / 0.07)`` (a softmax temperature of 0.07).
INIT_LOGIT_SCALE = math.log(1 / 0.07)
#: The largest logit scale, ``ln 100``: the scale is clamped to it after every step.
MAX_LOGIT_SCALE = math.log(100.0)


def check_image_views(image_views: int) -> int:
    """``image_views`` as an int ``>= 1``; ``ValueError`` with a sentence otherwise."""
    if isinstance(image_views, bool) or not isinstance(image_views, int) or image_views < 1:
        raise ValueError(
            f"image_views must be an integer >= 1 (how many of the K views are images, which come "
            f"first; the rest are captions), got {image_views!r}"
        )
    return image_views


def split_modalities(
    z: torch.Tensor, image_views: int, *, objective: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, captions)``: the views ``z[:, :image_views]`` and ``z[:, image_views:]``.

    ``z`` is ``(B, K_img + K_txt, D)``. Raises ``ValueError`` naming the shapes when either
    modality would be empty.
    """
    k = z.shape[1]
    if k <= image_views:
        raise ValueError(
            f"{objective} compares images with captions: z has K = {k} views and image_views = "
            f"{image_views}, which leaves {k - image_views} caption views; stack the projector "
            "outputs as (B, K_img + K_txt, D), images first, with K_txt >= 1"
        )
    return z[:, :image_views], z[:, image_views:]


def gathered_modalities(
    z: torch.Tensor, image_views: int, *, objective: str, min_views: int, distributed: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``z`` checked and split into ``(images, captions)`` (:func:`split_modalities`), each
    gathered with gradients over the process group when ``distributed`` (the global batch)."""
    check_views(z, min_views=min_views, name="z")
    images, captions = split_modalities(z, image_views, objective=objective)
    if distributed:
        images, captions = gather_with_grad(images), gather_with_grad(captions)
    return images, captions


def cosine_terms(cosine: torch.Tensor, matched: torch.Tensor) -> dict[str, torch.Tensor]:
    """The logged mean cosine of the matched (diagonal) and of the other image-caption pairs."""
    return {
        "positive_cosine": cosine.diagonal(dim1=-2, dim2=-1).mean(),
        "negative_cosine": cosine.masked_select(~matched).mean(),
    }


def pair_cosines(images: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
    """Cosine similarities ``(K_img, K_txt, B, B)``: entry ``[a, c, i, j]`` compares
    image view ``a`` of datum ``i`` with caption ``c`` of datum ``j``.

    ``images`` is ``(B, K_img, D)`` and ``captions`` ``(B, K_txt, D)``, raw (each view is
    L2-normalised here), in float32 at least.
    """
    dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    u = normalize_views(images.to(dtype))
    v = normalize_views(captions.to(dtype))
    return torch.einsum("iad,jcd->acij", u, v)


@register_objective
class CLIPLoss(Objective):
    """Symmetric InfoNCE over image-caption logits with a learned logit scale.

    Input ``z`` of shape ``(B, K_img + K_txt, D)``: the raw projector outputs of ``B`` data,
    views ``0 .. K_img - 1`` from the image tower and the remaining ``K_txt`` from the text
    tower (``K_img = image_views``). Views are L2-normalised to ``u`` (images) and ``v``
    (captions). For image view ``a`` and caption ``c``, the logits of the ``B x B`` problem
    are ``L_ij = exp(s) * u_ia . v_jc`` and::

        l_ac = (1 / 2B) * sum_i [ -log softmax_j(L_ij)[j = i]  -  log softmax_j(L_ji)[j = i] ]
        loss = mean over the K_img x K_txt pairs (a, c) of l_ac

    the image->text and text->image cross entropies, averaged. For one image and one
    caption per datum (``K = 2``) this is CLIP's loss exactly. **With several image views or
    captions** every (image view, caption) pair is its own CLIP problem, with the same data
    as negatives, and the loss is their mean: each caption of a datum is a positive of each
    of its image views, and no caption competes with another caption of the same datum.

    ``s`` is :attr:`logit_scale`, a learned scalar (an ``nn.Parameter``, so the optimiser
    must be given this module's parameters as well as the towers'), initialised to
    ``ln(1 / 0.07)``. After every optimiser step the training loop calls
    :meth:`after_step` (equivalently :meth:`clamp_logit_scale`), which clamps ``s`` to at
    most ``ln 100``, the convention of CLIP's authors and open_clip.

    Under ``torch.distributed`` with ``distributed=True`` the views of every rank are
    gathered with gradient (:func:`mmcr.distributed.gather_with_grad`) and every rank
    computes the loss of the global batch: its embeddings receive ``W`` times their
    single-process gradient (DDP's averaging divides it back), and the gradient of
    ``logit_scale`` is the single-process one on every rank, identically, so the scale needs
    no all-reduce and stays in step across ranks.

    ``components`` after a call: ``"loss"``, ``"logit_scale"`` (``exp(s)``, the inverse
    temperature), ``"positive_cosine"`` (mean cosine of matched pairs) and
    ``"negative_cosine"`` (of unmatched ones).

    Example::

        >>> import torch
        >>> from mmcr.objectives.clip import CLIPLoss
        >>> loss_fn = CLIPLoss(image_views=1)
        >>> z = torch.randn(8, 2, 16, requires_grad=True)  # 8 data: 1 image view + 1 caption
        >>> loss = loss_fn(z)
        >>> loss.backward()       # then optimizer.step() over the towers and loss_fn.parameters()
        >>> loss_fn.after_step()  # the clamp, after every optimiser step
    """

    name = "clip"
    min_views = 2

    def __init__(
        self,
        image_views: int = 1,
        init_logit_scale: float = INIT_LOGIT_SCALE,
        max_logit_scale: float = MAX_LOGIT_SCALE,
        distributed: bool = True,
    ) -> None:
        super().__init__()
        self.image_views = check_image_views(image_views)
        init = check_coefficient(
            "init_logit_scale", init_logit_scale, note="CLIP starts at ln(1/0.07) = 2.659"
        )
        self.max_logit_scale = check_coefficient(
            "max_logit_scale", max_logit_scale, note="CLIP clamps the logit scale at ln 100 = 4.605"
        )
        if init > self.max_logit_scale:
            raise ValueError(
                f"init_logit_scale {init} is above max_logit_scale {self.max_logit_scale}; "
                "the clamp would move it at the first step"
            )
        self.logit_scale = nn.Parameter(torch.tensor(init))
        self.distributed = bool(distributed)

    def extra_repr(self) -> str:
        return (
            f"image_views={self.image_views}, max_logit_scale={self.max_logit_scale:.4f}, "
            f"distributed={self.distributed}"
        )

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        """Clamp :attr:`logit_scale` to at most ``max_logit_scale`` (``ln 100``), in place."""
        self.logit_scale.clamp_(max=self.max_logit_scale)

    def after_step(self) -> None:
        """The hook the training loop calls after every optimiser step: the clamp."""
        self.clamp_logit_scale()

    def terms(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss and its logging terms for ``z`` ``(B, K_img + K_txt, D)``, with gradient."""
        images, captions = gathered_modalities(
            z, self.image_views, objective="clip", min_views=self.min_views, distributed=self.distributed
        )
        # Softmax over many logits: keep it out of half precision and autocast.
        with full_precision(z):
            cosine = pair_cosines(images, captions)  # (K_img, K_txt, B, B)
            b = cosine.shape[-1]
            logits = self.logit_scale.to(cosine.dtype).exp() * cosine
            target = torch.arange(b, device=z.device)
            flat = logits.reshape(-1, b, b)
            image_to_text = F.cross_entropy(flat.reshape(-1, b), target.repeat(flat.shape[0]))
            text_to_image = F.cross_entropy(flat.mT.reshape(-1, b), target.repeat(flat.shape[0]))
            loss = (image_to_text + text_to_image) / 2
            matched = torch.eye(b, dtype=torch.bool, device=z.device)
            return {
                "loss": loss,
                "logit_scale": self.logit_scale.exp(),
                **cosine_terms(cosine, matched),
            }

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The CLIP loss (scalar tensor) of ``z`` of shape ``(B, K_img + K_txt, D)``."""
        parts = self.terms(z)
        self._components = {name: value.detach() for name, value in parts.items()}
        return parts["loss"]

"""The augmentation recipe: :class:`AugmentConfig`, validated once at construction.

Pixel values are in [0, 1] throughout; sizes are in pixels; probabilities may be given per
view position (view k uses entry ``k % len``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["PROBABILITY_FIELDS", "AugmentConfig", "Probability"]

#: A probability, or one probability per view position (view k uses entry k % len).
Probability = float | tuple[float, ...]

#: The fields of :class:`AugmentConfig` that hold a :data:`Probability`.
PROBABILITY_FIELDS = ("flip_p", "jitter_p", "gray_p", "blur_p", "solarize_p")


def _as_pair(value: object, name: str) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"AugmentConfig.{name} must be a pair (low, high), got {value!r}")
    low, high = float(value[0]), float(value[1])
    if not 0.0 < low <= high:
        raise ValueError(f"AugmentConfig.{name} must satisfy 0 < low <= high, got {value!r}")
    return low, high


@dataclass
class AugmentConfig:
    """Parameters of the multi-view augmentation. Pixel values are in [0, 1].

    Attributes:
        crop_size: output side length in pixels.
        crop_scale: range of the crop area as a fraction of the image area.
        crop_ratio: range of the crop aspect ratio width / height (sampled log-uniformly).
        flip_p: probability of a horizontal flip.
        jitter_p: probability of applying colour jitter (all four components at once).
        brightness, contrast, saturation: jitter strengths s; factors are drawn uniformly
            from ``[max(0, 1 - s), 1 + s]`` (0 disables the component).
        hue: hue shift range ``[-hue, hue]`` in turns of the colour wheel, ``0 <= hue <= 0.5``.
        jitter_random_order: apply the four jitter components in a random order per view
            (torchvision's behaviour); if False, the fixed order brightness, contrast,
            saturation, hue.
        gray_p: probability of converting to grayscale (3 channels kept).
        blur_p: probability of a Gaussian blur.
        blur_sigma: range of the blur's standard deviation in pixels (of the crop).
        blur_kernel: odd kernel size in pixels; ``None`` = the odd number nearest 10 % of
            ``crop_size`` (at least 3), e.g. 3 at 32 px and 23 at 224 px.
        solarize_p: probability of solarizing.
        solarize_threshold: pixels ``>= threshold`` are mapped to ``1 - x``.
        mean, std: per-channel normalisation (length 1 or C); ``None`` leaves values in [0, 1].

    Every probability (``flip_p``, ``jitter_p``, ``gray_p``, ``blur_p``, ``solarize_p``) may
    be a tuple with one value per view position, cycling: view k uses entry
    ``k % len``. The Barlow Twins / BYOL pair is ``blur_p=(1.0, 0.1)``,
    ``solarize_p=(0.0, 0.2)``.
    """

    crop_size: int
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    flip_p: Probability = 0.5
    jitter_p: Probability = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    jitter_random_order: bool = True
    gray_p: Probability = 0.2
    blur_p: Probability = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int | None = None
    solarize_p: Probability = 0.0
    solarize_threshold: float = 0.5
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.crop_size, int) or self.crop_size < 1:
            raise ValueError(f"crop_size must be a positive int, got {self.crop_size!r}")
        self.crop_scale = _as_pair(self.crop_scale, "crop_scale")
        self.crop_ratio = _as_pair(self.crop_ratio, "crop_ratio")
        self.blur_sigma = _as_pair(self.blur_sigma, "blur_sigma")
        self._check_probabilities()
        for name in ("brightness", "contrast", "saturation"):
            if float(getattr(self, name)) < 0.0:
                raise ValueError(f"AugmentConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= float(self.hue) <= 0.5:
            raise ValueError(f"AugmentConfig.hue must lie in [0, 0.5], got {self.hue}")
        if not 0.0 <= float(self.solarize_threshold) <= 1.0:
            raise ValueError(
                "AugmentConfig.solarize_threshold must lie in [0, 1], got "
                f"{self.solarize_threshold}"
            )
        self._check_blur_kernel()
        self._check_normalisation()

    def _check_probabilities(self) -> None:
        for name in PROBABILITY_FIELDS:
            value = getattr(self, name)
            probs = tuple(value) if isinstance(value, (tuple, list)) else (value,)
            if not probs or not all(0.0 <= float(p) <= 1.0 for p in probs):
                raise ValueError(
                    f"AugmentConfig.{name} must be a probability in [0, 1] or a non-empty "
                    f"tuple of them (one per view position), got {value!r}"
                )
            if isinstance(value, (tuple, list)):
                setattr(self, name, tuple(float(p) for p in probs))
            else:
                setattr(self, name, float(value))

    def _check_blur_kernel(self) -> None:
        if self.blur_kernel is None:
            k = max(3, round(0.1 * self.crop_size))
            self.blur_kernel = k if k % 2 == 1 else k + 1
        if (
            not isinstance(self.blur_kernel, int)
            or self.blur_kernel < 1
            or self.blur_kernel % 2 == 0
        ):
            raise ValueError(
                f"AugmentConfig.blur_kernel must be an odd positive int, got {self.blur_kernel!r}"
            )
        if max(self.view_probabilities("blur_p")) > 0 and self.blur_kernel // 2 >= self.crop_size:
            raise ValueError(
                f"AugmentConfig.blur_kernel {self.blur_kernel} is too large for crop_size "
                f"{self.crop_size}: reflect padding needs blur_kernel // 2 < crop_size"
            )

    def _check_normalisation(self) -> None:
        if (self.mean is None) != (self.std is None):
            raise ValueError("AugmentConfig.mean and std must be given together (or both None)")
        if self.mean is not None and self.std is not None:
            self.mean = tuple(float(m) for m in self.mean)
            self.std = tuple(float(s) for s in self.std)
            if not self.mean or len(self.mean) != len(self.std):
                raise ValueError(
                    f"AugmentConfig.mean and std must have the same non-zero length, got "
                    f"{len(self.mean)} and {len(self.std)}"
                )
            if any(s <= 0 for s in self.std):
                raise ValueError(f"AugmentConfig.std must be positive, got {self.std}")

    def view_probabilities(self, name: str) -> tuple[float, ...]:
        """The probability field ``name`` as a tuple (one entry per view position, cycling)."""
        if name not in PROBABILITY_FIELDS:
            raise ValueError(
                f"{name!r} is not a probability field; expected one of {PROBABILITY_FIELDS}"
            )
        value = getattr(self, name)
        return tuple(value) if isinstance(value, tuple) else (float(value),)

    def to_dict(self) -> dict[str, object]:
        """Plain values (tuples as lists) for logging and saving beside a checkpoint."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

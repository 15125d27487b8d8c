"""Paired image-text data: :class:`PairedDataset`, its options, and :func:`load_paired`.

A paired data set holds a whole split in memory: uint8 images ``(N, C, H, W)`` and, per
image, a list of one or more captions. Caption 0 is the primary caption (the 1:1 retrieval
protocol pairs each image with it); the others are more views of the same datum (MMCR
with several captions per image; the multi-caption retrieval protocol). Optional integer
labels, one tensor per label kind (e.g. the emoji ``"category"`` and ``"subcategory"``),
serve zero-shot classification and the image tower's probes.

Paired data sets are registered in the one data-set registry (:mod:`mmcr.data.registry`),
so ``dataset = "emoji"`` or ``dataset = "csv"`` names them in a recipe; there, their image
loader returns the images and their first label kind as an :class:`ImageDataset` (for
image-only pretraining and probes). :func:`load_paired` returns the pairs (the emoji set
is rendered once into the cache, in seconds, and read from the cache file after that)::

    from mmcr.data.paired import PairedOptions, load_paired

    test = load_paired("emoji", "test", image_size=32)
    test.images.shape            # (N, 3, 32, 32) uint8
    test.captions[0]             # ['grinning face', 'face, grin, grinning face']
    texts, owner = test.flat_captions()   # every caption, and the datum it belongs to
    test.label_names["category"][int(test.labels["category"][0])]   # 'Smileys & People'
    more = load_paired("emoji", "train", options=PairedOptions(languages=("en", "de", "fr")))
    pairs = load_paired("csv", "train", "corpus/", options=PairedOptions(skip_bad_rows=True))
    probe_data = test.image_dataset("subcategory")   # an ImageDataset for kNN / linear probe

Built in:

- ``"emoji"`` (:mod:`~mmcr.data.readers.emoji`): Noto Color Emoji glyphs with their Unicode
  CLDR names and keywords; splits ``train``, ``val``, ``test`` (grouped by base emoji) and
  ``all``.
- ``"csv"`` (:mod:`~mmcr.data.readers.csv_pairs`): a table ``DIR/<split>.tsv`` with an
  image path and a caption per row.

- ``"webdataset"`` (:mod:`~mmcr.data.readers.webdataset`): tar shards ``DIR/<split>/*.tar``
  of ``<key>.jpg|png|webp`` images and ``<key>.txt`` captions, one caption per line. Read
  whole here (splits of at most 100k samples: evaluation's test split); paired
  pretraining streams the training split instead
  (:mod:`~mmcr.data.stream.paired_shards`). :func:`sample_captions` takes the caption(s)
  from one sample.

A new paired format is a :class:`~mmcr.data.registry.DatasetInfo` plus a
:data:`PairedLoader`, registered together with :func:`register_paired_dataset`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from mmcr.data.dataset import ImageDataset, ImageTensorShape, resize_uint8
from mmcr.data.registry import DatasetInfo, DatasetRequest, dataset_info, register_dataset

__all__ = [
    "PairedDataset",
    "PairedLoader",
    "PairedOptions",
    "PairedRequest",
    "decode_caption",
    "grouped_split",
    "load_paired",
    "paired_dataset_names",
    "register_paired_dataset",
    "register_paired_reader",
    "report_skipped",
    "sample_captions",
]


@dataclass
class PairedDataset(ImageTensorShape):
    """A whole split of image-text pairs held in memory.

    Attributes:
        images: uint8 tensor ``(N, C, H, W)``, pixel values 0-255.
        captions: ``N`` lists of non-empty strings; ``captions[i][0]`` is datum ``i``'s
            primary caption, the rest its other captions (keywords, other languages, more
            rows of a table naming the same image).
        name: the data set's registry name, e.g. ``"emoji"``.
        keys: ``N`` identifiers of the data (the emoji sequence, the image's path), unique.
        labels: label kind -> int64 ``(N,)`` class indices (``-1``: no label); may be empty.
        label_names: label kind -> class names indexed by label (the same kinds as ``labels``).
        groups: ``N`` group names where the split was grouped (the base emoji), else ``None``.
        sources: the files the split was read from (or the cache file), for the run's log.
        skipped: one message per datum or row left out (naming the file, the row and why);
            its length is the count that is reported.
    """

    images: torch.Tensor
    captions: list[list[str]]
    name: str
    keys: list[str]
    labels: dict[str, torch.Tensor] = field(default_factory=dict)
    label_names: dict[str, list[str]] = field(default_factory=dict)
    groups: list[str] | None = None
    sources: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                "PairedDataset.images must be a uint8 tensor of shape (N, C, H, W), got "
                f"dtype {self.images.dtype} and shape {tuple(self.images.shape)}"
            )
        n = int(self.images.shape[0])
        if len(self.captions) != n or len(self.keys) != n:
            raise ValueError(
                f"PairedDataset has {n} images, {len(self.captions)} caption lists and "
                f"{len(self.keys)} keys; they must match"
            )
        for i, texts in enumerate(self.captions):
            if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
                raise ValueError(
                    f"PairedDataset datum {i} ({self.keys[i]!r}) needs one or more non-empty "
                    f"captions, got {texts!r}"
                )
        if self.groups is not None and len(self.groups) != n:
            raise ValueError(f"PairedDataset has {n} images but {len(self.groups)} groups")
        if set(self.labels) != set(self.label_names):
            raise ValueError(
                f"PairedDataset label kinds {sorted(self.labels)} and label-name kinds "
                f"{sorted(self.label_names)} must be the same"
            )
        for kind, values in self.labels.items():
            if values.dtype != torch.int64 or tuple(values.shape) != (n,):
                raise ValueError(
                    f"PairedDataset.labels[{kind!r}] must be int64 of shape ({n},), got "
                    f"dtype {values.dtype} and shape {tuple(values.shape)}"
                )
            if n and int(values.max()) >= len(self.label_names[kind]):
                raise ValueError(
                    f"PairedDataset.labels[{kind!r}] has label {int(values.max())} but only "
                    f"{len(self.label_names[kind])} names"
                )

    def primary_captions(self) -> list[str]:
        """The ``N`` primary captions (caption 0 of each datum): the 1:1 protocol's texts."""
        return [texts[0] for texts in self.captions]

    def caption_counts(self) -> torch.Tensor:
        """int64 ``(N,)``: the number of captions of each datum."""
        return torch.tensor([len(texts) for texts in self.captions], dtype=torch.int64)

    def flat_captions(self) -> tuple[list[str], torch.Tensor]:
        """Every caption in datum order, and int64 ``owner`` (same length): its datum's index.

        The multi-caption retrieval protocol ranks these texts; a text hits image ``i``
        when ``owner[text] == i``.
        """
        texts = [t for group in self.captions for t in group]
        owner = torch.repeat_interleave(torch.arange(len(self)), self.caption_counts())
        return texts, owner

    def subset(self, indices: torch.Tensor | Sequence[int]) -> PairedDataset:
        """A new paired data set holding the data at ``indices`` (a 1-D index tensor or list)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        if index.ndim != 1:
            raise ValueError(f"subset expects a 1-D tensor of indices, got shape {tuple(index.shape)}")
        rows = index.tolist()
        return PairedDataset(
            images=self.images[index],
            captions=[list(self.captions[i]) for i in rows],
            name=self.name,
            keys=[self.keys[i] for i in rows],
            labels={kind: values[index] for kind, values in self.labels.items()},
            label_names={kind: list(names) for kind, names in self.label_names.items()},
            groups=None if self.groups is None else [self.groups[i] for i in rows],
            sources=self.sources,
            skipped=self.skipped,
        )

    def image_dataset(self, label: str | None = None) -> ImageDataset:
        """The images with one label kind (default: the first) as an :class:`ImageDataset`,
        for the kNN monitor and the linear probe; without labels, every label is ``-1``."""
        if label is None:
            label = next(iter(self.labels), None)
        if label is None:
            labels = torch.full((len(self),), -1, dtype=torch.int64)
            names: list[str] | None = None
        elif label not in self.labels:
            raise ValueError(
                f"paired data set {self.name!r} has label kinds {sorted(self.labels)}, got {label!r}"
            )
        else:
            labels, names = self.labels[label], list(self.label_names[label])
        return ImageDataset(
            images=self.images,
            labels=labels,
            num_classes=0 if names is None else len(names),
            name=self.name,
            classes=names,
            sources=self.sources,
        )


@dataclass(frozen=True)
class PairedOptions:
    """How a paired reader builds its captions and treats bad input (one flat set of options).

    Attributes:
        languages: CLDR locales whose names and keywords become captions (emoji), in order,
            e.g. ``("en", "de", "fr")``, or ``("all",)`` for every language the package has.
            The English name is always caption 0.
        keywords: add each language's keyword list, joined by ``", "``, as one caption (emoji).
        csv_img_key: the table's column of image paths (csv).
        csv_caption_key: the table's column of captions (csv).
        csv_separator: the table's field separator (csv; one character).
        skip_bad_rows: leave out bad rows (missing or undecodable image, empty caption,
            bytes that are not UTF-8) instead of raising; the count is reported by a warning
            and kept in :attr:`PairedDataset.skipped`.
        cache_dir: where rendered data are cached (``None``: ``$MMCR_CACHE_DIR``, else
            ``~/.cache/mmcr``).
    """

    languages: tuple[str, ...] = ("en",)
    keywords: bool = True
    csv_img_key: str = "filepath"
    csv_caption_key: str = "title"
    csv_separator: str = "\t"
    skip_bad_rows: bool = False
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        languages = self.languages
        if (
            isinstance(languages, str)
            or not languages
            or not all(isinstance(lang, str) and lang.strip() for lang in languages)
        ):
            raise ValueError(
                f"languages must be a non-empty tuple of locale names (e.g. ('en', 'de')), got {languages!r}"
            )
        object.__setattr__(self, "languages", tuple(languages))
        for name in ("csv_img_key", "csv_caption_key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty column name, got {value!r}")
        if self.csv_img_key == self.csv_caption_key:
            raise ValueError(
                f"csv_img_key and csv_caption_key must name two columns, both are {self.csv_img_key!r}"
            )
        if not isinstance(self.csv_separator, str) or len(self.csv_separator) != 1:
            raise ValueError(f"csv_separator must be one character, got {self.csv_separator!r}")
        if self.csv_separator in '\r\n"':
            raise ValueError(f"csv_separator cannot be {self.csv_separator!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, for configuration code that maps its fields onto them."""
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class PairedRequest:
    """One split of one paired data set: the image request plus the paired options."""

    request: DatasetRequest
    options: PairedOptions = field(default_factory=PairedOptions)

    @property
    def info(self) -> DatasetInfo:
        return self.request.info


#: Reads the split a :class:`PairedRequest` names and returns it as a :class:`PairedDataset`.
PairedLoader = Callable[[PairedRequest], PairedDataset]

_PAIRED: dict[str, PairedLoader] = {}


def register_paired_dataset(info: DatasetInfo, paired: PairedLoader) -> DatasetInfo:
    """Register ``info`` in the data-set registry and ``paired`` as its reader of pairs.

    ``info.loader`` (the image reader) serves image-only use; ``paired`` serves
    :func:`load_paired`. Raises ``ValueError`` as :func:`register_dataset` does, or if
    ``paired`` is not callable.
    """
    if not callable(paired):
        raise ValueError(f"paired data set {info.name!r} needs a callable paired loader, got {paired!r}")
    register_dataset(info)
    _PAIRED[info.name] = paired
    return info


def register_paired_reader(name: str, paired: PairedLoader) -> None:
    """Give the data set registered (or about to be registered) as ``name`` a reader of pairs.

    For a format whose :class:`~mmcr.data.registry.DatasetInfo` the image registry already
    holds (the ``webdataset`` shards: images with ``.cls`` classes, or with ``.txt``
    captions); a new paired format registers both at once with
    :func:`register_paired_dataset`.
    """
    if not callable(paired):
        raise ValueError(f"paired data set {name!r} needs a callable paired loader, got {paired!r}")
    _PAIRED[name] = paired


def paired_dataset_names() -> tuple[str, ...]:
    """The registered data sets that have a reader of pairs, sorted."""
    return tuple(sorted(_PAIRED))


def load_paired(
    name: str,
    split: str,
    data_dir: str | Path | None = None,
    *,
    image_size: int | None = None,
    options: PairedOptions | None = None,
) -> PairedDataset:
    """Load a whole split of a paired data set into memory.

    Args:
        name: a paired data set's name or alias (:func:`paired_dataset_names`).
        split: a split the data set has (emoji: ``"train"``, ``"val"``, ``"test"``,
            ``"all"``; csv: the tables ``DIR/<split>.tsv`` that exist).
        data_dir: the table's folder (csv, required); emoji: the folder holding
            ``NotoColorEmoji.ttf`` and CLDR's ``common/`` (default: the Debian packages).
        image_size: side length in pixels (default 64; other sizes are rendered or read at
            that size).
        options: captions and bad-input handling (:class:`PairedOptions`).

    Raises:
        FileNotFoundError: the files are not there (the message says how to get them).
        ValueError: unknown name or split, or bad input (naming the file and the row).
    """
    info = dataset_info(name)
    paired = _PAIRED.get(info.name)
    if paired is None:
        raise ValueError(
            f"data set {info.name!r} has images only; paired image-text data sets: "
            f"{', '.join(paired_dataset_names())}"
        )
    request = DatasetRequest(info, split, data_dir, image_size=image_size)
    dataset = paired(PairedRequest(request, options or PairedOptions()))
    if image_size is not None and dataset.image_size != (image_size, image_size):
        dataset.images = resize_uint8(dataset.images, image_size)
    return dataset


def decode_caption(raw: bytes | str, where: str) -> str:
    """A caption from raw bytes (strict UTF-8) or text, stripped; ``where`` names it in errors.

    Raises:
        ValueError: the bytes are not UTF-8, or the caption is empty.
    """
    if isinstance(raw, bytes | bytearray):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as err:
            bad = bytes(raw)[err.start : err.end]
            raise ValueError(
                f"{where}: the caption is not UTF-8 (byte {bad.hex(' ')} at offset {err.start})"
            ) from err
    elif isinstance(raw, str):
        text = raw
    else:
        raise ValueError(f"{where}: the caption must be bytes or text, got {type(raw).__name__}")
    text = text.removeprefix("\ufeff").strip()
    if not text:
        raise ValueError(f"{where}: the caption is empty")
    return text


def sample_captions(sample: Mapping[str, Any], *, key: str = "txt", split_lines: bool = False) -> list[str]:
    """The caption(s) of one webdataset sample (a dict of its files' bytes by extension).

    ``sample[key]`` (default the ``<key>.txt`` member) is decoded as strict UTF-8 and
    stripped; with ``split_lines`` every non-empty line is one caption (several captions
    per image), else the whole text is one. Errors name the shard (``__url__``) and the
    sample (``__key__``).

    Raises:
        ValueError: no ``.txt`` member, bytes that are not UTF-8, or an empty caption.
    """
    where = f"shard {sample.get('__url__', '?')}, sample {sample.get('__key__', '?')!r}"
    if key not in sample:
        members = sorted(k for k in sample if not str(k).startswith("__"))
        raise ValueError(f"{where}: no .{key} caption member (members: {', '.join(members) or 'none'})")
    text = decode_caption(sample[key], where)
    if not split_lines:
        return [text]
    return [line.strip() for line in text.splitlines() if line.strip()]


def report_skipped(skipped: Sequence[str], what: str) -> None:
    """Warn once with the count of left-out rows of ``what`` and the first few reasons."""
    if not skipped:
        return
    shown = "; ".join(skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
    warnings.warn(f"skipped {len(skipped)} bad row(s) of {what}: {shown}", UserWarning, stacklevel=3)


def grouped_split(
    groups: Sequence[str], fractions: Mapping[str, float], seed: int = 0
) -> dict[str, torch.Tensor]:
    """Split data into parts such that every group lies wholly in one part.

    The distinct group names, sorted, are shuffled by ``seed``; each group in turn goes to
    the first part in ``fractions`` order that holds fewer than ``round(fraction * N)``
    data, and the groups left over form the ``"train"`` part. A part can overshoot its
    share by less than one group.

    Args:
        groups: ``N`` group names, one per datum.
        fractions: part name -> share of the data, e.g. ``{"test": 0.2, "val": 0.1}``;
            the shares sum to less than 1, and no part is called ``"train"``.
        seed: seeds the order of the groups; the same groups and seed give the same parts.

    Returns:
        Part name -> sorted int64 indices, the parts of ``fractions`` and ``"train"``;
        disjoint, together ``arange(N)``.
    """
    if "train" in fractions:
        raise ValueError("grouped_split puts the rest in 'train': do not give it a fraction")
    if any(f < 0 for f in fractions.values()) or sum(fractions.values()) >= 1:
        raise ValueError(f"fractions must be >= 0 and sum to less than 1, got {dict(fractions)}")
    names = sorted(set(groups))
    members: dict[str, list[int]] = {name: [] for name in names}
    for i, name in enumerate(groups):
        members[name].append(i)
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(names), generator=generator).tolist()
    targets = {part: round(share * len(groups)) for part, share in fractions.items()}
    parts: dict[str, list[int]] = {part: [] for part in [*fractions, "train"]}
    for position in order:
        rows = members[names[position]]
        part = next((p for p, target in targets.items() if len(parts[p]) < target), "train")
        parts[part].extend(rows)
    return {part: torch.tensor(sorted(rows), dtype=torch.int64) for part, rows in parts.items()}

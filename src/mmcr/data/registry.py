"""The registry of data sets: what each one is, what it is also called, and how to read it.

A data set is one :class:`DatasetInfo` passed to :func:`register_dataset`; its ``loader``
reads a split from disk (or makes it). :func:`load_dataset` finds the entry by name or
alias, checks its arguments once into a :class:`DatasetRequest` and hands that to the
loader. Names are compared after one normalisation, :func:`normalise_name`
(``"CIFAR_10"`` -> ``"cifar-10"``), which the augmentation presets use too.

>>> from mmcr.data import dataset_info, dataset_names
>>> dataset_info("Fashion_MNIST").name, dataset_info("fmnist").channels
('fashion-mnist', 1)
>>> "cifar10" in dataset_names()
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from mmcr.data.dataset import ImageDataset, resize_uint8

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DatasetRequest",
    "Loader",
    "dataset_info",
    "dataset_names",
    "find_dataset",
    "load_dataset",
    "normalise_name",
    "register_dataset",
]


@dataclass(frozen=True)
class DatasetInfo:
    """What other code needs to know about a data set before loading it, and its reader.

    Attributes:
        name: registry name, lower case with ``-`` (e.g. ``"cifar10"``).
        channels: colour channels C of the loaded images.
        image_size: native side length in pixels (``None`` where it depends on the files,
            e.g. an image folder, which is resized to ``image_size``, default 64).
        num_classes: number of classes (``None`` where it depends on the files).
        splits: split names accepted by :func:`load_dataset`; an entry in angle brackets
            (e.g. ``"<any folder name>"``) means the reader accepts any split name.
        source: where the data comes from, for error messages and docs.
        folder_names: standard sub-folders searched inside each data directory.
        aliases: other spellings accepted for ``name`` (normalised like it).
        augment: the name of the data set's default augmentation preset.
        loader: the :data:`Loader` that reads a split, given a :class:`DatasetRequest`.
        class_names: the class names indexed by label, where they are known before any file
            is read (``None`` where the reader takes them from the files: CIFAR's and
            STL-10's metadata, an image folder's sub-folders; the loaded split's
            ``ImageDataset.classes`` holds them then).
    """

    name: str
    channels: int
    image_size: int | None
    num_classes: int | None
    splits: tuple[str, ...]
    source: str = ""
    folder_names: tuple[str, ...] = field(default=(), repr=False)
    aliases: tuple[str, ...] = field(default=(), kw_only=True)
    augment: str = field(kw_only=True)
    loader: Loader = field(kw_only=True, repr=False)
    class_names: tuple[str, ...] | None = field(default=None, kw_only=True, repr=False)

    def accepts_split(self, split: str) -> bool:
        """Whether ``split`` is one of :attr:`splits` (any name, if one is a placeholder)."""
        return split in self.splits or any(s.startswith("<") for s in self.splits)


@dataclass(frozen=True)
class DatasetRequest:
    """One split of one data set, as :func:`load_dataset` asks a :data:`Loader` for it.

    Built once by :func:`load_dataset`, which passes its own arguments through; checked at
    construction, so a loader can trust every field.

    Attributes:
        info: the registry entry of the data set.
        split: a split the entry accepts (:meth:`DatasetInfo.accepts_split`).
        data_dir: the caller's directory to search first, or ``None``.
        image_size: the side length in pixels the caller asked for, or ``None``. A loader
            may read at that size (an image folder must pick one); ``load_dataset``
            resizes whatever comes back at another size.
        size: the number of train images of a generated data set, or ``None`` for its
            default; readers of files ignore it.
        seed: seeds a generated data set; readers of files ignore it.

    Raises:
        ValueError: ``image_size`` or ``size`` is not a positive int (or ``None``), or
            ``info`` does not accept ``split``.
    """

    info: DatasetInfo
    split: str
    data_dir: str | Path | None = None
    image_size: int | None = None
    size: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        image_size, size = self.image_size, self.size
        if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
            raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"size must be a positive int or None, got {size!r}")
        if not self.info.accepts_split(self.split):
            raise ValueError(
                f"data set {self.info.name!r} has splits {list(self.info.splits)}, "
                f"got split {self.split!r}"
            )


#: Reads (or makes) the split a :class:`DatasetRequest` names and returns it as an
#: :class:`ImageDataset` at its native size (or at ``request.image_size``).
Loader = Callable[[DatasetRequest], ImageDataset]


# Canonical name -> entry, and every normalised name or alias -> canonical name.
_ENTRIES: dict[str, DatasetInfo] = {}
_NAMES: dict[str, str] = {}

#: Read-only view of the registry: canonical name -> :class:`DatasetInfo`.
DATASETS: Mapping[str, DatasetInfo] = MappingProxyType(_ENTRIES)


def normalise_name(name: str) -> str:
    """The one spelling of a data-set or preset name: stripped, lower case, ``_`` -> ``-``."""
    return name.strip().lower().replace("_", "-")


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add a data set to the registry, under its name and its aliases; returns ``info``.

    Raises:
        ValueError: ``info`` is not a :class:`DatasetInfo`, its name is not normalised,
            its loader is not callable, its class names do not number ``num_classes``, or its
            name or an alias is already registered.
    """
    if not isinstance(info, DatasetInfo):
        raise ValueError(f"register_dataset expects a DatasetInfo, got {type(info).__name__}")
    if not info.name or normalise_name(info.name) != info.name:
        raise ValueError(
            f"data set name {info.name!r} must be non-empty, lower case and use '-' not '_' "
            f"(e.g. {normalise_name(info.name)!r})"
        )
    if not callable(info.loader):
        raise ValueError(f"data set {info.name!r} needs a callable loader, got {info.loader!r}")
    names = info.class_names
    if names is not None and info.num_classes is not None and len(names) != info.num_classes:
        raise ValueError(
            f"data set {info.name!r} has {info.num_classes} classes but {len(names)} class names"
        )
    keys = [info.name] + [normalise_name(a) for a in info.aliases]
    for key in keys:
        if keys.count(key) > 1:
            raise ValueError(f"data set {info.name!r} lists the name or alias {key!r} twice")
        if key in _NAMES:
            raise ValueError(
                f"cannot register data set {info.name!r}: the name or alias {key!r} is already "
                f"registered for data set {_NAMES[key]!r}"
            )
    _ENTRIES[info.name] = info
    for key in keys:
        _NAMES[key] = info.name
    return info


def dataset_names() -> tuple[str, ...]:
    """The registered data sets' canonical names, sorted."""
    return tuple(sorted(_ENTRIES))


def find_dataset(name: str) -> DatasetInfo | None:
    """The entry whose name or alias is ``name`` (after :func:`normalise_name`), or ``None``."""
    key = _NAMES.get(normalise_name(name))
    return None if key is None else _ENTRIES[key]


def dataset_info(name: str) -> DatasetInfo:
    """Return the registry entry (channels, native image size, num_classes, splits) of ``name``.

    Raises:
        ValueError: no data set has that name or alias.
    """
    info = find_dataset(name)
    if info is None:
        raise ValueError(f"unknown data set {name!r}; valid: {', '.join(dataset_names())}")
    return info


def load_dataset(
    name: str,
    split: str,
    data_dir: str | Path | None = None,
    *,
    image_size: int | None = None,
    size: int | None = None,
    seed: int = 0,
) -> ImageDataset:
    """Load a whole split of a data set into memory.

    Args:
        name: a registered name or alias (:func:`dataset_names`; built in:
            ``"fashion-mnist"``, ``"digits"``, ``"cifar10"``, ``"cifar100"``, ``"stl10"``,
            ``"imagefolder"``, ``"synthetic"``).
        split: ``"train"`` or ``"test"``; STL-10 also has ``"unlabeled"`` and
            ``"train+unlabeled"``; an image folder accepts any sub-folder name.
        data_dir: directory to search first. Then the ``MMCR_DATA_DIR`` environment
            variable is searched, and for Fashion-MNIST finally
            ``/usr/share/datasets/fashion-mnist``. Each directory is also searched for the
            data set's standard sub-folder (e.g. ``cifar-10-batches-py``). For
            ``"imagefolder"`` it is the root of the tree and is required.
        image_size: side length in pixels to resize to. Required for ``"imagefolder"``
            (default 64: centre crop of the short side, then resize); for the other
            readers ``None`` keeps the native size and a different value resizes
            (bilinear, antialiased).
        size: number of images of a generated data set's train split (``"synthetic"``:
            default 2000; its test split has ``max(1, size // 4)``, default 500). Readers
            of files ignore it.
        seed: seeds a generated data set (readers of files ignore it).

    Returns:
        An :class:`ImageDataset`: uint8 images ``(N, C, H, W)``, int64 labels ``(N,)``
        (``-1`` for unlabeled images).

    Raises:
        FileNotFoundError: the files are not in any searched directory (the message lists
            the files, the directories and how to get the data).
        ValueError: unknown name or split, or files that are corrupt.
    """
    info = dataset_info(name)
    request = DatasetRequest(info, split, data_dir, image_size=image_size, size=size, seed=seed)
    dataset = info.loader(request)
    if image_size is not None and dataset.image_size != (image_size, image_size):
        dataset.images = resize_uint8(dataset.images, image_size)
    return dataset

"""Emoji image-text pairs: Noto Color Emoji glyphs with their Unicode CLDR names and keywords.

The data (offline, from two Debian packages):

- Images: each emoji sequence that CLDR names is drawn from ``NotoColorEmoji.ttf``
  (``fonts-noto-color-emoji``; colour bitmaps, drawn by Pillow at their one size, 109 px,
  with ``embedded_color=True``), cropped to the glyph's bounding box, laid on white, padded
  to a centred white square and resized (Lanczos) to ``image_size`` (default 64). A
  sequence the font has no colour glyph for (punctuation, letters, most arrows and
  mathematical signs) draws nothing and is left out; the left-out sequences are kept in
  :attr:`~mmcr.data.paired.PairedDataset.skipped`. With the Debian 12 packages (font 2.042,
  CLDR 41) 3,635 of CLDR's 4,022 English-named sequences render and 387 are left out.
- Captions (``unicode-cldr-core``): ``common/annotations/<lang>.xml`` and
  ``common/annotationsDerived/<lang>.xml`` give each sequence a short name (the
  ``type="tts"`` entry) and a keyword list ``"a | b | c"``. Caption 0 is the English name;
  then, for each language of ``PairedOptions.languages`` (default English only), its name
  and its keywords joined by ``", "`` (``keywords=False`` leaves keywords out); repeats are
  dropped. Inheritance markers (``↑↑↑``) are not captions.
- Labels (``common/properties/labels.txt``): ``"category"`` (e.g. ``Smileys & People``) and
  ``"subcategory"`` (e.g. ``face-positive``). The file lists base characters; a sequence
  it does not list takes the labels of the sequence without its variation selectors and
  skin tones, else those of its first character, else ``-1``.

The split is grouped, so that no variant of one emoji lies on both sides: the group of a
sequence is its English name up to the first ``":"`` (``"thumbs up: light skin tone"`` ->
``"thumbs up"``; ``"family: man, woman, boy"`` -> ``"family"``; a name without ``":"`` is
its own group). Flags and keycaps are the exception: in ``"flag: France"`` and
``"keycap: 1"`` the part after ``":"`` names a different thing, not a variant, so their
whole name is the group (else all 261 flags would be one group). The groups are shuffled
with a fixed seed (:data:`SPLIT_SEED`; the run's seed does not move the test set) and
filled into ``test`` (20 % of the data), then ``val`` (10 %), the rest ``train``
(:func:`~mmcr.data.paired.grouped_split`); ``all`` is every rendered emoji.

Image-only use (``paired = false``): ``dataset = "emoji"`` gives every emoji of a split
with its category (``-1`` where it has none); ``"emoji-images"`` (category) and
``"emoji-subcategory"`` give the labelled emoji only (the 7 % without a CLDR label are left
out, so that the kNN monitor, ``mmcr eval``'s kNN and linear probe and X-CLR's class graph
see a label on every image), each image with its captions
(:class:`CaptionedImageDataset`, for X-CLR's ``graph = "captions"``). Their default
augmentation is the ``"emoji"`` preset (no flips: a mirrored arrow is another emoji).

Rendering takes seconds; the result (uint8 images, captions, labels, groups) is cached in
one file ``<cache>/emoji/emoji-<key>.pt`` (``<cache>``: ``PairedOptions.cache_dir``, else
``$MMCR_CACHE_DIR``, else ``~/.cache/mmcr``), written to a temporary name and renamed
into place, and read back (``weights_only=True``) by every later load with the same
image size, languages, keyword setting and package files. A damaged cache file is
rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmcr.data.dataset import ImageDataset
from mmcr.data.paired import PairedDataset, PairedOptions, PairedRequest, grouped_split
from mmcr.data.readers.search import format_dirs, search_dirs
from mmcr.data.registry import DatasetInfo, DatasetRequest
from mmcr.records import write_atomic

__all__ = [
    "DEFAULT_SIZE",
    "EMOJI",
    "EMOJI_IMAGES",
    "EMOJI_SUBCATEGORY",
    "SPLIT_FRACTIONS",
    "SPLIT_SEED",
    "CaptionedImageDataset",
    "base_name",
    "emoji_pairs",
    "find_emoji_files",
    "language_names",
    "load_emoji",
    "load_emoji_images",
    "load_emoji_pairs",
    "read_annotations",
    "read_labels",
    "render_emoji",
]

DEFAULT_SIZE = 64
#: The font's one bitmap size: colour bitmap fonts draw only at their strike's size.
FONT_SIZE = 109
FONT_FILE = "NotoColorEmoji.ttf"
#: Seeds the grouped split; fixed, so that every run tests on the same emoji.
SPLIT_SEED = 0
#: Shares of the data in the held-out parts; the rest is ``train``.
SPLIT_FRACTIONS = {"test": 0.2, "val": 0.1}

_SYSTEM_FONT_DIR = Path("/usr/share/fonts/truetype/noto")
_SYSTEM_CLDR_DIR = Path("/usr/share/unicode/cldr/common")
_INSTALL = "sudo apt-get install fonts-noto-color-emoji unicode-cldr-core"
_CACHE_FORMAT = 1
_INHERIT = "↑↑↑"
# Names whose part after ':' is another thing, not a variant of the part before it.
_NOT_VARIANTS = ("flag:", "keycap:")
_SKIN_TONES = re.compile("[\U0001f3fb-\U0001f3ff]")
_VARIATION_SELECTORS = re.compile("[\ufe0e\ufe0f]")


# ----------------------------------------------------------------------------- the files


def find_emoji_files(data_dir: str | Path | None) -> tuple[Path, Path]:
    """The font file and CLDR's ``common`` folder: in ``data_dir`` if given (the font in it
    or its ``fonts/``, CLDR in it or its ``common/`` or ``cldr/common/``), else in
    ``$MMCR_DATA_DIR`` and then the Debian packages' folders.

    Raises:
        FileNotFoundError: either is missing (the message lists the folders and the fix).
    """
    dirs = search_dirs(data_dir, EMOJI, (_SYSTEM_FONT_DIR, _SYSTEM_CLDR_DIR))
    font = next((d / FONT_FILE for d in dirs if (d / FONT_FILE).is_file()), None)
    cldr = next((d for d in dirs if (d / "annotations" / "en.xml").is_file()), None)
    missing = []
    if font is None:
        missing.append(f"{FONT_FILE} (Debian package fonts-noto-color-emoji)")
    if cldr is None:
        missing.append("annotations/en.xml of Unicode CLDR (Debian package unicode-cldr-core)")
    if font is None or cldr is None:
        raise FileNotFoundError(
            f"emoji data set: {' and '.join(missing)} not found in {format_dirs(dirs)}. "
            f"Install them with '{_INSTALL}', or pass data_dir holding {FONT_FILE} and "
            "CLDR's common/ folder"
        )
    return font, cldr


def language_names(cldr_dir: Path, languages: tuple[str, ...]) -> tuple[str, ...]:
    """``languages`` checked against the files, with ``"all"`` expanded to every locale."""
    present = sorted(p.stem for p in (cldr_dir / "annotations").glob("*.xml") if p.stem != "root")
    if "all" in languages:
        return ("en", *[lang for lang in present if lang != "en"])
    unknown = [lang for lang in languages if lang not in present]
    if unknown:
        raise ValueError(
            f"emoji data set: no CLDR annotations for language(s) {unknown} in "
            f"{cldr_dir / 'annotations'}; available: {', '.join(present)} (or 'all')"
        )
    return tuple(dict.fromkeys(languages))


def read_annotations(path: Path) -> dict[str, tuple[str | None, list[str]]]:
    """Sequence -> (short name or ``None``, keywords) of one CLDR annotations file."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as err:
        raise ValueError(f"cannot read CLDR annotations {path}: {err}") from err
    names: dict[str, str] = {}
    keywords: dict[str, list[str]] = {}
    for node in root.iter("annotation"):
        cp, text = node.get("cp"), (node.text or "").strip()
        if not cp or not text or text == _INHERIT:
            continue
        if node.get("type") == "tts":
            names[cp] = text
        else:
            keywords[cp] = [k.strip() for k in text.split("|") if k.strip() and k.strip() != _INHERIT]
    return {cp: (names.get(cp), keywords.get(cp, [])) for cp in {**names, **keywords}}


def _language(cldr_dir: Path, lang: str) -> dict[str, tuple[str | None, list[str]]]:
    merged: dict[str, tuple[str | None, list[str]]] = {}
    for folder in ("annotations", "annotationsDerived"):
        path = cldr_dir / folder / f"{lang}.xml"
        if path.is_file():
            merged.update(read_annotations(path))
    return merged


def _unicode_set(text: str) -> Iterator[str]:
    """The strings of a labels.txt UnicodeSet ``[ab-d{xyz}]``: single characters, ranges
    and ``{...}`` sequences."""
    body = text.strip()
    if not (body.startswith("[") and body.endswith("]")):
        raise ValueError(f"not a UnicodeSet: {text!r}")
    body = body[1:-1]
    i = 0
    while i < len(body):
        char = body[i]
        if char.isspace():
            i += 1
        elif char == "{":
            end = body.index("}", i)
            yield body[i + 1 : end]
            i = end + 1
        elif i + 2 < len(body) and body[i + 1] == "-":
            for code in range(ord(char), ord(body[i + 2]) + 1):
                yield chr(code)
            i += 3
        else:
            yield char
            i += 1


def read_labels(path: Path) -> dict[str, tuple[str, str]]:
    """Sequence -> (category, sub-category) from CLDR's ``properties/labels.txt``
    (the first label a sequence gets wins)."""
    labels: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):  # '#' inside a set is a keycap, not a comment
            continue
        fields = [f.strip().replace("\\u003B", ";") for f in line.split(";")]
        if len(fields) < 2:
            raise ValueError(f"{path} line {number}: expected 'set ; category ; sub-category'")
        category, sub = fields[1], fields[2] if len(fields) > 2 else fields[1]
        try:
            members = list(_unicode_set(fields[0]))
        except ValueError as err:
            raise ValueError(f"{path} line {number}: {err}") from err
        for member in members:
            labels.setdefault(member, (category, sub))
    return labels


def _label_of(sequence: str, labels: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    plain = _VARIATION_SELECTORS.sub("", sequence)
    for candidate in (sequence, plain, _SKIN_TONES.sub("", plain), sequence[:1]):
        if candidate in labels:
            return labels[candidate]
    return None


def base_name(english_name: str) -> str:
    """The group of an emoji in the grouped split: its English name up to the first ':'
    (every skin tone, hair style and gender of one emoji together), except flags and
    keycaps, whose whole name is their group."""
    if english_name.startswith(_NOT_VARIANTS) or ":" not in english_name:
        return english_name
    return english_name.split(":", 1)[0].strip()


# ----------------------------------------------------------------------------- rendering


def render_emoji(font: Any, sequence: str, image_size: int, single_advance: float) -> np.ndarray | None:
    """uint8 ``(3, image_size, image_size)``: ``sequence`` drawn in colour, cropped, on a white
    square; ``None`` where the font has no colour glyph for it (nothing drawn, or the
    sequence falls apart into several glyphs)."""
    from PIL import Image, ImageDraw

    if font.getlength(sequence) > 1.5 * single_advance:
        return None
    canvas = Image.new("RGBA", (3 * FONT_SIZE, 2 * FONT_SIZE), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((FONT_SIZE // 4, FONT_SIZE // 4), sequence, font=font, embedded_color=True)
    box = canvas.getchannel("A").getbbox()
    if box is None:
        return None
    glyph = canvas.crop(box)
    side = max(glyph.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    offset = ((side - glyph.size[0]) // 2, (side - glyph.size[1]) // 2)
    square.paste(glyph, offset, mask=glyph.getchannel("A"))
    if side != image_size:
        square = square.resize((image_size, image_size), Image.Resampling.LANCZOS)
    return np.asarray(square, dtype=np.uint8).transpose(2, 0, 1).copy()


def _file_id(path: Path) -> list[Any]:
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def _cldr_files(cldr_dir: Path, languages: tuple[str, ...]) -> list[Path]:
    """The CLDR files the data are made of (their sizes and times key the cache)."""
    files = [cldr_dir / "properties" / "labels.txt"]
    for lang in dict.fromkeys(("en", *languages)):
        files.extend(cldr_dir / folder / f"{lang}.xml" for folder in ("annotations", "annotationsDerived"))
    return [path for path in files if path.is_file()]


def _cache_path(options: PairedOptions, key: dict[str, Any]) -> Path:
    from mmcr.data.stream.index import default_cache_dir

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:20]
    return default_cache_dir(options.cache_dir) / "emoji" / f"emoji-{digest}.pt"


def _read_cache(path: Path, key_text: str) -> dict[str, Any] | None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except Exception:  # a damaged cache file is rebuilt and replaced
        return None
    if not isinstance(state, dict) or state.get("key") != key_text:
        return None
    if not isinstance(state.get("images"), torch.Tensor) or state["images"].dtype != torch.uint8:
        return None
    return state


def _render_all(
    font_path: Path, cldr_dir: Path, languages: tuple[str, ...], keywords: bool, image_size: int
) -> dict[str, Any]:
    """Draw every named sequence and gather its captions, labels and group (the cache's content)."""
    from PIL import ImageFont

    start = time.perf_counter()
    english = _language(cldr_dir, "en")
    others = {lang: _language(cldr_dir, lang) for lang in languages if lang != "en"}
    labels = read_labels(cldr_dir / "properties" / "labels.txt")
    font = ImageFont.truetype(str(font_path), FONT_SIZE)
    single = float(font.getlength("\U0001f600"))
    images, keys, captions, groups, category, subcategory, skipped = [], [], [], [], [], [], []
    for sequence in sorted(cp for cp, (name, _) in english.items() if name):
        name = english[sequence][0]
        assert name is not None
        pixels = render_emoji(font, sequence, image_size, single)
        points = " ".join(f"U+{ord(c):04X}" for c in sequence)
        if pixels is None:
            skipped.append(f"{points} {name!r}: no colour glyph in {font_path.name}")
            continue
        texts = [name]
        for lang in languages:
            entry = english if lang == "en" else others[lang]
            lang_name, lang_keywords = entry.get(sequence, (None, []))
            texts.extend([lang_name] if lang_name else [])
            if keywords and lang_keywords:
                texts.append(", ".join(lang_keywords))
        label = _label_of(sequence, labels)
        images.append(pixels)
        keys.append(sequence)
        captions.append(list(dict.fromkeys(texts)))
        groups.append(base_name(name))
        category.append(label[0] if label else None)
        subcategory.append(label[1] if label else None)
    category_names = sorted({c for c in category if c is not None})
    sub_names = sorted({s for s in subcategory if s is not None})
    return {
        "images": torch.from_numpy(np.stack(images)),
        "keys": keys,
        "captions": captions,
        "groups": groups,
        "category": _indices(category, category_names),
        "subcategory": _indices(subcategory, sub_names),
        "category_names": category_names,
        "subcategory_names": sub_names,
        "skipped": skipped,
        "render_seconds": time.perf_counter() - start,
    }


def _indices(values: list[str | None], names: list[str]) -> torch.Tensor:
    lookup = {name: index for index, name in enumerate(names)}
    return torch.tensor([-1 if v is None else lookup[v] for v in values], dtype=torch.int64)


def emoji_pairs(
    data_dir: str | Path | None = None,
    image_size: int = DEFAULT_SIZE,
    options: PairedOptions | None = None,
) -> PairedDataset:
    """Every emoji that renders in colour (the ``all`` split), from the cache (built on first use)."""
    options = options or PairedOptions()
    font_path, cldr_dir = find_emoji_files(data_dir)
    languages = language_names(cldr_dir, options.languages)
    key = {
        "format": _CACHE_FORMAT,
        "image_size": image_size,
        "languages": list(languages),
        "keywords": options.keywords,
        "font": _file_id(font_path),
        "cldr": [_file_id(path) for path in _cldr_files(cldr_dir, languages)],
    }
    key_text = json.dumps(key, sort_keys=True)
    path = _cache_path(options, key)
    state = _read_cache(path, key_text)
    if state is None:
        state = {"key": key_text, **_render_all(font_path, cldr_dir, languages, options.keywords, image_size)}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_atomic(path, lambda handle: handle.write(buffer.getvalue()))
    return PairedDataset(
        images=state["images"],
        captions=[list(texts) for texts in state["captions"]],
        name=EMOJI.name,
        keys=list(state["keys"]),
        labels={"category": state["category"], "subcategory": state["subcategory"]},
        label_names={
            "category": list(state["category_names"]),
            "subcategory": list(state["subcategory_names"]),
        },
        groups=list(state["groups"]),
        sources=(str(font_path), str(cldr_dir), str(path)),
        skipped=tuple(state["skipped"]),
    )


def load_emoji_pairs(request: PairedRequest) -> PairedDataset:
    """One split (``train``, ``val``, ``test``, grouped by base emoji; or ``all``) of the pairs."""
    full = emoji_pairs(request.request.data_dir, request.request.image_size or DEFAULT_SIZE, request.options)
    if request.request.split == "all":
        return full
    assert full.groups is not None
    parts = grouped_split(full.groups, SPLIT_FRACTIONS, seed=SPLIT_SEED)
    return full.subset(parts[request.request.split])


def load_emoji(request: DatasetRequest) -> ImageDataset:
    """The images of one split with their CLDR category as the label (image-only use)."""
    return load_emoji_pairs(PairedRequest(request)).image_dataset("category")


@dataclass
class CaptionedImageDataset(ImageDataset):
    """An :class:`ImageDataset` whose images keep their captions: ``captions[i]`` are image
    ``i``'s (caption 0 the primary one), kept in step by :meth:`subset`.

    What image-only pretraining of a paired data set reads, so that X-CLR's caption graph
    (``graph = "captions"``) can name each training image's captions by its row.
    """

    captions: list[list[str]] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.captions is not None and len(self.captions) != len(self):
            raise ValueError(
                f"CaptionedImageDataset has {len(self)} images but {len(self.captions)} caption lists"
            )

    def subset(self, indices: torch.Tensor | Sequence[int]) -> CaptionedImageDataset:
        """A new data set holding the images, labels and captions at ``indices``."""
        base = super().subset(indices)
        rows = torch.as_tensor(indices, dtype=torch.long).tolist()
        captions = None if self.captions is None else [list(self.captions[i]) for i in rows]
        return CaptionedImageDataset(
            **{f.name: getattr(base, f.name) for f in fields(base)}, captions=captions
        )


def load_emoji_images(request: DatasetRequest, label: str) -> CaptionedImageDataset:
    """The labelled emoji of one split, labelled by ``label`` (``"category"`` or
    ``"subcategory"``), with their captions; the emoji without a CLDR label are left out."""
    pairs = load_emoji_pairs(PairedRequest(request))
    known = torch.nonzero(pairs.labels[label] >= 0).flatten()
    pairs = pairs.subset(known)
    images = pairs.image_dataset(label)
    return CaptionedImageDataset(
        images=images.images,
        labels=images.labels,
        num_classes=images.num_classes,
        name=request.info.name,
        classes=images.classes,
        sources=images.sources,
        captions=[list(texts) for texts in pairs.captions],
    )


def _load_emoji_category(request: DatasetRequest) -> ImageDataset:
    return load_emoji_images(request, "category")


def _load_emoji_subcategory(request: DatasetRequest) -> ImageDataset:
    return load_emoji_images(request, "subcategory")


EMOJI = DatasetInfo(
    "emoji",
    3,
    None,
    None,
    ("train", "val", "test", "all"),
    "Noto Color Emoji glyphs and their Unicode CLDR names (Debian packages "
    "fonts-noto-color-emoji and unicode-cldr-core)",
    ("emoji", "common", "cldr/common", "fonts"),
    aliases=("emoji-text", "noto-emoji"),
    augment="emoji",
    loader=load_emoji,
)

_SOURCE = EMOJI.source
_FOLDERS = EMOJI.folder_names
_SPLITS = ("train", "val", "test", "all")

#: The labelled emoji as an image data set, labelled by CLDR category (8 classes), with captions.
EMOJI_IMAGES = DatasetInfo(
    "emoji-images",
    3,
    None,
    None,
    _SPLITS,
    _SOURCE,
    _FOLDERS,
    aliases=("emoji-category",),
    augment="emoji",
    loader=_load_emoji_category,
)
#: The same images labelled by CLDR sub-category (e.g. ``face-smiling``; 80 of them in CLDR 41).
EMOJI_SUBCATEGORY = DatasetInfo(
    "emoji-subcategory",
    3,
    None,
    None,
    _SPLITS,
    _SOURCE,
    _FOLDERS,
    aliases=("emoji-images-subcategory",),
    augment="emoji",
    loader=_load_emoji_subcategory,
)

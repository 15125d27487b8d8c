"""The emoji image-text set: rendering, CLDR captions and labels, the grouped split, the cache.

The tests marked ``needs_packages`` read the real Debian packages (installed by ``./run``);
without them they are reported as skipped, never as passed. The others build what they
need in ``tmp_path``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mmcr.data import PairedDataset, PairedOptions, load_dataset, load_paired
from mmcr.data.readers import emoji

SYSTEM_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
SYSTEM_CLDR = Path("/usr/share/unicode/cldr/common")
needs_packages = pytest.mark.skipif(
    not SYSTEM_FONT.is_file() or not (SYSTEM_CLDR / "annotations" / "en.xml").is_file(),
    reason="Debian packages fonts-noto-color-emoji and unicode-cldr-core not installed",
)


@pytest.fixture(scope="module")
def emoji_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("emoji-cache"))


@pytest.fixture(scope="module")
def everything(emoji_cache: str) -> PairedDataset:
    """Every emoji at 32 px from the real packages (rendered once for this module)."""
    return load_paired("emoji", "all", image_size=32, options=PairedOptions(cache_dir=emoji_cache))


def by_key(data: PairedDataset, key: str) -> int:
    return data.keys.index(key)


def label(data: PairedDataset, i: int, kind: str) -> str:
    return data.label_names[kind][int(data.labels[kind][i])]


# ----------------------------------------------------------------------------- real packages


@needs_packages
def test_render_known_emoji() -> None:
    from PIL import ImageFont

    font = ImageFont.truetype(str(SYSTEM_FONT), emoji.FONT_SIZE)
    single = float(font.getlength("\U0001f600"))
    face = emoji.render_emoji(font, "\U0001f600", 64, single)  # grinning face: yellow
    assert face is not None and face.shape == (3, 64, 64) and face.dtype == np.uint8
    r, g, b = (face[c].astype(int) for c in range(3))
    assert ((r > 200) & (g > 150) & (b < 100)).mean() > 0.3  # mostly yellow
    assert face[:, 0, 0].tolist() == [255, 255, 255]  # padded on white
    # cropped to the glyph: the face touches at least two opposite edges of the square
    ink = (face.astype(int).sum(0) < 3 * 250)
    assert (ink[:, 0].any() and ink[:, -1].any()) or (ink[0].any() and ink[-1].any())
    flag = emoji.render_emoji(font, "\U0001f1eb\U0001f1f7", 32, single)  # France: blue, white, red
    assert flag is not None and flag.shape == (3, 32, 32)
    fr, fg, fb = (flag[c].astype(int) for c in range(3))
    assert ((fb > 150) & (fr < 100)).any() and ((fr > 180) & (fb < 100) & (fg < 100)).any()
    assert flag[:, 0, :].min() == 255 and flag[:, :, 0].min() < 200  # wide: padded above, not beside
    thumbs = emoji.render_emoji(font, "\U0001f44d", 32, single)
    dark = emoji.render_emoji(font, "\U0001f44d\U0001f3ff", 32, single)
    assert thumbs is not None and dark is not None
    assert dark.astype(float).mean() < thumbs.astype(float).mean() - 5  # the skin tone shows
    assert emoji.render_emoji(font, "{", 32, single) is None  # no colour glyph
    assert emoji.render_emoji(font, "a", 32, single) is None


@needs_packages
def test_every_english_name_is_rendered_or_reported(everything: PairedDataset) -> None:
    names = 0
    for folder in ("annotations", "annotationsDerived"):
        root = ET.parse(SYSTEM_CLDR / folder / "en.xml").getroot()  # comments are not entries
        names += sum(1 for node in root.iter("annotation") if node.get("type") == "tts")
    assert len(everything) + len(everything.skipped) == names
    assert 3000 < len(everything) < names  # about 3,600 render in colour
    assert all("no colour glyph" in reason for reason in everything.skipped)
    assert any("'open curly bracket'" in reason for reason in everything.skipped)
    assert everything.images.shape == (len(everything), 3, 32, 32)
    assert len(set(everything.keys)) == len(everything)


@needs_packages
def test_captions_and_labels_parsed(everything: PairedDataset) -> None:
    thumbs = by_key(everything, "\U0001f44d")
    assert everything.captions[thumbs][0] == "thumbs up"
    keywords = everything.captions[thumbs][1].split(", ")
    assert {"thumb", "hand", "+1"} <= set(keywords)
    medium = by_key(everything, "\U0001f44d\U0001f3fd")
    assert everything.captions[medium][0] == "thumbs up: medium skin tone"
    assert everything.groups is not None and everything.groups[medium] == "thumbs up"
    face = by_key(everything, "\U0001f600")
    assert everything.captions[face][0] == "grinning face"
    assert label(everything, face, "category") == "Smileys & People"
    assert label(everything, face, "subcategory") == "face-positive"
    # the labels of a variant come from its base character
    assert label(everything, medium, "category") == "Smileys & People"
    assert label(everything, medium, "subcategory") == "body"
    france = by_key(everything, "\U0001f1eb\U0001f1f7")
    assert everything.captions[france][0] == "flag: France"
    assert label(everything, france, "subcategory") == "country-flag"
    assert everything.groups[france] == "flag: France"
    assert "Flags" in everything.label_names["category"] and len(everything.label_names["category"]) >= 8
    counts = everything.caption_counts()
    assert int(counts.min()) >= 1 and float(counts.float().mean()) > 1.9
    assert all(len(set(texts)) == len(texts) for texts in everything.captions)


@needs_packages
def test_grouped_split_keeps_every_variant_on_one_side(
    emoji_cache: str, everything: PairedDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMCR_CACHE_DIR", emoji_cache)  # load_dataset below reads the same cache file
    options = PairedOptions(cache_dir=emoji_cache)
    parts = {s: load_paired("emoji", s, image_size=32, options=options) for s in ("train", "val", "test")}
    groups = {s: set(p.groups or ()) for s, p in parts.items()}
    assert not groups["train"] & groups["test"]
    assert not groups["train"] & groups["val"] and not groups["val"] & groups["test"]
    keys = [k for p in parts.values() for k in p.keys]
    assert sorted(keys) == sorted(everything.keys)  # disjoint and complete
    n = len(everything)
    assert 0.2 * n <= len(parts["test"]) < 0.2 * n + 110  # a part overshoots by under one group
    assert 0.1 * n <= len(parts["val"]) < 0.1 * n + 110
    thumbs = [k for k, g in zip(everything.keys, everything.groups or [], strict=True) if g == "thumbs up"]
    assert len(thumbs) == 6  # the base emoji and its five skin tones
    sides = {s for s, p in parts.items() for k in thumbs if k in p.keys}
    assert len(sides) == 1
    flags = {s for s, p in parts.items() if any(c.startswith("flag: ") for c in p.primary_captions())}
    assert flags == {"train", "val", "test"}  # flags are not one group
    again = load_paired("emoji", "test", image_size=32, options=options)
    assert again.keys == parts["test"].keys  # the split is fixed
    image_only = load_dataset("emoji", "test", image_size=32)
    assert image_only.images.shape == parts["test"].images.shape
    assert image_only.classes == parts["test"].label_names["category"]


@needs_packages
def test_more_languages_and_no_keywords(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # captions only: a blank image in place of the (slow) drawing
    def blank(font: Any, sequence: str, size: int, single: float) -> np.ndarray:
        return np.zeros((3, size, size), np.uint8)

    monkeypatch.setattr(emoji, "render_emoji", blank)
    options = PairedOptions(languages=("en", "de", "fr"), cache_dir=str(tmp_path))
    data = load_paired("emoji", "all", image_size=4, options=options)
    thumbs = data.captions[by_key(data, "\U0001f44d")]
    assert thumbs[0] == "thumbs up" and "Daumen hoch" in thumbs and "pouce vers le haut" in thumbs
    assert len(thumbs) == 6  # a name and a keyword line in each language
    bare_options = PairedOptions(keywords=False, cache_dir=str(tmp_path))
    bare = load_paired("emoji", "all", image_size=4, options=bare_options)
    assert bare.captions[by_key(bare, "\U0001f44d")] == ["thumbs up"]
    with pytest.raises(ValueError, match=r"no CLDR annotations for language\(s\) \['xx'\].*available: .*de"):
        load_paired("emoji", "all", options=PairedOptions(languages=("en", "xx"), cache_dir=str(tmp_path)))


# ----------------------------------------------------------------------------- without the packages


def test_missing_packages_say_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(emoji, "_SYSTEM_FONT_DIR", tmp_path / "no-font")
    monkeypatch.setattr(emoji, "_SYSTEM_CLDR_DIR", tmp_path / "no-cldr")
    with pytest.raises(FileNotFoundError, match="apt-get install fonts-noto-color-emoji unicode-cldr-core"):
        load_paired("emoji", "train")
    not_found = r"NotoColorEmoji\.ttf .* not found in " + re.escape(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=not_found):
        load_paired("emoji", "train", tmp_path)


def test_base_name_groups_variants_but_not_flags() -> None:
    assert emoji.base_name("thumbs up: medium skin tone") == "thumbs up"
    assert emoji.base_name("thumbs up") == "thumbs up"
    assert emoji.base_name("family: man, woman, boy") == "family"
    assert emoji.base_name("flag: France") == "flag: France"
    assert emoji.base_name("keycap: 7") == "keycap: 7"


def test_read_labels_unicode_sets(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    text = (
        "# comment ; Not ; a label\n"
        "[\U0001f600-\U0001f602\u263a{\U0001f468\u200d\U0001f373}] ;\tSmileys ;\tface\n"
        "[{#\ufe0f\u20e3}\U0001f51f]  ;\tSymbols\t;\tkeycap\n"
        "[\U0001f600x] ; Other ; other\n"
    )
    path.write_text(text, encoding="utf-8")
    labels = emoji.read_labels(path)
    assert labels["\U0001f601"] == ("Smileys", "face") and labels["\u263a"] == ("Smileys", "face")
    assert labels["\U0001f468\u200d\U0001f373"] == ("Smileys", "face")
    assert labels["#\ufe0f\u20e3"] == ("Symbols", "keycap")
    assert labels["\U0001f600"] == ("Smileys", "face")  # the first label wins
    assert labels["x"] == ("Other", "other") and "# comment" not in labels


# ----------------------------------------------------------------------------- the cache


def fake_packages(root: Path) -> Path:
    """A folder holding stand-ins of the font and CLDR files (the drawing is replaced)."""
    (root / "common" / "annotations").mkdir(parents=True)
    (root / "common" / "properties").mkdir(parents=True)
    (root / "NotoColorEmoji.ttf").write_bytes(b"stand-in")
    (root / "common" / "annotations" / "en.xml").write_text("<ldml/>")
    (root / "common" / "properties" / "labels.txt").write_text("")
    return root


def fake_render(calls: list[int]) -> Callable[..., dict[str, Any]]:
    def render(font: Path, cldr: Path, languages: tuple[str, ...], keywords: bool, size: int) -> dict:
        calls.append(size)
        return {
            "images": torch.full((3, 3, size, size), len(calls), dtype=torch.uint8),
            "keys": ["a", "b", "c"],
            "captions": [["a"], ["b", "bee"], ["c"]],
            "groups": ["a", "b", "c"],
            "category": torch.tensor([0, 0, -1]),
            "subcategory": torch.tensor([0, 1, -1]),
            "category_names": ["letters"],
            "subcategory_names": ["vowel", "consonant"],
            "skipped": ["d: no colour glyph"],
            "render_seconds": 0.0,
        }

    return render


def test_cache_is_written_once_then_reused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data_dir, cache = fake_packages(tmp_path / "pkgs"), tmp_path / "cache"
    calls: list[int] = []
    monkeypatch.setattr(emoji, "_render_all", fake_render(calls))
    options = PairedOptions(cache_dir=str(cache))
    first = emoji.emoji_pairs(data_dir, 8, options)
    files = sorted((cache / "emoji").iterdir())
    assert calls == [8] and len(files) == 1 and re.fullmatch(r"emoji-[0-9a-f]{20}\.pt", files[0].name)
    again = emoji.emoji_pairs(data_dir, 8, options)
    assert calls == [8]  # read back, not drawn again
    assert torch.equal(again.images, first.images) and again.captions == [["a"], ["b", "bee"], ["c"]]
    assert again.skipped == ("d: no colour glyph",) and str(files[0]) in again.sources
    emoji.emoji_pairs(data_dir, 16, options)  # another size is another entry
    assert calls == [8, 16] and len(list((cache / "emoji").iterdir())) == 2
    (data_dir / "common" / "annotations" / "en.xml").write_text("<ldml></ldml>")  # the package changed
    emoji.emoji_pairs(data_dir, 8, options)
    assert calls == [8, 16, 8]


def test_damaged_cache_is_rebuilt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data_dir, cache = fake_packages(tmp_path / "pkgs"), tmp_path / "cache"
    calls: list[int] = []
    monkeypatch.setattr(emoji, "_render_all", fake_render(calls))
    options = PairedOptions(cache_dir=str(cache))
    emoji.emoji_pairs(data_dir, 8, options)
    (entry,) = (cache / "emoji").iterdir()
    entry.write_bytes(entry.read_bytes()[:100])  # truncated
    rebuilt = emoji.emoji_pairs(data_dir, 8, options)
    assert calls == [8, 8] and int(rebuilt.images[0, 0, 0, 0]) == 2
    assert emoji.emoji_pairs(data_dir, 8, options).images.equal(rebuilt.images) and calls == [8, 8]


def test_interrupted_cache_write_leaves_no_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data_dir, cache = fake_packages(tmp_path / "pkgs"), tmp_path / "cache"
    calls: list[int] = []
    monkeypatch.setattr(emoji, "_render_all", fake_render(calls))
    real_write = emoji.write_atomic

    def interrupted(path: Path, write: Callable[[Any], object]) -> Path:
        def half(handle: Any) -> None:
            handle.write(b"PK\x03\x04 the first bytes only")
            raise KeyboardInterrupt

        return real_write(path, half)

    monkeypatch.setattr(emoji, "write_atomic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        emoji.emoji_pairs(data_dir, 8, PairedOptions(cache_dir=str(cache)))
    assert list((cache / "emoji").iterdir()) == []  # neither a partial entry nor a temporary file
    monkeypatch.setattr(emoji, "write_atomic", real_write)
    assert len(emoji.emoji_pairs(data_dir, 8, PairedOptions(cache_dir=str(cache)))) == 3
    assert len(list((cache / "emoji").iterdir())) == 1

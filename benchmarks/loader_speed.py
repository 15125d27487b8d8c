"""Images/s of the data paths at ImageNet scale, their decode share, and the streaming path's memory.

Generates an image-folder tree of JPEGs of ImageNet-like sizes (300-500 px a side; a pool
of distinct photos-like images, each written under many names, so that making 20,000
files costs seconds) and measures, in one run and with the same number of DataLoader
workers, the images/s that deliver K = 2 views of 224 px:

- ``baseline``: what a torchvision user writes, with PIL and torch only: per image a
  full PIL decode, K independent random-resized crops (PIL resize), to float tensors,
  default collate;
- ``stream``: this package's streaming path (:class:`mmcr.data.stream.CropDataset`:
  JPEG draft decoding, K crops cut at 224 px as uint8);
- ``cache``: the decoded uint8 cache (images stored once at 256 px, memory-mapped):
  what the loader delivers, a gathered uint8 batch, whose K crops the batched
  augmentation then cuts on the training device (a GPU: not timed here);
  ``cache_with_cpu_crop`` adds that crop (:class:`~mmcr.data.MultiViewAugment`, crop only)
  on this CPU, in the main process with as many threads as the other paths have workers.

The decode share is the part of a streamed (or baseline) image's time spent in PIL's
decoder, timed in the main process. The memory measurement runs ``mmcr pretrain`` on the
streaming path in a child process (a tiny network, a few hundred steps) on trees of
2,000 and 20,000 JPEGs and records the peak RSS of the main process and of its largest
worker.

    python benchmarks/loader_speed.py --json results/loader_speed.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmcr.data import AugmentConfig, MultiViewAugment, load_dataset, preset
from mmcr.data.stream import (
    CropDataset,
    LoaderOptions,
    StreamedSplit,
    decoded_cache,
    folder_index,
    make_loader,
)

VIEWS, CROP, STORED = 2, 224, 256


def make_tree(root: Path, n: int, classes: int = 10, pool: int = 64, seed: int = 0) -> Path:
    """``root/train/c<k>/<i>.jpg``: ``n`` JPEGs, 300-500 px a side, ``pool`` distinct ones."""
    from PIL import Image

    if (root / "done").exists() and int((root / "done").read_text()) == n:
        return root
    rng = np.random.default_rng(seed)
    blobs = []
    for _ in range(pool):
        h, w = (int(v) for v in rng.integers(300, 501, size=2))
        # smooth colour fields plus grain: compresses like a photo (tens of kB), not like noise
        coarse = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)
        pixels = np.clip(base + rng.integers(-12, 13, (h, w, 3)), 0, 255).astype(np.uint8)
        path = root / "pool.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=85)
        blobs.append(path.read_bytes())
    for i in range(n):
        folder = root / "train" / f"c{i % classes}"
        if i < classes:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:06d}.jpg").write_bytes(blobs[i % pool])
    (root / "done").write_text(str(n))
    return root


class BaselineDataset(torch.utils.data.Dataset):
    """The per-image pipeline as torchvision users write it: decode, K x RandomResizedCrop, ToTensor."""

    def __init__(self, index: Any, scale: tuple[float, float] = (0.08, 1.0)) -> None:
        self.index, self.scale = index, scale

    def __len__(self) -> int:
        return len(self.index)

    def _crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        area = height * width
        for _ in range(10):
            target = area * random.uniform(*self.scale)
            aspect = math.exp(random.uniform(math.log(3 / 4), math.log(4 / 3)))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top, left = random.randint(0, height - h), random.randint(0, width - w)
                return top, left, h, w
        side = min(height, width)
        return (height - side) // 2, (width - side) // 2, side, side

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        with Image.open(self.index.path(i)) as img:
            rgb = img.convert("RGB")
        views = []
        for _ in range(VIEWS):
            top, left, h, w = self._crop_box(rgb.height, rgb.width)
            crop = rgb.resize((CROP, CROP), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))
            views.append(torch.from_numpy(np.asarray(crop, dtype=np.uint8)).permute(2, 0, 1).float().div(255))
        return torch.stack(views), int(self.index.labels[i])


def _rate(batches: Any, n_batches: int, batch_size: int, warmup: int = 2) -> float:
    """Images/s over ``n_batches`` batches after ``warmup`` (workers started, caches warm)."""
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    return n_batches * batch_size / (time.perf_counter() - start)


def _keys(n: int, batch_size: int, n_batches: int) -> list[list[Any]]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    return [order[(b * batch_size) % n :][:batch_size] for b in range(n_batches)]


def throughput(tree: Path, cache_dir: Path, workers: int, batch_size: int, n_batches: int) -> dict[str, Any]:
    """Images/s of the three paths, same tree, same workers, same batches."""
    index = folder_index(tree, "train", cache_dir=cache_dir)
    n, total = len(index), n_batches + 2
    keys = _keys(n, batch_size, total)
    options = LoaderOptions(num_workers=workers, prefetch_factor=2)
    base = BaselineDataset(index)
    baseline = _rate(make_loader(base, keys, options), n_batches, batch_size)

    split = StreamedSplit(index, np.arange(n), 3)
    crops = CropDataset(split, preset("imagenet", crop_size=CROP), VIEWS, seed=0)
    stream = _rate(make_loader(crops, [[(0, i) for i in b] for b in keys], options), n_batches, batch_size)

    def build() -> tuple[dict[str, Any], dict[str, Any]]:
        return {"train": load_dataset("imagefolder", "train", tree, image_size=STORED)}, {}

    start = time.perf_counter()
    images = decoded_cache({"bench": str(tree), "size": STORED, "n": n}, build, cache_dir)[0]["train"].images
    cache_build_s = time.perf_counter() - start
    crop_only = MultiViewAugment(AugmentConfig(crop_size=CROP, flip_p=0.0, jitter_p=0.0, gray_p=0.0))
    generator = torch.Generator().manual_seed(0)

    def gathered() -> Any:
        for b in keys:
            yield images[torch.tensor(sorted(b))]

    def cropped() -> Any:
        for batch in gathered():
            yield crop_only(batch, VIEWS, generator=generator)

    # no worker processes on this path: the main process gets the workers' cores as threads
    torch.set_num_threads(max(1, workers))
    _rate(gathered(), n_batches, batch_size)  # the first pass maps the file's pages in
    cache = _rate(gathered(), n_batches, batch_size)
    cache_cropped = _rate(cropped(), n_batches, batch_size)
    torch.set_num_threads(1)
    return {
        "images": n,
        "workers": workers,
        "batch_size": batch_size,
        "batches_timed": n_batches,
        "images_per_s": {
            "baseline": baseline,
            "stream": stream,
            "cache": cache,
            "cache_with_cpu_crop": cache_cropped,
        },
        "speedup_vs_baseline": {
            "stream": stream / baseline,
            "cache": cache / baseline,
            "cache_with_cpu_crop": cache_cropped / baseline,
        },
        "cache_build_s": cache_build_s,
        "decode_share": decode_share(index, samples=60),
    }


def decode_share(index: Any, samples: int) -> dict[str, Any]:
    """Share of one image's time spent in PIL's decoder: streamed (draft) and baseline (full)."""
    from PIL import Image

    from mmcr.data.stream import crop_generator, draw_crops
    from mmcr.data.stream.decode import _draft, decode_square, jpeg_decoder, oriented_size

    config = preset("imagenet", crop_size=CROP)
    crops = CropDataset(StreamedSplit(index, np.arange(len(index)), 3), config, VIEWS, seed=0)
    base = BaselineDataset(index)
    rows = list(range(samples))

    def stream_decode(i: int) -> None:
        with Image.open(index.path(i)) as img:  # the decode CropDataset makes for key (0, i)
            height, width, _ = oriented_size(img)
            generator = crop_generator(0, 0, i)
            boxes = draw_crops(generator, VIEWS, height, width, config.crop_scale, config.crop_ratio)
            reduce = max(1.0, float(boxes[:, 2:].min()) / CROP)
            request = (math.ceil(img.size[0] / reduce), math.ceil(img.size[1] / reduce))
            if jpeg_decoder() == "simplejpeg":
                import simplejpeg

                data = index.path(i).read_bytes()
                simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=request[0], min_height=request[1])
            else:
                _draft(img, 3, request)
                img.convert("RGB")

    def full_decode(i: int) -> None:
        with Image.open(index.path(i)) as img:
            img.convert("RGB")

    timed: dict[str, float] = {}
    for name, fn in (
        ("stream_item", lambda i: crops[(0, i)]),
        ("stream_decode", stream_decode),
        ("baseline_item", base.__getitem__),
        ("baseline_decode", full_decode),
    ):
        start = time.perf_counter()
        for i in rows:
            fn(i)
        timed[name] = time.perf_counter() - start
    decoders = {}
    for name in ("pillow", "simplejpeg"):
        if name == "simplejpeg" and jpeg_decoder() != "simplejpeg":
            continue  # not installed
        start = time.perf_counter()
        for i in rows:
            decode_square(index.path(i), CROP, 3, draft=False, decoder=name)
        decoders[f"{name}_ms_per_image"] = 1000 * (time.perf_counter() - start) / samples
    return {
        "decoder": jpeg_decoder(),
        "full_decode_and_square": decoders,
        "stream": timed["stream_decode"] / timed["stream_item"],
        "baseline": timed["baseline_decode"] / timed["baseline_item"],
        "stream_ms_per_image": 1000 * timed["stream_item"] / samples,
        "baseline_ms_per_image": 1000 * timed["baseline_item"] / samples,
    }


def rss_child(tree: str, cache_dir: str, steps: int, workers: int) -> None:
    """Pretrain on the streaming path for ``steps`` steps; print peak RSS (main, largest worker) in MB."""
    from mmcr.config import build_config
    from mmcr.training import pretrain

    with tempfile.TemporaryDirectory() as out:
        cfg = build_config(
            None,
            {
                "dataset": "imagefolder",
                "data_dir": tree,
                "loader": "stream",
                "crop_size": CROP,
                "augment": "imagenet",
                "encoder_width": 4,
                "projector_hidden": [32],
                "projector_dim": 16,
                "batch_size": 16,
                "max_steps": steps,
                "eval_every": 0,
                "monitor_size": 64,
                "num_workers": workers,
                "cache_dir": cache_dir,
                "progress": False,
                "log_every": 50,
                "out": out,
                "threads": 1,
            },
        )
        pretrain(cfg)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"main_peak_rss_mb": own, "worker_peak_rss_mb": children}))


def pss_child(entry: str, ready: str, go: str) -> None:
    """Map a cache entry, touch every page, wait for the sibling; print its RSS and PSS in MB."""
    from mmcr.data.stream import read_entry

    found = read_entry(Path(entry))
    assert found is not None, entry
    images = found[0]["train"].images
    total = int(images[:, 0, 0, 0].sum()) + int(images.sum(dtype=torch.int64))  # every page read
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.05)
    fields = dict(
        line.split(":", 1) for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]
    )
    kb = {k: int(v.split()[0]) for k, v in fields.items() if k in ("Rss", "Pss")}
    print(json.dumps({"rss_mb": kb["Rss"] / 1024, "pss_mb": kb["Pss"] / 1024, "checksum": total}))


def shared_pages(cache_dir: Path) -> dict[str, Any]:
    """RSS and PSS of two processes that map the same decoded cache entry at once."""
    entries = sorted(p for p in cache_dir.glob("decoded-*") if p.is_dir())
    if not entries:
        return {}
    entry = max(entries, key=lambda p: (p / "train.npy").stat().st_size)
    with tempfile.TemporaryDirectory() as flags:
        go = Path(flags) / "go"
        children = [
            subprocess.Popen(
                [sys.executable, __file__, "--pss-child", str(entry), f"{flags}/ready{i}", str(go)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        while not all((Path(flags) / f"ready{i}").exists() for i in range(2)):
            time.sleep(0.05)
        go.touch()
        outputs = [json.loads(child.communicate()[0].strip().splitlines()[-1]) for child in children]
    size_mb = (entry / "train.npy").stat().st_size / 2**20
    return {"cache_file_mb": size_mb, "processes": outputs}


def peak_rss(root: Path, cache_dir: Path, sizes: list[int], steps: int, workers: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in sizes:
        tree = make_tree(root / f"tree{n}", n)
        command = [sys.executable, __file__, "--rss-child", str(tree), str(cache_dir)]
        command += [str(steps), str(workers)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        out[str(n)] = json.loads(done.stdout.strip().splitlines()[-1])
    small, large = (out[str(n)]["main_peak_rss_mb"] for n in (min(sizes), max(sizes)))
    out["main_difference_mb"] = large - small
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "mmcr-loader-bench")
    parser.add_argument("--images", type=int, default=2000, help="tree size of the throughput runs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=12, help="batches timed per path")
    parser.add_argument("--rss-sizes", type=int, nargs="*", default=[2000, 20000])
    parser.add_argument("--rss-steps", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--reuse-rss", action="store_true", help="keep the peak-RSS section of an existing --json file"
    )
    parser.add_argument(
        "--rss-child", nargs=4, metavar=("TREE", "CACHE", "STEPS", "WORKERS"), help=argparse.SUPPRESS
    )
    parser.add_argument("--pss-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument(
        "--shared-only", action="store_true", help="only the two processes sharing the cache (into --json)"
    )
    args = parser.parse_args()
    if args.pss_child:
        pss_child(*args.pss_child)
        return
    if args.shared_only:
        shared = shared_pages(args.root / "cache")
        print(json.dumps(shared, indent=2))
        if args.json is not None and args.json.exists():
            result = json.loads(args.json.read_text())
            result["cache_shared_by_two_processes"] = shared
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return
    if args.rss_child:
        tree, cache, steps, workers = args.rss_child
        rss_child(tree, cache, int(steps), int(workers))
        return
    torch.set_num_threads(1)  # the workers and the main process share the cores
    cache_dir = args.root / "cache"
    tree = make_tree(args.root / f"tree{args.images}", args.images)
    speed = throughput(tree, cache_dir, args.workers, args.batch_size, args.batches)
    memory: dict[str, Any] = {}
    if args.reuse_rss and args.json is not None and args.json.exists():
        memory = json.loads(args.json.read_text()).get("peak_rss", {})  # measured before, kept
    elif args.rss_sizes:
        memory = peak_rss(args.root, cache_dir, args.rss_sizes, args.rss_steps, args.workers)
    rates, share = speed["images_per_s"], speed["decode_share"]
    print(f"{'path':<20}{'images/s':>10}{'x baseline':>12}")
    for name in ("baseline", "stream", "cache", "cache_with_cpu_crop"):
        print(f"{name:<20}{rates[name]:>10.1f}{rates[name] / rates['baseline']:>12.2f}")
    print(f"JPEG decoder of the streaming path: {share['decoder']}; {share['full_decode_and_square']}")
    print(
        f"decode share: stream {share['stream']:.0%} ({share['stream_ms_per_image']:.1f} ms/image), "
        f"baseline {share['baseline']:.0%} ({share['baseline_ms_per_image']:.1f} ms/image)"
    )
    for n in args.rss_sizes:
        rss = memory[str(n)]
        main_mb, worker_mb = rss["main_peak_rss_mb"], rss["worker_peak_rss_mb"]
        print(f"{n:>6} JPEGs: peak RSS main {main_mb:.0f} MB, largest worker {worker_mb:.0f} MB")
    if memory:
        print(f"peak RSS difference (main): {memory['main_difference_mb']:.0f} MB")
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "views": VIEWS,
        "crop": CROP,
        "throughput": speed,
        "peak_rss": memory,
        "cache_shared_by_two_processes": shared_pages(cache_dir),
        "rss_steps": args.rss_steps,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

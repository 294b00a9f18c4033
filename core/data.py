"""Face data sets for training: any folder of photos -> FFHQ-aligned crops in a few compact shards.

`python -m core.data prepare SRC DST --size 128 [--holdout DIR_OR_LIST]` detects and aligns every photo (the
FFHQ procedure of `core.faces`), drops what fails with a count of why, removes exact duplicates (same decoded
pixels), and writes `DST/{split}-NNNNN.npz` shards plus `DST/summary.json`. A shard holds its crops as JPEG
bytes (quality 95: ~4x smaller than raw pixels, which is what lets a whole training shard travel with each
GPU call) and decodes in about a second. The held-out split is aligned the same way into `heldout-*` shards,
and any training photo with the same pixels as a held-out one is dropped, so it is never trained on.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic"}


def list_photos(folder: str | Path) -> list[Path]:
    """Image files under `folder` (recursively), in a stable order."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _align_one(job: tuple[str, int, int]) -> tuple[str, str, str, bytes]:
    """Worker: path -> (path, status, pixel digest, JPEG of the aligned crop); status 'ok' or a failure reason."""
    from core.faces import ImageError, NoFaceFound, align_face, load_image

    path, size, quality = job
    try:
        image = load_image(path)
        digest = hashlib.sha1(f"{image.size}".encode() + image.tobytes()).hexdigest()
        aligned = align_face(image, size=size).image
    except ImageError:
        return path, "unreadable", "", b""
    except NoFaceFound:
        return path, "no_face", digest, b""
    buffer = io.BytesIO()
    aligned.save(buffer, format="JPEG", quality=quality)
    return path, "ok", digest, buffer.getvalue()


class ShardWriter:
    """Collects JPEG crops and writes `{split}-NNNNN.npz` every `shard_size` images."""

    def __init__(self, dst: Path, split: str, size: int, shard_size: int):
        self.dst, self.split, self.size, self.shard_size = dst, split, size, shard_size
        self.names: list[str] = []
        self.jpegs: list[bytes] = []
        self.shards: list[dict] = []

    def add(self, name: str, jpeg: bytes) -> None:
        self.names.append(name)
        self.jpegs.append(jpeg)
        if len(self.names) == self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.names:
            return
        path = self.dst / f"{self.split}-{len(self.shards):05d}.npz"
        offsets = np.cumsum([0] + [len(j) for j in self.jpegs], dtype=np.int64)
        np.savez(path, jpeg=np.frombuffer(b"".join(self.jpegs), np.uint8), offsets=offsets,
                 names=np.array(self.names), size=np.int64(self.size))
        self.shards.append({"file": path.name, "images": len(self.names), "bytes": path.stat().st_size})
        self.names, self.jpegs = [], []


def prepare(src: str | Path, dst: str | Path, *, size: int = 128, holdout: str | Path | None = None,
            shard_size: int = 4000, quality: int = 95, workers: int = 2) -> dict:
    """Align every photo of `src` (and of the held-out set) into shards under `dst`; returns the summary.

    `holdout` is a folder of photos (aligned into the `heldout` split) or a text file of file names inside `src`
    (moved from `train` to `heldout`).
    """
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    train = list_photos(src)
    held: list[Path] = []
    held_root = src
    if holdout is not None and Path(holdout).is_dir():
        held, held_root = list_photos(holdout), Path(holdout)
    elif holdout is not None:
        names = {line.strip() for line in Path(holdout).read_text().splitlines() if line.strip()}
        held = [p for p in train if p.name in names or str(p.relative_to(src)) in names]
        train = [p for p in train if p not in set(held)]
    start = time.time()
    summary: dict = {"source": str(src), "holdout": str(holdout) if holdout else None, "size": size,
                     "quality": quality, "splits": {}}
    seen: set[str] = set()
    held_digests: set[str] = set()
    with Pool(workers) as pool:
        for split, paths, root in (("heldout", held, held_root), ("train", train, src)):
            if not paths:
                continue
            writer, reasons = ShardWriter(dst, split, size, shard_size), Counter()
            jobs = [(str(p), size, quality) for p in paths]
            for path, status, digest, jpeg in tqdm(pool.imap(_align_one, jobs, chunksize=8), total=len(jobs),
                                                   desc=f"align {split}", unit="img"):
                if status == "ok" and digest in held_digests:
                    status = "held_out"
                elif status == "ok" and digest in seen:
                    status = "duplicate"
                reasons[status] += 1
                if status == "ok":
                    seen.add(digest)
                    writer.add(str(Path(path).relative_to(root)), jpeg)
            writer.flush()
            if split == "heldout":
                held_digests = set(seen)
            summary["splits"][split] = {"photos": len(paths), "kept": reasons.pop("ok", 0),
                                        "dropped": dict(sorted(reasons.items())), "shards": writer.shards}
    summary["seconds"] = round(time.time() - start, 1)
    (dst / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def decode_shard(path: str | Path, threads: int = 8) -> tuple[np.ndarray, list[str]]:
    """A shard's crops as a uint8 array [N, H, W, 3] and their source names."""
    with np.load(path, allow_pickle=False) as shard:
        blob, offsets, names = shard["jpeg"].tobytes(), shard["offsets"], [str(n) for n in shard["names"]]
    size = int(np.load(path, allow_pickle=False)["size"])
    pixels = np.empty((len(names), size, size, 3), np.uint8)

    def decode(i: int) -> None:
        pixels[i] = np.asarray(Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]])).convert("RGB"))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(decode, range(len(names))))
    return pixels, names


def recompress(src: str | Path, dst: str | Path, *, split: str = "train", shard_size: int = 3300, quality: int = 90,
               limit: int | None = None) -> list[Path]:
    """Re-store a prepared split's crops as WebP (~4 KB a 128 px face at quality 90, against ~7 KB as JPEG q95) in
    shards of `shard_size`: ~2x the faces in what one GPU call may carry. The first `limit` crops only, if given."""
    parts = [decode_shard(path) for path in shard_paths(src, split)]
    crops, names = [crop for pixels, _ in parts for crop in pixels], [name for _, part in parts for name in part]
    Path(dst).mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(Path(dst), split, crops[0].shape[0], shard_size)
    for crop, name in list(zip(crops, names, strict=True))[:limit]:
        buffer = io.BytesIO()
        Image.fromarray(crop).save(buffer, format="WEBP", quality=quality, method=6)
        writer.add(name, buffer.getvalue())
    writer.flush()
    return shard_paths(dst, split)


def shard_paths(data: str | Path, split: str = "train") -> list[Path]:
    """The shards of one split in a prepared folder (or the single shard file given)."""
    data = Path(data)
    return [data] if data.is_file() else sorted(data.glob(f"{split}-*.npz"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m core data", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare", help="align a folder of photos into training shards")
    p.add_argument("src", help="folder of photos (searched recursively)")
    p.add_argument("dst", help="output folder for the shards and summary.json")
    p.add_argument("--size", type=int, default=128, help="side of the aligned crops in pixels")
    p.add_argument("--holdout", help="folder of held-out photos, or a text file of file names in SRC to hold out")
    p.add_argument("--shard-size", type=int, default=4000, help="images per shard (~7 KB each at 128 px)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality of the stored crops")
    p.add_argument("--workers", type=int, default=2, help="alignment processes")
    r = commands.add_parser("recompress", help="re-store prepared shards as WebP (more faces per GPU call)")
    r.add_argument("src", help="a prepared folder")
    r.add_argument("dst", help="output folder")
    r.add_argument("--split", default="train", help="train or heldout")
    r.add_argument("--shard-size", type=int, default=3300, help="faces per shard (~4 KB each at 128 px, quality 90)")
    r.add_argument("--quality", type=int, default=90, help="WebP quality")
    r.add_argument("--limit", type=int, help="only the first this many faces")
    args = parser.parse_args(argv)
    if args.command == "recompress":
        for path in recompress(args.src, args.dst, split=args.split, shard_size=args.shard_size,
                               quality=args.quality, limit=args.limit):
            print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB")
        return
    summary = prepare(args.src, args.dst, size=args.size, holdout=args.holdout, shard_size=args.shard_size,
                      quality=args.quality, workers=args.workers)
    for split, info in summary["splits"].items():
        print(f"{split}: {info['kept']} of {info['photos']} kept, dropped {info['dropped']}, "
              f"{len(info['shards'])} shard(s), {sum(s['bytes'] for s in info['shards']) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()

"""Named checkpoints, `from_pretrained` style: embedded ones ship in the repo, official ones download on demand.

`resolve(name)` returns a local file: an embedded entry's path inside the repo, or an official entry's file in
the cache (`$STYLEGAN_PLAYGROUND_CACHE`, default `~/.cache/stylegan-playground`), downloaded once with a
progress bar and checked against its sha256. Offline mode (`STYLEGAN_PLAYGROUND_OFFLINE=1` or
`HF_HUB_OFFLINE=1`) never touches the network and says what to download by hand and where to put it.

Where the official publisher gives no checksum the entry's `sha256` is None: the first download's hash is
pinned in the cache's `hashes.json` (trust on first use) and every later copy must match it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from core.checkpoints import CheckpointError, load_generator_checkpoint
from core.nets.stylegan2 import Generator

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # "generator", "e4e", "psp", "style_transformer", "dualstylegan", "directions", ...
    description: str
    path: str | None = None  # embedded: path relative to the repo root
    url: str | None = None  # official: where the publisher hosts it
    filename: str | None = None  # official: file name in the cache
    sha256: str | None = None
    licence: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        return self.path is not None


REGISTRY: dict[str, Entry] = {}


def register(entry: Entry) -> Entry:
    REGISTRY[entry.name] = entry
    return entry


EMBEDDED_FACE_MODEL = "models/face128/G_ema.safetensors"
for _name in ("default", "face128"):
    register(
        Entry(
            name=_name,
            kind="generator",
            path=EMBEDDED_FACE_MODEL,
            description="The project's own 128 px face StyleGAN2 trained on CelebA (see models/face128/MODEL_CARD.md)",
            licence="non-commercial research only (CelebA)",
        )
    )
register(
    Entry(
        name="ffhq-1024-rosinality",
        kind="generator",
        description="Official StyleGAN2 config-f FFHQ 1024 px, converted by rosinality (decoder of e4e/pSp/PTI demos)",
        url="https://drive.google.com/uc?export=download&id=1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT",
        filename="stylegan2-ffhq-config-f.pt",
        licence="Nvidia Source Code License-NC",
    )
)
register(
    Entry(
        name="ffhq-1024-nvidia",
        kind="generator",
        description="Official StyleGAN2 FFHQ 1024 px as a stylegan2-ada-pytorch pickle (the one PTI uses)",
        url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl",
        filename="ffhq.pkl",
        licence="Nvidia Source Code License-NC",
    )
)


def cache_dir() -> Path:
    return Path(os.environ.get("STYLEGAN_PLAYGROUND_CACHE", Path.home() / ".cache" / "stylegan-playground"))


def offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("STYLEGAN_PLAYGROUND_OFFLINE", "HF_HUB_OFFLINE")
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pinned_hashes() -> dict[str, str]:
    file = cache_dir() / "hashes.json"
    return json.loads(file.read_text()) if file.is_file() else {}


def _pin_hash(filename: str, digest: str) -> None:
    file = cache_dir() / "hashes.json"
    file.write_text(json.dumps({**_pinned_hashes(), filename: digest}, indent=1))


def _expected_hash(entry: Entry) -> str | None:
    return entry.sha256 or _pinned_hashes().get(entry.filename or "")


def download(entry: Entry) -> Path:
    """Fetch an official file into the cache (atomic rename after the hash check)."""
    target = cache_dir() / entry.filename
    if offline():
        raise FileNotFoundError(
            f"{entry.name!r} is not in the cache and offline mode is on. Download {entry.url} by hand and "
            f"save it as {target} (or pass the file's path instead of the name)."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as tmp:
        part = Path(tmp.name)
        try:
            with urllib.request.urlopen(entry.url, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {entry.filename}") as bar:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        tmp.write(block)
                        bar.update(len(block))
        except Exception:
            part.unlink(missing_ok=True)
            raise
    digest, expected = sha256_of(part), _expected_hash(entry)
    if expected and digest != expected:
        part.unlink()
        raise CheckpointError(f"{entry.url}: sha256 {digest} does not match the expected {expected}; not used")
    if not expected:
        _pin_hash(entry.filename, digest)
    shutil.move(part, target)
    return target


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A registry name or a file path -> a verified local file."""
    name = str(name_or_path)
    if name in REGISTRY:
        entry = REGISTRY[name]
        if entry.embedded:
            path = REPO_ROOT / entry.path
            if not path.is_file():
                raise FileNotFoundError(f"embedded model {name!r} is missing from the repo: {path}")
            return path
        cached = cache_dir() / entry.filename
        if cached.is_file():
            expected = _expected_hash(entry)
            if expected and sha256_of(cached) != expected:
                raise CheckpointError(f"{cached}: sha256 differs from the expected {expected}; delete it to re-fetch")
            return cached
        return download(entry)
    path = Path(name).expanduser()
    if path.is_file():
        return path
    raise FileNotFoundError(f"{name!r} is neither a file nor a registry name; known names: {', '.join(REGISTRY)}")


def load_generator(name_or_path: str | os.PathLike = "default", device: str | torch.device = "cpu") -> Generator:
    """The generator a name (see `REGISTRY`) or a checkpoint file stands for, in eval mode on `device`."""
    name = str(name_or_path)
    if name in REGISTRY and REGISTRY[name].kind != "generator":
        raise ValueError(f"{name!r} is a {REGISTRY[name].kind} checkpoint, not a generator")
    return load_generator_checkpoint(resolve(name)).to(device).eval()


def available(kind: str | None = None) -> list[Entry]:
    """Registry entries (of one kind), embedded first."""
    return sorted((e for e in REGISTRY.values() if kind in (None, e.kind)), key=lambda e: (not e.embedded, e.name))

"""Named checkpoints, `from_pretrained` style: embedded ones ship in the repo, official ones download on demand,
third-party weights the measures use (FaceNet, the LPIPS trunks) are read from the pip packages that ship them.

`resolve(name)` returns a local file: an embedded entry's path inside the repo, an installed entry's file inside its
pip package (located, never imported), or an official entry's file in
the cache (`$STYLEGAN_PLAYGROUND_CACHE`, default `~/.cache/stylegan-playground`), downloaded once with a
progress bar and checked against its sha256. Offline mode (`STYLEGAN_PLAYGROUND_OFFLINE=1` or
`HF_HUB_OFFLINE=1`) never touches the network and says what to download by hand and where to put it.

Where the official publisher gives no checksum the entry's `sha256` is None: the first download's hash is
pinned in the cache's `hashes.json` (trust on first use) and every later copy must match it.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from core.artifacts import KINDS, CheckpointError, check_made_for, sha256_of
from core.checkpoints import load_generator_checkpoint
from core.encoders_io import load_encoder_checkpoint, read_encoder_file
from core.nets.encoders import EncoderModel
from core.nets.stylegan2 import Generator

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTALLED_MODELS = "stylegan_playground_models"  # `pip install .` ships the repo's models/ as this package's data


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # "generator", "e4e", "psp", "style_transformer", "dualstylegan", "directions", ...
    description: str
    path: str | None = None  # embedded: path relative to the repo root
    url: str | None = None  # official: where the publisher hosts it
    filename: str | None = None  # official: file name in the cache
    installed: str | None = None  # a file of an installed pip package: "import_name/path/inside" (`extra["pip"]`)
    sha256: str | None = None  # installed: `extra["variants"]` names other accepted copies (e.g. a float16 one)
    licence: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        return self.path is not None

    @property
    def local(self) -> bool:
        """Never downloaded: shipped in the repo or in an installed package."""
        return self.embedded or self.installed is not None


REGISTRY_FILE = Path(__file__).with_name("registry.json")  # the entries, as data
REGISTRY: dict[str, Entry] = {}


def register(entry: Entry) -> Entry:
    REGISTRY[entry.name] = entry
    return entry


def read_registry(path: Path = REGISTRY_FILE) -> dict[str, Entry]:
    """The entries of the registry file (JSON: a list of Entry fields), by name."""
    rows = json.loads(path.read_text())["entries"]
    return {row["name"]: Entry(**row) for row in rows}


REGISTRY.update(read_registry())


def cache_dir() -> Path:
    return Path(os.environ.get("STYLEGAN_PLAYGROUND_CACHE", Path.home() / ".cache" / "stylegan-playground"))


def offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("STYLEGAN_PLAYGROUND_OFFLINE", "HF_HUB_OFFLINE")
    )


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
    if entry.url is None:
        raise FileNotFoundError(f"{entry.name!r} has no public download address: save the file as {target} (or "
                                "pass the file's path instead of the name)")
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


def embedded_path(name: str, relative: str) -> Path:
    """An embedded model's file: in the source tree, or where `pip install .` put the repo's models/."""
    path = REPO_ROOT / relative
    if not path.is_file() and relative.startswith("models/"):
        spec = importlib.util.find_spec(INSTALLED_MODELS)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            if (Path(folder) / relative.removeprefix("models/")).is_file():
                return Path(folder) / relative.removeprefix("models/")
    if not path.is_file():
        raise FileNotFoundError(f"embedded model {name!r} is missing from the repo: {path}")
    return path


@functools.cache
def _installed_digest(path: Path, size: int, mtime: float) -> str:
    return sha256_of(path)


def installed_path(entry: Entry) -> Path:
    """An installed entry's file inside its pip package, checked against the entry's sha256 (or a variant's)."""
    package, _, inside = entry.installed.partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{entry.name!r} ({entry.description}) comes from `{entry.extra.get('pip')}`")
    path = Path(next(iter(spec.submodule_search_locations))) / inside
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall with `{entry.extra.get('pip')}`")
    stat = path.stat()
    digest = _installed_digest(path, stat.st_size, stat.st_mtime)
    if digest not in (entry.sha256, *entry.extra.get("variants", {}).values()):
        raise CheckpointError(f"{path}: sha256 {digest} is not {entry.name!r}'s ({entry.sha256}); not used. "
                              f"Reinstall with `{entry.extra.get('pip')}`")
    return path


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A registry name or a file path -> a verified local file."""
    name = str(name_or_path)
    if name in REGISTRY:
        entry = REGISTRY[name]
        if entry.embedded:
            return embedded_path(name, entry.path)
        if entry.installed:
            return installed_path(entry)
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


def resolve_kind(name_or_path: str | os.PathLike, kinds: tuple[str, ...]) -> Path:
    """`resolve`, refusing a registry name of another kind (a path is taken as it is)."""
    name = str(name_or_path)
    if name in REGISTRY and REGISTRY[name].kind not in kinds:
        raise ValueError(f"{name!r} is a {REGISTRY[name].kind} checkpoint, not one of {kinds}")
    return resolve(name)


def load_generator(name_or_path: str | os.PathLike = "default", device: str | torch.device = "cpu") -> Generator:
    """The generator a name (see `REGISTRY`) or a checkpoint file stands for, in eval mode on `device`."""
    return load_generator_checkpoint(resolve_kind(name_or_path, ("generator",))).to(device).eval()


def load_encoder(name_or_path: str | os.PathLike, device: str | torch.device = "cpu", *,
                 generator: str | os.PathLike = "default", decoder: Generator | None = None) -> EncoderModel:
    """A pSp / e4e / Style Transformer (or DualStyleGAN Z+) encoder with its decoder, on `device`: an official
    checkpoint (its decoder inside), or one trained here, decoded by `generator`, the generator it was trained for
    (checked by sha256: a retrained generator needs retrained encoders). `decoder`: that generator already loaded
    (the caller's own, shared instead of loaded a second time)."""
    path = resolve_kind(name_or_path, KINDS["encoder"].registry)
    if path.suffix == ".safetensors":
        encoder, latent_avg, meta = read_encoder_file(path)
        generator_file = resolve_kind(generator, KINDS["generator"].registry)
        check_made_for(path, "encoder", meta, generator_file)
        decoder = decoder if decoder is not None else load_generator_checkpoint(generator_file)
        return EncoderModel(encoder, decoder, latent_avg, meta.get("latent_space", "w+")).to(device).eval()
    entry = REGISTRY.get(str(name_or_path))
    if entry is not None and entry.kind == "dualstylegan_encoder":
        return load_encoder_checkpoint(path, kind="psp", latent_space="z+").to(device)
    return load_encoder_checkpoint(path, kind=entry.kind if entry else None).to(device)


def made_for(kind: str, generator: str | os.PathLike = "default") -> str:
    """The registry name of the `kind` model ('psp', 'e4e', 'style_transformer', 'reference_edit', ...) made for
    `generator` (a registry name)."""
    for entry in available(kind):
        if str(generator) in entry.extra.get("generators", ()):
            return entry.name
    names = ", ".join(e.name for e in available(kind)) or "none"
    raise KeyError(f"no {kind} model is registered for the generator {str(generator)!r} (registered: {names}); "
                   "pass one by name or file")


encoder_for = made_for  # the encoder of an inversion method ('psp', 'e4e', 'style_transformer') for a generator


def available(kind: str | None = None) -> list[Entry]:
    """Registry entries (of one kind), local ones (embedded, installed) first."""
    return sorted((e for e in REGISTRY.values() if kind in (None, e.kind)), key=lambda e: (not e.local, e.name))

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

from core.checkpoints import CheckpointError, load_generator_checkpoint
from core.encoders_io import load_dualstylegan, load_encoder_checkpoint, read_encoder_file
from core.nets.dualstylegan import DualStyleGAN
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
        name="face128-attributes",
        kind="attributes",
        path="models/face128/attributes.safetensors",
        description="CelebA attribute classifier (frozen AlexNet features + 40 logistic heads), 128 px aligned faces",
        licence="non-commercial research only (CelebA labels)",
    )
)
register(
    Entry(
        name="face128-directions",
        kind="directions",
        path="models/face128/directions.safetensors",
        description="InterFaceGAN edit directions in W of the embedded face model (see models/face128/MODEL_CARD.md)",
        licence="non-commercial research only (CelebA)",
        extra={"generators": ("default", "face128"), "n_latent": 12, "style_dim": 512},
    )
)
for _arch, _paper in (("psp", "pSp (Richardson et al. 2021)"), ("e4e", "e4e (Tov et al. 2021)"),
                      ("style_transformer", "Style Transformer (Hu et al. 2022)")):
    register(
        Entry(
            name=f"face128-{_arch.replace('_', '-')}",
            kind=_arch,
            path=f"models/face128/{_arch.replace('_', '-')}.safetensors",
            description=f"{_paper} encoder for the embedded face model, trained here (models/face128/ENCODERS.md)",
            licence="non-commercial research only (CelebA)",
            extra={"generators": ("default", "face128")},
        )
    )
register(
    Entry(
        name="face128-reference-edit",
        kind="reference_edit",
        path="models/face128/reference-edit.safetensors",
        description="Style Transformer reference-based editing for the embedded face model: latent attribute "
        "classifier + edit transformer, trained here (models/face128/REFERENCE_EDIT.md)",
        licence="non-commercial research only (CelebA)",
        extra={"generators": ("default", "face128"), "encoder": "face128-style-transformer"},
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


GDRIVE = "https://drive.google.com/uc?export=download&id="
DUALSTYLEGAN = "https://huggingface.co/public-data/DualStyleGAN/resolve/main/models/"  # what its api.py fetches
register(
    Entry(
        name="e4e-ffhq",
        kind="e4e",
        description="e4e encoder for the FFHQ 1024 generator (omertov/encoder4editing)",
        url=GDRIVE + "1cUv_reLE6k3604or78EranS7XzuVMWeO",
        filename="e4e_ffhq_encode.pt",
        licence="MIT (code repo)",
    )
)
register(
    Entry(
        name="psp-ffhq",
        kind="psp",
        description="pSp encoder for the FFHQ 1024 generator (eladrich/pixel2style2pixel)",
        url=GDRIVE + "1bMTNWkh5LArlaWSc_wa8VKyq2V42T2z0",
        filename="psp_ffhq_encode.pt",
        licence="MIT (code repo)",
    )
)
register(
    Entry(
        name="style-transformer-ffhq",
        kind="style_transformer",
        description="Style Transformer encoder for the FFHQ 1024 generator (sapphire497/style-transformer)",
        url=GDRIVE + "1XJWP712o-wWZrfzXJ07vc3dHjJF8CanT",
        filename="style_transformer_ffhq.pt",
        licence="see its repo",
    )
)
register(
    Entry(
        name="dualstylegan-encoder",
        kind="dualstylegan_encoder",
        description="DualStyleGAN's Z+ pSp encoder (williamyang1991/DualStyleGAN)",
        url=DUALSTYLEGAN + "encoder.pt",
        filename="dualstylegan_encoder.pt",
        licence="S-Lab License 1.0 (non-commercial)",
    )
)
for _style in ("cartoon", "caricature", "anime", "arcane", "comic", "pixar", "slamdunk"):
    register(
        Entry(
            name=f"dualstylegan-{_style}",
            kind="dualstylegan",
            description=f"DualStyleGAN generator, {_style} style",
            url=DUALSTYLEGAN + f"{_style}/generator.pt",
            filename=f"dualstylegan_{_style}.pt",
            licence="S-Lab License 1.0 (non-commercial)",
        )
    )
    register(
        Entry(
            name=f"dualstylegan-{_style}-styles",
            kind="exstyle_codes",
            description=f"DualStyleGAN extrinsic style codes (style name -> Z+), {_style}",
            url=DUALSTYLEGAN + f"{_style}/exstyle_code.npy",
            filename=f"dualstylegan_{_style}_exstyle_code.npy",
            licence="S-Lab License 1.0 (non-commercial)",
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


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A registry name or a file path -> a verified local file."""
    name = str(name_or_path)
    if name in REGISTRY:
        entry = REGISTRY[name]
        if entry.embedded:
            return embedded_path(name, entry.path)
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
    path = resolve_kind(name_or_path, ("e4e", "psp", "style_transformer", "dualstylegan_encoder"))
    if path.suffix == ".safetensors":
        encoder, latent_avg, meta = read_encoder_file(path)
        generator_file = resolve_kind(generator, ("generator",))
        if sha256_of(generator_file) != meta["generator_sha256"]:
            raise CheckpointError(
                f"{path} was trained for the generator with sha256 {meta['generator_sha256'][:12]}…, not "
                f"{generator_file} ({sha256_of(generator_file)[:12]}…): retrain the encoder for this generator "
                "(`python -m core.train encoder`, see models/face128/ENCODERS.md)")
        decoder = decoder if decoder is not None else load_generator_checkpoint(generator_file)
        return EncoderModel(encoder, decoder, latent_avg).to(device).eval()
    entry = REGISTRY.get(str(name_or_path))
    if entry is not None and entry.kind == "dualstylegan_encoder":
        return load_encoder_checkpoint(path, kind="psp", latent_space="z+").to(device)
    return load_encoder_checkpoint(path, kind=entry.kind if entry else None).to(device)


def load_style_transfer(name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> DualStyleGAN:
    """An official DualStyleGAN generator; its style codes load with `load_exstyle_codes(resolve(name))`."""
    return load_dualstylegan(resolve_kind(name_or_path, ("dualstylegan",))).to(device)


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
    """Registry entries (of one kind), embedded first."""
    return sorted((e for e in REGISTRY.values() if kind in (None, e.kind)), key=lambda e: (not e.embedded, e.name))

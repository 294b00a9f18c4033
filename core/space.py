"""A Hugging Face Space snapshot of the project: `python -m core space export DIR`.

The Hub refuses a push with a file over 10 MiB (or a binary file of any size) that Git LFS does not store, and the
repo's history holds older weights too, so a Space is deployed from a snapshot rather than from this repo: the app
(`demos/`), the library (`core/`: its python files and its registry), the shipped weights of the default model's
family (the registry's embedded entries made for it, with the Markdown cards beside them), `requirements.txt`,
`pre-requirements.txt`, `LICENSE` and `README.md` (whose front matter configures the Space), and a
`.gitattributes` that tracks every file over 10 MiB and every binary file with LFS. No git history.

The snapshot folder is ready for `git add . && git push` to a Space repo (with git-lfs installed) or for
`huggingface_hub.HfApi().upload_folder(folder_path=DIR, repo_id=..., repo_type="space")`; README.md, "Deploy as a
Hugging Face Space".
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from core import registry

REPO_ROOT = registry.REPO_ROOT
LFS_THRESHOLD = 10 * 1024 * 1024  # the Hub's limit for a file outside LFS
CODE_FOLDERS = ("core", "demos")
TOP_FILES = ("README.md", "requirements.txt", "pre-requirements.txt", "LICENSE")  # those present are copied
LFS_LINE = "{pattern} filter=lfs diff=lfs merge=lfs -text"


@dataclass
class Snapshot:
    folder: Path
    files: list[str]  # relative paths (posix), sorted; .gitattributes included
    lfs_patterns: list[str]

    def size(self, relative: str) -> int:
        return (self.folder / relative).stat().st_size

    @property
    def total_size(self) -> int:
        return sum(self.size(f) for f in self.files)

    @property
    def lfs_files(self) -> list[str]:
        return [f for f in self.files if needs_lfs(self.folder / f)]


def family(model: str = "default") -> list[registry.Entry]:
    """The embedded registry entries a Space on `model` (an embedded generator's name) uses: the generator under
    each of its names, the models made for it (encoders, directions, styles, the reference editor), and the
    embedded models made for no generator in particular (the attribute classifier)."""
    entry = registry.REGISTRY.get(model)
    if entry is None or not entry.embedded or entry.kind != "generator":
        raise ValueError(f"{model!r} is not an embedded generator of the registry")
    embedded = [e for e in registry.REGISTRY.values() if e.embedded]
    names = {e.name for e in embedded if e.kind == "generator" and e.path == entry.path}
    return [e for e in embedded if e.name in names
            or (e.kind != "generator" and set(e.extra.get("generators", names)) & names)]


def model_files(model: str = "default", root: Path = REPO_ROOT) -> list[str]:
    """The family's weight files and the Markdown cards in their folders (provenance, licences), relative to
    `root`."""
    weights = {e.path for e in family(model)}
    missing = [w for w in sorted(weights) if not (root / w).is_file()]
    if missing:
        raise FileNotFoundError(f"shipped weights missing from {root}: {', '.join(missing)}")
    folders = {str(Path(w).parent) for w in weights}
    cards = {str(p.relative_to(root)) for f in folders for p in (root / f).glob("*.md")}
    return sorted(weights | cards)


def code_files(root: Path = REPO_ROOT) -> list[str]:
    """The python files of core/ and demos/, and core's registry (its package data)."""
    files = {str(registry.REGISTRY_FILE.relative_to(REPO_ROOT))}
    for folder in CODE_FOLDERS:
        files |= {str(p.relative_to(root)) for p in (root / folder).rglob("*.py") if "__pycache__" not in p.parts}
    return sorted(files)


def snapshot_files(model: str = "default", root: Path = REPO_ROOT) -> list[str]:
    """Every file the snapshot copies, relative to `root` (.gitattributes, which it writes, aside)."""
    top = [name for name in TOP_FILES if (root / name).is_file()]
    return sorted(set(top) | set(code_files(root)) | set(model_files(model, root)))


def is_binary(path: Path) -> bool:
    """Git's own test: a NUL byte in the first 8000 bytes."""
    with open(path, "rb") as f:
        return b"\0" in f.read(8000)


def needs_lfs(path: Path) -> bool:
    return path.stat().st_size > LFS_THRESHOLD or is_binary(path)


def lfs_patterns(folder: Path, files: list[str]) -> list[str]:
    """.gitattributes patterns covering every file of `folder` that needs LFS: binary files by extension
    (`*.safetensors`), large text files by exact path."""
    patterns = set()
    for relative in files:
        path = folder / relative
        if not needs_lfs(path):
            continue
        if any(c.isspace() for c in relative):
            raise ValueError(f"{relative!r}: a .gitattributes pattern cannot name a path with spaces")
        patterns.add(f"*{path.suffix}" if path.suffix and is_binary(path) else relative)
    return sorted(patterns)


def export(destination: str | Path, model: str = "default", root: Path = REPO_ROOT, replace: bool = False) -> Snapshot:
    """Write the snapshot into `destination` (absent or empty; with `replace`, everything in it but `.git` is
    deleted first, so that a clone of the Space repo can be refreshed in place)."""
    destination = Path(destination)
    files = snapshot_files(model, root)
    if destination.resolve() == root.resolve() or root.resolve() in destination.resolve().parents:
        raise ValueError(f"{destination}: write the snapshot outside the repo")
    if destination.exists():
        if not destination.is_dir():
            raise FileExistsError(f"{destination} exists and is not a folder")
        others = [p for p in destination.iterdir() if p.name != ".git"]
        if others and not replace:
            raise FileExistsError(f"{destination} is not empty (replace its content, .git aside, with --replace)")
        for path in others:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    for relative in files:
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative, target)
    patterns = lfs_patterns(destination, files)
    (destination / ".gitattributes").write_text(
        "# Git LFS: every file over 10 MiB and every binary file (the Hub refuses them otherwise)\n"
        + "".join(LFS_LINE.format(pattern=p) + "\n" for p in patterns))
    return Snapshot(destination, sorted([*files, ".gitattributes"]), patterns)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def add_space_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "space", help="deploy as a Hugging Face Space: `space export DIR` writes the snapshot a Space needs",
        description=__doc__.split("\n\n")[1].replace("\n", " "))
    actions = parser.add_subparsers(dest="action", required=True)
    export_parser = actions.add_parser(
        "export", help="write the Space snapshot into DIR",
        description="Write the app, core, the default model's shipped weights, the requirements, README.md and a "
        ".gitattributes (LFS for files over 10 MiB and binary files) into DIR; no git history. Then push DIR to "
        "the Space with git (git-lfs installed) or upload it with huggingface_hub's upload_folder (README.md, "
        "\"Deploy as a Hugging Face Space\").",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    export_parser.add_argument("dir", type=Path, help="the snapshot folder (absent or empty)")
    export_parser.add_argument("--replace", action="store_true", help="DIR may hold files already (a clone of "
                               "the Space repo): delete everything in it but .git first")
    export_parser.add_argument("--model", default="default", help="the embedded generator whose family of "
                               "weights ships")
    export_parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    try:
        snapshot = export(args.dir, args.model, replace=args.replace)
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"cannot export the Space: {err}", file=sys.stderr)
        return 2
    lfs = snapshot.lfs_files
    print(f"{len(snapshot.files)} files, {_megabytes(snapshot.total_size)}, written to {snapshot.folder}")
    print(f"{len(lfs)} stored with Git LFS ({', '.join(snapshot.lfs_patterns)} in .gitattributes):")
    for relative in lfs:
        print(f"  {relative}  {_megabytes(snapshot.size(relative))}")
    return 0

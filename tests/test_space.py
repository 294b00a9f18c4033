"""The Hugging Face Space snapshot (`python -m core space export DIR`), checked offline: its files, the LFS patterns
the Hub needs, the README front matter, and the app imported and served from the snapshot folder."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import urllib.request
from fnmatch import fnmatch
from pathlib import Path

import app_server
import numpy as np
import pytest
import yaml
from app_server import face_photo, running_app
from PIL import Image

from core import space
from core.__main__ import main as cli

REPO = Path(__file__).resolve().parents[1]
HUB_LIMIT = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, str]:
    """The snapshot folder and what the command printed."""
    folder = tmp_path_factory.mktemp("space") / "snapshot"
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert cli(["space", "export", str(folder)]) == 0
    return folder, out.getvalue()


@pytest.fixture(scope="module")
def snapshot(exported) -> Path:
    return exported[0]


def files_of(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def lfs_patterns(folder: Path) -> list[str]:
    lines = (folder / ".gitattributes").read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.startswith("#") and "filter=lfs" in line]


def tracked_by_lfs(relative: str, patterns: list[str]) -> bool:
    """gitattributes matching: a pattern with a slash matches the path, one without matches the file name."""
    return any(fnmatch(relative, p) if "/" in p else fnmatch(Path(relative).name, p) for p in patterns)


def test_export_prints_what_it_wrote(exported):
    folder, out = exported
    assert out.startswith(f"{len(files_of(folder))} files, ") and f"written to {folder}" in out
    assert "*.safetensors in .gitattributes" in out and "  models/face128-v2/G_ema.safetensors  17.4 MB" in out


def test_snapshot_holds_the_app_core_weights_and_readme_and_nothing_else(snapshot):
    files = files_of(snapshot)
    assert {"demos/app.py", "demos/tabs/invert.py", "core/__init__.py", "core/registry.json", "core/space.py",
            "README.md", "requirements.txt", "pre-requirements.txt", "LICENSE", ".gitattributes"} <= files
    tracked = set(subprocess.run(["git", "ls-files", "core", "demos"], cwd=REPO, capture_output=True, text=True,
                                 check=True).stdout.split())
    assert {f for f in tracked if f.endswith(".py") or f.endswith(".json")} <= files
    weights = {entry.path for entry in space.family("default")}
    assert "models/face128-v2/G_ema.safetensors" in weights and "models/face128-v2/e4e.safetensors" in weights
    assert weights <= files and "models/face128-v2/MODEL_CARD.md" in files
    top_level = {f.split("/")[0] for f in files}
    assert top_level == {"core", "demos", "models", "README.md", "requirements.txt", "pre-requirements.txt",
                         "LICENSE", ".gitattributes"}
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
    assert not {"models/face128/G_ema.safetensors", "models/face128/e4e.safetensors"} & files  # v1's family stays home
    assert not (snapshot / ".git").exists()


def test_every_large_or_binary_file_is_stored_with_lfs(snapshot, tmp_path):
    patterns = lfs_patterns(snapshot)
    large = [f for f in files_of(snapshot) if (snapshot / f).stat().st_size > HUB_LIMIT]
    assert len(large) >= 11, large  # G_ema, pSp, e4e, Style Transformer, Z+ encoder, stage II, editor, 4 styles
    binary = [f for f in files_of(snapshot) if b"\0" in (snapshot / f).read_bytes()[:8000]]
    outside = [f for f in large + binary if not tracked_by_lfs(f, patterns)]
    assert not outside, f"the Hub would refuse these outside LFS: {outside}"
    assert not any(tracked_by_lfs(f, patterns) for f in ("demos/app.py", "README.md", "core/registry.json"))
    # git's own reading of .gitattributes (no git-lfs needed; an empty repo beside the snapshot) agrees
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    env = {**os.environ, "GIT_DIR": str(tmp_path / "repo" / ".git"), "GIT_WORK_TREE": str(snapshot)}
    attributes = subprocess.run(["git", "-c", f"core.attributesFile={os.devnull}", "check-attr", "--stdin", "filter"],
                                cwd=snapshot, input="\n".join(sorted(files_of(snapshot))), capture_output=True,
                                text=True, check=True, env=env)
    in_lfs = {line.split(": ")[0] for line in attributes.stdout.splitlines() if line.endswith(": filter: lfs")}
    assert in_lfs == {f for f in files_of(snapshot) if tracked_by_lfs(f, patterns)} >= set(large + binary)


def test_readme_front_matter_configures_a_gradio_space(snapshot):
    text = (snapshot / "README.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["sdk"] == "gradio" and front["app_file"] == "demos/app.py"
    assert (snapshot / front["app_file"]).is_file()
    requirements = (snapshot / "requirements.txt").read_text()
    assert f"gradio=={front['sdk_version']}" in requirements


def test_export_refuses_a_full_folder_and_replaces_all_but_git(snapshot, tmp_path, capsys):
    clone = tmp_path / "clone"
    (clone / ".git").mkdir(parents=True)
    (clone / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (clone / "old.py").write_text("stale\n")
    assert cli(["space", "export", str(clone)]) == 2 and "--replace" in capsys.readouterr().err
    assert cli(["space", "export", str(clone), "--replace"]) == 0
    assert not (clone / "old.py").exists() and (clone / ".git" / "HEAD").is_file()
    assert files_of(clone) - {".git/HEAD"} == files_of(snapshot)
    with pytest.raises(ValueError, match="outside the repo"):
        space.export(REPO / "out" / "space")


def test_app_imports_from_the_snapshot_folder_alone(snapshot):
    """`demos.app` and `core` come from the snapshot, and so does every shipped weight of the default family."""
    script = ("import json, sys; sys.path.insert(0, '.'); import demos.app, core, core.space; "
              "from core import registry; "
              "print(json.dumps([demos.app.__file__, core.__file__, str(registry.REPO_ROOT)] + "
              "[str(registry.resolve(e.name)) for e in core.space.family()]))")
    out = subprocess.run([sys.executable, "-c", script], cwd=snapshot, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    paths = json.loads(out.stdout.splitlines()[-1])
    assert all(Path(p).resolve().is_relative_to(snapshot.resolve()) for p in paths), paths


@pytest.mark.slow
def test_app_started_from_the_snapshot_serves_every_tab_on_the_embedded_model(snapshot, monkeypatch):
    """`python demos/app.py` run in the snapshot folder, as Spaces runs it (tests/app_server.py's smoke start)."""
    from gradio_client import Client, handle_file

    from demos.app import TABS

    monkeypatch.setattr(app_server, "REPO_ROOT", snapshot)
    with running_app("default") as app:
        config = json.load(urllib.request.urlopen(app.url.rstrip("/") + "/config", timeout=30))
        tabs = [c["props"]["label"] for c in config["components"] if c["type"] == "tabitem"]
        assert tabs == [tab.TITLE for tab in TABS]
        client = Client(app.url, verbose=False)
        sample = client.predict(0, 1, 0.7, api_name="/sample")[0]["image"]
        assert np.asarray(Image.open(sample)).shape == (128, 128, 3)  # the embedded 128 px model
        photo = face_photo()
        if photo is not None:  # an instant inversion with the shipped e4e
            _, _, reconstruction, measures = client.predict(handle_file(photo), "e4e", False, 10, 10, "fast",
                                                            api_name="/invert")
            assert dict(measures["data"])["method"] == "e4e" and Image.open(reconstruction).size == (128, 128)


def test_playground_model_variable_is_the_apps_default_model_and_the_flag_wins(monkeypatch, capsys):
    from demos.app import parse_args

    monkeypatch.delenv("PLAYGROUND_MODEL", raising=False)
    assert parse_args([]).model == "default"
    monkeypatch.setenv("PLAYGROUND_MODEL", "ffhq-1024-nvidia")
    assert parse_args([]).model == "ffhq-1024-nvidia"
    assert parse_args(["--model", "face128"]).model == "face128"
    monkeypatch.setenv("PLAYGROUND_MODEL", "")  # set but empty, as a Space variable left blank
    assert parse_args([]).model == "default"
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    assert "$PLAYGROUND_MODEL" in capsys.readouterr().out

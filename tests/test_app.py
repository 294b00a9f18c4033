"""The Gradio app driven through gradio_client, as a remote user would: `python demos/app.py` on localhost."""

from __future__ import annotations

import dataclasses
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from app_server import REPO_ROOT, face_photo, running_app, small_generator
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from official import shared
from PIL import Image

from core import identity, registry
from core.nets.stylegan2 import Generator
from demos.common import progress_callback
from demos.directions import direction_families, family_names
from demos.state import Cancelled, ResultCache, Session


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with running_app(small_generator(tmp_path_factory.mktemp("app") / "G.safetensors")) as running:
        yield running


@pytest.fixture()
def client(app) -> Client:
    """A fresh client is a fresh session, with its own state."""
    return Client(app.url, verbose=False)


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


def assert_image(path: str, size: int = 64) -> np.ndarray:
    image = pixels(path)
    assert image.shape == (size, size, 3)
    assert image.std() > 5, "blank image"
    return image


def test_explore_samples_are_seeded(client):
    samples = client.predict(5, 3, 0.7, api_name="/sample")
    assert [s["caption"] for s in samples] == ["seed 5", "seed 6", "seed 7"]
    images = [assert_image(s["image"]) for s in samples]
    assert np.abs(images[0] - images[1]).mean() > 1, "different seeds gave the same face"
    again = client.predict(5, 1, 0.7, api_name="/sample")
    np.testing.assert_array_equal(pixels(again[0]["image"]), images[0])


def test_explore_style_mixing(client):
    face_a, mix, face_b = (assert_image(path) for path in client.predict(1, 2, 3, 0.7, api_name="/mix"))
    assert np.abs(mix - face_a).mean() > 0.5 and np.abs(mix - face_b).mean() > 0.5


@pytest.fixture(scope="module")
def inverted(app):
    """A session in which a real face photo was inverted with a few PTI steps of the fast preset: (client, outputs
    of /invert)."""
    photo = face_photo()
    if photo is None:
        pytest.skip("needs a face photo in ../shared/data/faces/celeba/eval (../shared beside the repo)")
    client = Client(app.url, verbose=False)
    return client, client.predict(handle_file(photo), "PTI", False, 20, 20, "fast", api_name="/invert")


def test_invert_shows_crop_reconstruction_and_measures(inverted):
    _, (crop, original, reconstruction, measures) = inverted
    assert_image(crop)
    np.testing.assert_array_equal(pixels(original), pixels(crop))
    assert np.abs(assert_image(reconstruction) - pixels(crop)).mean() > 1
    table = dict(measures["data"])
    assert table["method"] == "PTI"
    assert 10 < float(table["PSNR dB ↑"]) < 50 and 0 < float(table["LPIPS ↓"]) < 1
    assert -1 < float(table["MS-SSIM ↑"]) < 1
    verdict, similarity = re.fullmatch(r"(yes|no) \((-?[\d.]+)\)",
                                       table[f"same person (FaceNet > {identity.SAME_PERSON})"]).groups()
    assert -1 <= float(similarity) <= 1 and (verdict == "yes") == (float(similarity) > identity.SAME_PERSON)
    assert float(table["seconds"]) > 0


@pytest.fixture(scope="module")
def default_app():
    """The app on the embedded model, which has encoders."""
    with running_app("default") as running:
        yield running


def test_invert_with_the_encoders_is_instant_and_compare_lists_them(default_app):
    photo = face_photo()
    if photo is None:
        pytest.skip("needs a face photo in ../shared/data/faces/celeba/eval (../shared beside the repo)")
    client = Client(default_app.url, verbose=False)
    for method in ("pSp", "e4e"):
        crop, _, reconstruction, measures = client.predict(handle_file(photo), method, False, 10, 10, "fast",
                                                           api_name="/invert")
        table = dict(measures["data"])
        assert table["method"] == method and float(table["seconds"]) < 3
        assert 0 < float(table["LPIPS ↓"]) < 0.6
        assert np.abs(assert_image(reconstruction, 128) - pixels(crop)).mean() > 1
    _, table, grid = client.predict(handle_file(photo), ["pSp", "e4e"], 10, 10, 2, api_name="/compare")
    assert [row[0] for row in table["data"]] == ["pSp", "e4e"] and len(grid) == 8


def test_reference_edit_tab_gives_the_photo_the_reference_attribute(default_app):
    photos = sorted(face_photo().parent.glob("*.jpg"))[:2] if face_photo() else []
    if len(photos) < 2:
        pytest.skip("needs face photos in ../shared/data/faces/celeba/eval (../shared beside the repo)")
    client = Client(default_app.url, verbose=False)
    crop, reference, gallery, table, pasted = client.predict(handle_file(photos[0]), handle_file(photos[1]),
                                                             "Smiling", api_name="/reference_edit")
    assert pixels(pasted).shape == pixels(photos[0]).shape  # the edited face back in the photo, full size
    assert len(gallery) == 3 and [cell["caption"] for cell in gallery][2] == "edited: Smiling"
    rows = dict(table["data"])
    assert set(rows) >= {"Smiling: photo", "Smiling: reference", "Smiling: edited",
                         "the encoded photo is the photo's person (FaceNet)"}
    for cell in gallery:
        assert_image(cell["image"], 128)


def test_reference_edit_of_hair_colour_shows_in_the_photos_hair(default_app):
    """A hair-colour reference edit put back into the photo changes the photo around the face too (the paste's mask
    takes in what the edit changed, given the encoded face before it), not only inside the face's landmark outline."""
    from core.faces import align_face
    from core.paste import face_mask

    photos = sorted(face_photo().parent.glob("*.jpg")) if face_photo() else []
    if len(photos) < 18:
        pytest.skip("needs face photos in ../shared/data/faces/celeba/eval (../shared beside the repo)")
    photo, reference = photos[3], photos[17]  # a fair-haired woman, a black-haired one (the browser test's pair)
    client = Client(default_app.url, verbose=False)
    *_, pasted = client.predict(handle_file(photo), handle_file(reference), "Black_Hair", api_name="/reference_edit")
    original, result = pixels(photo).astype(float), pixels(pasted).astype(float)
    changed = np.abs(result - original).max(axis=-1) > 0
    inside = face_mask(align_face(photo, size=128), original.shape[1], original.shape[0]) > 0
    assert changed[~inside].sum() > 0.2 * inside.sum(), (changed[~inside].sum(), inside.sum())


def test_video_tab_edits_a_short_clip_and_refuses_a_long_one(default_app, tmp_path):
    from core.video import read_video, write_video

    clip = read_video(shared("data/videos/talking_head_720p.mp4"))
    short = write_video(tmp_path / "short.mp4", [f[::2, ::2] for f in clip.frames[:3]], clip.fps,
                        audio_from=clip.path)
    long = write_video(tmp_path / "long.mp4", [clip.frames[0][::8, ::8]] * 125, clip.fps)  # 5 s
    client = Client(default_app.url, verbose=False)
    video, table = client.predict(handle_file(short), "Smiling", 3, 10, api_name="/edit_video")
    rows = dict(table["data"])
    assert rows["frames edited"] == "3 of 3" and float(rows["flicker (1: changes as much as the input)"]) > 0
    assert Path(video["video"] if isinstance(video, dict) else video).stat().st_size > 1000
    with pytest.raises(AppError, match="the app edits clips of up to"):
        client.predict(handle_file(long), "Smiling", 3, 10, api_name="/edit_video")


def test_style_tab_on_a_model_without_styles_says_so(app, client):
    photo = face_photo()
    if photo is None:
        pytest.skip("needs a face photo in ../shared/data/faces/celeba/eval (../shared beside the repo)")
    with pytest.raises(AppError, match="No style is shipped for this model yet"):
        client.predict(handle_file(photo), None, "the style's exemplar (index)", 0, 0, None, 0.6, 1.0, False, False,
                       False, "", False, api_name="/stylize")
    assert not any("Traceback" in line for line in app.log), "".join(app.log)


def test_style_tab_restyles_a_photo_in_each_shipped_style_and_with_an_own_exemplar(default_app):
    photo = face_photo()
    if photo is None:
        pytest.skip("needs a face photo in ../shared/data/faces/celeba/eval (../shared beside the repo)")
    client = Client(default_app.url, verbose=False)
    args = (handle_file(photo),)
    for name in ("fantasy", "illustration", "impasto", "sketch"):
        crop, reconstruction, result, table, pasted = client.predict(
            *args, name, "the style's exemplar (index)", 3, 0, None, 0.6, 1.0, False, False, False, "", False,
            api_name="/stylize")
        assert pixels(pasted).shape == pixels(photo).shape
        assert np.abs(assert_image(result, 128) - assert_image(reconstruction, 128)).mean() > 5, name
        assert dict(table["data"])["exemplar"] == f"{name} #3"
    unstyled = client.predict(*args, "fantasy", "the style's exemplar (index)", 3, 0, None, 0.0, 0.0, False, False,
                              False, "", False, api_name="/stylize")
    np.testing.assert_allclose(pixels(unstyled[2]), pixels(unstyled[1]), atol=1)
    # the default: the code fitted to the photo first, so the reconstruction comes closer to the photo's face
    fitted = client.predict(*args, "fantasy", "the style's exemplar (index)", 3, 0, None, 0.0, 0.0, False, False,
                            False, "", True, api_name="/stylize")
    np.testing.assert_allclose(pixels(fitted[2]), pixels(fitted[1]), atol=1)
    crop_pixels = pixels(fitted[0]).astype(float)
    assert np.abs(pixels(fitted[1]) - crop_pixels).mean() < np.abs(pixels(unstyled[1]) - crop_pixels).mean()
    assert any("dlib" in measure for measure in dict(fitted[3]["data"]))
    own = handle_file(sorted(shared("data/styles/ukiyoe").iterdir())[5])
    mine = client.predict(*args, "fantasy", "my own exemplar image", 0, 0, own, 0.6, 1.0, False, False, False, "",
                          False, api_name="/stylize")
    assert np.abs(assert_image(mine[2], 128) - pixels(unstyled[2])).mean() > 5
    with pytest.raises(AppError, match="exemplars 0 to 136"):
        client.predict(*args, "fantasy", "the style's exemplar (index)", 500, 0, None, 0.6, 1.0, False, False, False,
                       "", False, api_name="/stylize")
    assert not any("Traceback" in line for line in default_app.log), "".join(default_app.log)


def test_an_encoder_for_a_model_without_one_says_so(client):
    photo = face_photo()
    if photo is None:
        pytest.skip("needs a face photo in ../shared/data/faces/celeba/eval (../shared beside the repo)")
    with pytest.raises(AppError, match="No e4e encoder is available"):
        client.predict(handle_file(photo), "e4e", False, 10, 10, "fast", api_name="/invert")


def bomb(path: Path) -> None:
    """A 1 px PNG whose header declares 40000 x 40000 pixels: a few bytes that PIL refuses as a decompression bomb."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", 40_000, 40_000)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(data[12:29]))  # the chunk's CRC over its type and data
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("make_photo, message", [
    (lambda path: Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)).save(path),
     "No face found in this photo"),
    (lambda path: path.write_bytes(b"GIF89a not really an image"), "photo.png is not an image we can read"),
    (None, "Upload a photo or pick an example first"),
    (bomb, "This image is too large to process"),
])
def test_bad_photos_give_a_clear_message(app, client, tmp_path, make_photo, message):
    photo = None
    if make_photo:
        photo = tmp_path / "photo.png"
        make_photo(photo)
        photo = handle_file(photo)
    with pytest.raises(AppError, match=message):
        client.predict(photo, "W", False, 10, 10, api_name="/invert")
    assert not any("Traceback" in line for line in app.log), "".join(app.log)


def test_edit_sequence_and_export(inverted):
    client, (_, _, reconstruction, _) = inverted
    zero = [0] * 5
    unedited = client.predict("GANSpace", 0, *zero, api_name="/edit")[0]
    np.testing.assert_allclose(pixels(unedited), pixels(reconstruction), atol=1)

    tuned, original, download = client.predict("GANSpace", 3, *zero, api_name="/edit")
    edited = assert_image(tuned)
    assert np.abs(edited - pixels(reconstruction)).mean() > 1, "the edit changed nothing"
    assert np.abs(edited - assert_image(original)).mean() > 0.5, "PTI's tuned generator should draw it differently"
    np.testing.assert_array_equal(pixels(download["value"]), edited)

    sequence, *sliders = client.predict("GANSpace", 3, *zero, api_name="/add_to_sequence")
    assert "pc0 +3.0" in sequence and all(slider["value"] == 0 for slider in sliders)
    np.testing.assert_array_equal(pixels(client.predict("GANSpace", 0, *zero, api_name="/edit")[0]), edited)
    stacked = pixels(client.predict("SeFa", 2, *zero, api_name="/edit")[0])
    assert np.abs(stacked - edited).mean() > 0.5, "a second edit on top of the sequence changed nothing"

    photo, note, download = client.predict("GANSpace", 0, *zero, api_name="/paste_back")  # the edit, in the photo
    original_photo = np.asarray(Image.open(face_photo()).convert("RGB"), dtype=np.float32)
    assert pixels(photo).shape == original_photo.shape and "seam" in note
    changed = np.abs(pixels(photo) - original_photo).sum(-1) > 0
    assert 0.05 < changed.mean() < 0.6  # the face changed, the rest of the photo did not (PNG: bit for bit)
    np.testing.assert_array_equal(pixels(download["value"]), pixels(photo))

    video, files = client.predict("GANSpace", "pc0", 2, 4, 0, *zero, api_name="/animate")
    gif = Image.open(next(f for f in files if f.endswith(".gif")))
    assert gif.n_frames == 2 * 4 - 2 and gif.size == (256, 256)
    assert video.endswith(".mp4") and Path(video).stat().st_size > 1000
    assert "empty" in client.predict(api_name="/clear_sequence")


def test_edit_before_any_inversion_says_what_to_do(client):
    with pytest.raises(AppError, match="Invert a photo first"):
        client.predict("GANSpace", 1, 0, 0, 0, 0, 0, api_name="/edit")


def test_compare_methods_table_and_grid(app):
    photo = face_photo()
    if photo is None:
        pytest.skip("needs a face photo in ../shared/data/faces/celeba/eval (../shared beside the repo)")
    client = Client(app.url, verbose=False)
    crop, table, grid = client.predict(handle_file(photo), ["W", "PTI"], 10, 10, 2, api_name="/compare")
    assert_image(crop)
    assert [row[0] for row in table["data"]] == ["W", "PTI"]
    assert all(0 < float(row[2]) < 1 for row in table["data"])  # LPIPS
    assert [cell["caption"] for cell in grid[:4]] == ["W: original", "W: inverted", "W: pc0 -2", "W: pc0 +2"]
    assert len(grid) == 8
    for cell in grid:
        assert_image(cell["image"])


def test_interfacegan_is_offered_for_the_official_ffhq_model_only_once_the_user_has_its_files(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEGAN_PLAYGROUND_CACHE", str(tmp_path))
    generator = Generator(16, style_dim=512, n_mlp=1, channel_base=64, channel_max=16)
    assert family_names(generator, "ffhq-1024-nvidia") == ["GANSpace", "SeFa"]  # not downloaded: not offered
    for name in ("age", "pose", "smile"):  # a user who saved the official boundaries in the cache
        boundary = shared(f"fixtures/directions/interfacegan_directions/{name}.pt")
        shutil.copy(boundary, tmp_path / f"interfacegan_{name}.pt")
    assert family_names(generator, "default") == ["GANSpace", "SeFa"]
    assert family_names(generator, "ffhq-1024-nvidia") == ["GANSpace", "SeFa", "InterFaceGAN"]
    directions = direction_families(generator, "ffhq-1024-nvidia")["InterFaceGAN"]
    assert [d.name for d in directions] == ["age", "smile", "pose"]  # in the registry's order


def test_a_public_server_limits_job_time_and_upload_size(tmp_path_factory, tmp_path):
    """A Space's limits (--job-seconds, --max-upload-mb): a clear message each, the server still up."""
    photo = face_photo()
    if photo is None:
        pytest.skip("needs a face photo in ../shared/data/faces/celeba/eval (../shared beside the repo)")
    model = small_generator(tmp_path_factory.mktemp("limits") / "G.safetensors")
    with running_app(model, "--job-seconds", "0.01", "--max-upload-mb", "2") as limited:
        client = Client(limited.url, verbose=False)
        with pytest.raises(AppError, match="time limit per job"):
            client.predict(handle_file(photo), "PTI", False, 20, 20, "fast", api_name="/invert")
        noise = np.random.default_rng(0).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)
        Image.fromarray(noise).save(big := tmp_path / "big.png")  # ~4.3 MB of noise
        with pytest.raises(ValueError, match="exceeds the maximum file size of 2097152 bytes"):
            client.predict(handle_file(big), "PTI", False, 20, 20, "fast", api_name="/invert")
        assert client.predict(api_name="/clear_sequence")  # still serving
        assert not any("Traceback" in line for line in limited.log), "".join(limited.log)


def test_result_cache_is_bounded_and_sessions_release_their_share():
    cache = ResultCache(capacity=2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.get("a")  # a is now the most recently used
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and len(cache) == 2
    session = Session()
    cache.put(session.id, 4)
    session.folder.mkdir(parents=True)
    session.release(cache)
    assert cache.get(session.id) is None and not session.folder.exists()


def test_stop_ends_a_running_loop_at_its_next_step():
    session, shown = Session(), []
    callback = progress_callback(lambda progress, desc: shown.append(desc), session, "PTI")
    callback(1, 10, {"phase": "tune"})
    assert shown == ["PTI: tuning the generator"]
    session.request_stop()
    with pytest.raises(Cancelled):
        callback(2, 10, {})


def test_missing_default_model_says_what_to_do(monkeypatch):
    from demos import app

    missing = dataclasses.replace(registry.REGISTRY["default"], path="models/not-here/G_ema.safetensors")
    monkeypatch.setitem(registry.REGISTRY, "default", missing)
    with pytest.raises(SystemExit) as exit_:
        app.load_context("default", "cpu", max_results=1)
    assert "models/not-here/G_ema.safetensors is not in this checkout" in str(exit_.value)
    assert "--model" in str(exit_.value)
    assert (REPO_ROOT / "demos" / "app.py").is_file()


def test_a_photo_is_aligned_once_for_its_preview_and_its_job(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from demos import inversion

    calls = []
    align = inversion.faces.align_face
    monkeypatch.setattr(inversion.faces, "align_face", lambda *a, **k: calls.append(a) or align(*a, **k))
    photo = tmp_path / "upload.png"
    Image.open(face_photo()).save(photo)
    ctx = SimpleNamespace(generator=SimpleNamespace(size=64))
    first, second = inversion.aligned_crop(ctx, str(photo)), inversion.aligned_crop(ctx, str(photo))
    assert len(calls) == 1 and first.size == second.size == (64, 64)

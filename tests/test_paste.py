"""core.paste and `python -m core edit`: an edited face put back into its full photo, every face of a group."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from core import faces
from core.paste import face_mask, paste_back
from tests.official import shared


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A real CelebA photo, enlarged and turned so that the face is rotated and fills ~200 px of a 600 px photo."""
    image = faces.load_image(sorted(shared("data/faces/celeba/eval").iterdir())[3])
    return image.resize((image.width * 2, image.height * 2), Image.LANCZOS).rotate(15, expand=True,
                                                                                  fillcolor=(90, 120, 60))


@pytest.fixture(scope="module")
def face(photo) -> faces.AlignedFace:
    return faces.align_face(photo, size=128)


def test_pasting_the_aligned_crop_back_gives_the_photo_back(photo, face):
    pasted = paste_back(photo, face, face.image)
    original, result = np.asarray(photo).astype(int), np.asarray(pasted.image).astype(int)
    assert pasted.measures["outside_changed"] == 0  # every pixel outside the mask, bit for bit
    assert np.array_equal(result[pasted.mask == 0], original[pasted.mask == 0])
    inside = pasted.mask > 0.5
    assert inside.sum() > 0.15 * face.source_side ** 2  # the face, not a sliver of it (the crop is ~4 faces wide)
    # the geometry is the alignment's inverse: only the crop's resampling blur separates the two
    assert np.abs(result[inside] - original[inside]).mean() < 6
    assert pasted.measures["seam"] < 1.1 and pasted.measures["identity"] > 0.9


def test_an_edited_face_lands_in_the_face_without_a_seam(photo, face):
    crop = faces.pil_to_tensor(face.image)
    darker = crop * 0.8 - 0.2  # a face darker than the photo: the colour match hides the step at its edge
    matched, raw = (paste_back(photo, face, darker, match_colour=flag) for flag in (True, False))
    assert matched.measures["seam"] < raw.measures["seam"]
    assert matched.measures["seam"] < 1.15
    negative = paste_back(photo, face, -crop, match_colour=False)  # an inverted face shows where it went
    changed = np.abs(np.asarray(negative.image).astype(int) - np.asarray(photo).astype(int)).sum(-1) > 60
    ys, xs = np.nonzero(changed)
    centre = face.landmarks[27:36].mean(0)  # the nose
    assert np.hypot(xs.mean() - centre[0], ys.mean() - centre[1]) < 0.1 * face.source_side


def test_the_mask_is_zero_outside_the_crop_square(face, photo):
    mask = face_mask(face, photo.width, photo.height)
    assert mask.max() == 1 and mask.min() == 0
    left, top = face.quad.min(0)
    right, bottom = face.quad.max(0)
    ys, xs = np.nonzero(mask)
    assert xs.min() >= left and xs.max() <= right and ys.min() >= top and ys.max() <= bottom


def test_a_hair_edit_shows_above_the_forehead_and_far_changes_stay_the_photos(photo, face):
    """Given the crop before the edit, the mask takes in what the edit changed around the face (here a band over the
    forehead, the hair of a hair-colour edit) but not a change that does not touch the face (a corner)."""
    crop = faces.pil_to_tensor(face.image)[0]
    size = crop.shape[-1]
    edited = crop.clone()
    edited[:, int(0.14 * size):int(0.32 * size), int(0.25 * size):int(0.75 * size)] = 1.0  # white hair above the brows
    edited[:, :int(0.1 * size), :int(0.1 * size)] = -1.0  # the background's corner redrawn black
    face_only, with_hair = (paste_back(photo, face, edited, unedited=before) for before in (None, crop))
    a, b = (face.quad[0] + (face.quad[3] - face.quad[0]) * x + (face.quad[1] - face.quad[0]) * y
            for x, y in ((0.5, 0.22), (0.05, 0.05)))  # the band's middle, the corner's, in photo pixels
    hair, corner = (tuple(np.rint(p).astype(int)) for p in (a, b))
    original = np.asarray(photo).astype(int)
    assert face_only.mask[hair[1], hair[0]] == 0 and with_hair.mask[hair[1], hair[0]] > 0.9
    assert np.asarray(with_hair.image)[hair[1], hair[0]].min() > 230  # the edit's white, not the photo's hair
    assert with_hair.mask[corner[1], corner[0]] == 0
    assert np.array_equal(np.asarray(with_hair.image)[corner[1], corner[0]], original[corner[1], corner[0]])
    assert with_hair.measures["outside_changed"] == 0
    same = paste_back(photo, face, crop, unedited=crop)  # no edit: the face's own mask
    assert np.array_equal(same.mask, face_mask(face, photo.width, photo.height))


def test_pasting_takes_a_tensor_of_any_size(photo, face):
    big = torch.nn.functional.interpolate(faces.pil_to_tensor(face.image), size=256, mode="bilinear")
    pasted = paste_back(photo, face, big)
    assert pasted.image.size == photo.size and pasted.measures["upsampling"] == pytest.approx(face.source_side / 256)


@pytest.fixture(scope="module")
def group(tmp_path_factory) -> str:
    """Two real photos side by side: a group photo of two people."""
    left, right = (faces.load_image(p) for p in sorted(shared("data/faces/celeba/eval").iterdir())[:2])
    canvas = Image.new("RGB", (left.width + right.width + 30, max(left.height, right.height)), (200, 200, 200))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width + 30, 0))
    path = tmp_path_factory.mktemp("group") / "group.jpg"
    canvas.save(path, quality=95)
    return str(path)


def test_cli_edits_every_face_of_a_group_photo_and_pastes_them_back(group, tmp_path):
    from core.__main__ import main

    out = tmp_path / "out"
    code = main(["edit", group, "--direction", "Smiling", "--strength", "3", "--direction", "Young",
                 "--method", "e4e", "--all-faces", "--paste-back", "--traverse", "-3", "3", "--frames", "3",
                 "--out", str(out)])
    assert code == 0
    report = json.loads((out / "metrics.json").read_text())
    assert [e[0] for e in report["edits"]] == ["Smiling", "Young"] and report["edits"][1][1] == 2.0
    assert len(report["faces"]) == 2
    original, edited = np.asarray(Image.open(group)).astype(int), np.asarray(Image.open(out / "edited_photo.png"))
    assert edited.shape == original.shape
    half = original.shape[1] // 2
    for side in (slice(0, half), slice(half, None)):  # each person's face changed
        assert np.abs(edited[:, side].astype(int) - original[:, side]).mean() > 1
    for entry in report["faces"]:
        assert entry["paste_back"]["outside_changed"] == 0
    assert Image.open(out / "before_after.png").width > 2 * original.shape[1]
    assert Image.open(out / "face0" / "strip.png").size == (3 * 128, 128)
    assert Image.open(out / "face1" / "traverse.gif").n_frames == 4  # there and back


def test_cli_edit_refuses_clearly(group, tmp_path, capsys):
    from core.__main__ import main

    assert main(["edit", group, "--direction", "Smilling", "--method", "e4e", "--out", str(tmp_path)]) == 2
    assert "no direction 'Smilling'" in capsys.readouterr().err  # and names the ones there are
    blank = tmp_path / "blank.png"
    Image.new("RGB", (300, 300), (128, 128, 128)).save(blank)
    assert main(["edit", str(blank), "--direction", "Smiling", "--out", str(tmp_path / "o")]) == 2
    assert "no face" in capsys.readouterr().err.lower()
    assert main(["edit", "--list"]) == 0 and "Smiling" in capsys.readouterr().out

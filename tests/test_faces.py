"""core.faces on real photos of ../shared/data/faces and on every kind of bad upload."""

from __future__ import annotations

import io
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import faces, measures

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"
FFHQ_EYES = np.array([[0.375, 0.473], [0.621, 0.473]])  # mean eye centres of the FFHQ thumbnails, / size


def photos(folder: str, count: int, step: int = 1) -> list[Path]:
    found = sorted((FACES / folder).glob("*.*g"))[::step][:count]
    if len(found) < count:
        pytest.skip(f"needs {count} photos in {FACES / folder} (../shared/data beside the repo)")
    return found


@pytest.fixture(scope="module")
def face() -> Image.Image:
    """A real upright CelebA face (178x218)."""
    return faces.load_image(photos("celeba/eval", 1)[0])


def encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def eye_centres(landmarks: np.ndarray) -> np.ndarray:
    return np.stack([landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)])


def lpips(a: Image.Image, b: Image.Image) -> float:
    return measures.lpips_distance(faces.pil_to_tensor(a), faces.pil_to_tensor(b)).item()


# ---------------------------------------------------------------------------------------------------------------
# load_image


@pytest.mark.parametrize(("mode", "colour", "expected"), [
    ("RGBA", (255, 0, 0, 0), (255, 255, 255)),      # transparent -> white
    ("RGBA", (255, 0, 0, 128), (255, 127, 127)),    # half-transparent red over white
    ("LA", (0, 255), (0, 0, 0)),
    ("L", 200, (200, 200, 200)),
    ("1", 1, (255, 255, 255)),
    ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
])
def test_modes_become_rgb(mode, colour, expected):
    image = faces.load_image(encode(Image.new(mode, (5, 4), colour), "TIFF" if mode == "CMYK" else "PNG"))
    assert image.mode == "RGB" and image.size == (5, 4)
    np.testing.assert_allclose(image.getpixel((2, 2)), expected, atol=1)


def test_palette_with_transparency_and_cmyk_jpeg(face):
    palette = face.convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = palette.getpixel((0, 0))
    loaded = faces.load_image(encode(palette, "PNG"))
    assert loaded.getpixel((0, 0)) == (255, 255, 255)
    cmyk = faces.load_image(encode(face.convert("CMYK"), "JPEG", quality=95))
    assert np.abs(np.float32(cmyk) - np.float32(face)).mean() < 4


def test_sixteen_bit_scales_to_eight_bit():
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16).reshape(16, 16)
    expected = np.rint(ramp / 257)
    from_png = faces.load_image(encode(Image.fromarray(ramp), "PNG"))  # mode I;16
    from_int = faces.load_image(Image.fromarray(ramp.astype(np.int32)))  # mode I, 16-bit values
    for image in (from_png, from_int, faces.load_image(ramp)):
        np.testing.assert_array_equal(np.asarray(image)[..., 0], expected)
        np.testing.assert_array_equal(np.asarray(image)[..., 0], np.asarray(image)[..., 2])


def test_sources_and_webp(face, tmp_path):
    path = tmp_path / "face.webp"
    face.save(path, "WEBP", quality=90)
    for source in (path, str(path), path.read_bytes(), io.BytesIO(path.read_bytes()), Image.open(path)):
        image = faces.load_image(source)
        assert image.mode == "RGB" and image.size == face.size
        assert np.abs(np.float32(image) - np.float32(face)).mean() < 6
    pixels = np.asarray(face)
    np.testing.assert_array_equal(faces.load_image(pixels), pixels)
    np.testing.assert_array_equal(faces.load_image(pixels / 255.0), pixels)
    assert faces.load_image(pixels[..., 0]).mode == "RGB"


@pytest.mark.parametrize("array", [np.zeros((4, 4, 2), np.uint8), np.full((4, 4, 3), 2.0), np.zeros((4, 4), np.int64)])
def test_bad_arrays(array):
    with pytest.raises(faces.ImageError):
        faces.load_image(array)


def png_header_only(width: int, height: int) -> bytes:
    """A 57-byte PNG that declares width x height RGB pixels and holds none."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(100_000, 100_000), (10_000, 6_000)])
def test_decompression_bomb_fails_fast(size):
    start = time.perf_counter()
    with pytest.raises(faces.ImageError, match="MP|decompression bomb"):
        faces.load_image(png_header_only(*size))
    assert time.perf_counter() - start < 1


def test_max_pixels_is_a_limit_not_a_guess():
    with pytest.raises(faces.ImageError, match="max_pixels"):
        faces.load_image(Image.new("RGB", (300, 200)), max_pixels=50_000)
    assert faces.load_image(Image.new("RGB", (300, 200)), max_pixels=60_000).size == (300, 200)


def test_corrupt_and_truncated_bytes(face):
    with pytest.raises(faces.ImageError, match="cannot read image"):
        faces.load_image(b"this is not an image at all")
    with pytest.raises(faces.ImageError):
        faces.load_image(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    jpeg = encode(face, "JPEG", quality=90)
    with pytest.raises(faces.ImageError, match="truncated"):
        faces.load_image(jpeg[: len(jpeg) // 2])
    with pytest.raises(faces.ImageError, match="missing.png"):
        faces.load_image("/nonexistent/missing.png")


@pytest.mark.parametrize(("orientation", "stored_rotation"), [(6, 90), (8, 270), (3, 180)])
def test_exif_rotated_jpeg_aligns_like_the_upright_one(face, orientation, stored_rotation):
    """A camera stores the pixels turned and says so in EXIF Orientation; the crop must come out upright."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    rotated = encode(face.rotate(stored_rotation, expand=True), "JPEG", quality=95, exif=exif)
    assert faces.load_image(rotated).size == face.size
    upright = faces.align_face(encode(face, "JPEG", quality=95), size=128).image
    assert lpips(faces.align_face(rotated, size=128).image, upright) < 0.01


# ---------------------------------------------------------------------------------------------------------------
# Detection and landmarks


@pytest.mark.parametrize("folder", ["celeba/eval", "lfw", "ffhq", "utkface"])
def test_landmarks_land_inside_the_detected_box(folder):
    for path in photos(folder, 4, step=7):
        image = faces.load_image(path)
        boxes = faces.detect_faces(image)
        if folder == "lfw" and not boxes:
            continue  # a few LFW faces are turned too far for the HOG detector
        box = boxes[0]
        landmarks = faces.face_landmarks(image, box)
        assert landmarks.shape == (68, 2)
        inner, brows = landmarks[27:], landmarks[17:27]  # nose, eyes, mouth; the jaw may leave a tight crop
        assert (inner >= [box.left, box.top]).all() and (inner <= [box.right, box.bottom]).all(), path.name
        margin = 0.15 * (box.right - box.left)
        assert (brows >= [box.left - margin, box.top - margin]).all(), path.name
        assert (brows <= [box.right + margin, box.bottom]).all(), path.name
        left_eye, right_eye = eye_centres(landmarks)
        assert left_eye[0] < right_eye[0] and left_eye[1] < landmarks[57, 1] < landmarks[8, 1], path.name


def test_huge_photo_is_searched_downscaled(face):
    canvas = Image.new("RGB", (8000, 6000), (90, 120, 150))
    canvas.paste(face.resize((face.width * 6, face.height * 6), Image.Resampling.BICUBIC), (5000, 2000))
    start = time.perf_counter()
    aligned = faces.align_face(encode(canvas, "JPEG", quality=90), size=256)
    assert time.perf_counter() - start < 15
    assert 5000 < aligned.box.left < aligned.box.right < 5000 + face.width * 6
    assert lpips(aligned.image, faces.align_face(face, size=256).image) < 0.05


@pytest.mark.parametrize("width", [64, 24, 8])
def test_tiny_face_gives_a_correct_crop_or_a_clear_error(face, width):
    scale = width / face.width
    tiny = face.resize((width, round(face.height * scale)), Image.Resampling.LANCZOS)
    try:
        aligned = faces.align_face(tiny, size=128)
    except faces.NoFaceFound as error:
        assert "no face found" in str(error)
        assert width < 16, "a 24 px wide face should still be found (detection upsamples)"
        return
    reference = faces.align_face(face).quad
    error = np.abs((aligned.quad + 0.5) / scale - 0.5 - reference).max()
    assert error < 0.1 * np.hypot(*(reference[3] - reference[0]))


def test_cnn_detector_agrees_with_hog(face):
    hog, cnn = faces.detect_faces(face)[0], faces.detect_faces(face, detector="cnn")[0]
    overlap = faces.Box(max(hog.left, cnn.left), max(hog.top, cnn.top), min(hog.right, cnn.right),
                        min(hog.bottom, cnn.bottom)).area
    assert overlap > 0.5 * min(hog.area, cnn.area)
    with pytest.raises(ValueError, match="detector"):
        faces.detect_faces(face, detector="mtcnn")


def test_models_are_read_by_path_without_importing_their_package():
    assert faces.dlib_model_path("shape_predictor_68_face_landmarks.dat").stat().st_size > 90e6
    assert "face_recognition_models" not in sys.modules


# ---------------------------------------------------------------------------------------------------------------
# FFHQ alignment


def test_eyes_land_where_ffhq_puts_them():
    for path in photos("celeba/eval", 5, step=97) + photos("utkface", 3, step=61):
        aligned = faces.align_face(path, size=256)
        assert aligned.image.size == (256, 256) and aligned.image.mode == "RGB"
        again = faces.face_landmarks(aligned.image, faces.detect_faces(aligned.image)[0])
        np.testing.assert_allclose(eye_centres(again) / 256, FFHQ_EYES, atol=0.03, err_msg=path.name)


def test_realigning_an_ffhq_thumbnail_changes_little():
    for path in photos("ffhq", 4):
        thumbnail = faces.load_image(path)
        aligned = faces.align_face(thumbnail, size=128)
        corners = np.array([[0, 0], [0, 128], [128, 128], [128, 0]])
        assert np.abs(aligned.quad - corners).max() < 4, path.name
        assert lpips(aligned.image, thumbnail) < 0.06, path.name


@pytest.mark.parametrize("kind", ["flat", "gradient"])
def test_no_face_raises_a_clear_error(kind):
    if kind == "flat":
        image = Image.new("RGB", (320, 240), (120, 160, 90))
    else:  # sky over a field: smooth structure, no face
        y = np.linspace(0, 1, 240)[:, None, None]
        x = np.linspace(0, 1, 320)[None, :, None]
        image = np.uint8(255 * np.clip(np.where(y < 0.6, [0.4, 0.6, 0.9] - 0.3 * y, [0.2, 0.5, 0.1] + 0.1 * x), 0, 1))
    with pytest.raises(faces.NoFaceFound, match="no face found"):
        faces.align_face(image)
    assert faces.align_all(image) == []


def test_two_faces_largest_first(face):
    canvas = Image.new("RGB", (700, 400), (200, 200, 200))
    small = face.resize((face.width * 3 // 4, face.height * 3 // 4))
    big = face.resize((face.width * 3 // 2, face.height * 3 // 2))
    canvas.paste(small, (40, 100))
    canvas.paste(big, (380, 40))
    largest = faces.align_face(canvas, size=128)
    assert largest.box.left > 380
    everyone = faces.align_all(canvas, size=128)
    assert len(everyone) == 2 and everyone[0].box == largest.box and everyone[1].box.right < 40 + small.width
    assert faces.align_face(canvas, size=128, face=1).box == everyone[1].box
    with pytest.raises(ValueError, match="index below 2"):
        faces.align_face(canvas, face=2)


def test_align_from_landmarks_matches_align_face(face):
    aligned = faces.align_face(face, size=64)
    again = faces.align_from_landmarks(face, aligned.landmarks, size=64)
    np.testing.assert_array_equal(np.asarray(again.image), np.asarray(aligned.image))
    assert again.box is None
    with pytest.raises(ValueError, match="68x2"):
        faces.align_from_landmarks(face, aligned.landmarks[:5])


def test_tensor_round_trip(face):
    tensor = faces.pil_to_tensor(face)
    assert tensor.shape == (1, 3, face.height, face.width) and tensor.min() >= -1 and tensor.max() <= 1
    np.testing.assert_array_equal(np.asarray(faces.tensor_to_pil(tensor)), np.asarray(face))


def test_small_faces_are_warned_about_and_tiny_ones_refused(tmp_path, capsys):
    """The face's crop side in the photo decides: >= 48 px fine, smaller a warning, below 20 px refused (the CLI
    skips it with the reason)."""
    from official import shared

    from core.__main__ import main

    photo = faces.load_image(sorted(shared("data/faces/celeba/eval").iterdir())[0])
    full = faces.align_face(photo, size=64)
    assert full.source_side > faces.SMALL_FACE_PX and full.size_warning() is None
    for side, expect in ((36, "warn"), (15, "refuse")):
        scale = side / full.source_side
        small = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.LANCZOS)
        face = faces.align_from_landmarks(small, full.landmarks * scale, size=64)
        assert abs(face.source_side - side) < 1
        if expect == "warn":
            assert "only 36 px across" in face.size_warning()
        else:
            with pytest.raises(faces.FaceTooSmall, match="too small|only 15 px"):
                face.size_warning()
    for side, code, said in ((17, 1, "skipped: the face is only 18 px across"), (36, 0, "warning: the face is only")):
        scale = side / full.source_side  # an 18x22 photo, then a 38x47 one: dlib still finds the face in both
        photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.LANCZOS).save(tmp_path / "p.png")
        assert main(["invert", str(tmp_path / "p.png"), "--method", "w", "--steps", "1", "--out",
                     str(tmp_path / "out")]) == code
        assert said in capsys.readouterr().err

"""core.video and `python -m core edit-video` on the real talking-head clip (a few frames, tiny tuning)."""

from __future__ import annotations

import json

import imageio_ffmpeg
import numpy as np
import pytest

from core.video import VideoError, edit_video, read_video, write_video
from tests.official import shared

CLIP = "data/videos/talking_head_720p.mp4"


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    """The first 6 frames of the real clip at 640x360, one of them blank (the face leaves the frame), with sound."""
    clip = read_video(shared(CLIP))
    frames = [frame[::2, ::2].copy() for frame in clip.frames[:6]]
    frames[3][:] = 128
    path = tmp_path_factory.mktemp("clip") / "short.mp4"
    write_video(path, frames, clip.fps, audio_from=clip.path)
    return path


@pytest.fixture(scope="module")
def playground():
    from core.pipeline import Playground

    return Playground.from_pretrained("default")


def test_the_clip_is_edited_where_there_is_a_face_and_kept_where_there_is_none(short_clip, playground):
    clip = read_video(short_clip)
    assert len(clip.frames) == 6 and clip.audio and clip.fps == 25
    edit = edit_video(playground, clip, [("Smiling", 3.0)], steps=3, keyframes=2)
    assert edit.with_face == [0, 1, 2, 4, 5]  # the blank frame has no face and is left as it was
    np.testing.assert_array_equal(edit.frames[3], clip.frames[3])
    for i in edit.with_face:
        changed = np.abs(edit.frames[i].astype(int) - clip.frames[i]).sum(-1) > 0
        assert 0.005 < changed.mean() < 0.2  # the face only
    m = edit.measures
    assert m["frames_with_face"] == pytest.approx(5 / 6) and 0 < m["flicker"] < 3 and -1 < m["identity_min"] <= 1


def test_smoothing_steadies_the_alignment(short_clip):
    from core.video import track_landmarks

    clip = read_video(short_clip)
    raw, smooth = (track_landmarks(clip.frames[:3], smooth=flag) for flag in (False, True))
    jitter = [np.abs(np.diff(np.stack(points), 2, axis=0)).mean() for points in (raw, smooth)]
    assert jitter[1] < jitter[0]  # smaller second differences: less frame-to-frame jitter


def test_cli_writes_the_edited_clip_with_its_sound(short_clip, tmp_path):
    from core.__main__ import main

    out = tmp_path / "out"
    assert main(["edit-video", str(short_clip), "--direction", "Smiling", "--steps", "2", "--keyframes", "2",
                 "--baseline", "--out", str(out)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert {"smoothed", "baseline"} <= report.keys() and report["frames"] == 6
    reader = imageio_ffmpeg.read_frames(str(out / "edited.mp4"))
    meta = next(reader)
    assert meta["fps"] == 25 and meta["size"] == (640, 360) and meta.get("audio_codec")
    assert sum(1 for _ in reader) == 6
    assert (out / "baseline.mp4").is_file() and (out / "frames.png").is_file()


def test_bad_videos_are_refused_clearly(tmp_path, short_clip, capsys):
    from core.__main__ import main

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoError, match="not a video we can read"):
        read_video(broken)
    with pytest.raises(VideoError, match="longer than 4 frames"):
        read_video(short_clip, max_frames=4)
    assert main(["edit-video", str(broken), "--direction", "Smiling", "--out", str(tmp_path / "o")]) == 2
    assert "cannot edit the video" in capsys.readouterr().err
    blank = tmp_path / "blank.mp4"
    write_video(blank, [np.full((64, 64, 3), 100, np.uint8)] * 3, 10)
    assert main(["edit-video", str(blank), "--direction", "Smiling", "--out", str(tmp_path / "b")]) == 2
    assert "no face" in capsys.readouterr().err

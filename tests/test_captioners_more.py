"""Caption files imported with `precomputed` (LLoVi's released captions, a run's captions.jsonl).
The transformers VLM captioners (`hf-vlm`: LLaVA-1.5, BLIP-2, ...) are tested in test_hf_vlm.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import videoqa.captioning.precomputed  # noqa: F401  (registers "precomputed")
from videoqa.config import CaptionerConfig, DatasetConfig, FramesConfig, LLMConfig, RunConfig, resolve_component
from videoqa.registry import CAPTIONERS
from videoqa.types import Caption
from videoqa_base.errors import AnnotationError, MissingModelError, UserError

PROMPT = "Describe this frame within 50 words"


# ---------------------------------------------------------------------------- precomputed


def precomputed(path: Path | str, **options):
    return CAPTIONERS.get("precomputed")(
        CaptionerConfig(name="imported", type="precomputed", model=str(path), options=options)
    )


def write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_llovi_plain_lists(tmp_path):
    file = write(tmp_path / "lavila.json", {"v1": ["#C C opens a door", "#C C walks in"], "v2": [], "v3": "C cooks."})
    captioner = precomputed(file)
    v1 = captioner.precomputed("v1")
    assert v1.captions == [Caption(0.0, "#C C opens a door"), Caption(1.0, "#C C walks in")]
    assert (v1.video_id, v1.duration, v1.caption_s) == ("v1", 2.0, 0.0)
    assert captioner.precomputed("v2").captions == []
    assert captioner.precomputed("v3").captions == [Caption(0.0, "C cooks.")]  # a summary: one text per video
    # timestamps follow seconds_per_caption
    spaced = precomputed(file, seconds_per_caption=4).precomputed("v1")
    assert [c.t for c in spaced.captions] == [0.0, 4.0] and spaced.duration == 8.0


def test_timed_entries(tmp_path):
    file = write(
        tmp_path / "timed.json",
        {
            "a": [{"start": 3, "text": "later"}, {"start": 0.5, "text": "first", "end": 2}],
            "b": [{"t": 10, "caption": "only"}],
        },
    )
    captioner = precomputed(file, seconds_per_caption=2)
    a = captioner.precomputed("a")
    assert a.captions == [Caption(0.5, "first"), Caption(3.0, "later")]  # sorted by time
    assert a.duration == 5.0  # the last caption ends at 3 + 2 s
    assert captioner.precomputed("b").captions == [Caption(10.0, "only")]


def test_jsonl_and_a_runs_captions_file(tmp_path):
    lines = [
        {"video_id": 7, "captions": ["x", "y"]},  # numeric ids (NExT-QA) become strings
        {"video_id": "clip", "duration": 30.0, "captions": [{"t": 1.0, "text": "z"}]},  # finish_run's layout
    ]
    for name in ("captions.jsonl", "captions_as.json"):  # a JSONL under a .json name is recognised too
        captioner = precomputed(write(tmp_path / name, "\n".join(json.dumps(r) for r in lines) + "\n\n"))
        assert [c.text for c in captioner.precomputed("7").captions] == ["x", "y"]
        clip = captioner.precomputed("clip")
        assert clip.captions == [Caption(1.0, "z")] and clip.duration == 30.0


def test_missing_video_and_frames(tmp_path):
    file = write(tmp_path / "c.json", {"v1": ["a"]})
    captioner = precomputed(file)
    assert captioner.image_size is None
    assert captioner.precomputed("absent") is None
    failure = captioner.missing_precomputed("absent", tmp_path / "absent.mp4")
    assert (failure.video_id, failure.reason) == ("absent", "no_precomputed_captions")
    assert str(file.resolve()) in failure.message and failure.path == str(tmp_path / "absent.mp4")
    assert captioner.missing_precomputed("v1", tmp_path / "v1.mp4") is None
    # a pipeline that decodes the missing video anyway gets a clear refusal, naming the video
    with pytest.raises(UserError, match=r"cannot caption frames.*'absent'"):
        captioner.caption([np.zeros((8, 8, 3), np.uint8)], PROMPT)
    assert captioner.caption([], PROMPT) == []


def test_identity_and_parameters_of_an_imported_file(tmp_path):
    file = write(tmp_path / "c.json", {"v1": ["a"]})
    captioner = precomputed(file, parameters=150_000_000, source="LaViLa")
    identity = captioner.identity()
    assert identity["file"] == str(file.resolve())
    assert identity["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert (identity["source"], identity["parameters"]) == ("LaViLa", 150_000_000)
    assert captioner.num_parameters() == 150_000_000
    assert precomputed(file).num_parameters() == 0
    write(file, {"v1": ["b"]})  # other captions, another identity (and so another cache key)
    assert precomputed(file).identity()["sha256"] != identity["sha256"]


@pytest.mark.parametrize(
    ("name", "content", "key"),
    [
        ("broken.json", '{"v1": ["a",', "(top level)"),
        ("list.json", '[["a"]]', "(top level)"),
        ("notlist.json", '{"v1": {"caption": "a"}}', "v1"),
        ("mixed.json", '{"v1": ["a", {"t": 1, "text": "b"}]}', "v1[0]"),
        ("notext.json", '{"v1": [{"t": 1, "words": "b"}]}', "v1[0].caption"),
        ("notime.json", '{"v1": [{"caption": "b"}]}', "v1[0].t"),
        ("negative.json", '{"v1": [{"start": -1, "caption": "b"}]}', "v1[0].start"),
        ("endbefore.json", '{"v1": [{"t": 5, "caption": "b", "end": 2}]}', "v1[0].end"),
        ("noid.jsonl", '{"video_id": "a", "captions": []}\n{"captions": ["x"]}\n', "line 2.video_id"),
        ("badline.jsonl", '{"video_id": "a", "captions": []}\nnot json\n', "line 2"),
        ("dupe.jsonl", '{"video_id": "a", "captions": []}\n{"video_id": "a", "captions": []}\n', "line 2.video_id"),
        ("badcaps.jsonl", '{"video_id": "a", "captions": [1, 2]}\n', "line 1.captions[0]"),
        ("duration.jsonl", '{"video_id": "a", "captions": [], "duration": "long"}\n', "line 1.duration"),
    ],
)
def test_malformed_files_name_file_and_key(tmp_path, name, content, key):
    file = write(tmp_path / name, content)
    with pytest.raises(AnnotationError) as err:
        precomputed(file)
    assert err.value.key == key and err.value.path == str(file.resolve())
    assert "\n" not in str(err.value)


def test_precomputed_config_errors(tmp_path):
    with pytest.raises(MissingModelError, match="caption file") as err:
        precomputed(tmp_path / "nope.json")
    assert "\n" not in str(err.value)
    file = write(tmp_path / "c.json", {"v1": ["a"]})
    for options, match in [
        ({"seconds_per_caption": 0}, "seconds_per_caption must be a number > 0"),
        ({"parameters": 1.5}, "parameters must be an integer"),
        ({"source": 3}, "source must be a string"),
        ({"fps": 1}, "unknown options"),
    ]:
        with pytest.raises(UserError, match=match):
            precomputed(file, **options)
    with pytest.raises(UserError, match="'model' is empty"):
        precomputed("")


def test_shipped_yaml():
    data, _ = resolve_component("captioners", "precomputed")
    config = CaptionerConfig(**data)
    assert config.type == "precomputed" and config.options["seconds_per_caption"] == 1.0


def test_caption_stage_reads_the_file_instead_of_decoding(tmp_path):
    """Through the pipeline's caption stage: no video file exists, yet the covered video has its
    captions (nothing was decoded) and the captioner's identity/size reach the result."""
    from videoqa.captioning.videos import caption_videos

    file = write(tmp_path / "c.json", {"v1": ["a", "b", "c"]})
    config = RunConfig(
        dataset=DatasetConfig(name="d", type="jsonl", data_root=str(tmp_path)),
        captioner=CaptionerConfig(name="imported", type="precomputed", model=str(file), options={"parameters": 42}),
        llm=LLMConfig(name="unused", model="unused"),
        frames=FramesConfig(fps=1.0),
        output_dir=str(tmp_path / "outputs"),
    )
    captioner = CAPTIONERS.get("precomputed")(config.captioner)
    result = caption_videos(config, captioner, [("v1", tmp_path / "v1.mp4")], progress=False)
    assert [c.text for c in result.captions["v1"].captions] == ["a", "b", "c"]
    assert result.failures == {} and result.parameters == 42
    assert result.identity["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert result.timing["frames_captioned"] == 0

"""Pipeline stages without an LLM: the caption stage with imported captions and with failures."""

import json

from videoqa.captioning.videos import caption_videos as caption_with
from videoqa.config import load_run_config
from videoqa.registry import CAPTIONERS


def caption_videos(config, videos, progress=False):
    return caption_with(config, CAPTIONERS.get(config.captioner.type)(config.captioner), videos, progress=progress)


def test_precomputed_captions_skip_decoding_and_missing_ids_are_failures(tmp_path):
    captions_file = tmp_path / "lavila.json"
    captions_file.write_text(json.dumps({"v1": ["a man cuts bread", "he eats it"]}))
    config = load_run_config(
        dataset="egoschema",
        captioner="precomputed",
        overrides=[f"captioner.model={captions_file}", f"output_dir={tmp_path / 'out'}"],
    )
    videos = [("v1", tmp_path / "v1.mp4"), ("v2", tmp_path / "v2.mp4")]  # neither file exists: nothing is decoded
    result = caption_videos(config, videos, progress=False)
    assert [c.text for c in result.captions["v1"].captions] == ["a man cuts bread", "he eats it"]
    assert [c.t for c in result.captions["v1"].captions] == [0.0, 1.0]
    assert set(result.failures) == {"v2"} and result.failures["v2"].reason == "no_precomputed_captions"
    assert result.timing["frames_captioned"] == 0 and result.timing["decode_worker_s"] == 0


def test_frame_captioner_records_decode_failures_and_caches(tmp_path, tiny_models):
    from videoqa.fixtures.synthetic_video import make_video

    captioner_dir, _ = tiny_models
    good = make_video(tmp_path / "good.mp4", seconds=3, fps=10, width=96, height=64)
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all" * 100)
    config = load_run_config(
        dataset="egoschema",
        captioner=str(captioner_dir),
        overrides=[f"output_dir={tmp_path / 'out'}", "captioner.max_new_tokens=6", "captioner.batch_size=2"],
    )
    videos = [("good", good), ("bad", tmp_path / "bad.mp4"), ("gone", tmp_path / "gone.mp4")]
    first = caption_videos(config, videos, progress=False)
    assert len(first.captions["good"].captions) == 3 and first.timing["frames_captioned"] == 3
    assert {k: f.reason for k, f in first.failures.items()} == {"bad": "not_a_video", "gone": "missing"}
    assert first.timing["caption_batches"] == 2  # batch size 2 over 3 frames
    # a new prompt is a new cache entry; the same settings come from the cache
    again = caption_videos(config, videos, progress=False)
    assert again.timing["videos_from_cache"] == 1 and again.timing["frames_captioned"] == 0
    assert first.timing["captioner_loaded"] and not again.timing["captioner_loaded"]
    assert again.captions["good"] == first.captions["good"]
    other_prompt = config.model_copy(update={"captioner": config.captioner.model_copy(update={"prompt": "Say it"})})
    assert caption_videos(other_prompt, videos, progress=False).timing["videos_from_cache"] == 0

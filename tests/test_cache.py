from videoqa.captioning.cache import CaptionCache, video_fingerprint
from videoqa.types import Caption, VideoCaptions


def test_cache_round_trip_and_key_components(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\x00" * 3_000_000)
    captions = VideoCaptions("v", [Caption(0.5, "a cat"), Caption(1.5, "a dog")], 2.0)
    cache = CaptionCache(tmp_path / "cache", {"fps": 1.0}, {"model": "m", "prompt": "p"})
    assert cache.get(video) is None
    cache.put(video, captions)
    assert cache.get(video) == captions
    # another sampling, captioner or prompt is another entry
    assert CaptionCache(tmp_path / "cache", {"fps": 0.5}, {"model": "m", "prompt": "p"}).get(video) is None
    assert CaptionCache(tmp_path / "cache", {"fps": 1.0}, {"model": "m", "prompt": "q"}).get(video) is None
    # changed content (even in the middle-free tail) is another entry
    before = video_fingerprint(video)
    with video.open("r+b") as f:
        f.seek(2_999_000)
        f.write(b"\x01")
    assert video_fingerprint(video) != before
    assert cache.get(video) is None


def test_torn_cache_file_is_recomputed_not_trusted(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"abc")
    cache = CaptionCache(tmp_path / "cache", {}, {})
    cache.put(video, VideoCaptions("v", [Caption(0, "x")], 1.0))
    entry = next((tmp_path / "cache").rglob("*.json"))
    entry.write_text('{"video_id": "v", "capt')
    assert cache.get(video) is None
    assert cache.get(tmp_path / "missing.mp4") is None

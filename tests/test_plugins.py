"""Extending takes one module and one YAML: a captioner plugin in a directory of its own is found
through $VIDEOQA_PLUGINS, without editing the registry or the shipped configs."""

from __future__ import annotations

import textwrap

import pytest

from videoqa.captioning.videos import caption_videos
from videoqa.config import load_run_config, registered_names
from videoqa.fixtures.synthetic_video import make_video
from videoqa.registry import CAPTIONERS, PLUGINS_ENV
from videoqa_base.errors import UserError

PLUGIN = '''
    """A captioner that needs no weights: it reports each frame's mean brightness."""
    from videoqa.captioning.base import Captioner
    from videoqa.registry import CAPTIONERS


    @CAPTIONERS.register("brightness")
    class BrightnessCaptioner(Captioner):
        kind = "brightness"
        image_size = 32
        known_options = frozenset({"word"})

        def identity(self):
            return {"type": self.kind, "word": self.config.options.get("word", "brightness")}

        def num_parameters(self):
            return 0

        def caption(self, images, prompt):
            word = self.config.options.get("word", "brightness")
            return [f"a frame of mean {word} {int(image.mean())}" for image in images]
'''


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    directory = tmp_path / "plugins"
    (directory / "configs" / "captioners").mkdir(parents=True)
    (directory / "brightness_captioner.py").write_text(textwrap.dedent(PLUGIN))
    (directory / "configs" / "captioners" / "brightness.yaml").write_text(
        "type: brightness\nbatch_size: 4\noptions:\n  word: luminance\n"
    )
    monkeypatch.setenv(PLUGINS_ENV, str(directory))
    return directory


def test_a_plugin_captioner_is_found_without_editing_the_registry(plugin_dir, tmp_path):
    assert "brightness" in registered_names("captioners") and "brightness" in CAPTIONERS.names()
    config = load_run_config(dataset="egoschema", captioner="brightness", overrides=[f"output_dir={tmp_path / 'out'}"])
    assert config.captioner.type == "brightness" and config.captioner.options == {"word": "luminance"}
    video = make_video(tmp_path / "v.mp4", seconds=3, fps=10, width=64, height=48)
    captioner = CAPTIONERS.get("brightness")(config.captioner)
    result = caption_videos(config, captioner, [("v", video)], progress=False)
    texts = [c.text for c in result.captions["v"].captions]
    assert len(texts) == 3 and all(t.startswith("a frame of mean luminance ") for t in texts)
    assert result.identity == {"type": "brightness", "word": "luminance"}


def test_a_broken_plugin_is_one_clear_error(tmp_path, monkeypatch):
    directory = tmp_path / "broken"
    directory.mkdir()
    (directory / "oops.py").write_text("raise RuntimeError('half-written plugin')\n")
    monkeypatch.setenv(PLUGINS_ENV, str(directory))
    with pytest.raises(
        UserError, match=r"oops\.py: plugin module failed to import \(RuntimeError: half-written plugin\)"
    ):
        CAPTIONERS.get("anything")

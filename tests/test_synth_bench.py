"""The synthetic captioning world and `captioner synth-bench` (a smaller setting than --quick)."""
from __future__ import annotations

import json
import random

import numpy as np

from videoqa.cli.captioner import main as captioner_main
from captioner.synth import COLOURS, Group, Scene, render_scene, sample_scene, write_synthetic_dataset


def test_captions_describe_the_scene():
    scene = Scene(Group(2, "red", "circle"), Group(1, "blue", "square"), "horizontal", seed=0)
    assert scene.captions() == [
        "two red circles to the left of a blue square",
        "a blue square to the right of two red circles",
        "two red circles on the left and a blue square on the right",
    ]
    single = Scene(Group(1, "green", "triangle"), None, "single", seed=0)
    assert single.captions()[1] == "there is a green triangle"


def test_rendering_matches_the_description():
    scene = Scene(Group(3, "yellow", "square"), Group(2, "blue", "circle"), "vertical", seed=5)
    pixels = np.asarray(render_scene(scene, 64))
    yellow = np.all(pixels == COLOURS["yellow"], axis=-1)
    blue = np.all(pixels == COLOURS["blue"], axis=-1)
    red = np.all(pixels == COLOURS["red"], axis=-1)
    assert yellow.any() and blue.any() and not red.any()
    ys_yellow, ys_blue = np.nonzero(yellow)[0], np.nonzero(blue)[0]
    assert ys_yellow.max() < ys_blue.min()  # "yellow squares above blue circles"


def test_dataset_is_seeded(tmp_path):
    a = write_synthetic_dataset(tmp_path / "a", 5, 2, seed=3)
    b = write_synthetic_dataset(tmp_path / "b", 5, 2, seed=3)
    assert a["train"].read_text() == b["train"].read_text()
    assert (tmp_path / "a/images/train_00004.png").read_bytes() == (tmp_path / "b/images/train_00004.png").read_bytes()
    c = write_synthetic_dataset(tmp_path / "c", 5, 2, seed=4)
    assert c["train"].read_text() != a["train"].read_text()
    rows = [json.loads(line) for line in a["test"].read_text().splitlines()]
    assert len(rows) == 2 and all(len(r["captions"]) == 3 for r in rows)
    scenes = [sample_scene(random.Random(i)) for i in range(200)]
    assert {s.layout for s in scenes} == {"single", "horizontal", "vertical"}


def test_synth_bench_runs_end_to_end_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = captioner_main([
        "synth-bench", "--quick", "--train-images", "24", "--test-images", "6", "--stage1-epochs", "2",
        "--stage2-epochs", "1", "--batch-size", "16", "--max-new-tokens", "12", "--metrics", "BLEU-4,CIDEr",
        "--json", str(out), "--workdir", str(tmp_path / "work"),
    ])
    assert code == 0
    report = json.loads(out.read_text())
    for system in ("stage1", "control", "ser", "ser_first_glance"):
        assert set(report[system]) == {"BLEU-4", "CIDEr", "exact_match"}
        assert all(v >= 0 for v in report[system].values())
    settings = report["settings"]
    assert settings["train_images"] == 24 and settings["stage1_steps"] == 2 * 5  # 72 pairs / 16 -> 5 steps/epoch
    # arms: 1 epoch over the stage-2 pairs (3 pseudo-initials per caption): 216 / 16 -> 14 steps each
    assert settings["train_pairs_stage2"] == 3 * settings["train_pairs_stage1"] == 216
    assert settings["arm_steps"] == 14
    assert report["quick"] is True and report["times_s"]["total_s"] > 0
    assert len(report["examples"]) == 5 and report["examples"][0]["references"]
    # the arms trained from the stage-1 checkpoint; stage 2 added DeepLens
    assert (tmp_path / "work/ser/model.safetensors").is_file() and (tmp_path / "work/control/model.safetensors").is_file()
    assert "| ser " in capsys.readouterr().out

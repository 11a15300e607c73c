"""The synthetic captioning world and `captioner synth-bench`, the miniature of the paper's training
(run end to end at a reduced size: every stage, every arm, the report layout)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from captioner.replication.synth import (
    COLOURS,
    CONCEPTS,
    PATCH_CLASSES,
    Group,
    Scene,
    concept_labels,
    patch_labels,
    render_scene,
    sample_scene,
    shape_boxes,
    write_synthetic_dataset,
)
from videoqa.cli.captioner import main as captioner_main


def test_captions_describe_the_scene():
    scene = Scene(Group(2, "red", "circle"), Group(1, "blue", "square"), "horizontal", seed=0)
    assert scene.captions() == [
        "two red circles to the left of a blue square",
        "a blue square to the right of two red circles",
        "two red circles on the left and a blue square on the right",
    ]
    single = Scene(Group(1, "green", "triangle"), None, "single", seed=0)
    assert single.captions()[1] == "there is a green triangle"


def test_vit_pretraining_labels_are_the_scene_without_its_caption():
    scene = Scene(Group(2, "red", "circle"), Group(1, "blue", "square"), "vertical", seed=0)
    bag = concept_labels(scene)
    assert sum(bag) == 2 and bag[CONCEPTS.index("red circle")] == bag[CONCEPTS.index("blue square")] == 1
    labels = patch_labels(scene)  # 4 x 4 patches of 16 px, row-major
    assert len(labels) == 16 and sorted(PATCH_CLASSES[i] for i in labels if i) == [
        "blue square",
        "red circle",
        "red circle",
    ]
    rows: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        if label:
            rows.setdefault(PATCH_CLASSES[label], []).append(index // 4)
    assert max(rows["red circle"]) < min(rows["blue square"])  # "two red circles above a blue square"
    pixels = np.asarray(render_scene(scene))
    for group, (x0, y0, x1, y1) in shape_boxes(scene):  # each shape is drawn inside one patch
        assert int(x0) // 16 == int(x1 - 1e-6) // 16 and int(y0) // 16 == int(y1 - 1e-6) // 16
        centre = pixels[int((y0 + y1) / 2), int((x0 + x1) / 2)]
        assert tuple(centre) == COLOURS[group.colour]


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


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """The whole miniature at a reduced size, through the CLI: 2 seeds, every arm."""
    work = tmp_path_factory.mktemp("bench")
    out = work / "bench.json"
    code = captioner_main(
        [
            "synth-bench",
            "--train-images",
            "40",
            "--dev-images",
            "16",
            "--test-images",
            "12",
            "--seeds",
            "2",
            "--vit-images",
            "64",
            "--vit-steps",
            "6",
            "--lm-scenes",
            "40",
            "--lm-steps",
            "6",
            "--connector-steps",
            "3",
            "--stage1-max-steps",
            "6",
            "--check-every",
            "3",
            "--arm-steps",
            "4",
            "--batch-size",
            "8",
            "--max-new-tokens",
            "10",
            "--cache-dir",
            str(work / "cache"),
            "--json",
            str(out),
            "--markdown",
            str(work / "table.md"),
        ]
    )
    assert code == 0
    return json.loads(out.read_text()), work


def test_replication_report_layout(bench):
    report, work = bench
    arms = report["arms"]
    best = max(("ser_paper", "ser_protected"), key=lambda a: arms[a]["refined"]["CIDEr"]["mean"])
    assert list(arms) == [
        "stage1",
        "control",
        "ser_paper",
        "ser_protected",
        "ser_caption_only",
        "ser_multilayer_only",
        f"{best}+gt-mix",
        f"{best}+self",
    ]
    assert report["seeds"] == 2 and report["steps"]["arm"] == 4 and report["steps"]["stage1"] <= 6
    for name, arm in arms.items():
        for part in ("first_glance", "refined"):
            assert set(arm[part]) >= {"CIDEr", "BLEU-4", "exact_match"}
            assert len(arm[part]["CIDEr"]["per_seed"]) == (1 if name == "stage1" else 2)
            assert arm[part]["CIDEr"]["sd"] >= 0
        assert isinstance(arm["fixes"], int) and isinstance(arm["breaks"], int)
        single_pass = name in ("stage1", "control")
        assert (arm["refine_stage1_drafts"] is None) == single_pass
        if single_pass:
            assert arm["refined"] == arm["first_glance"] and arm["fixes"] == arm["breaks"] == 0
    assert report["pretraining"]["loaded_from_cache"] is False
    assert report["machine"]["cpu_count"] >= 1 and report["times_s"]["total"] > 0
    table = (work / "table.md").read_text()
    assert all(f"| {name} |" in table for name in arms)


def test_arms_get_equal_steps_and_the_frozen_vit_no_gradient(bench):
    report, _ = bench
    arms = {name: arm for name, arm in report["arms"].items() if name != "stage1"}
    assert {(arm["train"]["steps"], arm["train"]["batch_size"]) for arm in arms.values()} == {(4, 8)}
    for name, arm in report["arms"].items():
        trainable = arm["train"]["trainable"]
        assert arm["train"]["vision_gradient"] is False and trainable["vision_tower"] == 0, name
        assert arm["train"]["flops"] > 0
        if name in ("stage1", "control"):  # Tab. 15 stage 1: connector + LM
            assert trainable["connector"] > 0 and trainable["language_model"] > 0 and trainable["deeplens"] == 0
        else:  # Tab. 15 stage 2: DeepLens + LM
            assert trainable["deeplens"] > 0 and trainable["language_model"] > 0 and trainable["connector"] == 0


def test_stand_ins_cache_round_trip(bench, tmp_path):
    from captioner.replication import standins

    _, work = bench
    (entry,) = list((work / "cache").iterdir())
    cached = standins.load_cached(entry)
    assert cached is not None and "vit" in cached.report
    tokenizer = standins.world_tokenizer()
    model = standins.assemble("ser", tokenizer, cached, seed=0)
    for name, tensor in cached.vision.items():
        torch.testing.assert_close(model.vision_tower.state_dict()[name], tensor)
    assert (
        model.language_model.lm_head.weight.data_ptr() == model.language_model.get_input_embeddings().weight.data_ptr()
    )
    assert standins.load_cached(tmp_path / "empty") is None


def test_stage2_recipe_moves_only_deeplens_and_the_lm():
    """ser_protected's step: DeepLens + LM change; the frozen ViT and the connector do not."""
    from transformers import AutoModelForCausalLM

    from captioner.modeling.modeling_ser import SeRVisionTower
    from captioner.replication import loop, standins
    from captioner.replication.synth import sample_scenes

    tokenizer = standins.world_tokenizer()
    config = standins.miniature_config("ser", tokenizer)
    processor = standins.miniature_processor(config, tokenizer)
    torch.manual_seed(0)
    parts = standins.Pretrained(
        SeRVisionTower(config.vision_config).state_dict(),
        AutoModelForCausalLM.from_config(config.text_config).state_dict(),
        {},
    )
    model = standins.assemble("ser", tokenizer, parts, seed=0)
    scenes = sample_scenes(8, "unit")
    buffer = loop.encode(model, standins.render(processor, scenes))
    first = loop.first_glance_examples(range(8), [s.captions() for s in scenes])
    refine = [loop.Example(e.image, e.caption, "a red circle") for e in first]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log = loop.train(
        model,
        processor,
        buffer,
        loop.ARMS["ser_protected"].recipe,
        first,
        refine,
        steps=2,
        batch_size=4,
        lr=1e-2,
        seed=0,
    )
    changed = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"deeplens", "language_model"} and log.steps == 2 and not log.vision_gradient


def test_write_data_makes_the_files_the_tiny_configs_read(tmp_path, capsys):
    assert (
        captioner_main(["synth-bench", "--write-data", str(tmp_path), "--train-images", "6", "--test-images", "2"]) == 0
    )
    data = tmp_path / "data"
    assert len(list((data / "images").glob("*.png"))) == 8
    rows = [json.loads(line) for line in (data / "train_stage2.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(len(r["initial_captions"]) == 3 and len(r["initial_captions"][0]) == 3 for r in rows)
    assert "train_stage2" in capsys.readouterr().out


def test_unknown_arm_is_a_one_line_error(capsys):
    assert captioner_main(["synth-bench", "--arms", "control,ser_bogus"]) != 0
    assert "unknown arm(s) ['ser_bogus']" in capsys.readouterr().err

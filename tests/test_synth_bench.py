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
    MODAL_SHAPE,
    PATCH_CLASSES,
    Group,
    Scene,
    needs_hidden_detail,
    patch_facts,
    patch_labels,
    render_scene,
    sample_scene,
    sample_scenes,
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
    labels = patch_labels(scene)  # 4 x 4 patches of 16 px, row-major
    assert len(labels) == 16 and sorted(PATCH_CLASSES[i] for i in labels if i) == [
        "blue square",
        "red circle",
        "red circle",
    ]
    assert {patch_facts(i) for i in labels if i} == {(1, 0, 0), (1, 2, 1)} and patch_facts(0) == (0, -1, -1)
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


def test_world_has_a_shape_prior_and_same_colour_distractors():
    scenes = sample_scenes(2000, "prior")
    groups = [g for s in scenes for g in (s.first, s.second) if g is not None]
    circles = sum(g.shape == MODAL_SHAPE for g in groups) / len(groups)
    pairs = [s for s in scenes if s.second is not None]
    same = sum(s.first.colour == s.second.colour for s in pairs) / len(pairs)
    assert 0.45 < circles < 0.65 and 0.5 < same < 0.7 and all(s.first != s.second for s in pairs)
    # a same-colour pair always differs in shape, so it always needs a look at the shapes
    assert all(needs_hidden_detail(s) for s in pairs if s.first.colour == s.second.colour)
    assert not needs_hidden_detail(Scene(Group(2, "red", "circle"), Group(1, "blue", "circle"), "horizontal", 0))


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


TINY_BENCH = [
    "synth-bench",
    *("--train-images", "32", "--dev-images", "12", "--test-images", "12", "--seeds", "2"),
    *("--vit-images", "48", "--vit-steps", "4", "--lm-scenes", "30", "--lm-steps", "4"),
    *("--connector-steps", "2", "--stage1-steps", "3", "--stage1-max-steps", "6", "--curve-points", "2"),
    *("--arm-steps", "3", "--batch-size", "8", "--max-new-tokens", "8", "--lr-grid", "1e-3,3e-3"),
    *("--probe-train-images", "24", "--probe-test-images", "12"),
]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """The whole miniature at a reduced size, through the CLI: 2 seeds, the five arms; then run again
    on the same --run-dir, which resumes every (arm, seed) from disk."""
    work = tmp_path_factory.mktemp("bench")
    paths = ["--cache-dir", str(work / "cache"), "--run-dir", str(work / "run"), "--markdown", str(work / "table.md")]
    assert captioner_main([*TINY_BENCH, *paths, "--json", str(work / "bench.json")]) == 0
    assert captioner_main([*TINY_BENCH, *paths, "--json", str(work / "again.json")]) == 0
    return json.loads((work / "bench.json").read_text()), work


def test_replication_report_layout(bench):
    report, work = bench
    arms = report["arms"]
    assert list(arms) == ["stage1", "control", "ser_paper", "ser_protected", "single_glance_multilayer", "oracle_draft"]
    for layer in ("layer 3", "layer 4", "layer 5"):  # every layer an arm reads
        assert set(report["probes"][layer]) == {"occupancy", "colour", "shape", "group_count", "position"}
        assert all(0 <= v["accuracy"] <= 100 and 0 < v["chance"] <= 100 for v in report["probes"][layer].values())
    assert report["premise"]["first_glance_layer"] == 5 and report["premise"]["best_deeplens_layer"] in (3, 4, 5)
    assert 0 <= report["headroom"]["fraction"] <= 1 and report["headroom"]["images"] == 12
    curve = report["stage1_curve"]
    assert [r["schedule_steps"] for r in curve["runs"]] == [3, 6] and curve["chosen_steps"] == 6
    assert report["steps"]["stage1"] == 6 and report["steps"]["lr"] in (1e-3, 3e-3)
    assert set(report["lr_sweep"]["dev_exact_by_lr"]) == {"0.001", "0.003"}
    for name, arm in arms.items():
        paired = arm["paired_vs_control"]
        assert {"exact_diff", "ci95", "mcnemar_p", "cider_diff", "cider_ci95"} <= set(paired)
        assert paired["ci95"][0] <= paired["exact_diff"] <= paired["ci95"][1] and 0 <= paired["mcnemar_p"] <= 1
        assert paired["seeds"] == 2 and paired["images"] == 12
        assert arm["headline"] == {"oracle_draft": "oracle_refined", "ser_paper": "refined"}.get(
            name, "refined" if name == "ser_protected" else "first_glance"
        )
    assert arms["control"]["paired_vs_control"]["exact_diff"] == 0
    assert set(report["fixes"]) == {"ser_paper", "ser_protected", "oracle_draft"}
    for fixes in report["fixes"].values():
        assert set(fixes) == {"own", "stage1", "lexical", "hidden_detail"}
        assert all(f["fixes"] + f["breaks"] <= 2 * 12 for f in fixes.values())
    assert report["decision"]["verdict"] and "rule" in report["decision"]
    assert report["pretraining"]["loaded_from_cache"] is False and report["resumed_entries"] == 0
    table = (work / "table.md").read_text()
    assert all(f"| {name} |" in table for name in arms)


def test_the_run_resumes_per_arm_and_seed(bench):
    report, work = bench
    again = json.loads((work / "again.json").read_text())
    # schedule, lr sweep, 2 x stage 1, 2 x 5 arms: all read back, none retrained
    assert again["resumed_entries"] == 2 + 2 + 10 and again["pretraining"]["loaded_from_cache"] is True
    assert again["arms"] == report["arms"] and again["stage1_curve"] == report["stage1_curve"]
    assert len(list((work / "run").glob("*/seed1/*.json"))) == 6


def test_arms_get_equal_steps_and_the_frozen_vit_no_gradient(bench):
    report, _ = bench
    arms = {name: arm for name, arm in report["arms"].items() if name != "stage1"}
    assert {(arm["train"]["steps"], arm["train"]["batch_size"]) for arm in arms.values()} == {(3, 8)}
    for name, arm in report["arms"].items():
        trainable = arm["train"]["trainable"]
        assert arm["train"]["vision_gradient"] is False and trainable["vision_tower"] == 0, name
        assert arm["train"]["flops"] > 0
        if name in ("stage1", "control", "single_glance_multilayer"):  # Tab. 15 stage 1: connector + LM
            assert trainable["connector"] > 0 and trainable["language_model"] > 0 and trainable["deeplens"] == 0
        else:  # Tab. 15 stage 2: DeepLens + LM
            assert trainable["deeplens"] > 0 and trainable["language_model"] > 0 and trainable["connector"] == 0
    assert (
        arms["single_glance_multilayer"]["train"]["trainable"]["connector"]
        > arms["control"]["train"]["trainable"]["connector"]
    )


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

"""`captioner synth-bench`'s premise and stage 1 on a tiny world: linear probes of what the ViT layers
hold, the headroom, a stage 1 that runs its cosine schedule to the end, and the specialist's weights
carried into the single-glance multi-layer arm unchanged in function."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from captioner.replication import experiment, probes, standins
from captioner.replication.bench import SynthSettings
from captioner.replication.synth import Group, Scene, sample_scenes

TINY = dict(
    train_images=24,
    dev_images=8,
    test_images=8,
    vit_images=32,
    vit_steps=3,
    lm_scenes=20,
    lm_steps=3,
    connector_steps=2,
    stage1_steps=3,
    stage1_max_steps=12,
    curve_points=3,
    batch_size=8,
    max_new_tokens=6,
    cache_dir=None,
    run_dir=None,
)


@pytest.fixture(scope="module")
def world():
    settings = SynthSettings(**TINY)
    return settings, experiment.build_world(settings, {"specialist", "single-glance-multilayer"}, lambda m: None)


def test_linear_probe_reads_what_is_there_and_nothing_else():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=generator)
    y = (x @ torch.randn(8, 3, generator=generator)).argmax(-1)  # three linearly separable classes
    readable = probes.linear_probe(x[:300], y[:300], x[300:], y[300:])
    assert readable["accuracy"] >= 90
    noise = torch.randint(0, 3, (400,), generator=generator)
    unreadable = probes.linear_probe(x[:300], noise[:300], x[300:], noise[300:])
    assert unreadable["accuracy"] <= unreadable["chance"] + 15


def test_probes_on_a_tiny_world(world):
    settings, w = world
    model = standins.assemble("ser", w.tokenizer, w.pretrained, 0)
    found = probes.run_probes(model.vision_tower, w.processor, [0, 5], 32, 16, seed=0)
    assert list(found) == ["layer 0", "layer 5"]
    for layer in found.values():
        assert set(layer) == set(probes.PATCH_PROBES) | set(probes.IMAGE_PROBES)
    # the patch embedding is linear in the pixels: whether a patch holds a shape is readable there
    assert found["layer 0"]["occupancy"]["accuracy"] > found["layer 0"]["occupancy"]["chance"]
    verdict = probes.premise(found, 5, [0, 5])
    assert verdict["first_glance_shape"] == found["layer 5"]["shape"]["accuracy"]
    assert verdict["first_glance_is_coarse"] == (verdict["first_glance_shape"] <= verdict["shape_chance"] + 10)


def test_probe_labels_follow_the_scene():
    scene = Scene(Group(3, "blue", "triangle"), Group(1, "blue", "circle"), "horizontal", seed=2)
    labels = probes.probe_labels([scene])
    assert int(labels.occupancy.sum()) == 4 and labels.group_count.tolist() == [3]
    assert probes.LAYOUTS[int(labels.position[0])] == "horizontal"
    shapes = sorted(int(s) for s in labels.shape[0] if s >= 0)
    assert shapes == [0, 2, 2, 2] and set(labels.colour[0][labels.occupancy[0].bool()].tolist()) == {2}
    room = probes.headroom(sample_scenes(500, "room"))
    assert 0.4 < room["fraction"] < 0.9 and room["images"] == 500


def test_stage1_runs_its_cosine_schedule_to_the_end(world, monkeypatch):
    settings, w = world
    step_rates: list[float] = []
    real_step = torch.optim.AdamW.step

    def record_step(self, *args, **kwargs):
        step_rates.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", record_step)
    pretrained_model = experiment.connector_pretrain(w, settings, seed=0)
    step_rates.clear()
    model, run = experiment.train_stage1(w, settings, pretrained_model, 12, seed=0, curve=True)
    assert run["log"]["steps"] == 12 and not run["log"]["stopped_early"]
    assert [step for step, _ in run["dev_exact_curve"]] == [4, 8, 12]  # a curve, never a stopping rule
    # cosine decay to the end of the schedule: warm-up, peak, then down to nearly 0 at the last step
    assert len(step_rates) == 12 and max(step_rates) == pytest.approx(settings.stage1_lr)
    peak = step_rates.index(max(step_rates))
    assert step_rates[-1] < 0.05 * settings.stage1_lr
    assert all(a >= b for a, b in zip(step_rates[peak:], step_rates[peak + 1 :]))


def test_stage1_schedule_doubles_until_dev_plateaus(world):
    settings, w = world
    cache = experiment.Cache(None)
    settings = dataclasses.replace(settings, curve_points=1)  # one dev check, at the end of each schedule
    flat = experiment.choose_stage1_steps(w, dataclasses.replace(settings, plateau_points=1e9), cache, print)
    assert [r["schedule_steps"] for r in flat["runs"]] == [3, 6] and flat["plateaued"] is True
    assert flat["chosen_steps"] == 6 and [r["dev_exact_curve"][-1][0] for r in flat["runs"]] == [3, 6]
    always = experiment.choose_stage1_steps(w, dataclasses.replace(settings, plateau_points=-1e9), cache, print)
    assert [r["schedule_steps"] for r in always["runs"]] == [3, 6, 12] and always["chosen_steps"] == 12
    assert always["plateaued"] is False  # stopped by stage1_max_steps, and says so


def test_single_glance_multilayer_starts_as_the_specialist(world):
    settings, w = world
    specialist = standins.assemble("specialist", w.tokenizer, w.pretrained, 0)
    wide = standins.assemble("single-glance-multilayer", w.tokenizer, w.pretrained, 5)
    experiment.load_specialist(wide, standins.weights(specialist))
    narrow_tokens = specialist.first_glance_tokens(w.buffers["specialist", "dev"])
    wide_tokens = wide.first_glance_tokens(w.buffers["single-glance-multilayer", "dev"])
    torch.testing.assert_close(wide_tokens, narrow_tokens)

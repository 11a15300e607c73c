"""Training stages (pretrain / stage 1 / stage 2) on a tiny model and synthetic images:
the loss goes down, only the stage's parts change, checkpoints resume exactly, configs validate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from captioner.training.train import TrainConfig, load_train_config, train
from videoqa.cli.captioner import main as captioner_main
from videoqa_base.config import validate
from videoqa_base.errors import UserError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train faster on one thread, and two threads stall each other on a busy 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory) -> dict[str, Path]:
    """16 synthetic images x 3 captions, plus a stage-2 file with lexical pseudo-initial captions."""
    from captioner.data.readers import read_jsonl, write_jsonl
    from captioner.replication.synth import PERTURB_VOCABULARY, write_synthetic_dataset
    from captioner.training.pseudo_initial import LexicalPerturber

    root = tmp_path_factory.mktemp("synth")
    paths = write_synthetic_dataset(root, n_train=16, n_test=4, seed=0)
    records = read_jsonl(paths["train"])
    perturber = LexicalPerturber(seed=0, extra_groups=PERTURB_VOCABULARY, default_vocabulary=False)
    for record in records:
        record.initial_captions = [perturber.perturb_many(c, 1) for c in record.captions]
    write_jsonl(records, root / "train_stage2.jsonl")
    return {"root": root, "train": paths["train"], "stage2": root / "train_stage2.jsonl"}


def _config(stage: str, model: dict, data: Path, root: Path, out: Path, **training) -> TrainConfig:
    settings = {
        "output_dir": str(out),
        "max_steps": 10,
        "per_device_train_batch_size": 8,
        "learning_rate": 3e-3,
        "save_steps": 100,
        "logging_steps": 1,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "seed": 0,
    }
    settings.update(training)
    return validate(
        TrainConfig,
        {
            "stage": stage,
            "model": model,
            "data": {"train": [{"path": str(data), "image_root": str(root)}]},
            "training": settings,
        },
        "test",
    )


def _dataset_loss(model_dir: Path, data: Path, root: Path, with_initial: bool) -> float:
    """Mean teacher-forced loss of a checkpoint over a whole (fixed) dataset, in eval mode."""
    from captioner.data.readers import CaptionDataset, expand_pairs, read_jsonl
    from captioner.modeling.inference import load_model

    model, processor = load_model(model_dir, dtype="fp32", device="cpu")
    dataset = CaptionDataset(expand_pairs(read_jsonl(data), with_initial=with_initial), root)
    items = [dataset[i] for i in range(len(dataset))]
    batch = processor.build_training_batch(
        [i["image"] for i in items],
        [i["caption"] for i in items],
        [i["initial_caption"] for i in items] if with_initial else None,
    )
    with torch.no_grad():
        return float(model(**batch).loss)


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def _changed_parts(before: dict, after: dict) -> set[str]:
    return {name.split(".")[0] for name in before if name in after and not torch.equal(before[name], after[name])}


@pytest.fixture(scope="module")
def stages(synth_data, tmp_path_factory):
    """pretrain -> stage1 -> stage2 on the tiny model, each 10 steps; returns the directories."""
    from captioner.modeling.presets import build_tiny_checkpoint

    work = tmp_path_factory.mktemp("train")
    init = build_tiny_checkpoint(work / "init", "tiny-specialist", seed=0)
    root, data = synth_data["root"], synth_data["train"]
    dirs = {"init": init}
    results = {}
    # pretrain through the CLI (configs/train/tiny-pretrain.yaml with overrides)
    code = captioner_main(
        [
            "train",
            "--config",
            str(REPO / "configs/train/tiny-pretrain.yaml"),
            "--set",
            f"model.init_from={init}",
            "--set",
            "model.preset=null",
            "--set",
            f"data.train=[{{path: {data}, image_root: {root}}}]",
            "--set",
            f"training.output_dir={work / 'pretrain'}",
            "--set",
            "training.max_steps=10",
            "--set",
            "training.learning_rate=3e-3",
            "--set",
            "training.disable_tqdm=true",
            "--set",
            "training.save_steps=100",
        ]
    )
    assert code == 0
    dirs["pretrain"] = work / "pretrain"
    results["stage1"] = train(
        _config("stage1", {"init_from": str(dirs["pretrain"]), "trainable": "stage1"}, data, root, work / "stage1")
    )
    dirs["stage1"] = work / "stage1"
    results["stage2"] = train(
        _config("stage2", {"init_from": str(dirs["stage1"])}, synth_data["stage2"], root, work / "stage2")
    )
    dirs["stage2"] = work / "stage2"
    return dirs, results


def test_each_stage_lowers_the_loss_and_trains_only_its_parts(stages, synth_data):
    dirs, results = stages
    root = synth_data["root"]
    for before, after, data, with_initial, parts in [
        ("init", "pretrain", synth_data["train"], False, {"connector"}),
        ("pretrain", "stage1", synth_data["train"], False, {"connector", "language_model"}),
        ("stage1", "stage2", synth_data["stage2"], True, {"deeplens", "language_model"}),
    ]:
        if before == "stage1":
            # stage 1 is single-pass: its checkpoint has no DeepLens; stage 2 adds a fresh one.
            # Compare the stage-2 loss at the start (fresh DeepLens, same init seed) and the end.
            assert not any(k.startswith("deeplens") for k in _weights(dirs["stage1"]))
            start = _stage2_start_loss(dirs["stage1"], data, root)
        else:
            start = _dataset_loss(dirs[before], data, root, with_initial)
        end = _dataset_loss(dirs[after], data, root, with_initial)
        assert end < start - 0.1, (after, start, end)
        changed = _changed_parts(_weights(dirs[before]), _weights(dirs[after]))
        assert changed == parts - {"deeplens"} if before == "stage1" else changed == parts, (after, changed)
    assert results["stage2"].trainable["connector"] == 0 and results["stage2"].trainable["deeplens"] > 0
    # the final directory is a complete checkpoint: summary + resolved config, no pickles
    summary = json.loads((dirs["stage2"] / "train_summary.json").read_text())
    assert summary["finished"] and summary["global_step"] == 10
    assert (dirs["stage2"] / "train_config.yaml").is_file()
    assert not (dirs["stage2"] / "training_args.bin").exists()


def _stage2_start_loss(stage1_dir: Path, data: Path, root: Path) -> float:
    """Loss of the stage-2 starting point: the stage-1 model plus a fresh DeepLens (seeded like train())."""
    from captioner.training.train import ModelInit, build_model_and_processor

    torch.manual_seed(0)
    model, _ = build_model_and_processor(ModelInit(init_from=str(stage1_dir)), "stage2")
    tmp = stage1_dir.parent / "stage2-start"
    model.save_pretrained(tmp)
    from captioner.modeling.processing_ser import SeRProcessor

    SeRProcessor.from_pretrained(stage1_dir).save_pretrained(tmp)
    return _dataset_loss(tmp, data, root, with_initial=True)


def test_trained_checkpoint_captions_through_inference(stages, synth_data):
    from PIL import Image

    from captioner.modeling.inference import generate_captions, load_model

    dirs, _ = stages
    model, processor = load_model(dirs["stage2"], dtype="fp32", device="cpu")
    assert model.config.refine  # stage 2 saved a SeR model (DeepLens included)
    image = Image.open(synth_data["root"] / "images" / "test_00000.png")
    result = generate_captions(model, processor, [image, image], max_new_tokens=5, return_initial=True)
    assert len(result.initial) == len(result.refined) == 2 and result.refined[0] == result.refined[1]


def test_captioner_eval_captions_and_scores_a_checkpoint(stages, synth_data, tmp_path):
    dirs, _ = stages
    predictions, report = tmp_path / "pred.jsonl", tmp_path / "scores.json"
    code = captioner_main(
        [
            "eval",
            "--model",
            str(dirs["stage2"]),
            "--references",
            str(synth_data["root"] / "test.jsonl"),
            "--image-root",
            str(synth_data["root"]),
            "--predictions",
            str(predictions),
            "--json",
            str(report),
            "--metrics",
            "BLEU-4,CIDEr",
            "--max-new-tokens",
            "6",
            "--batch-size",
            "3",
        ]
    )
    assert code == 0
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"test_{i:05d}" for i in range(4)]
    scores = json.loads(report.read_text())
    assert scores["num_images"] == 4 and set(scores["scores"]) == {"BLEU-4", "CIDEr"}
    card = (dirs["stage2"] / "README.md").read_text()  # the held-out scores reach the model card
    assert f"| {scores['scores']['BLEU-4']:.2f} | {scores['scores']['CIDEr']:.2f} | 4 |" in card


def test_checkpoint_resumes_exactly(synth_data, tmp_path):
    """Train 6 steps straight; or 3, stop, resume to 6: same weights (optimizer, schedule, RNG, data order)."""
    from captioner.modeling.presets import build_tiny_checkpoint

    init = build_tiny_checkpoint(tmp_path / "init", "tiny-specialist", seed=1)
    root, data = synth_data["root"], synth_data["train"]

    def config(out):
        return _config(
            "stage1",
            {"init_from": str(init), "trainable": "all"},
            data,
            root,
            out,
            max_steps=6,
            save_steps=3,
            per_device_train_batch_size=4,
        )

    straight = train(config(tmp_path / "straight"))
    stopped = train(config(tmp_path / "resumed"), stop_after_steps=3)
    assert not stopped.finished and stopped.global_step == 3
    assert (tmp_path / "resumed" / "checkpoint-3" / "model.safetensors").is_file()
    assert not (tmp_path / "resumed" / "model.safetensors").exists()  # no final model yet
    resumed = train(config(tmp_path / "resumed"))
    assert resumed.resumed_from.endswith("checkpoint-3")
    assert resumed.finished and resumed.global_step == 6
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    assert resumed.losses == pytest.approx(straight.losses, rel=1e-4)  # log history survives the restart


def test_config_errors_name_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "stage: stage3\nmodel: {preset: tiny-ser}\ndata: {train: [{path: x.jsonl}]}\n"
        "training: {output_dir: o, learning_rate: 1e-3}\n"
    )
    with pytest.raises(UserError, match=r"bad.yaml: field 'stage'"):
        load_train_config(path)
    path.write_text(
        "stage: stage1\nmodel: {preset: tiny-ser}\ndata: {train: [{path: x.jsonl}]}\ntraining: {output_dir: o}\n"
    )
    with pytest.raises(UserError, match=r"field 'training.learning_rate'"):
        load_train_config(path)
    path.write_text(
        "stage: stage1\nmodel: {preset: tiny-ser, init_from: x}\ndata: {train: [{path: x.jsonl}]}\n"
        "training: {output_dir: o, learning_rate: 1e-3}\n"
    )
    with pytest.raises(UserError, match="exactly one of model.init_from"):
        load_train_config(path)
    with pytest.raises(UserError, match="learning_rate"):  # --set overrides are validated too
        load_train_config(REPO / "configs/train/stage1.yaml", ["training.learning_rate=-1"])
    with pytest.raises(UserError, match="learnign_rate"):  # typos are not silently ignored
        load_train_config(REPO / "configs/train/stage1.yaml", ["training.learnign_rate=1e-4"])


def test_paper_configs_validate_with_the_paper_settings():
    configs = {s: load_train_config(REPO / f"configs/train/{s}.yaml") for s in ("pretrain", "stage1", "stage2")}
    assert configs["pretrain"].model.vision_tower == "openai/clip-vit-large-patch14-336"
    assert configs["pretrain"].model.language_model == "facebook/opt-125m"
    # stage 2: the paper's 2 epochs over the refinement pairs (Sec. 5, Tab. 15)
    assert [configs[s].training.num_train_epochs for s in configs] == [1, 10, 2]
    assert [configs[s].training.learning_rate for s in configs] == [1e-3, 2e-5, 2e-5]
    for config in configs.values():
        assert config.training.warmup_ratio == 0.03 and config.training.weight_decay == 0
        assert config.training.lr_scheduler_type == "cosine"
    assert configs["stage1"].model.init_from == configs["pretrain"].training.output_dir
    assert configs["stage2"].model.init_from == configs["stage1"].training.output_dir
    # Sec. 5 as written: the refinement loss alone; the protective mix is an option (docs/replication.md)
    assert configs["stage2"].data.first_glance_fraction == 0 and configs["stage1"].data.first_glance_fraction == 0


def test_missing_init_checkpoint_and_missing_data_are_user_errors(tmp_path, synth_data):
    config = _config(
        "stage1", {"init_from": str(tmp_path / "nope")}, synth_data["train"], synth_data["root"], tmp_path / "o"
    )
    with pytest.raises(UserError, match="not a SeR checkpoint directory"):
        train(config)
    config = _config("stage2", {"preset": "tiny-ser"}, synth_data["train"], synth_data["root"], tmp_path / "o")
    with pytest.raises(UserError, match="pseudo-initial"):  # stage 2 on a file without initial captions
        train(config)


def test_pretrain_from_pretrained_parts_trains_the_connector(tmp_path, synth_data):
    """The paper's starting point: CLIP vision tower + OPT LM checkpoints (tiny local stand-ins)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, OPTConfig, OPTForCausalLM

    from captioner.modeling.presets import tiny_tokenizer

    torch.manual_seed(0)
    CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            image_size=64,
            patch_size=16,
            projection_dim=32,
        )
    ).save_pretrained(tmp_path / "clip")
    tokenizer = tiny_tokenizer()
    OPTForCausalLM(
        OPTConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            ffn_dim=64,
            num_attention_heads=4,
            word_embed_proj_dim=32,
            max_position_embeddings=512,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=1,
        )
    ).half().save_pretrained(tmp_path / "opt")  # hub OPT weights are fp16: training must still be fp32
    tokenizer.save_pretrained(tmp_path / "opt")
    model = {
        "vision_tower": str(tmp_path / "clip"),
        "language_model": str(tmp_path / "opt"),
        "config": {"refine": False, "connector_depth": 4, "multilayer_feature_layers": [1, 2, 3]},
    }
    config = _config(
        "pretrain", model, synth_data["train"], synth_data["root"], tmp_path / "out", max_steps=8, learning_rate=1e-2
    )
    result = train(config)
    assert result.finished and result.trainable["language_model"] == 0 and result.trainable["connector"] > 0
    weights = _weights(tmp_path / "out")
    assert all(t.dtype == torch.float32 for t in weights.values())
    assert not any(k.startswith("deeplens") for k in weights)
    opt = load_file(str(tmp_path / "opt" / "model.safetensors"))
    name = next(k for k in opt if k.endswith("layers.0.fc1.weight"))
    torch.testing.assert_close(weights["language_model." + name].half(), opt[name])  # frozen, loaded from OPT
    assert result.losses[-1] < result.losses[0]


def test_paper_pretrain_config_without_weights_is_a_one_line_missing_model_error(tmp_path):
    from videoqa_base.errors import MissingModelError

    config = load_train_config(REPO / "configs/train/pretrain.yaml", [f"training.output_dir={tmp_path / 'o'}"])
    with pytest.raises(MissingModelError) as err:
        train(config)
    assert "openai/clip-vit-large-patch14-336" in str(err.value) and "\n" not in str(err.value)


def test_check_training_reports_tab15_sets_and_no_vit_gradient(tmp_path, capsys):
    """`captioner check-training` (tiny preset here; the paper size is the same code): one step per stage."""
    from captioner.training.check import TAB15_TRAINABLE

    out = tmp_path / "check.json"
    assert captioner_main(["check-training", "--preset", "tiny-ser", "--caption-words", "6", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["ok"] and report["parameters"]["deeplens"] > 0
    for stage, parts in TAB15_TRAINABLE.items():
        result = report["stages"][stage]
        trained = {part for part, n in result["trainable_parameters"].items() if n > 0}
        assert trained == set(parts) and result["matches_tab15"], stage
        assert set(result["changed_parts"]) == set(parts), stage  # the step moved exactly those parts
        assert result["vision_gradient"] is False and result["loss_finite"]
        assert result["seconds_per_step"] > 0 and result["peak_rss_gib_so_far"] > 0
    assert report["stages"]["stage2"]["trainable_parameters"]["connector"] == 0
    assert "all checks passed" in capsys.readouterr().out


def test_dci_release_directory_is_a_training_source():
    from captioner.training.train import DataConfig, DataSource, build_dataset

    root = REPO / "tests/fixtures/dci"
    source = DataSource(path=str(root), image_root=str(root / "densely_captioned_images/photos"), format="dci")
    dataset = build_dataset(DataConfig(train=[source]), "stage1")  # split "train" from splits.json: sa_1590
    assert len(dataset) == 3 and dataset[0]["caption"].startswith("A red tram waits")
    assert dataset[0]["image"].size == (8, 6)


def test_trained_checkpoint_has_a_model_card(stages, synth_data):
    from captioner.training.model_card import record_metrics

    dirs, _ = stages
    card = (dirs["stage2"] / "README.md").read_text()
    assert "# SeR checkpoint: stage2 (ser)" in card and "## Command" in card
    assert str(synth_data["stage2"]) in card  # the data it read
    assert "stage: stage2" in card and "learning_rate: 0.003" in card  # the resolved config
    card = (dirs["stage1"] / "README.md").read_text()
    assert "Not evaluated yet" in card  # (stage 2 was scored by `captioner eval` above)
    record_metrics(dirs["stage1"], {"BLEU-4": 12.5, "CIDEr": 80.25}, 4, "test.jsonl")
    card = (dirs["stage1"] / "README.md").read_text()
    assert "| 12.50 | 80.25 | 4 | test.jsonl |" in card and "Not evaluated yet" not in card
    pretrain_card = (dirs["pretrain"] / "README.md").read_text()
    assert "captioner" in pretrain_card and "tiny-pretrain.yaml" in pretrain_card  # the CLI command


def test_stage2_can_mix_first_glance_pairs_into_every_batch(stages, synth_data, tmp_path):
    """data.first_glance_fraction (the ser_protected recipe): a batch holds refinement and first-glance
    pairs, the loss is their weighted mean, and only DeepLens + LM move."""
    from captioner.training.train import CaptionCollator, build_dataset

    dirs, _ = stages
    config = _config(
        "stage2",
        {"init_from": str(dirs["stage1"])},
        synth_data["stage2"],
        synth_data["root"],
        tmp_path / "mixed",
        max_steps=3,
    )
    config.data.first_glance_fraction = 0.5
    dataset = build_dataset(config.data, "stage2")
    kinds = [item.initial_caption is None for item in dataset.pairs]
    assert sum(kinds) == len(kinds) - sum(kinds) == 48  # 16 images x 3 captions, each kind
    from captioner.modeling.processing_ser import SeRProcessor

    batch = CaptionCollator(SeRProcessor.from_pretrained(dirs["stage1"]), with_initial=True)([dataset[0], dataset[-1]])
    assert "initial_caption_ids" in batch["parts"][0] and "initial_caption_ids" not in batch["parts"][1]
    result = train(config)
    assert result.finished and all(loss == loss for loss in result.losses)  # finite
    changed = _changed_parts(_weights(dirs["stage1"]), _weights(tmp_path / "mixed"))
    assert changed == {"language_model"}  # DeepLens is new (not in the stage-1 file); the connector is frozen
    assert result.trainable["deeplens"] > 0 and result.trainable["connector"] == 0

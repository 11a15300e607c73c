import pytest

from videoqa.config import load_run_config
from videoqa_base.errors import UserError


def test_registered_components_and_overrides(tmp_path):
    llm_dir = tmp_path / "my-llm"
    llm_dir.mkdir()
    (llm_dir / "config.json").write_text('{"model_type": "qwen2"}')
    cfg = load_run_config(
        dataset="egoschema",
        captioner="ser",
        llm=str(llm_dir),
        overrides=["frames.fps=0.5", "captioner.batch_size=64", "dataset.split=full", "limit=3"],
    )
    assert cfg.dataset.type == "egoschema" and cfg.dataset.split == "full"
    assert cfg.captioner.name == "ser" and cfg.captioner.type == "ser" and cfg.captioner.batch_size == 64
    assert cfg.llm.backend == "vllm" and cfg.llm.model == str(llm_dir.resolve()) and cfg.llm.name == "my-llm"
    assert cfg.frames.fps == 0.5 and cfg.limit == 3
    assert cfg.answer.context_policy == "subsample"


def test_default_llm_is_qwen_14b():
    cfg = load_run_config(dataset="egoschema", captioner="ser")
    assert cfg.llm.model == "Qwen/Qwen2.5-14B-Instruct"


def test_captioner_directory_type_comes_from_config_json(tmp_path):
    (tmp_path / "cap").mkdir()
    (tmp_path / "cap" / "config.json").write_text('{"model_type": "ser"}')
    cfg = load_run_config(dataset="egoschema", captioner=str(tmp_path / "cap"))
    assert cfg.captioner.type == "ser" and cfg.captioner.model == str((tmp_path / "cap").resolve())
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(UserError, match=r"odd/config.json: field 'model_type'"):
        load_run_config(dataset="egoschema", captioner=str(tmp_path / "odd"))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["frames.fps=-1"], "field 'frames': Value error, frames.fps must be > 0"),
        (["frames.bogus=1"], "field 'frames.bogus': Extra inputs are not permitted"),
        (["transcript.caption_every=0"], "field 'transcript.caption_every'"),
        (["answer.context_policy=truncate"], "field 'answer.context_policy'"),
        (["captioner.batch_size=many"], "field 'captioner.batch_size'"),
        (["nonsense"], "--set 'nonsense': expected key=value"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(UserError) as err:
        load_run_config(dataset="egoschema", captioner="ser", overrides=overrides)
    assert message in str(err.value)
    assert "run.yaml" in str(err.value) or "--set" in str(err.value)


def test_unknown_names_and_bad_yaml(tmp_path):
    with pytest.raises(UserError, match="captioner 'nope': not a registered name"):
        load_run_config(dataset="egoschema", captioner="nope")
    bad = tmp_path / "ds.yaml"
    bad.write_text("type: [unclosed")
    with pytest.raises(UserError, match="ds.yaml: not valid YAML"):
        load_run_config(dataset=str(bad), captioner="ser")
    wrong = tmp_path / "ds2.yaml"
    wrong.write_text("type: egoschema\n")
    with pytest.raises(UserError, match=r"ds2.yaml.*field 'dataset.data_root': Field required"):
        load_run_config(dataset=str(wrong), captioner="ser")


def test_run_yaml_holds_no_default_the_config_classes_already_hold():
    """One source per default: a key of configs/run.yaml that repeats a pydantic default is drift waiting to happen."""
    from videoqa.config import CONFIG_DIR, RunConfig
    from videoqa_base.config import read_yaml

    def leaves(data: dict, prefix: str = ""):
        for key, value in data.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    repeated = []
    for dotted, value in leaves(read_yaml(CONFIG_DIR / "run.yaml")):
        section, _, field = dotted.rpartition(".")
        model = RunConfig.model_fields[section].default if section else None
        if model is not None and field in type(model).model_fields and getattr(model, field) == value:
            repeated.append(dotted)
    assert not repeated, f"configs/run.yaml repeats the defaults of videoqa/config.py: {repeated}"


def test_read_yaml_extends_merges_sections_and_names_the_file_of_a_cycle(tmp_path):
    from videoqa_base.config import read_yaml

    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "base.yaml").write_text("training: {seed: 1, workers: 4}\ndata: {a: 1}\n")
    (tmp_path / "stage.yaml").write_text("extends: shared/base.yaml\ntraining: {seed: 2}\n")
    assert read_yaml(tmp_path / "stage.yaml") == {"training": {"seed": 2, "workers": 4}, "data": {"a": 1}}
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(UserError, match="a cycle"):
        read_yaml(tmp_path / "a.yaml")

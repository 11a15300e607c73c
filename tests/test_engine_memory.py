"""The vLLM engine is sized from what the model needs and checked against the memory available.

Unit tests of the arithmetic (no engine), and one end-to-end run (slow: a real vLLM CPU engine) of
`videoqa run` with the demo's tiny models while another process holds memory, so that less than
90 % of the machine is free: vLLM's old default (0.9 of the whole machine's RAM) could not start
there; the run answers, and asking for that fraction explicitly is refused in one line before any
captioning.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from videoqa.answering.llm.engine_memory import (
    CPU_AVAILABLE_SHARE,
    DEFAULT_KV_SEQUENCES,
    GIB,
    KVCACHE_ENV,
    RUNTIME_BYTES,
    EngineStartError,
    ModelMemory,
    model_memory,
    plan_cpu,
    plan_gpu,
    start_failure,
)
from videoqa.config import LLMConfig
from videoqa_base.checkpoints import checkpoint_parameters


@pytest.fixture
def no_kv_env(monkeypatch):
    monkeypatch.delenv(KVCACHE_ENV, raising=False)  # conftest sets it for the other engine tests


def llm(**fields) -> LLMConfig:
    return LLMConfig(name="m", model="unused", **fields)


# ---------------------------------------------------------------------------- what the model needs


def test_weights_and_kv_per_token_come_from_the_files(tiny_models):
    _, llm_dir = tiny_models
    cfg = json.loads((llm_dir / "config.json").read_text())
    params = checkpoint_parameters(llm_dir)
    per_token_elements = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * cfg["head_dim"]

    auto = model_memory(llm_dir)  # a float32 checkpoint: vLLM's auto dtype downcasts it to 16 bits
    assert cfg["dtype"] == "float32"
    assert auto.weight_bytes == params * 2
    assert auto.kv_bytes_per_token == per_token_elements * 2
    assert auto.max_model_len == cfg["max_position_embeddings"]

    fp32 = model_memory(llm_dir, dtype="float32", max_model_len=512)
    assert fp32.weight_bytes == params * 4 and fp32.kv_bytes_per_token == per_token_elements * 4
    assert fp32.one_sequence_kv_bytes == 512 * per_token_elements * 4


def test_a_vision_language_config_is_sized_from_its_text_part(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "model_type": "qwen2_5_vl",
                "torch_dtype": "bfloat16",
                "vision_config": {"hidden_size": 64},
                "text_config": {
                    "num_hidden_layers": 3,
                    "num_attention_heads": 4,
                    "num_key_value_heads": 2,
                    "hidden_size": 256,
                    "max_position_embeddings": 1024,
                },
            }
        )
    )
    memory = model_memory(tmp_path)
    assert memory.kv_bytes_per_token == 2 * 3 * 2 * (256 // 4) * 2
    assert memory.max_model_len == 1024 and memory.weight_bytes == 0  # no weight files here


def test_a_config_without_the_attention_shape_is_a_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"num_hidden_layers": 2}))
    with pytest.raises(Exception) as err:
        model_memory(tmp_path)
    assert "config.json" in str(err.value) and "KV cache" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------- CPU


MODEL = ModelMemory(weight_bytes=2 * GIB, kv_bytes_per_token=128 * 1024, max_model_len=4096)  # 0.5 GiB a sequence


def test_cpu_kv_cache_holds_max_num_seqs_sequences_when_there_is_room(no_kv_env):
    plan = plan_cpu(llm(), MODEL, available=20 * GIB)
    assert plan.kv_cache_bytes == DEFAULT_KV_SEQUENCES * MODEL.one_sequence_kv_bytes
    assert plan.need_bytes == MODEL.weight_bytes + plan.kv_cache_bytes + RUNTIME_BYTES["cpu"]
    assert plan.engine_kwargs() == {"kv_cache_memory_bytes": plan.kv_cache_bytes}  # no fraction of the machine
    assert plan_cpu(llm(max_num_seqs=2), MODEL, available=20 * GIB).kv_cache_bytes == GIB


def test_cpu_kv_cache_is_capped_by_the_available_memory_but_holds_one_sequence(no_kv_env):
    available = 6 * GIB
    plan = plan_cpu(llm(), MODEL, available=available)
    budget = int(available * CPU_AVAILABLE_SHARE) - MODEL.weight_bytes - RUNTIME_BYTES["cpu"]
    assert plan.kv_cache_bytes == budget < DEFAULT_KV_SEQUENCES * MODEL.one_sequence_kv_bytes
    assert "capped" in plan.source
    tight = plan_cpu(llm(), MODEL, available=MODEL.weight_bytes + RUNTIME_BYTES["cpu"] + MODEL.one_sequence_kv_bytes)
    assert tight.kv_cache_bytes == MODEL.one_sequence_kv_bytes


def test_cpu_model_that_cannot_fit_is_one_line_naming_the_setting(no_kv_env):
    with pytest.raises(EngineStartError) as err:
        plan_cpu(llm(), MODEL, available=3 * GIB)
    message = str(err.value)
    assert "\n" not in message and "llm.max_model_len" in message and "3.00 GiB" in message
    # a captioner that shares the machine counts too
    with pytest.raises(EngineStartError, match="captioner"):
        plan_cpu(llm(), MODEL, available=4 * GIB, captioner_bytes=2 * GIB)


def test_cpu_explicit_kv_cache_wins_and_is_checked(no_kv_env, monkeypatch):
    plan = plan_cpu(llm(cpu_kvcache_gib=1.5), MODEL, available=20 * GIB)
    assert plan.kv_cache_bytes == int(1.5 * GIB)
    with pytest.raises(EngineStartError, match="llm.cpu_kvcache_gib=0.25"):  # less than one sequence
        plan_cpu(llm(cpu_kvcache_gib=0.25), MODEL, available=20 * GIB)
    monkeypatch.setenv(KVCACHE_ENV, "3")  # vLLM's legacy variable overrides the engine argument: it is what counts
    plan = plan_cpu(llm(cpu_kvcache_gib=1.5), MODEL, available=20 * GIB)
    assert plan.kv_cache_bytes == 3 * GIB and KVCACHE_ENV in plan.source
    assert "kv_cache_memory_bytes" not in plan.engine_kwargs()
    with pytest.raises(EngineStartError, match=f"{KVCACHE_ENV}=3"):
        plan_cpu(llm(), MODEL, available=5 * GIB)


def test_cpu_explicit_fraction_is_vllms_rule_checked_against_what_is_free(no_kv_env):
    total = psutil.virtual_memory().total
    with pytest.raises(EngineStartError) as err:
        plan_cpu(llm(gpu_memory_utilization=0.9), MODEL, available=int(total * 0.85))
    assert "llm.gpu_memory_utilization: null" in str(err.value) and "\n" not in str(err.value)
    plan = plan_cpu(llm(gpu_memory_utilization=0.5), MODEL, available=int(total * 0.85))
    assert plan.engine_kwargs() == {"gpu_memory_utilization": 0.5}
    # with an explicit KV cache vLLM skips the fraction's check: the KV cache is what is checked
    plan = plan_cpu(llm(gpu_memory_utilization=0.9, cpu_kvcache_gib=1), MODEL, available=int(total * 0.5))
    assert plan.kv_cache_bytes == GIB and plan.engine_kwargs()["kv_cache_memory_bytes"] == GIB


# ---------------------------------------------------------------------------- GPU


def test_gpu_fraction_is_what_is_free_less_the_captioner():
    total, free = 80 * GIB, 60 * GIB
    plan = plan_gpu(llm(), MODEL, free=free, total=total, captioner_bytes=10 * GIB)
    assert plan.gpu_memory_utilization == 0.62  # (60 - 10) / 80, floored to a percent
    assert plan.engine_kwargs() == {"gpu_memory_utilization": 0.62}
    assert plan_gpu(llm(), MODEL, free=total, total=total).gpu_memory_utilization == 0.9  # vLLM's default at most


def test_gpu_refusals_name_the_setting():
    with pytest.raises(EngineStartError, match="llm.gpu_memory_utilization=0.9 asks") as err:
        plan_gpu(llm(gpu_memory_utilization=0.9), MODEL, free=60 * GIB, total=80 * GIB, captioner_bytes=GIB)
    assert "captioner" in str(err.value)
    with pytest.raises(EngineStartError, match="llm.max_model_len"):
        plan_gpu(llm(), MODEL, free=3 * GIB, total=80 * GIB)
    halves = plan_gpu(llm(tensor_parallel_size=2), MODEL, free=4 * GIB, total=80 * GIB)  # weights split over 2
    assert halves.need_bytes == GIB + MODEL.one_sequence_kv_bytes // 2 + RUNTIME_BYTES["cuda"]


# ---------------------------------------------------------------------------- failures anyway


def test_an_engine_start_failure_is_one_line_with_the_cause_and_the_setting():
    try:
        try:
            raise ValueError("Available memory on node 0 (1.00/23.54 GiB) on kv cache allocation is less than ...")
        except ValueError as inner:
            raise RuntimeError("Engine core initialization failed. See root cause above.") from inner
    except RuntimeError as exc:
        error = start_failure(llm(), exc)
    message = str(error)
    assert "\n" not in message and "Available memory on node 0" in message
    assert "llm.cpu_kvcache_gib" in message and "llm.max_model_len" in message
    other = str(start_failure(llm(), RuntimeError("no kernel for head size 7")))
    assert "no kernel for head size 7" in other and "llm.engine_kwargs" in other


# ---------------------------------------------------------------------------- a real engine, memory held


def _hold_memory(nbytes: int) -> subprocess.Popen:
    """A child process that allocates and touches `nbytes`, says so, and waits to be killed."""
    code = (
        "import sys, time, numpy as np\n"
        f"held = np.ones({nbytes}, dtype=np.uint8)\n"  # ones, not empty: every page is touched
        "print('held', flush=True)\n"
        "time.sleep(3600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.slow
def test_run_answers_while_another_process_holds_memory(tiny_models, dataset, tmp_path):
    memory = psutil.virtual_memory()
    hold = max(0, memory.available - int(0.85 * memory.total))  # leave 85 % of the machine free
    if memory.available - hold < 3 * GIB:
        pytest.skip(f"only {memory.available / GIB:.1f} GiB available: holding more is not safe here")
    holder = _hold_memory(hold) if hold else None
    try:
        assert psutil.virtual_memory().available < 0.9 * memory.total  # vLLM's old default cannot start now
        captioner, llm_dir = tiny_models
        env = {k: v for k, v in os.environ.items() if k != KVCACHE_ENV} | {"TOKENIZERS_PARALLELISM": "false"}
        base = [sys.executable, "-m", "videoqa.cli.main", "run", "--dataset", "egoschema"]
        base += ["--data-root", str(dataset), "--captioner", str(captioner), "--llm", str(llm_dir)]
        base += ["--output-dir", str(tmp_path), "--quiet", "--set", "captioner.max_new_tokens=8"]
        base += ["--set", "llm.engine_kwargs={enforce_eager: true}"]

        # vLLM's rule asked for explicitly: refused in one line before any captioning
        refused = subprocess.run(
            [*base, "--run-id", "fraction", "--set", "llm.gpu_memory_utilization=0.9"],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert refused.returncode == 2, refused.stdout + refused.stderr
        errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "llm.gpu_memory_utilization" in errors[0], refused.stderr
        assert "Traceback" not in refused.stderr
        assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()], "captioned before the check"

        # sized from the model: the engine starts and every question with a video is answered
        out = subprocess.run([*base, "--run-id", "sized"], capture_output=True, text=True, env=env, timeout=900)
        assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
        run_dir = next(Path(tmp_path).glob("egoschema/*/sized"))
        predictions = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
        answered = [p for p in predictions if p["status"] == "ok"]
        assert answered and all(p["pred"] in range(5) for p in answered)
        manifest = json.loads((run_dir / "manifest.json").read_text())
        sizing = manifest["llm"]["memory"]
        assert sizing["device"] == "cpu" and sizing["kv_cache_gib"] < 1 and sizing["gpu_memory_utilization"] is None
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()


@pytest.mark.slow
def test_an_engine_that_fails_to_start_is_one_line_and_the_traceback_is_in_run_log(tiny_models, dataset, tmp_path):
    captioner, llm_dir = tiny_models
    env = {k: v for k, v in os.environ.items() if k != KVCACHE_ENV} | {"TOKENIZERS_PARALLELISM": "false"}
    args = [sys.executable, "-m", "videoqa.cli.main", "run", "--dataset", "egoschema", "--data-root", str(dataset)]
    args += ["--captioner", str(captioner), "--llm", str(llm_dir), "--output-dir", str(tmp_path), "--quiet"]
    args += ["--run-id", "no-kv", "--set", "captioner.max_new_tokens=4"]
    # past the check (an engine argument of the user's own): vLLM's engine process refuses a KV cache
    # that cannot hold one sequence
    args += ["--set", "llm.engine_kwargs={enforce_eager: true, kv_cache_memory_bytes: 4096}"]
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 2, (out.stdout + out.stderr)[-3000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "did not start" in errors[0] and "llm." in errors[0], out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    log = next(Path(tmp_path).glob("egoschema/*/no-kv/run.log"))
    assert str(log) in errors[0] and "Traceback" in log.read_text()

"""`videoqa bench` machinery on tiny sizes (no timing assertions) and the SeR fast path it measures:
the unused ViT layer is skipped, fixed-length generation, the CPU dtype choice, out-of-memory backoff.
One vLLM engine at most: the smoke run of the whole command (a subprocess)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from captioner.modeling import inference
from captioner.modeling.inference import batch_limit, generate_captions, load_model
from captioner.modeling.presets import build_tiny_checkpoint, get_config
from tests.conftest import random_images
from videoqa import bench
from videoqa.bench import caption, peak, report, settings
from videoqa.bench.flops import vision_flops
from videoqa_base import device
from videoqa_base.batching import is_out_of_memory
from videoqa_base.errors import UserError

REPO = Path(__file__).resolve().parent.parent
PROMPT = "Describe this frame within 50 words"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


images = random_images


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ser") / "tiny-ser", seed=0)


# ---------------------------------------------------------------------------- SeR fast path


def test_vision_tower_runs_only_the_layers_that_are_read(checkpoint):
    model, processor = load_model(checkpoint)
    pixels = processor.preprocess_images(images(2))
    last = model.vision_tower.encoder.layers[-1]
    calls = []
    hook = last.register_forward_hook(lambda *args: calls.append(1))
    try:
        buffer = model.encode_images(pixels)
    finally:
        hook.remove()
    assert calls == []  # layer 4 of 4: nothing reads it
    full = model.vision_tower(pixels, output_hidden_states=True).hidden_states
    assert torch.equal(buffer.first_glance, full[-2][:, 1:])
    assert torch.equal(buffer.deeplens, torch.cat([full[i][:, 1:] for i in (1, 2, 3)], dim=-1))
    # the checkpoint format is unchanged: the unused layer's weights are still there
    assert any(k.startswith("vision_tower.encoder.layers.3.") for k in model.state_dict())
    assert get_config("ser").vision_layers_used == 23
    assert get_config("tiny-single-glance-multilayer").vision_layers_used == 3
    assert get_config("ser", multilayer_feature_layers=[13, 18, 24]).vision_layers_used == 24


def test_min_new_tokens_fixes_the_caption_length(checkpoint):
    model, processor = load_model(checkpoint)
    buffer = model.encode_images(processor.preprocess_images(images(3)))
    inputs = processor.generation_inputs(3, PROMPT)
    visual = model.first_glance_tokens(buffer)
    ids = model.generate_ids(visual, inputs["input_ids"], inputs["attention_mask"], max_new_tokens=7, min_new_tokens=7)
    assert ids.shape == (3, 7)
    assert not (ids[:, :-1] == processor.eos_token_id).any()
    texts = generate_captions(model, processor, images(2), PROMPT, max_new_tokens=6, min_new_tokens=6)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_cpu_dtype_auto_is_bf16_only_with_native_bf16():
    # both branches forced: the answer on this host depends on its CPU
    assert device.resolve_dtype("auto", "cpu", native_bf16=True) == torch.bfloat16
    assert device.resolve_dtype("auto", "cpu", native_bf16=False) == torch.float32
    assert device.resolve_dtype("auto", "cpu") == device.resolve_dtype(
        "auto", "cpu", native_bf16=device.cpu_has_native_bf16()
    )
    assert device.resolve_dtype("fp32", "cpu", native_bf16=True) == torch.float32
    assert device.resolve_dtype("bf16", "cpu", native_bf16=False) == torch.bfloat16


def test_out_of_memory_halves_the_batch_and_retries(checkpoint, monkeypatch):
    model, processor = load_model(checkpoint)
    pictures = images(5, seed=3)
    expected = generate_captions(model, processor, pictures, PROMPT, max_new_tokens=5, batch_size=1)
    real = inference.first_glance
    seen = []

    def first_glance_with_little_memory(model_, processor_, buffer, *args, **kwargs):
        seen.append(buffer.batch_size)
        if buffer.batch_size > 2:  # what CUDA raises when a batch does not fit
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model_, processor_, buffer, *args, **kwargs)

    monkeypatch.setattr(inference, "first_glance", first_glance_with_little_memory)
    assert generate_captions(model, processor, pictures, PROMPT, max_new_tokens=5, batch_size=8) == expected
    assert seen == [5, 2, 2, 1]  # 5 fails -> 2, 2, then the last image
    assert batch_limit(model) == 2
    seen.clear()
    generate_captions(model, processor, pictures[:4], PROMPT, max_new_tokens=5, batch_size=8)
    assert seen == [2, 2]  # later calls start at the size that fitted

    def always_out_of_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(inference, "first_glance", always_out_of_memory)
    with pytest.raises(RuntimeError, match="can't allocate memory"):  # batch 1 still fails: raised
        generate_captions(model, processor, pictures[:3], PROMPT, max_new_tokens=5, batch_size=4)

    def broken(*args, **kwargs):
        raise ValueError("not a memory problem")

    fresh, _ = load_model(checkpoint)
    monkeypatch.setattr(inference, "first_glance", broken)
    with pytest.raises(ValueError):
        generate_captions(fresh, processor, pictures, PROMPT, max_new_tokens=5, batch_size=4)
    assert batch_limit(fresh) is None
    assert is_out_of_memory(torch.OutOfMemoryError("x")) and not is_out_of_memory(RuntimeError("shape mismatch"))


# ---------------------------------------------------------------------------- bench pieces


def test_peak_flops_and_contention_probe():
    measured = peak.measure_peak_flops("float32", ((32, 48, 64),), 0.01)
    assert measured["flops"] > 0 and measured["best"]["op"] in ("linear", "matmul")
    assert {r["op"] for r in measured["runs"]} == {"linear", "matmul"}
    probe = peak.contention_probe()
    assert probe["fill_ms_1_thread"] > 0 and isinstance(probe["busy"], bool)


def test_time_captioning_counts_flops_of_every_frame():
    model, processor = caption.random_ser("tiny-ser")
    frames = caption.frames_like_decoded(3, processor.image_size)
    assert frames[0].shape == (64, 85, 3)
    run = caption.time_captioning(model, processor, frames, batch_size=2, new_tokens=3, refine_steps=1)
    assert run.frames == 3 and run.seconds > 0 and run.seconds_per_frame > 0
    assert set(run.stage_seconds) == {"preprocess", "vision", "first_glance", "refine"}
    assert run.flops["vision"] == pytest.approx(3 * vision_flops(model.config.vision_config, 3))
    assert run.flops["total"] > run.flops["vision"] > 0 and run.flops["deeplens"] > 0
    specialist = caption.time_captioning(model, processor, frames, batch_size=3, new_tokens=3, refine_steps=0)
    assert specialist.flops["deeplens"] == specialist.flops["lm_refine"] == 0
    assert specialist.mfu(1e12) > 0 and set(run.stage_mfu(1e12)) == {"vision", "first_glance", "refine"}


def test_figures_say_pass_or_miss_and_why():
    details = {
        "errors": {"e2e": "RuntimeError: engine died"},
        "decode": {
            "ffmpeg_null_s": 3.0,
            "ours_s": 4.0,
            "total_frames": 5400,
            "ours_frames": 180,
            "resize_to": 336,
            "ours_native_size_s": 3.9,
            "width": 640,
            "height": 360,
            "codec": "h264",
            "gop": 250,
            "fps": 30.0,
            "decode_vs_ffmpeg": 0.75,
        },
    }
    figures = report.build_figures(details)
    assert figures["decode_vs_ffmpeg"].status == "miss" and figures["decode_vs_ffmpeg"].value == 0.75
    assert figures["decode_vs_ffmpeg"].note.startswith("missed by 0.15")
    assert "every frame has to be decoded" in figures["decode_vs_ffmpeg"].note
    assert figures["e2e_speedup_vs_loop"].status == "error" and "engine died" in figures["e2e_speedup_vs_loop"].note
    assert figures["caption_mfu"].status == "skipped"
    details["decode"]["decode_vs_ffmpeg"] = 1.2
    assert report.build_figures(details)["decode_vs_ffmpeg"].status == "pass"
    table = report.figures_table(figures)
    assert list(table.columns) == ["figure", "value", "target", "paper", "status", "note"]
    assert len(table) == len(settings.FIGURES)


def test_bench_arguments_choose_sizes_and_steps():
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--quick", "--batch-size", "12", "--llava-layers", "2,32", "--only", "peak, decode"])
    chosen = bench.settings_from_args(args)
    assert chosen.mode == "quick" and chosen.batch_size == 12 and chosen.frames == 12
    assert chosen.llava_layers == (2, 32) and chosen.dtype == "auto"
    assert bench.steps_from_args(args) == ("peak", "decode")
    assert bench.settings_from_args(parser.parse_args([])) == settings.MODES["full"]
    with pytest.raises(UserError, match="unknown steps"):
        bench.steps_from_args(parser.parse_args(["--only", "peak,warp"]))


def test_importing_bench_and_building_the_cli_stays_light():
    code = (
        "import sys; from videoqa.cli.main import build_parser; p = build_parser('bench'); "
        "a = p.parse_args(['bench', '--quick', '--json', 'x.json']); assert a.quick and a.json == 'x.json'; "
        "assert 'torch' not in sys.modules and 'vllm' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ---------------------------------------------------------------------------- the whole command


def test_bench_command_smoke(tmp_path):
    """`videoqa bench` end to end at tiny sizes: every figure's code path, one vLLM engine."""
    report_path = tmp_path / "bench.json"
    env = os.environ | {"VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "videoqa.cli.main",
            "bench",
            "--tiny",
            "--threads",
            "1",
            "--work-dir",
            str(tmp_path / "work"),
            "--json",
            str(report_path),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(report_path.read_text())
    for name in settings.FIGURES:
        assert result[name] is not None and result[name] > 0, name
        figure = result["figures"][name]
        assert figure["status"] in ("pass", "miss", "info"), (name, figure)
        if figure["status"] == "miss":
            assert figure["note"].startswith("missed by"), figure["note"]
    details = result["details"]
    assert details["errors"] == {}
    assert details["caption"]["main"]["ser"]["batch_size"] == 4
    # the dtype the host's resolver picks (fp32 on CPUs without native bf16, bf16 with it)
    assert details["caption"]["dtype"] == device.dtype_name(device.resolve_dtype("auto", device.resolve_device("auto")))
    assert details["peak"]["float32"]["flops"] > 0 and details["peak"]["bfloat16"]["flops"] > 0
    assert details["generalist"]["seconds_per_layer"] > 0 and "two_depth_fit" in details["generalist"]
    assert details["decode"]["ours_frames"] == 4 and details["decode"]["total_frames"] == 120
    assert details["e2e"]["same_transcripts"] is True and details["e2e"]["vllm_startup_s_excluded"] > 0
    # the Ray executor on the same workload: the same predictions, its time over the local executor's
    assert details["ray"]["same_predictions"] is True and details["ray"]["same_captions"] is True
    assert result["mode"] == "tiny" and result["machine"]["torch_threads"] == 1
    assert "| figure" in proc.stdout and "caption_mfu" in proc.stdout

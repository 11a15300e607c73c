"""ray_over_local: the Ray executor's time / the local executor's time on the bench's end-to-end
workload (the e2e step's generated videos and questions, the demo's tiny SeR and tiny Qwen2),
measured in one run.

Both sides are `VideoQA(config).run()` on a fresh output directory (no caption cache), differing
only in `executor`; the local side first. The LLM engine's start-up (in this process, or in the
Ray replica) and the Ray instance's start-up are timed apart and excluded, as the e2e figure
excludes the engine's: they are paid once per session, not per video. Both sides' predictions
and captions are compared (they should be equal).

    python -m videoqa.bench.ray_ratio [--mode quick|full|tiny] [--work-dir outputs/bench]
    (log: <work-dir>/ray_ratio.log)
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from videoqa.bench.e2e import e2e_dataset
from videoqa.bench.settings import MODES, PROMPT, BenchSettings, say
from videoqa.config import CaptionerConfig, LLMConfig, RayConfig, RunConfig
from videoqa.fixtures.demo import build_demo_models
from videoqa.run import VideoQA
from videoqa_base.jsonl import read_jsonl
from videoqa_base.logs import quiet_defaults, quiet_third_party

RAY_CPUS = 4  # logical: two captioner actors and one LLM replica, none waiting for another


def run_config(settings: BenchSettings, work: Path, models: tuple[Path, Path], executor: str, device: str) -> RunConfig:
    """The e2e step's workload and models, with this executor (one LLM replica, two captioners)."""
    captioner_dir, llm_dir = models
    return RunConfig(
        dataset=e2e_dataset(work, settings),
        captioner=CaptionerConfig(
            name="tiny-ser",
            type="ser",
            model=str(captioner_dir),
            prompt=PROMPT,
            device=device,
            max_new_tokens=settings.e2e_new_tokens,
            batch_size=settings.e2e_batch_size,
        ),
        llm=LLMConfig(
            name="tiny-qwen2",
            model=str(llm_dir),
            max_model_len=4096,
            dtype="float32",
            cpu_kvcache_gib=1,
            gpu_memory_utilization=0.3,
            engine_kwargs={"enforce_eager": True} if settings.enforce_eager else {},
        ),
        output_dir=str(work / f"ray-ratio-{executor}"),
        run_id="bench",
        executor=executor,
        ray=RayConfig(num_cpus=RAY_CPUS, captioners=2, captioner_num_cpus=1, concurrency=1),
    )


def timed_run(config: RunConfig) -> dict[str, Any]:
    shutil.rmtree(config.output_dir, ignore_errors=True)
    started = time.perf_counter()
    result = VideoQA(config, progress=False).run()
    seconds = time.perf_counter() - started
    timing = result.metrics["timing"]
    return {
        "seconds_with_engine_startup": seconds,
        "llm_startup_s": timing["llm_startup_s"],
        "seconds": seconds - timing["llm_startup_s"],
        "caption_stage_wall_s": timing["caption_stage_wall_s"],
        "answer_s": timing["answer_s"],
        "frames": timing["frames_captioned"],
        "predictions": {
            row["qid"]: (row["pred"], row["status"], row["raw"])
            for _, row in read_jsonl(result.run_dir / "predictions.jsonl")
        },
        "captions": {row["video_id"]: row["captions"] for _, row in read_jsonl(result.run_dir / "captions.jsonl")},
    }


def ray_ratio_step(settings: BenchSettings, work: Path, device: str = "cpu") -> dict[str, Any]:
    import ray

    from videoqa.executors.ray_cluster import cluster_description, connect

    models = build_demo_models(work / "models")
    local_config, ray_config = (run_config(settings, work, models, executor, device) for executor in ("local", "ray"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models, as in the e2e step; Ray gives each 1-CPU actor one thread too
    try:
        say("ray_over_local: the local executor")
        local = timed_run(local_config)
        say(f"ray_over_local: local {local['seconds']:.1f} s; starting a Ray instance")
        started = time.perf_counter()
        connect(ray_config.ray)
        ray_startup_s = time.perf_counter() - started
        say("ray_over_local: the Ray executor")
        on_ray = timed_run(ray_config)
        cluster = cluster_description()
        say(f"ray_over_local: ray {on_ray['seconds']:.1f} s")
    finally:
        torch.set_num_threads(threads)
        ray.shutdown()
    same_predictions = local.pop("predictions") == on_ray.pop("predictions")
    same_captions = local.pop("captions") == on_ray.pop("captions")
    return {
        "videos": settings.e2e_videos,
        "video_seconds": settings.e2e_seconds,
        "device": device,
        "ray_startup_s_excluded": ray_startup_s,
        "cluster": cluster,
        "captioner_actors": ray_config.ray.captioners,
        "llm_replicas": ray_config.ray.concurrency,
        "local": local,
        "ray": on_ray,
        "same_predictions": same_predictions,
        "same_captions": same_captions,
        "ray_over_local": on_ray["seconds"] / local["seconds"],
        "ray_over_local_with_startup": (on_ray["seconds_with_engine_startup"] + ray_startup_s)
        / local["seconds_with_engine_startup"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="quick")
    parser.add_argument("--work-dir", default="outputs/bench")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    quiet_defaults()
    work = Path(args.work_dir)
    with quiet_third_party(work / "ray_ratio.log", verbose=False):  # vLLM's and Ray's output go to the log
        report = ray_ratio_step(MODES[args.mode], work, args.device)
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":  # vLLM's engine processes spawn: the guard is required
    raise SystemExit(main())

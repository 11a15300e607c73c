"""The figures of a bench run: value, target, paper value, pass/miss and a note saying why,
built from the steps' details; and the Markdown table `videoqa bench` prints."""

from __future__ import annotations

from typing import Any

import pandas as pd

from videoqa.bench.settings import FIGURES, FIGURES_OF_STEP, PAPER, TARGETS, Figure

STAGE_NAMES = {"vision": "vision", "first_glance": "first glance", "refine": "refinement"}


def shortfall(x: float) -> str:
    """A shortfall with enough digits to be non-zero."""
    return f"{x:.2f}" if x >= 0.01 else f"{x:.3f}"


def percent(x: float) -> str:
    return f"{100 * x:.0f}%"


def busy_notes(details: dict[str, Any]) -> tuple[str, str]:
    """(for the model figures, for decoding and end to end) when other processes held cores."""
    busy = (details.get("contention") or {}).get("busy", False)
    threads = details.get("threads") or {}
    busy_note = ""
    if busy and threads.get("used", 0) >= (threads.get("cores") or 1):
        busy_note = (
            " The machine was busy (other processes held cores: see details.contention), which stalls "
            "every small parallel op."
        )
    elif busy:
        busy_note = (
            f" Other processes kept cores busy: the bench ran on {threads['used']} of {threads['cores']} "
            f"threads (peak measured on the same threads)."
        )
    # decoding and the end-to-end run use processes and threads of their own: only the load matters
    load_note = " Other processes kept cores busy during the run." if busy else ""
    return busy_note, load_note


def judge_peak(figures: dict[str, Figure], peak: dict[str, Any]) -> None:
    used, other = peak["used_dtype"], peak["other_dtype"]
    note = f"{used}, the dtype the captioner runs in; {other}: {peak[other]['flops'] / 1e9:,.1f} GFLOP/s"
    if peak.get("nominal_fp32"):
        note += (
            f"; nominal fp32 at the {peak['nominal_fp32']['mhz']:.0f} MHz /proc/cpuinfo clock "
            f"{peak['nominal_fp32']['flops'] / 1e9:,.0f} GFLOP/s (boost clocks go higher)"
        )
    if used == "float32" and peak[other]["flops"] < peak[used]["flops"]:
        note += " (no native bf16 here: oneDNN emulates it, so fp32 is the faster dtype and the MFU divides by it)"
    figures["peak_flops"].judge(peak[used]["flops"], note)


def judge_captioning(
    figures: dict[str, Figure], cap: dict[str, Any], peak: dict[str, Any] | None, busy_note: str
) -> None:
    """caption_mfu, batch_speedup, ser_over_specialist."""
    main, small = cap["main"], cap["small"]
    single, ser, spec = main["batch1"], main["ser"], main["specialist"]
    batch = ser["batch_size"]
    stage = ser.get("stage_mfu", {})
    stages = ", ".join(f"{STAGE_NAMES[k]} {v:.2f}" for k, v in stage.items())
    if "caption_mfu" in main:
        note = (
            f"{main['preset']} at batch {batch}, {cap['dtype']}, {cap['threads']} threads, "
            f"{ser['new_tokens']} tokens per pass; by stage: {stages}; {small['preset']}: "
            f"{small.get('caption_mfu', 0):.5f} (per-op overhead)"
        )
        if peak:
            note += (
                f"; against the {peak['other_dtype']} peak: "
                f"{main['caption_mfu'] * peak['peak_ratio_used_over_other']:.2f}"
            )
        fig = figures["caption_mfu"].judge(main["caption_mfu"], note)
        if fig.status == "miss":
            fig.note = (
                f"missed by {shortfall(0.5 - fig.value)}: the generation stages run {ser['new_tokens'] - 1} "
                f"decode steps per pass, each reading every LM weight for only {batch} tokens "
                f"(memory- and per-op-overhead-bound).{busy_note} " + note
            )
    note = (
        f"batch 1: {single['seconds_per_frame']:.2f} s/frame, batch {batch}: {ser['seconds_per_frame']:.2f} s/frame; "
        f"{small['preset']}: {small['batch_speedup']:.1f}x"
    )
    fig = figures["batch_speedup"].judge(main["batch_speedup"], note)
    if fig.status == "miss" and peak:
        floor = ser["flops"]["total"] / ser["frames"] / peak[peak["used_dtype"]]["flops"]
        share = floor / single["seconds_per_frame"]
        fig.note = (
            f"missed by {shortfall(4 - fig.value)}x: even at 100% MFU batch {batch} could be at most "
            f"{1 / share:.1f}x faster than batch 1 here - {percent(share)} of batch 1's time is already the "
            f"FLOP floor (the ViT's 577-token and the LM's {ser['prompt_tokens']['first']:.0f}-token prefills are "
            f"large matmuls at batch 1; only the decode steps gain from batching); batch {batch} ran at MFU "
            f"{ser.get('mfu', 0):.2f}.{busy_note} " + note
        )
    ratio, flop_ratio = main["ser_over_specialist"], main["flop_ratio_ser_over_specialist"]
    note = (
        f"batch {batch}; analytic FLOP ratio {flop_ratio:.2f}; within SeR's own run (whole / up to the end of "
        f"the first glance): {main['ser_over_own_first_glance']:.2f}; {small['preset']}: "
        f"{small['ser_over_specialist']:.2f}"
    )
    fig = figures["ser_over_specialist"].judge(ratio, note)
    if fig.status == "miss":
        fig.note = (
            f"missed by {shortfall(ratio - 1.15)}: the refinement pass (DeepLens + a second LM pass over a "
            f"{ser['prompt_tokens']['refine']:.0f}-token prompt) adds {percent(flop_ratio - 1)} FLOPs, so at "
            f"equal efficiency the time ratio cannot go below ~{flop_ratio:.2f} without skipping real work"
            + (
                f"; it is higher because the refinement pass runs at MFU {stage.get('refine', 0):.2f} vs the "
                f"specialist's {spec.get('mfu', 0):.2f}"
                if ratio > flop_ratio * 1.03
                else ""
            )
            + " (paper, batch 1 on a GPU: 1.34); "
            + note
        )


def judge_generalist(figures: dict[str, Figure], gen: dict[str, Any], cap: dict[str, Any] | None) -> None:
    flop_ratio = ""
    if cap and "main" in cap:
        ser_flops = cap["main"]["batch1"]["flops"]["total"] / cap["main"]["batch1"]["frames"]
        flop_ratio = f"; analytic FLOP ratio {gen['flops_per_caption']['total'] / ser_flops:.1f}"
    if gen["seconds_per_layer"] is None:
        how = gen["extrapolation"]
    else:
        fit = f"; two-depth fit: {gen['two_depth_fit']['seconds_per_caption']:.1f} s" if "two_depth_fit" in gen else ""
        how = (
            f"LLaVA extrapolated ({gen['extrapolation']}: {gen['seconds_per_layer']:.2f} s per layer + "
            f"{gen['seconds_rest']:.2f} s for the rest{fit})"
        )
    figures["generalist_over_ser"].judge(
        gen["generalist_over_ser"],
        f"{gen['architecture']}, random weights, batch 1, {gen['new_tokens']} tokens each, {gen['dtype']}: "
        f"{gen['seconds_per_caption']:.1f} s vs SeR {gen['ser_seconds_per_caption']:.2f} s per caption{flop_ratio}; "
        + how,
    )


def judge_decode(figures: dict[str, Figure], dec: dict[str, Any], load_note: str) -> None:
    spacing = (dec["fps"] or 30.0) / 1.0
    note = (
        f"ffmpeg -f null: {dec['ffmpeg_null_s']:.2f} s for all {dec['total_frames']} frames; ours: "
        f"{dec['ours_s']:.2f} s for {dec['ours_frames']} frames at {dec['resize_to']} px "
        f"({dec['ours_native_size_s']:.2f} s at native size); {dec['width']}x{dec['height']} {dec['codec']}, "
        f"keyframe every {dec['gop']} frames"
    )
    fig = figures["decode_vs_ffmpeg"].judge(dec["decode_vs_ffmpeg"], note)
    if fig.status == "miss":
        why = (
            f"keyframes come every {dec['gop']} frames but samples every {spacing:.0f}, so every frame has to "
            f"be decoded anyway (seeking cannot skip work) and decord's decode loop is slower than ffmpeg's "
            f"frame-threaded one"
            if dec["gop"] > spacing
            else "decord seeks to every sample, and seeking costs more than decoding through"
        )
        fig.note = f"missed by {shortfall(0.9 - fig.value)}: {why}.{load_note} " + note


def judge_long_video(figures: dict[str, Figure], lv: dict[str, Any], load_note: str) -> None:
    short, long = lv["short"], lv["long"]

    def per_frame(run: dict[str, Any]) -> str:
        each = run.get("runs_seconds_per_frame", [])
        spread = f" (median of {', '.join(f'{1000 * s:.1f}' for s in each)})" if len(each) > 1 else ""
        return f"{1000 * run['seconds_per_frame']:.1f} ms/frame{spread}"

    note = (
        f"caption stage (tiny SeR, 1 fps): {long['frames']} frames of a {long['duration_s'] / 60:.0f}-minute video "
        f"{per_frame(long)} vs {short['frames']} frames of a {short['duration_s'] / 60:.0f}-minute one "
        f"{per_frame(short)}; peak RSS {long['peak_rss_mb']:,.0f} MB vs {short['peak_rss_mb']:,.0f} MB; "
        f"waiting for frames {long['decode_wait_s']:.1f} s vs {short['decode_wait_s']:.1f} s"
    )
    fig = figures["long_video_linearity"].judge(lv["long_video_linearity"], note)
    if fig.status == "miss":
        fig.note = f"missed by {shortfall(fig.value - 1.2)}.{load_note} " + note


def judge_e2e(figures: dict[str, Figure], e2e: dict[str, Any], load_note: str) -> None:
    ours, loop = e2e["ours"], e2e["loop"]
    note = (
        f"{e2e['videos']} videos x {e2e['video_seconds']:g} s, {e2e['questions']} questions; ours "
        f"(VideoQA.run) {ours['seconds']:.1f} s (captioning {ours['caption_s']:.1f}, waiting for frames "
        f"{ours['decode_wait_s']:.1f}, answering {ours['answer_s']:.1f}, the rest {ours['other_s']:.1f}) "
        f"vs loop {loop['seconds']:.1f} s "
        f"(captioning {loop['caption_s']:.1f}, decoding {loop['decode_s']:.1f}, answering "
        f"{loop['answer_s']:.1f}); vLLM start-up ({e2e['vllm_startup_s_excluded']:.0f} s) excluded from both; "
        f"same transcripts: {e2e['same_transcripts']}"
    )
    fig = figures["e2e_speedup_vs_loop"].judge(e2e["e2e_speedup_vs_loop"], note)
    if fig.status == "miss":
        fig.note = f"missed by {shortfall(3 - fig.value)}x.{load_note} " + note


def judge_ray(figures: dict[str, Figure], ray: dict[str, Any]) -> None:
    note = (
        f"the e2e workload on the local executor {ray['local']['seconds']:.1f} s vs the Ray executor "
        f"{ray['ray']['seconds']:.1f} s ({ray['captioner_actors']} captioner actors, {ray['llm_replicas']} LLM "
        f"replica); engine and Ray start-up excluded ({ray['ray_over_local_with_startup']:.2f} with them); "
        f"same predictions: {ray['same_predictions']}, same captions: {ray['same_captions']}"
    )
    figures["ray_over_local"].judge(ray["ray_over_local"], note)


def judge_adaptive(figures: dict[str, Figure], ada: dict[str, Any], load_note: str) -> None:
    """The figure is the caption-stage time ratio; it passes only if the captions ratio is <= 0.4
    and every scene of the generated video got a caption too."""
    adaptive, uniform = ada["adaptive"], ada["uniform"]
    note = (
        f"{ada['video_seconds'] / 60:.0f}-min video, {ada['scenes']} scenes x {ada['showings'] // ada['scenes']} "
        f"showings, {ada['sample_fps']:.3g} fps: {adaptive['captions']} vs {uniform['captions']} captions "
        f"(ratio {ada['captions_ratio']:.2f}, target <= 0.4), prompt tokens ratio {ada['prompt_tokens_ratio']:.2f}, "
        f"{ada['scenes_captioned']}/{ada['scenes']} scenes captioned; caption stage "
        f"{adaptive['caption_stage_wall_s']:.1f} vs {uniform['caption_stage_wall_s']:.1f} s "
        f"(embedding {adaptive['embed_s']:.1f} s); one embedding = {ada['embed_over_caption']:.3f} caption "
        f"({ada['embedding']['embed_size']} px ViT)"
    )
    figure = figures["adaptive_over_uniform"].judge(ada["adaptive_over_uniform"], note)
    missed = []
    if figure.value > 0.5:
        missed.append(f"time by {shortfall(figure.value - 0.5)}")
    if ada["captions_ratio"] > 0.4:
        missed.append(f"captions by {shortfall(ada['captions_ratio'] - 0.4)}")
    if ada["scenes_captioned"] < ada["scenes"]:
        missed.append(f"{ada['scenes'] - ada['scenes_captioned']} scene(s) without a caption")
    if missed:
        figure.status, figure.note = "miss", f"missed by: {', '.join(missed)}.{load_note} " + note


def build_figures(details: dict[str, Any]) -> dict[str, Figure]:
    """The figures with targets, paper values, pass/miss and a note saying why."""
    figures = {name: Figure(name, target=TARGETS.get(name), paper=PAPER.get(name)) for name in FIGURES}
    for step, error in details.get("errors", {}).items():
        for name in FIGURES_OF_STEP[step]:
            figures[name].status, figures[name].note = "error", f"{step} failed: {error}"
    busy_note, load_note = busy_notes(details)
    peak, cap, gen = details.get("peak"), details.get("caption"), details.get("generalist")
    if peak:
        judge_peak(figures, peak)
    if cap and "main" in cap:
        judge_captioning(figures, cap, peak, busy_note)
    if gen and "generalist_over_ser" in gen:
        judge_generalist(figures, gen, cap)
    if details.get("decode"):
        judge_decode(figures, details["decode"], load_note)
    if details.get("adaptive"):
        judge_adaptive(figures, details["adaptive"], load_note)
    if details.get("long_video"):
        judge_long_video(figures, details["long_video"], load_note)
    if details.get("e2e"):
        judge_e2e(figures, details["e2e"], load_note)
    if details.get("ray"):
        judge_ray(figures, details["ray"])
    return figures


def figures_table(figures: dict[str, Figure]) -> pd.DataFrame:
    def fmt(value: float | None) -> str:
        if value is None:
            return ""
        if abs(value) >= 1e6:
            return f"{value / 1e9:,.1f} G"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"

    rows = [
        {
            "figure": f.name,
            "value": fmt(f.value),
            "target": f"{f.target[0]} {f.target[1]:g}" if f.target else "",
            "paper": fmt(f.paper),
            "status": f.status,
            "note": f.note,
        }
        for f in figures.values()
    ]
    return pd.DataFrame(rows)

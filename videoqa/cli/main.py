"""`videoqa` command line.

  videoqa run --dataset egoschema --captioner ser [--llm L] [--data-root DIR] [--split S]
              [--limit N] [--output-dir DIR] [--set key=value ...]
  videoqa datasets [--data-root DIR]   every dataset's layout, where to get it, and what DIR holds
  videoqa demo       the embedded offline default: tiny models, generated videos, real engines
  videoqa report RUN_DIR [RUN_DIR ...] [--out DIR] [--max-thumbnails N]   a static HTML report

vLLM/torch/transformers output goes to a log file (run.log in the run directory, compare.log,
outputs/demo/demo.log, outputs/bench/bench.log) unless --verbose; progress bars and results stay.
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import AbstractContextManager
from pathlib import Path

from videoqa_base.cli import run_guarded
from videoqa_base.errors import UserError
from videoqa_base.logs import quiet_defaults, quiet_third_party


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose", action="store_true", help="show vLLM/torch/transformers output here instead of in the log file"
    )


def third_party_log(args: argparse.Namespace, log_path: Path) -> AbstractContextManager:
    """Third-party chatter goes to `log_path` unless --verbose (videoqa_base.logs)."""
    return quiet_third_party(log_path, verbose=args.verbose)


def add_run_arguments(parser: argparse.ArgumentParser, compare: bool = False) -> None:
    parser.add_argument("--dataset", required=True, help="registered dataset (configs/datasets/*.yaml) or a YAML path")
    if compare:
        parser.add_argument("--captioners", required=True, help="comma-separated captioner names or model directories")
        parser.add_argument(
            "--video-llms",
            default="",
            help="comma-separated video LLMs (configs/llms/*.yaml or VLM directories): "
            "one more row each, answered from the frames without captions",
        )
        parser.add_argument(
            "--report",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="write report.html beside the tables (runs side by side, disagreements, McNemar); default on",
        )
        parser.add_argument(
            "--variants",
            action="append",
            default=[],
            metavar="KEY=V1,V2",
            help="one row per value of a config field, e.g. --variants frames.select=uniform,adaptive; "
            "repeat for a grid (--variants frames.fps=0.5,1 --variants answer.prompt=standard,summarize)",
        )
    else:
        parser.add_argument(
            "--answerer",
            choices=("captions", "video-llm"),
            help="captions (default): caption, then answer from the transcript; video-llm: the --llm "
            "watches the frames",
        )
        parser.add_argument(
            "--captioner",
            help="registered captioner (configs/captioners/*.yaml) or a local model directory "
            "(required unless --answerer video-llm)",
        )
    parser.add_argument("--llm", help="registered LLM (configs/llms/*.yaml) or a local model directory")
    parser.add_argument("--data-root", help="dataset root directory (overrides the dataset YAML)")
    parser.add_argument("--split", help="dataset split, e.g. subset or full for EgoSchema")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--output-dir", help="where run directories go (default: outputs)")
    parser.add_argument("--run-id", help="name of the run directory (default: a UTC timestamp)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set frames.fps=0.5 --set captioner.batch_size=64",
    )
    parser.add_argument(
        "--executor",
        choices=("local", "ray"),
        help="where the stages run: local (this process, the default) or ray (actor pools on a Ray cluster)",
    )
    parser.add_argument(
        "--ray-address",
        metavar="auto|HOST:PORT",
        help="the Ray cluster to join (implies --executor ray); default: a Ray instance inside this process",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_verbose_argument(parser)


def overrides_from_args(args: argparse.Namespace) -> list[str]:
    overrides = []
    for flag, key in (
        ("data_root", "dataset.data_root"),
        ("split", "dataset.split"),
        ("limit", "limit"),
        ("output_dir", "output_dir"),
        ("run_id", "run_id"),
        ("executor", "executor"),
        ("ray_address", "ray.address"),
        ("answerer", "answerer"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    if getattr(args, "ray_address", None) is not None and getattr(args, "executor", None) is None:
        overrides.append("executor=ray")  # an address only makes sense for the Ray executor
    return overrides + list(args.overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from videoqa.config import load_run_config
    from videoqa.run import VideoQA
    from videoqa.rundir import RunDirectory
    from videoqa.scoring.submissions import submission_commands

    if args.captioner is None and args.answerer != "video-llm":
        raise UserError("videoqa run: --captioner is required (or --answerer video-llm: the --llm watches the frames)")
    config = load_run_config(
        dataset=args.dataset, captioner=args.captioner, llm=args.llm, overrides=overrides_from_args(args)
    )
    run_dir = RunDirectory(config)  # fixes the run id, so the log lands in the run's own directory
    with third_party_log(args, run_dir.file("run.log")):
        result = VideoQA(run_dir.config, progress=not args.quiet).run()
    print(result.table.to_markdown(index=False))
    print(f"\nrun directory: {result.run_dir}")
    for line in submission_commands(config.dataset.type, Path(result.run_dir), result.metrics["questions"]):
        print(line)
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from videoqa.datasets.catalog import check_all, report

    root = Path(args.data_root).expanduser() if args.data_root else None
    checks = check_all(root, [args.dataset] if args.dataset else None)
    print("\n\n".join(report(c, layout=not args.brief) for c in checks))
    return 0 if not args.dataset or checks[0].ok else 1


def add_datasets_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-root",
        help="check this folder (or its subfolder named like each dataset) instead of each YAML's data_root",
    )
    parser.add_argument("--dataset", help="only this dataset (exit status 1 when the data root does not hold it)")
    parser.add_argument("--brief", action="store_true", help="leave out the layouts")


def cmd_compare(args: argparse.Namespace) -> int:
    from videoqa.compare import compare, comparison_directory
    from videoqa.config import load_run_config
    from videoqa.manifest import new_run_id

    captioners = [c.strip() for c in args.captioners.split(",") if c.strip()]
    if not captioners:
        raise UserError("--captioners: expected comma-separated captioner names")
    compare_id = args.run_id or new_run_id()
    first = load_run_config(
        dataset=args.dataset, captioner=captioners[0], llm=args.llm, overrides=overrides_from_args(args)
    )
    directory = comparison_directory(first, compare_id)
    with third_party_log(args, directory / "compare.log"):
        result = compare(
            args.dataset,
            captioners,
            args.llm,
            overrides_from_args(args),
            compare_id=compare_id,
            progress=not args.quiet,
            video_llms=[v.strip() for v in args.video_llms.split(",") if v.strip()],
            variants=args.variants,
            report=args.report,
        )
    print(result.table.to_markdown(index=False))
    report = ", report.html" if args.report else ""
    print(f"\ncomparison: {result.directory} (CSV, Markdown, LaTeX, accuracy_vs_time.png{report})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from videoqa.manifest import new_run_id
    from videoqa.report import write_report
    from videoqa.report.build import default_cache_dir

    dirs = [Path(d) for d in args.run_dirs]
    if args.out:
        out = Path(args.out)
    elif len(dirs) == 1:
        out = dirs[0]  # report.html beside the run's (or the comparison's) own files
    else:
        out = default_cache_dir(dirs[0]).parents[1] / "reports" / new_run_id()
    page = write_report(
        dirs, out, title=args.title, max_thumbnails_per_video=args.max_thumbnails, progress=not args.quiet
    )
    print(f"report: {page} (open it in a browser; thumbnails in {page.parent / 'report_files'})")
    return 0


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    from videoqa.report import DEFAULT_MAX_THUMBNAILS

    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories or comparison directories")
    parser.add_argument(
        "--out",
        help="folder for report.html and report_files/ (default: the one directory given, else outputs/reports/<id>)",
    )
    parser.add_argument(
        "--max-thumbnails",
        type=int,
        default=DEFAULT_MAX_THUMBNAILS,
        metavar="N",
        help=f"thumbnails per video and run, spread over the video (default {DEFAULT_MAX_THUMBNAILS}; 0: none)",
    )
    parser.add_argument("--title", help="the page's title (default: dataset and run names)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def cmd_demo(args: argparse.Namespace) -> int:
    from videoqa.fixtures.demo import demo_summary, run_demo

    output_dir = Path(args.output_dir or "outputs")
    with third_party_log(args, output_dir / "demo" / "demo.log") as log:
        result = run_demo(output_dir=output_dir, progress=not args.quiet)
    print(demo_summary(result, log))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from videoqa import bench

    with third_party_log(args, Path("outputs") / "bench" / "bench.log"):
        return bench.run(args)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    from videoqa import bench

    bench.add_arguments(parser)
    add_verbose_argument(parser)


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", help="where the demo's data, models and run go (default: outputs)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_verbose_argument(parser)


COMMANDS = {
    "run": (cmd_run, add_run_arguments, "answer a dataset's questions: decode -> caption -> LLM -> score"),
    "compare": (
        cmd_compare,
        lambda p: add_run_arguments(p, compare=True),
        "compare captioners on one dataset with one LLM (accuracy/time tables)",
    ),
    "bench": (
        cmd_bench,
        add_bench_arguments,
        "measure speed ratios on this machine (MFU, batching, decode, end to end)",
    ),
    "datasets": (
        cmd_datasets,
        add_datasets_arguments,
        "list the datasets: expected layout, where to get them, and a dry check of --data-root",
    ),
    "demo": (
        cmd_demo,
        add_demo_arguments,
        "offline demo: builds tiny models and a small EgoSchema-layout dataset, then runs it",
    ),
    "report": (
        cmd_report,
        add_report_arguments,
        "a static HTML report of runs: answers, captions with their frames, where runs disagree",
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Only the chosen command's arguments are built, so e.g. `run` never imports the bench."""
    parser = argparse.ArgumentParser(
        prog="videoqa", description="Long-video question answering with a lightweight captioner."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, add_arguments, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            add_arguments(sub_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    quiet_defaults()  # before vLLM is imported: it reads its logging settings then
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_guarded(lambda: COMMANDS[args.command][0](args))


if __name__ == "__main__":
    sys.exit(main())

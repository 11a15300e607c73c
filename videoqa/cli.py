"""`videoqa` command line.

  videoqa run --dataset egoschema --captioner ser [--llm L] [--data-root DIR] [--split S]
              [--limit N] [--output-dir DIR] [--set key=value ...]
  videoqa demo       the embedded offline default: tiny models, generated videos, real engines
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable

from videoqa.errors import UserError


def run_guarded(action: Callable[[], int | None]) -> int:
    """Run a command; user-fixable errors become one line on stderr and a non-zero exit."""
    try:
        return int(action() or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def add_run_arguments(parser: argparse.ArgumentParser, compare: bool = False) -> None:
    parser.add_argument("--dataset", required=True, help="registered dataset (configs/datasets/*.yaml) or a YAML path")
    if compare:
        parser.add_argument("--captioners", required=True, help="comma-separated captioner names or model directories")
    else:
        parser.add_argument(
            "--captioner", required=True, help="registered captioner (configs/captioners/*.yaml) or a local model directory"
        )
    parser.add_argument("--llm", help="registered LLM (configs/llms/*.yaml) or a local model directory")
    parser.add_argument("--data-root", help="dataset root directory (overrides the dataset YAML)")
    parser.add_argument("--split", help="dataset split, e.g. subset or full for EgoSchema")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--output-dir", help="where run directories go (default: outputs)")
    parser.add_argument("--run-id", help="name of the run directory (default: a UTC timestamp)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override any config field, e.g. --set frames.fps=0.5 --set captioner.batch_size=64",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def overrides_from_args(args: argparse.Namespace) -> list[str]:
    overrides = []
    for flag, key in (
        ("data_root", "dataset.data_root"), ("split", "dataset.split"), ("limit", "limit"),
        ("output_dir", "output_dir"), ("run_id", "run_id"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    return overrides + list(args.overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from videoqa.config import load_run_config
    from videoqa.pipeline import run

    config = load_run_config(
        dataset=args.dataset, captioner=args.captioner, llm=args.llm, overrides=overrides_from_args(args)
    )
    result = run(config, progress=not args.quiet)
    print(result.table.to_markdown(index=False))
    print(f"\nrun directory: {result.run_dir}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from videoqa.compare import compare

    result = compare(
        args.dataset, [c.strip() for c in args.captioners.split(",") if c.strip()], args.llm,
        overrides_from_args(args), compare_id=args.run_id, progress=not args.quiet,
    )
    print(result.table.to_markdown(index=False))
    print(f"\ncomparison: {result.directory} (CSV, Markdown, LaTeX, accuracy_vs_time.png)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from videoqa.demo import run_demo

    run_demo(output_dir=args.output_dir or "outputs", progress=not args.quiet)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from videoqa import bench

    return bench.run(args)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    from videoqa import bench

    bench.add_arguments(parser)


COMMANDS = {
    "run": (cmd_run, add_run_arguments, "answer a dataset's questions: decode -> caption -> LLM -> score"),
    "compare": (cmd_compare, lambda p: add_run_arguments(p, compare=True), "compare captioners on one dataset with one LLM (accuracy/time tables)"),
    "bench": (cmd_bench, add_bench_arguments, "measure speed ratios on this machine (MFU, batching, decode, end to end)"),
    "demo": (
        cmd_demo,
        lambda p: (p.add_argument("--output-dir"), p.add_argument("--quiet", action="store_true")),
        "offline demo: builds tiny models and a small EgoSchema-layout dataset, then runs it",
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Only the chosen command's arguments are built, so e.g. `run` never imports the bench."""
    parser = argparse.ArgumentParser(prog="videoqa", description="Long-video question answering with a lightweight captioner.")
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
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # engine start-up chatter hides the progress bars
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_guarded(lambda: COMMANDS[args.command][0](args))


if __name__ == "__main__":
    sys.exit(main())

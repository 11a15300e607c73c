"""`captioner` command line: each subcommand lives in its own module with
`add_arguments(parser)` and `run(args) -> int`, imported only when used.

The captioner package never imports videoqa; what it needs of the pipeline is passed in here:
`pseudo-initial --llm` builds one of videoqa's LLM backends and hands it to
`captioner.pseudo_initial.run`.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from videoqa_base.cli import run_guarded
from videoqa_base.logs import quiet_defaults, quiet_third_party

SUBCOMMANDS = {
    "describe": ("captioner.modeling.describe", "print parameter counts of a preset (built on the meta device)"),
    "train": ("captioner.training.train", "train a stage (pretrain, stage1, stage2) from a YAML config"),
    "pseudo-initial": ("captioner.training.pseudo_initial", "make stage-2 pseudo-initial captions"),
    "eval": ("captioner.evaluation.evaluate", "BLEU-4 / METEOR / CIDEr of predictions against references"),
    "synth-bench": ("captioner.replication.bench", "train a tiny SeR on synthetic images: does refinement help?"),
    "check-training": ("captioner.training.check", "one optimizer step per training stage at full size, checked"),
    "data": ("captioner.data.paper", "check a published dataset: samples, missing / broken images"),
}


def add_llm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--llm", help="LLM: configs/llms/<name>.yaml, a YAML file or a local model directory")
    parser.add_argument(
        "--llm-set", action="append", default=[], metavar="KEY=VALUE", help="override an LLM config field"
    )


def load_llm_backend(ref: str, overrides: Sequence[str] = ()):
    """An LLM backend from a configs/llms/ name, a YAML file or a local model directory, with
    `KEY=VALUE` overrides of its config fields. (Imported here: only pseudo-initial needs the LLM stack.)"""
    from videoqa.answering.llm import load_backend
    from videoqa.config import LLMConfig, resolve_component
    from videoqa_base.config import apply_overrides, validate

    data, source = resolve_component("llms", ref)
    config = validate(
        LLMConfig, apply_overrides(data, list(overrides)), source + (" (+ --llm-set)" if overrides else "")
    )
    return load_backend(config)


def run_subcommand(name: str, module, args: argparse.Namespace) -> int:
    if name == "pseudo-initial":  # the LLM is built only if the chosen method asks for it
        load_llm = functools.partial(load_llm_backend, args.llm, args.llm_set) if args.llm else None
        return module.run(args, load_llm)
    return module.run(args)


def main(argv: list[str] | None = None) -> int:
    quiet_defaults()
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="captioner", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_module, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    # parse only the subcommand name first, so that unrelated modules are never imported
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        parser.parse_args(argv)
        return 2
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    sub_parser = argparse.ArgumentParser(prog=f"captioner {argv[0]}", description=SUBCOMMANDS[argv[0]][1])
    module.add_arguments(sub_parser)
    if argv[0] == "pseudo-initial":
        add_llm_arguments(sub_parser)
    sub_parser.add_argument(
        "--verbose", action="store_true", help="show torch/transformers/vLLM output here instead of in the log file"
    )
    args = sub_parser.parse_args(argv[1:])
    log_path = Path("outputs") / "captioner" / f"{argv[0]}.log"

    def quietly() -> int:
        with quiet_third_party(log_path, verbose=args.verbose):
            return run_subcommand(argv[0], module, args)

    return run_guarded(quietly)


if __name__ == "__main__":
    sys.exit(main())

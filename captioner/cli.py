"""`captioner` command line: each subcommand lives in its own module with
`add_arguments(parser)` and `run(args) -> int`, imported only when used."""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "describe": ("captioner.describe", "print parameter counts of a preset (built on the meta device)"),
    "train": ("captioner.train", "train a stage (pretrain, stage1, stage2) from a YAML config"),
    "pseudo-initial": ("captioner.pseudo_initial", "make stage-2 pseudo-initial captions"),
    "eval": ("captioner.evaluate", "BLEU-4 / METEOR / CIDEr of predictions against references"),
    "synth-bench": ("captioner.synth_bench", "train a tiny SeR on synthetic images: does refinement help?"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="captioner", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    # parse only the subcommand name first, so that unrelated modules are never imported
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        parser.parse_args(argv)
        return 2
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    sub_parser = argparse.ArgumentParser(prog=f"captioner {argv[0]}", description=SUBCOMMANDS[argv[0]][1])
    module.add_arguments(sub_parser)
    args = sub_parser.parse_args(argv[1:])
    from videoqa.cli import run_guarded

    return run_guarded(lambda: module.run(args))


if __name__ == "__main__":
    sys.exit(main())

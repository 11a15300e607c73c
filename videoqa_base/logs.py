"""Quiet by default: third-party chatter goes to a log file, our output stays on the terminal.

vLLM, torch and transformers write in three ways, and all three are caught:
  - Python loggers (vllm, transformers, ...): routed to the log file;
  - C/C++ code and child processes (vLLM's engine core, workers, the resource tracker): they write
    to file descriptors 1 and 2, which point at the log file while the context is open;
  - Python code writing to sys.stderr (warnings, third-party progress bars): sys.stderr stays bound
    to descriptor 2, so that goes to the log file too.
Our own output keeps the terminal: sys.stdout is swapped for a stream on a duplicate of the
terminal's descriptor 1 (so `print` reaches the terminal), `console()` is the terminal's stderr for
progress bars (`progress_bar(...)` puts them there), and warnings of our own loggers are echoed there.

    with quiet_third_party(run_dir / "run.log", verbose=args.verbose):
        result = VideoQA(config).run()
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from videoqa_base.errors import UserError

# Libraries whose loggers talk at start-up; their records go to the log file while quiet.
THIRD_PARTY_LOGGERS = (
    "vllm",
    "transformers",
    "torch",
    "ray",
    "urllib3",
    "httpx",
    "httpcore",
    "filelock",
    "huggingface_hub",
    "accelerate",
    "tokenizers",
    "openai",
    "PIL",
    "matplotlib",
    "numba",
    "triton",
    "py.warnings",
)
# Our own packages: their warnings are for the user, so they are echoed on the terminal as well.
OUR_LOGGERS = ("videoqa", "captioner", "videoqa_base")

# Defaults that make the libraries quieter at the source (a user's own setting wins).
QUIET_ENVIRONMENT = {
    "VLLM_LOGGING_LEVEL": "WARNING",  # engine start-up INFO lines
    "TOKENIZERS_PARALLELISM": "false",  # "the current process just got forked" warning, once per fork
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}
# Known third-party warnings that say nothing actionable to a user of this project.
NOISY_WARNINGS = (
    (FutureWarning, r"`torch\.distributed\.reduce_op` is deprecated"),  # vLLM's Triton shim touches it
    (UserWarning, r"TypedStorage is deprecated"),  # torch, raised inside transformers/vLLM loaders
    (FutureWarning, r"`resume_download` is deprecated"),  # huggingface_hub, via transformers
)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def quiet_defaults() -> None:
    """Environment defaults and warning filters; call first thing in a command, before vLLM is imported."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for category, message in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


@dataclass
class Terminal:
    out: TextIO
    err: TextIO


_terminal: Terminal | None = None  # set while a quiet context is open


def console() -> TextIO:
    """The terminal's stderr, also while descriptor 2 goes to a log file: give it to progress bars."""
    return _terminal.err if _terminal is not None else sys.stderr


def progress_bar(iterable: Iterable | None = None, *, show: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar on the terminal (`console()`), also while third-party output goes to a log. Shown
    only on a TTY (tqdm's own rule, disable=None): in a pipe or a CI log, each redraw of nested bars
    would be one more line."""
    return tqdm(iterable, file=console(), disable=None if show else True, **kwargs)


def _terminal_stream(stream: TextIO, fd: int, saved_fd: int) -> TextIO:
    """A stream to what `fd` showed before the redirect. A stream that does not write through `fd`
    (pytest's capture, a StringIO) is not affected by the redirect and is kept as it is."""
    try:  # typeshed types sys.stdout as TextIO, yet it is None without a console: kept as it is too
        through_fd = stream is not None and stream.fileno() == fd
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        through_fd = False
    if not through_fd:
        return stream
    return io.TextIOWrapper(
        io.FileIO(saved_fd, "w", closefd=False),
        encoding=getattr(stream, "encoding", None) or "utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )


def _flush(*streams: TextIO | None) -> None:
    for stream in streams:
        if stream is None:  # sys.__stdout__ without a console
            continue
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # closed or not a stream: nothing to flush
            pass


class _LoggerRoutes:
    """Points the third-party loggers at the log file and echoes our loggers' warnings on the terminal."""

    def __init__(self, log: TextIO, terminal: TextIO):
        self.to_file, self.to_terminal = logging.StreamHandler(log), logging.StreamHandler(terminal)
        self.to_file.setFormatter(logging.Formatter(LOG_FORMAT))
        self.to_terminal.setLevel(logging.WARNING)
        self.to_terminal.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.saved: dict[str, tuple[list[logging.Handler], bool]] = {}

    def apply(self) -> None:
        for name in THIRD_PARTY_LOGGERS:
            logger = logging.getLogger(name)
            self.saved[name] = (list(logger.handlers), logger.propagate)
            for handler in self.saved[name][0]:
                logger.removeHandler(handler)
            logger.addHandler(self.to_file)
            logger.propagate = False
        for name in OUR_LOGGERS:
            logging.getLogger(name).addHandler(self.to_terminal)

    def undo(self) -> None:
        for name, (handlers, propagate) in self.saved.items():
            logger = logging.getLogger(name)
            if self.to_file not in logger.handlers:
                continue  # the library configured its logger anew inside the context (vLLM on import): keep that
            logger.removeHandler(self.to_file)
            for handler in handlers:
                logger.addHandler(handler)
            logger.propagate = propagate
        for name in OUR_LOGGERS:
            logging.getLogger(name).removeHandler(self.to_terminal)


class _Redirection:
    """Descriptors 1 and 2 to the log file, sys.stdout to the terminal, until restore()."""

    def __init__(self, log: TextIO, outer: Terminal | None):
        _flush(sys.stdout, sys.stderr)
        self.saved_fds = {fd: os.dup(fd) for fd in (1, 2)}
        self.saved_stdout = sys.stdout
        # nested: the outer context already holds the terminal (descriptors 1/2 are its log now)
        self.terminal = outer or Terminal(
            _terminal_stream(sys.stdout, 1, self.saved_fds[1]), _terminal_stream(sys.stderr, 2, self.saved_fds[2])
        )
        streams = (self.terminal.out, self.terminal.err)
        self.opened = [s for s in streams if outer is None and s not in (sys.stdout, sys.stderr)]
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = self.terminal.out

    def restore(self) -> None:
        # what Python code wrote to the original streams belongs in the log: flush before switching back
        _flush(sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__, self.terminal.out, self.terminal.err)
        sys.stdout = self.saved_stdout
        os.dup2(self.saved_fds[1], 1)
        os.dup2(self.saved_fds[2], 2)
        for stream in self.opened:
            stream.close()  # the wrapper only (closefd=False); its descriptor is closed next
        for fd in self.saved_fds.values():
            os.close(fd)


def _make_parents(path: Path) -> list[Path]:
    """Create the missing parents of `path`; the ones created, outermost first."""
    missing = [parent for parent in path.parents if not parent.exists()][::-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_created(created: list[Path]) -> None:
    for path in reversed(created):  # the file first, then its parents, innermost first
        try:
            path.unlink() if path.is_file() else path.rmdir()
        except OSError:  # something else was put there meanwhile: keep it
            return


@contextmanager
def quiet_third_party(log_path: str | Path, verbose: bool = False) -> Iterator[Path | None]:
    """Third-party output goes to `log_path` (appended) while the context is open; `verbose` leaves
    everything on the terminal. Yields the log path (None when verbose). A command that made no
    third-party noise leaves no log file (nor the directories made for it)."""
    global _terminal
    if verbose:
        yield None
        return
    log_path = Path(log_path)
    created = _make_parents(log_path) + ([] if log_path.exists() else [log_path])
    log = open(log_path, "a", buffering=1, encoding="utf-8", errors="backslashreplace")
    log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: {' '.join(sys.argv)}\n")
    header_end = log.tell()
    redirection = _Redirection(log, _terminal)
    routes = _LoggerRoutes(log, redirection.terminal.err)
    # vLLM binds its log handler to sys.stdout when imported; the original stdout follows descriptor 1
    sets_vllm_stream = "VLLM_LOGGING_STREAM" not in os.environ
    if sets_vllm_stream:
        os.environ["VLLM_LOGGING_STREAM"] = "ext://sys.__stdout__"
    outer, _terminal = _terminal, redirection.terminal
    crashed = False
    try:
        routes.apply()
        yield log_path
    except Exception as exc:
        crashed = not isinstance(exc, UserError)  # a user error is one line; a crash may be explained in the log
        raise
    finally:
        if sets_vllm_stream:
            os.environ.pop("VLLM_LOGGING_STREAM", None)
        _terminal = outer
        redirection.restore()
        routes.undo()
        said_something = os.fstat(log.fileno()).st_size > header_end
        log.close()
        if not said_something:
            _remove_created(created)
        elif crashed:
            print(f"(third-party output of this command: {log_path})", file=console())

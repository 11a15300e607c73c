"""Quiet by default: third-party chatter lands in the log file, our own output on the terminal."""

import logging
import logging.config
import os
import select
import subprocess
import sys
import textwrap
import warnings

import pytest

from videoqa_base.errors import UserError
from videoqa_base.logs import QUIET_ENVIRONMENT, console, quiet_defaults, quiet_third_party

CHILD_OUTPUT = [sys.executable, "-c", "import sys; print('CHILD-OUT'); print('CHILD-ERR', file=sys.stderr)"]


def make_noise() -> None:
    """What vLLM/torch do: a library logger, raw writes to descriptors 1 and 2, a child process."""
    logging.getLogger("vllm.engine.core").warning("LOGGER-MARK")
    logging.getLogger("transformers.modeling_utils").error("TRANSFORMERS-MARK")
    os.write(1, b"FD1-MARK\n")
    os.write(2, b"FD2-MARK\n")
    subprocess.run(CHILD_OUTPUT, check=True)


NOISE = ("LOGGER-MARK", "TRANSFORMERS-MARK", "FD1-MARK", "FD2-MARK", "CHILD-OUT", "CHILD-ERR")


def open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def descriptor_targets() -> list[tuple[int, int]]:
    return [(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in (1, 2)]


def test_noise_goes_to_the_log_and_our_output_to_the_terminal(tmp_path, capfd):
    log = tmp_path / "runs" / "run.log"
    with quiet_third_party(log) as path:
        assert path == log
        make_noise()
        print("OUR-PRINT")
        console().write("BAR-MARK\n")
        logging.getLogger("videoqa.run").warning("OUR-WARNING")
    out, err = capfd.readouterr()
    terminal = out + err
    assert "OUR-PRINT" in out and "BAR-MARK" in err and "OUR-WARNING" in err
    assert not [mark for mark in NOISE if mark in terminal], terminal
    written = log.read_text()
    assert all(mark in written for mark in NOISE), written
    assert "OUR-PRINT" not in written and "BAR-MARK" not in written


def test_verbose_passes_everything_through(tmp_path, capfd, caplog):
    log = tmp_path / "run.log"
    with quiet_third_party(log, verbose=True) as path:
        assert path is None and console() is sys.stderr
        make_noise()
    out, err = capfd.readouterr()
    assert "FD1-MARK" in out and "CHILD-OUT" in out and "FD2-MARK" in err and "CHILD-ERR" in err
    assert "LOGGER-MARK" in caplog.text and "TRANSFORMERS-MARK" in caplog.text  # propagated as usual
    assert not log.exists()


def test_descriptors_loggers_and_streams_are_restored_also_after_an_error(tmp_path, capfd):
    vllm_logger = logging.getLogger("vllm")
    handlers_before, propagate_before = list(vllm_logger.handlers), vllm_logger.propagate
    fds_before, targets_before, stdout_before = open_descriptors(), descriptor_targets(), sys.stdout
    with pytest.raises(RuntimeError, match="boom"):
        with quiet_third_party(tmp_path / "run.log"):
            assert descriptor_targets() != targets_before
            os.write(2, b"engine traceback\n")
            raise RuntimeError("boom")
    assert open_descriptors() == fds_before and descriptor_targets() == targets_before
    assert sys.stdout is stdout_before and console() is sys.stderr
    assert vllm_logger.handlers == handlers_before and vllm_logger.propagate == propagate_before
    assert "VLLM_LOGGING_STREAM" not in os.environ or os.environ["VLLM_LOGGING_STREAM"] != "ext://sys.__stdout__"
    os.write(2, b"AFTER-MARK\n")
    _, err = capfd.readouterr()
    assert "AFTER-MARK" in err and f"third-party output of this command: {tmp_path / 'run.log'}" in err


def test_a_command_that_said_nothing_leaves_no_log_nor_the_directory_made_for_it(tmp_path):
    kept = tmp_path / "kept.log"
    kept.write_text("an earlier run\n")
    with quiet_third_party(tmp_path / "new" / "run" / "run.log"):
        print("only our own output")
    with quiet_third_party(kept):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.log"]
    assert kept.read_text().startswith("an earlier run\n")


@pytest.mark.parametrize("error", [UserError("unknown captioner"), RuntimeError("nothing logged")])
def test_no_log_hint_for_a_user_error_or_an_empty_log(tmp_path, capfd, error):
    with pytest.raises(type(error)):
        with quiet_third_party(tmp_path / "run.log"):
            if isinstance(error, UserError):
                os.write(2, b"engine noise\n")
            raise error
    assert "third-party output" not in capfd.readouterr().err


def test_a_library_that_configures_its_logger_inside_still_writes_to_the_log(tmp_path, capfd):
    """vLLM configures its logger on import, with a handler on VLLM_LOGGING_STREAM (default sys.stdout)."""
    log = tmp_path / "run.log"
    with quiet_third_party(log):
        stream = os.environ["VLLM_LOGGING_STREAM"]
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {"lib": {"class": "logging.StreamHandler", "stream": stream}},
                "loggers": {"vllm": {"handlers": ["lib"], "propagate": False}},
            }
        )
        logging.getLogger("vllm.config").warning("RECONFIGURED-MARK")
    configured = logging.getLogger("vllm").handlers
    try:
        assert "RECONFIGURED-MARK" in log.read_text()
        assert "RECONFIGURED-MARK" not in "".join(capfd.readouterr())
        assert len(configured) == 1  # the library's own configuration is kept after the context
    finally:
        for handler in configured:
            logging.getLogger("vllm").removeHandler(handler)
        logging.getLogger("vllm").propagate = True


def read_all(fd: int) -> str:
    chunks = []
    while select.select([fd], [], [], 0.5)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the pty's other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("stderr_is_a_tty", [True, False])
def test_real_terminal_descriptors_in_a_child_process(tmp_path, stderr_is_a_tty):
    """Where stdout/stderr really are descriptors 1 and 2 (a command line, not pytest's capture).
    The progress bar shows on a terminal, not in a pipe."""
    log = tmp_path / "run.log"
    script = textwrap.dedent(f"""
        import logging, os, subprocess, sys, warnings
        from videoqa_base.logs import progress_bar, quiet_third_party
        print("BEFORE-PRINT", flush=True)
        with quiet_third_party({str(log)!r}):
            logging.getLogger("torch.distributed").warning("LOGGER-MARK")
            os.write(1, b"FD1-MARK\\n")
            os.write(2, b"FD2-MARK\\n")
            print("CHILD-ERR", file=sys.stderr)
            warnings.warn("WARN-MARK")
            subprocess.run([sys.executable, "-c", "print('CHILD-OUT')"], check=True)
            print("OUR-PRINT")
            for _ in progress_bar(range(3), desc="OUR-BAR"):
                pass
        os.write(1, b"AFTER-FD1\\n")
        print("AFTER-PRINT")
    """)
    if stderr_is_a_tty:
        terminal, child_stderr = os.openpty()
    else:
        terminal, child_stderr = os.pipe()
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=child_stderr, text=True, timeout=120
        )
        os.close(child_stderr)
        stderr = read_all(terminal)
    finally:
        os.close(terminal)
    assert done.returncode == 0, stderr
    assert done.stdout.split() == ["BEFORE-PRINT", "OUR-PRINT", "AFTER-FD1", "AFTER-PRINT"]
    assert ("OUR-BAR" in stderr and "3/3" in stderr) == stderr_is_a_tty, stderr
    noise = ("LOGGER-MARK", "FD1-MARK", "FD2-MARK", "CHILD-ERR", "WARN-MARK", "CHILD-OUT")
    assert not [m for m in noise if m in stderr], stderr
    written = log.read_text()
    assert all(m in written for m in noise), written
    assert "OUR-BAR" not in written


def test_quiet_defaults_keep_a_users_setting_and_filter_only_known_warnings(monkeypatch):
    for name in QUIET_ENVIRONMENT:
        monkeypatch.setenv(name, "placeholder")  # so that the teardown restores the original state
        monkeypatch.delenv(name)
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "DEBUG")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_defaults()
        warnings.warn("`torch.distributed.reduce_op` is deprecated, please use ReduceOp", FutureWarning, stacklevel=1)
        warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]
    assert os.environ["VLLM_LOGGING_LEVEL"] == "DEBUG"
    assert all(os.environ[name] == value for name, value in QUIET_ENVIRONMENT.items() if name != "VLLM_LOGGING_LEVEL")


def test_a_command_that_fails_early_leaves_no_run_directory(tmp_path):
    """`videoqa run` opens its log in the run directory before any model work; a user error there
    (nothing said by the libraries) must not leave an empty run directory behind."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "videoqa.cli.main",
            "run",
            "--dataset",
            "egoschema",
            "--captioner",
            "ser",
            "--data-root",
            str(tmp_path / "missing"),
            "--output-dir",
            str(tmp_path / "outputs"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and out.stderr.startswith("error: "), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "outputs").exists()

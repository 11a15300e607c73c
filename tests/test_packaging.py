"""A non-editable install works: build the wheel, install it into a plain directory, and use it
from another working directory (configs ship inside the package as videoqa.configs)."""

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE_ROOTS = ("videoqa_base", "captioner", "videoqa")
SOURCES = ("pyproject.toml", "README.md", *PACKAGE_ROOTS, "configs")


def run(command: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel, the directory it was installed into). Built from a copy of the sources, so the
    build's own files (build/, *.egg-info) never land in the working tree."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    python = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run([*python, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work / "dist"), "."], cwd=source)
    (wheel,) = (work / "dist").glob("videoqa-*.whl")
    run([*python, "install", "--no-deps", "-q", "--target", str(work / "site"), str(wheel)], cwd=work)
    return wheel, work / "site"


def repo_packages() -> dict[str, Path]:
    """Every package of ours (a directory with __init__.py): dotted name -> its folder in the repository."""
    packages = {
        ".".join(init.parent.relative_to(REPO).parts): init.parent
        for root in PACKAGE_ROOTS
        for init in (REPO / root).rglob("__init__.py")
    }
    return packages | {"videoqa.configs": REPO / "configs"}


def test_the_wheel_holds_every_package_module_and_config(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = []
    for package, folder in repo_packages().items():
        prefix = package.replace(".", "/")
        files = [p for p in folder.iterdir() if p.suffix == ".py"]
        if package == "videoqa.configs":
            files += list(folder.rglob("*.yaml"))
        expected = [f"{prefix}/{p.relative_to(folder).as_posix()}" for p in files]
        missing += [name for name in expected if name not in names]
    assert not missing, f"not in the wheel (add the package to [tool.setuptools] packages in pyproject.toml): {missing}"
    assert not [n for n in names if n.split("/")[0] in ("eval", "tests", "configs")]  # no generic top-level module


def clean_env(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOQA_")}
    return env | {"PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}


def test_the_installed_copy_resolves_configs_from_another_directory(installed, tmp_path):
    _, site = installed
    check = textwrap.dedent("""
        import sys
        from pathlib import Path

        site = Path(sys.argv[1]).resolve()
        import videoqa
        from videoqa import config
        from videoqa.answering.prompts import load_prompt

        assert Path(videoqa.__file__).resolve().is_relative_to(site), videoqa.__file__
        assert Path(config.CONFIG_DIR).resolve().is_relative_to(site), config.CONFIG_DIR
        run = config.load_run_config(dataset="egoschema", captioner="ser", llm="qwen2.5-14b-instruct")
        assert (run.dataset.type, run.captioner.type, run.llm.name) == ("egoschema", "ser", "qwen2.5-14b-instruct")
        assert load_prompt(run.answer.prompt).name == run.answer.prompt
        print("resolved", run.dataset.name, run.captioner.name, run.llm.name)
    """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run([sys.executable, "-c", check, str(site)], cwd=elsewhere, env=clean_env(site))
    assert "resolved egoschema ser qwen2.5-14b-instruct" in done.stdout


def test_the_installed_commands_work_from_another_directory(installed, tmp_path):
    _, site = installed
    env = clean_env(site)
    videoqa = [sys.executable, "-m", "videoqa.cli.main"]
    assert "--verbose" in run([*videoqa, "run", "--help"], cwd=tmp_path, env=env).stdout
    # the registered names come from the installed copy's configs
    unknown = subprocess.run(
        [*videoqa, "run", "--dataset", "no-such-set", "--captioner", "ser"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unknown.returncode == 2 and "not a registered name (egoschema, " in unknown.stderr, unknown.stderr
    script = site / "bin" / "videoqa"  # the console script pip wrote, as a user would run it
    assert "compare" in run([str(script), "--help"], cwd=tmp_path, env=env).stdout
    assert "train" in run([sys.executable, "-m", "videoqa.cli.captioner", "--help"], cwd=tmp_path, env=env).stdout

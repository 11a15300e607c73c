"""The layout's promises, checked on the source: packages depend one way, modules form no import
cycles (function-local imports included), no module imports another's private names, and no
source file is too long to read in one sitting."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("videoqa_base", "captioner", "videoqa")
# what each top-level package may import from the others (the arrows of the layering)
ALLOWED = {"videoqa_base": set(), "captioner": {"videoqa_base"}, "videoqa": {"videoqa_base", "captioner"}}
MAX_LINES = 500


def source_files() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def imports_of(path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import statement, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [alias.name for alias in node.names]
            found.append((node.module, names))
            # `from package import module` imports that module too
            found += [(f"{node.module}.{n}", []) for n in names if f"{node.module}.{n}" in modules]
    return [(module, names) for module, names in found if module.split(".")[0] in PACKAGES]


def import_graph() -> dict[str, set[str]]:
    modules = source_files()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for module, _ in imports_of(path, modules):
            if module in modules and module != name:
                graph[name].add(module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_top_level_packages_depend_one_way():
    modules = source_files()
    wrong = []
    for name, path in modules.items():
        top = name.split(".")[0]
        for module, _ in imports_of(path, modules):
            other = module.split(".")[0]
            if other != top and other not in ALLOWED[top]:
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_between_modules():
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_private_names_of_another():
    modules = source_files()
    private = [
        f"{path.relative_to(ROOT)}: {module}.{n}"
        for name, path in modules.items()
        for module, names in imports_of(path, modules)
        for n in names
        if n.startswith("_") and not n.startswith("__") and module != name
    ]
    assert not private, "\n".join(private)


def test_source_files_are_short_enough_to_read():
    long = {
        str(p.relative_to(ROOT)): n
        for p in source_files().values()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


def test_no_generic_top_level_eval_package():
    assert not (ROOT / "eval" / "__init__.py").exists()


# Inside videoqa/, data flows one way: a module may import its own level and the levels before it.
# Level 0 is what every stage shares (typed records, configs, registries, model files on disk).
STAGE_LEVELS = [
    ("types", "config", "registry", "models", "manifest"),
    ("datasets",),
    ("frames",),
    ("captioning",),
    ("answering",),
    ("scoring",),
    ("run", "rundir", "report", "compare"),
    ("executors", "bench", "cli", "fixtures"),
]


def stage_level(module: str) -> int:
    """The level of a videoqa module (by its first name under videoqa/)."""
    part = module.split(".")[1] if "." in module else ""
    for level, names in enumerate(STAGE_LEVELS):
        if part in names:
            return level
    raise AssertionError(f"{module}: not placed in STAGE_LEVELS (add its package to the stage order)")


def test_stages_import_only_earlier_stages():
    modules = source_files()
    wrong = []
    for name, path in modules.items():
        if not name.startswith("videoqa.") or name == "videoqa":
            continue
        for module, _ in imports_of(path, modules):
            if module.startswith("videoqa.") and stage_level(module) > stage_level(name):
                wrong.append(f"{path.relative_to(ROOT)} imports the later stage {module}")
    assert not wrong, "\n".join(wrong)


def test_the_stage_order_check_sees_a_later_stage():
    assert stage_level("videoqa.captioning.hf_vlm") < stage_level("videoqa.answering.answerers")
    assert stage_level("videoqa.run") < stage_level("videoqa.executors.local")

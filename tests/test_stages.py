"""The package's stages keep their order: no module imports a later stage (read with ast, never imported).

Order of the groups, earliest first; a module may import its own group and earlier ones:
the shared top-level modules, inputs, plan, measure, analyse, render, tasks (the component bodies,
which chain the stages), the component wrappers, the pipeline, and the CLI (which may import anything).
"""

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {
    "liger_bench": ROOT / "src" / "liger_bench",
    "liger_bench.components": ROOT / "components",
    "liger_bench.pipelines": ROOT / "pipelines",
}
SHARED = {"records", "vocabulary", "versions", "cluster", "package", "tracking", "credentials", "kfp_backend"}
STAGES = ("inputs", "plan", "measure", "analyse", "render")
ORDER = ("shared", *STAGES, "tasks", "components", "pipelines", "cli")


def group_of(module: str) -> str | None:
    """The group of a dotted ``liger_bench`` module (or of a name imported from a package); None: unclassified."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    top = parts[1]
    if top in SHARED:
        return "shared"
    return top if top in ORDER else None


def module_name(path: Path, folder: Path, package: str) -> str:
    parts = path.relative_to(folder).with_suffix("").parts
    return ".".join((package, *(parts[:-1] if parts[-1] == "__init__" else parts)))


def imported_modules(tree: ast.AST, module: str, is_package: bool):
    """(line, dotted name) of every import in the module, inside functions and ``TYPE_CHECKING`` too."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def violations(sources: dict[str, Path]) -> list[str]:
    """Every import of a later group, or of an unclassified ``liger_bench`` module, as 'file:line: ...'."""
    found = []
    for package, folder in sources.items():
        for path in sorted(folder.rglob("*.py")):
            module = module_name(path, folder, package)
            own = group_of(module)
            where = path.relative_to(folder.parent)
            if own is None:
                found.append(f"{where}: {module} belongs to no group; place it in a stage or name it in SHARED")
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for line, target in imported_modules(tree, module, path.name == "__init__.py"):
                if target.split(".")[0] != "liger_bench":
                    continue
                theirs = group_of(target)
                if theirs is None:
                    found.append(f"{where}:{line}: imports {target}, which belongs to no group")
                elif ORDER.index(theirs) > ORDER.index(own):
                    found.append(f"{where}:{line}: {own} imports {target} ({theirs}, a later stage)")
    return found


def test_no_module_imports_a_later_stage():
    found = violations(SOURCES)
    assert not found, "\n".join(found)


def test_the_flat_top_level_holds_only_the_shared_modules_and_tasks():
    top = {path.stem for path in SOURCES["liger_bench"].glob("*.py")}
    assert top == SHARED | {"tasks"}


@pytest.mark.parametrize("stage", [*STAGES, "cli"])
def test_each_stage_says_what_it_does_and_may_import_and_reexports_nothing(stage):
    tree = ast.parse((SOURCES["liger_bench"] / stage / "__init__.py").read_text())
    assert ast.get_docstring(tree) and "import" in ast.get_docstring(tree)
    assert len(tree.body) == 1  # the docstring alone


@dataclass(frozen=True)
class Planted:
    name: str
    path: str  # under src/liger_bench
    source: str
    expected: str  # a fragment of the one violation; "" when the import is allowed


PLANTED = [
    Planted(
        "upward-in-a-function",
        "plan/grid.py",
        "def f():\n    from liger_bench.measure.metrics import GIB\n",
        "plan/grid.py:2: plan imports liger_bench.measure.metrics.GIB (measure, a later stage)",
    ),
    Planted(
        "upward-package-import",
        "inputs/hub.py",
        "from liger_bench.render import page\n",
        "inputs/hub.py:1: inputs imports liger_bench.render.page (render",
    ),
    Planted(
        "upward-relative",
        "plan/grid.py",
        "from ..measure import metrics\n",
        "plan/grid.py:1: plan imports liger_bench.measure.metrics (measure",
    ),
    Planted(
        "shared-imports-a-stage",
        "records.py",
        "import liger_bench.inputs.data\n",
        "records.py:1: shared imports liger_bench.inputs.data (inputs",
    ),
    Planted(
        "stage-imports-the-cli",
        "render/page.py",
        "from liger_bench.cli import progress\n",
        "render/page.py:1: render imports liger_bench.cli.progress (cli",
    ),
    Planted(
        "stage-imports-tasks",
        "analyse/analysis.py",
        "from liger_bench import tasks\n",
        "analyse/analysis.py:1: analyse imports liger_bench.tasks (tasks",
    ),
    Planted("unclassified-module", "newthing.py", "x = 1\n", "liger_bench.newthing belongs to no group"),
    Planted("downward-is-allowed", "render/page.py", "from liger_bench.analyse.analysis import Analysis\n", ""),
    Planted("shared-is-allowed", "inputs/data.py", "from liger_bench.records import write_json_atomic\n", ""),
    Planted("cli-imports-anything", "cli/main.py", "from liger_bench.pipelines import liger_benchmark\n", ""),
]


@pytest.mark.parametrize("case", PLANTED, ids=[case.name for case in PLANTED])
def test_a_planted_import_is_found_and_named(tmp_path, case):
    """The checker on a synthetic package: one planted module, nothing else."""
    planted = tmp_path / "src" / "liger_bench" / case.path
    planted.parent.mkdir(parents=True)
    planted.write_text(case.source)
    found = violations({"liger_bench": tmp_path / "src" / "liger_bench"})
    if case.expected:
        assert len(found) == 1 and case.expected in found[0], found
    else:
        assert found == []

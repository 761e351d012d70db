"""The test suite's own rules, checked on its source (and on what reaches into it).

- Test modules share helpers through ``conftest.py``'s fixtures only: no ``test_*.py`` imports
  another module of tests/ (another test module, ``conftest.py``, a helper), and a helper module
  of tests/ other than ``conftest.py`` is imported by ``conftest.py`` alone.
- Nothing outside tests/ imports from it (the benchmarks take the PostgreSQL server from
  :mod:`mlpsearch.testing`, which the package itself never imports).
- Tests wait on conditions, not fixed sleeps: a ``time.sleep`` is inside a polling loop, or a
  comment on it or just above it says that the time passing is the subject of the test.
- A registry (the names an experiment may choose from) is covered by contract tests that loop
  over it (``pytest.mark.parametrize``), so that a new entry is tested without a new test.
- Studies run in subprocesses are marked ``slow``: a test that starts ``mlpsearch`` in the
  background or asks for a slow study's fixtures; a quick test may run ``mlpsearch run`` only
  to see it refuse its input (exit 2, before any study).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mlpsearch import config, engine
from mlpsearch.engine.hyperparameters import RULES

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
LOCAL = {p.stem for p in TESTS.glob("*.py")} | {p.name for p in TESTS.iterdir() if p.is_dir()}
TEST_MODULES = sorted(TESTS.glob("test_*.py"))
# the code of the repository that is not tests: the package, the benchmarks, the scripts
OUTSIDE = sorted(
    p for folder in ("engine", "search", "experiments", "scripts")
    for p in (ROOT / folder).rglob("*.py")
)
# registries: each rule's registry (as the engine names it) and the experiment's own choices
REGISTRIES = {
    name: value
    for name, value in vars(engine).items()
    if any(rule.registry is value for rule in RULES.values())
} | {"SAMPLERS": config.SAMPLERS, "PRUNERS": config.PRUNERS}
SLOW_FIXTURES = {"slow_experiment", "running_worker"}


def imported_names(source: str) -> list[tuple[int, str]]:
    """(line, top-level module name) of every import in ``source``, wherever it is; relative
    imports as ".", ``importlib.import_module("x")`` and ``__import__("x")`` included."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, "." if node.level else node.module.split(".")[0]))
        elif isinstance(node, ast.Call):
            f = node.func
            called = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            args = node.args
            if called in ("import_module", "__import__") and args:
                if isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
                    found.append((node.lineno, args[0].value.split(".")[0]))
    return found


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, full dotted name) of every absolute import: ``from a.b import c`` gives ``a.b.c``
    (c may be a name, not a module: a prefix test is what this is for)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def path_changes_to_tests(source: str) -> list[int]:
    """Lines that put tests/ on ``sys.path``."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and ast.unparse(node.func) in ("sys.path.insert", "sys.path.append")
        and "'tests'" in ast.unparse(node)
    ]


def bare_sleeps(source: str) -> list[int]:
    """Lines of ``time.sleep`` calls outside any loop whose line, or the comment just above
    it, does not say the time passing is "the subject" of the test."""
    tree = ast.parse(source)
    lines = source.splitlines()
    loops = [n for n in ast.walk(tree) if isinstance(n, ast.While | ast.For)]
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and ast.unparse(node.func) in ("time.sleep", "sleep")):
            continue
        if any(loop.lineno <= node.lineno <= loop.end_lineno for loop in loops):
            continue
        said = [lines[node.lineno - 1]]
        above = node.lineno - 2
        while above >= 0 and lines[above].strip().startswith("#"):
            said.append(lines[above])
            above -= 1
        if "the subject" not in " ".join(said).lower():
            found.append(node.lineno)
    return found


def looped_over(source: str) -> set[str]:
    """Names a ``pytest.mark.parametrize`` of ``source`` takes its cases from, directly or
    through module-level names made from them (``NAMES = sorted(ACTIVATIONS)``)."""
    tree = ast.parse(source)
    made_from: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                base = target.value if isinstance(target, ast.Subscript) else target
                if isinstance(base, ast.Name) and node.value is not None:
                    names = {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)}
                    made_from.setdefault(base.id, set()).update(names)
    used = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and ast.unparse(node.func).endswith("mark.parametrize")
            and len(node.args) >= 2
        ):
            used |= {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
    todo = list(used)
    while todo:
        for name in made_from.get(todo.pop(), ()):
            if name not in used:
                used.add(name)
                todo.append(name)
    return used


def unmarked_studies(source: str) -> list[str]:
    """Tests not marked ``slow`` that start ``mlpsearch`` in the background (``cli.start``),
    ask for a slow study's fixtures, or run ``mlpsearch run``/``worker`` (``cli(...)``) without
    expecting it to refuse its input (``returncode == 2``)."""
    tree = ast.parse(source)
    marks = [n.value for n in tree.body if isinstance(n, ast.Assign)
             and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)]  # fmt: skip
    if any("slow" in ast.unparse(m) for m in marks):
        return []
    found = []
    for node in tree.body:
        if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
            continue
        if any("mark.slow" in ast.unparse(d) for d in node.decorator_list):
            continue
        calls = [c for c in ast.walk(node) if isinstance(c, ast.Call)]
        starts = any(ast.unparse(c.func) == "cli.start" for c in calls)
        runs = any(
            ast.unparse(c.func) == "cli"
            and c.args
            and isinstance(c.args[0], ast.Constant)
            and c.args[0].value in ("run", "worker")
            for c in calls
        )
        refused = "returncode == 2" in ast.unparse(node)
        fixtures = {a.arg for a in node.args.args} & SLOW_FIXTURES
        if starts or fixtures or (runs and not refused):
            found.append(f"{node.name} (line {node.lineno})")
    return found


# --- the rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", TEST_MODULES, ids=lambda p: p.name)
def test_no_test_module_imports_from_tests(path):
    local = [
        f"{path.name}:{line} imports {name}"
        for line, name in imported_names(path.read_text())
        if name in LOCAL | {".", "tests"}
    ]
    assert not local, "; ".join(local) + " (ask for a conftest.py fixture instead)"


def test_helper_modules_are_imported_by_conftest_alone():
    helpers = {p.stem for p in TESTS.glob("*.py")} - {"conftest"}
    helpers = {h for h in helpers if not h.startswith("test_")}
    by_conftest = {name for _, name in imported_names((TESTS / "conftest.py").read_text())}
    assert helpers <= by_conftest, f"helpers conftest.py does not import: {helpers - by_conftest}"


def test_nothing_outside_tests_imports_from_tests():
    found = []
    for path in OUTSIDE:
        source = path.read_text()
        where = path.relative_to(ROOT)
        found += [f"{where}:{line} imports {name}" for line, name in imported_names(source)
                  if name in LOCAL | {"tests"}]  # fmt: skip
        found += [f"{where}:{line} puts tests/ on sys.path"
                  for line in path_changes_to_tests(source)]
    assert not found, "; ".join(found) + " (shared test code belongs in mlpsearch.testing)"


def test_the_package_never_imports_its_testing_helpers():
    package = [p for p in OUTSIDE if p.parts[len(ROOT.parts)] in ("engine", "search")]
    package = [p for p in package if "testing" not in p.relative_to(ROOT).parts]
    found = [
        f"{p.relative_to(ROOT)}:{line} imports {name}"
        for p in package
        for line, name in imported_modules(p.read_text())
        if name.startswith("mlpsearch.testing")
    ]
    assert package and not found, "; ".join(found)


@pytest.mark.parametrize("path", [*TEST_MODULES, TESTS / "conftest.py"], ids=lambda p: p.name)
def test_tests_wait_on_conditions_not_sleeps(path):
    lines = bare_sleeps(path.read_text())
    assert not lines, (
        f"{path.name}: time.sleep outside a polling loop at lines {lines}: wait for the "
        "condition (the wait_until fixture), or say why the time passing is the subject"
    )


@pytest.mark.parametrize("name", sorted(REGISTRIES))
def test_every_registry_has_contract_tests_that_loop_over_it(name):
    looping = [p.name for p in TEST_MODULES if name in looped_over(p.read_text())]
    assert looping, f"no test is parametrized over {name}: write its contract test"


@pytest.mark.parametrize("path", TEST_MODULES, ids=lambda p: p.name)
def test_studies_in_subprocesses_are_marked_slow(path):
    found = unmarked_studies(path.read_text())
    assert not found, f"{path.name}: mark slow: {', '.join(found)}"


# --- the checks find what they look for ---------------------------------------------------------


def test_the_check_finds_every_kind_of_import():
    code = (
        "import pg\nfrom test_search import cli\nfrom . import conftest\n"
        "def f():\n    import importlib\n    importlib.import_module('study_fixture.x')\n"
    )
    assert [name for _, name in sorted(imported_names(code))] == [
        "pg",
        "test_search",
        ".",
        "importlib",
        "study_fixture",
    ]
    assert {"conftest", "test_search", "test_suite"} <= LOCAL
    code = "from mlpsearch import testing\nimport mlpsearch.testing.postgres as pg\n"
    assert [name for _, name in imported_modules(code)] == [
        "mlpsearch.testing",
        "mlpsearch.testing.postgres",
    ]
    code = "import sys\nsys.path.insert(0, str(ROOT / 'tests'))\nsys.path.insert(0, str(HERE))\n"
    assert path_changes_to_tests(code) == [2]


def test_the_checks_find_bare_sleeps_unlooped_registries_and_unmarked_studies():
    code = (
        "import time\n"
        "def test_a():\n    time.sleep(1)\n"  # 3: hoping something happened
        "def test_b():\n    while not done():\n        time.sleep(0.1)\n"
        "def test_c():\n    # the subject: the lease grows stale\n    time.sleep(2)\n"
        "def test_d():\n    time.sleep(2)  # the subject: silence\n"
    )
    assert bare_sleeps(code) == [3]
    code = (
        "NAMES = sorted(ACTIVATIONS)\nBOTH = {'a': OPTIMIZERS}\nBOTH['b'] = SCHEDULES\n"
        "@pytest.mark.parametrize('name', NAMES)\ndef test_a(name): ...\n"
        "@pytest.mark.parametrize('name', sorted(BOTH))\ndef test_b(name): ...\n"
        "def test_c():\n    for name in INITIALIZERS: ...\n"
    )
    assert {"ACTIVATIONS", "OPTIMIZERS", "SCHEDULES"} <= looped_over(code)
    assert "INITIALIZERS" not in looped_over(code)
    code = (
        "def test_a(cli):\n    cli.start('run', 'e.toml', cwd=p)\n"
        "def test_b(cli):\n    r = cli('run', 'e.toml', cwd=p)\n    assert r.returncode == 0\n"
        "def test_c(cli):\n    r = cli('run', 'bad.toml', cwd=p)\n    assert r.returncode == 2\n"
        "def test_d(running_worker): ...\n"
        "@pytest.mark.slow\ndef test_e(cli):\n    cli.start('run', cwd=p)\n"
    )
    assert [f.split()[0] for f in unmarked_studies(code)] == ["test_a", "test_b", "test_d"]
    assert set(REGISTRIES) >= {"ACTIVATIONS", "INITIALIZERS", "OPTIMIZERS", "SCHEDULES"}

"""The test suite's own rule: test modules share helpers through conftest.py's fixtures only.

No ``test_*.py`` imports another module of tests/ (another test module, conftest.py, or a
helper such as pg.py), and a helper module of tests/ that is not conftest.py is imported by
conftest.py, so that each shared helper has one home and one way in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
LOCAL = {p.stem for p in TESTS.glob("*.py")} | {p.name for p in TESTS.iterdir() if p.is_dir()}


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


@pytest.mark.parametrize("path", sorted(TESTS.glob("test_*.py")), ids=lambda p: p.name)
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
    assert {"conftest", "pg", "test_search", "test_suite"} <= LOCAL

"""The layout is the architecture: the generic engine never imports the product or the command
line; only the SQLite backend imports sqlite3; SQL is written only in the storage package.
Sources are read with `ast`, never imported (see test_purity)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_purity import TREE, SourceTree, runtime_imports

ENGINE = "sp00ky_mcp.engine"
STORE = "sp00ky_mcp.product.store"
SQLITE_BACKEND = frozenset({f"{STORE}.sqlite", f"{STORE}.sqlite_schema"})
# A string that reads like a statement of SQL: what only the storage package may hold.
SQL = re.compile(
    r"\b(SELECT\s.+\sFROM\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|"
    r"CREATE\s+(TABLE|INDEX|TRIGGER)\s|ALTER\s+TABLE\s|PRAGMA\s)",
    re.IGNORECASE | re.DOTALL,
)


def modules(tree: SourceTree) -> Iterator[str]:
    package = tree.root / tree.package
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(tree.root).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: SourceTree, module: str) -> set[str]:
    path = tree.path(module)
    assert path is not None
    source = ast.parse(path.read_text(encoding="utf-8"))
    return set(runtime_imports(source, module, tree.is_package(module)))


def strings(tree: SourceTree, module: str) -> Iterator[str]:
    path = tree.path(module)
    assert path is not None
    yield from literal_texts(ast.parse(path.read_text(encoding="utf-8")))


def literal_texts(node: ast.AST) -> Iterator[str]:
    """Every string literal below `node`; an f-string as one text, its fields as 'x'."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.JoinedStr):
            yield "".join(_text_of(part) for part in child.values)
        elif isinstance(child, ast.Constant):
            if isinstance(value := child.value, str):
                yield value
        else:
            yield from literal_texts(child)


def _text_of(part: ast.expr) -> str:
    """A piece of an f-string: its literal text, or 'x' for a field."""
    if isinstance(part, ast.Constant) and isinstance(part.value, str):
        return part.value
    return "x"


def engine_leaks(tree: SourceTree) -> list[str]:
    return [
        f"{module} -> {name}"
        for module in modules(tree)
        if module.startswith(ENGINE)
        for name in sorted(imported(tree, module))
        if name.startswith(("sp00ky_mcp.product", "sp00ky_mcp.cli"))
    ]


def sqlite_importers(tree: SourceTree) -> list[str]:
    return [
        module
        for module in modules(tree)
        if module not in SQLITE_BACKEND and "sqlite3" in imported(tree, module)
    ]


def sql_outside_store(tree: SourceTree) -> list[str]:
    return [
        f"{module}: {text[:60]!r}"
        for module in modules(tree)
        if not module.startswith(STORE)
        for text in strings(tree, module)
        if SQL.search(text)
    ]


def test_the_engine_never_imports_the_product_or_the_command_line() -> None:
    assert engine_leaks(TREE) == []


def test_only_the_sqlite_backend_imports_sqlite3() -> None:
    assert sqlite_importers(TREE) == []


def test_no_sql_is_written_outside_the_storage_package() -> None:
    assert sql_outside_store(TREE) == []


def test_the_engine_has_modules_and_the_product_has_its_storage_backends() -> None:
    names = set(modules(TREE))
    assert {f"{ENGINE}.server", f"{ENGINE}.protocol", f"{ENGINE}.h1"} <= names
    assert {f"{STORE}.port", f"{STORE}.sqlite", f"{STORE}.postgres"} <= names


# --- the checks are not vacuous ---------------------------------------------------------------


def write(root: Path, relative: str, source: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")


@pytest.fixture
def planted(tmp_path: Path) -> SourceTree:
    """A copy of the layout with one of each breach planted in it."""
    write(tmp_path, "sp00ky_mcp/__init__.py", "")
    write(tmp_path, "sp00ky_mcp/engine/__init__.py", "")
    write(tmp_path, "sp00ky_mcp/engine/leaky.py", "from ..product import accounts\n")
    write(tmp_path, "sp00ky_mcp/product/__init__.py", "")
    write(tmp_path, "sp00ky_mcp/product/accounts.py", "import sqlite3\n")
    write(
        tmp_path,
        "sp00ky_mcp/product/cloud.py",
        'def find(db, key):\n    return db.one(f"SELECT * FROM env_vars WHERE key = {key}")\n',
    )
    write(tmp_path, "sp00ky_mcp/product/store/__init__.py", "")
    write(tmp_path, "sp00ky_mcp/product/store/sqlite.py", "import sqlite3\nQ = 'SELECT 1 FROM t'\n")
    return SourceTree(tmp_path, "sp00ky_mcp")


def test_a_planted_engine_import_of_the_product_is_found(planted: SourceTree) -> None:
    assert engine_leaks(planted) == [
        "sp00ky_mcp.engine.leaky -> sp00ky_mcp.product",
        "sp00ky_mcp.engine.leaky -> sp00ky_mcp.product.accounts",
    ]


def test_a_planted_sqlite3_import_outside_the_backend_is_found(planted: SourceTree) -> None:
    assert sqlite_importers(planted) == ["sp00ky_mcp.product.accounts"]


def test_planted_sql_outside_the_store_is_found_and_inside_it_is_not(
    planted: SourceTree,
) -> None:
    assert sql_outside_store(planted) == [
        "sp00ky_mcp.product.cloud: 'SELECT * FROM env_vars WHERE key = x'"
    ]

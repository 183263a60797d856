"""The pure core must not reach IO: no anyio, asyncio, socket or h11, directly or through any
sp00ky_mcp module it imports.  Sources are parsed with `ast`, never imported, so the answer does
not depend on what some other test happened to load into sys.modules.

To declare a new pure module, add one line to PURE_MODULES.
"""

from __future__ import annotations

import ast
import importlib.util
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "sp00ky_mcp"
FORBIDDEN = frozenset({"anyio", "asyncio", "h11", "socket"})
PURE_MODULES = (
    "sp00ky_mcp.engine.catalogue",
    "sp00ky_mcp.engine.context",
    "sp00ky_mcp.engine.errors",
    "sp00ky_mcp.engine.jsonrpc",
    "sp00ky_mcp.engine.metrics",
    "sp00ky_mcp.engine.mrtr",
    "sp00ky_mcp.engine.protocol",
    "sp00ky_mcp.engine.redaction",
    "sp00ky_mcp.engine.schema",
    "sp00ky_mcp.engine.sessions",
    "sp00ky_mcp.engine.sse",
    "sp00ky_mcp.engine.tally",
    "sp00ky_mcp.engine.transport",
    "sp00ky_mcp.engine.uritemplate",
    "sp00ky_mcp.engine.versions",
    "sp00ky_mcp.product.narrowing",
)


def package_root() -> Path:
    """The directory that holds the package, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent.parent


class SourceTree:
    """Modules of one package as files under `root`."""

    def __init__(self, root: Path, package: str) -> None:
        self.root = root
        self.package = package

    def owns(self, module: str) -> bool:
        return module == self.package or module.startswith(self.package + ".")

    def path(self, module: str) -> Path | None:
        base = self.root.joinpath(*module.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    def is_package(self, module: str) -> bool:
        return (self.root.joinpath(*module.split(".")) / "__init__.py").is_file()

    def imports(self, module: str) -> set[str]:
        """What importing `module` imports: modules of this package by absolute name (with
        their parent packages, which run first), other libraries by top-level name."""
        path = self.path(module)
        assert path is not None, f"no source for {module}"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found: set[str] = set()
        for name in runtime_imports(tree, module, self.is_package(module)):
            if self.owns(name):
                parts = name.split(".")
                found.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
            else:
                # Outside the package only the top-level distribution matters.
                found.add(name.split(".", 1)[0])
        found.discard(module)
        return {name for name in found if not self.owns(name) or self.path(name) is not None}

    def forbidden_chains(self, start: str, forbidden: frozenset[str]) -> list[list[str]]:
        """Each import path from `start` to a forbidden top-level module, breadth first."""
        chains: list[list[str]] = []
        parents: dict[str, str | None] = {start: None}
        queue = deque([start])
        while queue:
            module = queue.popleft()
            for name in sorted(self.imports(module)):
                if self.owns(name):
                    if name not in parents:
                        parents[name] = module
                        queue.append(name)
                elif name.split(".", 1)[0] in forbidden:
                    chains.append([*lineage(parents, module), name])
        return chains


def lineage(parents: dict[str, str | None], module: str) -> list[str]:
    chain: list[str] = []
    current: str | None = module
    while current is not None:
        chain.append(current)
        current = parents[current]
    return chain[::-1]


def is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def runtime_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """All nodes below `node`, skipping `if TYPE_CHECKING:` bodies, which never run."""
    for child in ast.iter_child_nodes(node):
        yield child
        if isinstance(child, ast.If) and is_type_checking(child.test):
            for branch in child.orelse:
                yield branch
                yield from runtime_nodes(branch)
        else:
            yield from runtime_nodes(child)


def runtime_imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Absolute names of `import`, `from ... import` (relative ones resolved), and of
    `importlib.import_module("x")` / `__import__("x")` with a literal name, at any depth."""
    for node in runtime_nodes(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve(node, module, is_package)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and dynamic_import(node) is not None:
            yield str(dynamic_import(node))


def resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        assert node.module is not None
        return node.module
    package = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def dynamic_import(node: ast.Call) -> str | None:
    func = node.func
    named = (isinstance(func, ast.Name) and func.id in ("__import__", "import_module")) or (
        isinstance(func, ast.Attribute) and func.attr == "import_module"
    )
    if named and node.args and isinstance(node.args[0], ast.Constant):
        value = node.args[0].value
        return value if isinstance(value, str) else None
    return None


TREE = SourceTree(package_root(), PACKAGE)


# the rule itself


@pytest.mark.parametrize("module", PURE_MODULES)
def test_a_pure_module_reaches_no_io_library(module: str) -> None:
    chains = TREE.forbidden_chains(module, FORBIDDEN)
    assert [" -> ".join(chain) for chain in chains] == []


@pytest.mark.parametrize("module", PURE_MODULES)
def test_every_declared_pure_module_exists(module: str) -> None:
    assert TREE.path(module) is not None


def test_the_pure_list_has_no_duplicates_and_excludes_listen() -> None:
    assert len(set(PURE_MODULES)) == len(PURE_MODULES)
    assert "sp00ky_mcp.engine.listen" not in PURE_MODULES


# the checker is not vacuous


def test_the_checker_flags_the_http_layers_for_their_direct_io_imports() -> None:
    assert ["sp00ky_mcp.engine.http", "anyio"] in TREE.forbidden_chains(
        "sp00ky_mcp.engine.http", FORBIDDEN
    )
    assert ["sp00ky_mcp.engine.h1", "h11"] in TREE.forbidden_chains(
        "sp00ky_mcp.engine.h1", FORBIDDEN
    )


def write(root: Path, relative: str, source: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")


@pytest.fixture
def fake_tree(tmp_path: Path) -> SourceTree:
    write(tmp_path, "pkg/__init__.py", "VERSION = '1'\n")
    write(tmp_path, "pkg/clean.py", "from . import VERSION\nimport json\n")
    write(tmp_path, "pkg/core.py", "from .helpers import util\nfrom . import clean\n")
    write(tmp_path, "pkg/helpers/__init__.py", "")
    write(tmp_path, "pkg/helpers/util.py", "from ..net import connect\n")
    write(tmp_path, "pkg/net.py", "import socket\n\ndef connect() -> None: ...\n")
    write(
        tmp_path,
        "pkg/typed.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import anyio\n"
        "else:\n    from . import clean\n",
    )
    write(tmp_path, "pkg/lazy.py", "def run() -> None:\n    from h11 import Connection\n")
    write(tmp_path, "pkg/dynamic.py", "import importlib\nimportlib.import_module('asyncio')\n")
    write(tmp_path, "pkg/dunder.py", "__import__('anyio.abc')\n")
    write(tmp_path, "pkg/viaparent.py", "from pkg import net\n")
    return SourceTree(tmp_path, "pkg")


def test_the_checker_follows_relative_imports_through_subpackages(fake_tree: SourceTree) -> None:
    assert fake_tree.forbidden_chains("pkg.core", FORBIDDEN) == [
        ["pkg.core", "pkg.helpers.util", "pkg.net", "socket"]
    ]


def test_the_checker_passes_a_module_that_imports_only_pure_siblings(
    fake_tree: SourceTree,
) -> None:
    assert fake_tree.imports("pkg.clean") == {"pkg", "json"}
    assert fake_tree.forbidden_chains("pkg.clean", FORBIDDEN) == []


def test_the_checker_ignores_type_checking_imports_but_not_their_else_branch(
    fake_tree: SourceTree,
) -> None:
    assert fake_tree.imports("pkg.typed") == {"pkg", "pkg.clean", "typing"}
    assert fake_tree.forbidden_chains("pkg.typed", FORBIDDEN) == []


@pytest.mark.parametrize(
    ("module", "chain"),
    [
        ("pkg.lazy", ["pkg.lazy", "h11"]),
        ("pkg.dynamic", ["pkg.dynamic", "asyncio"]),
        ("pkg.dunder", ["pkg.dunder", "anyio"]),
        ("pkg.viaparent", ["pkg.viaparent", "pkg.net", "socket"]),
    ],
)
def test_the_checker_sees_function_level_dynamic_and_absolute_imports(
    fake_tree: SourceTree, module: str, chain: list[str]
) -> None:
    assert chain in fake_tree.forbidden_chains(module, FORBIDDEN)

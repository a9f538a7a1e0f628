"""The package's layering holds: the chat pipeline and the admin never import the HTTP API.

`api/` is one door (HTTP) into the serving pipeline; the admin is another. Neither door may be
what the pipeline, or the other door, is built on: an import that runs back up is a failure here,
named with its file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """Every module `path` imports, absolute (relative imports resolved), with its line."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def _violations(layer: str, forbidden: str, root: Path = ROOT) -> list[str]:
    return [
        f"{path.relative_to(root)}:{line} imports {module}"
        for path in sorted((root / "chatmodels" / layer).rglob("*.py"))
        for line, module in _imports(path, root)
        if module == forbidden or module.startswith(forbidden + ".")
    ]


@pytest.mark.parametrize("layer", ["serving", "admin"])
def test_layer_never_imports_the_http_api(layer: str) -> None:
    assert _violations(layer, "chatmodels.api") == []


def test_the_check_sees_an_import_of_the_api(tmp_path: Path) -> None:
    # The check itself: the forms an import of chatmodels.api can take are all caught.
    module = tmp_path / "chatmodels" / "serving" / "_layering_probe.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "from chatmodels.api import errors\nimport chatmodels.api.views\nfrom ..api import auth\n"
    )
    assert _violations("serving", "chatmodels.api", root=tmp_path) == [
        "chatmodels/serving/_layering_probe.py:1 imports chatmodels.api",
        "chatmodels/serving/_layering_probe.py:1 imports chatmodels.api.errors",
        "chatmodels/serving/_layering_probe.py:2 imports chatmodels.api.views",
        "chatmodels/serving/_layering_probe.py:3 imports chatmodels.api",
        "chatmodels/serving/_layering_probe.py:3 imports chatmodels.api.auth",
    ]

"""Run by the fresh virtual environment's Python (stdlib only): what got installed.

Prints one JSON object: where copytrade was imported from, which package-data files it
has, and every third-party module copytrade imports that no dependency it declares
provides (read from its source, so imports inside functions count too). Imports guarded
in a `try` that catches ImportError (and their fallbacks) and in `if TYPE_CHECKING:`
blocks are optional and left out.

    python -I probe_installed.py '["data/trading_calendar.json", "py.typed"]'
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import sys
from pathlib import Path

OPTIONAL_ERRORS = {"ImportError", "ModuleNotFoundError"}


class ImportCollector(ast.NodeVisitor):
    """Top-level names of the modules a source file needs (optional imports left out)."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self._optional = 0

    def visit_Try(self, node: ast.Try) -> None:
        # `try: import a` / `except ImportError: import b`: neither is required.
        optional = any(_catches_import_error(handler) for handler in node.handlers)
        self._optional += optional
        for child in [*node.body, *node.handlers]:
            self.visit(child)
        self._optional -= optional
        for child in [*node.orelse, *node.finalbody]:
            self.visit(child)

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        if not self._optional:
            self.names.update(alias.name.split(".")[0] for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if not self._optional and node.level == 0 and node.module:
            self.names.add(node.module.split(".")[0])


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    caught = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(name, ast.Name) and name.id in OPTIONAL_ERRORS for name in caught)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions() -> set[str]:
    """copytrade's own requirements, extras (the test tools) left out."""
    requirements = importlib.metadata.requires("copytrade") or []
    return {
        normalized(re.match(r"[A-Za-z0-9._-]+", requirement).group())  # type: ignore[union-attr]
        for requirement in requirements
        if "extra ==" not in requirement
    }


def undeclared_imports(package: Path) -> dict[str, list[str]]:
    """Module -> the installed distributions providing it, for each one not declared."""
    collector = ImportCollector()
    for source in sorted(package.rglob("*.py")):
        collector.visit(ast.parse(source.read_text(encoding="utf-8")))
    third_party = collector.names - set(sys.stdlib_module_names) - {"copytrade", "__future__"}
    providers = importlib.metadata.packages_distributions()
    declared = declared_distributions()
    return {
        name: sorted(providers.get(name, []))
        for name in sorted(third_party)
        if not declared & {normalized(dist) for dist in providers.get(name, [])}
    }


def main() -> None:
    import copytrade

    package = Path(copytrade.__file__).resolve().parent
    data_files = json.loads(sys.argv[1])
    print(
        json.dumps(
            {
                "package": str(package),
                "data": {name: (package / name).is_file() for name in data_files},
                "undeclared": undeclared_imports(package),
            }
        )
    )


if __name__ == "__main__":
    main()

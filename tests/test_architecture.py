"""The arrows that must never exist between notifier's parts (README "Architecture")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import notifier

PACKAGE_ROOT = Path(notifier.__file__).parent

# (who, what they must never import, why): prefixes of dotted module names.
FORBIDDEN = [
    (
        (
            "notifier.services",
            "notifier.queue",
            "notifier.channels",
            "notifier.periodic",
            "notifier.domain",
            "notifier.recurrence",
            "notifier.store",
        ),
        ("notifier.handlers", "notifier.app"),
        "the HTTP layer sits on top: nothing below it may depend on it",
    ),
    (
        ("notifier.services", "notifier.queue", "notifier.channels", "notifier.periodic", "notifier.domain"),
        ("tornado.web",),
        "business rules and delivery run without a web framework (the consumer process has none)",
    ),
    (
        ("notifier.channels",),
        ("notifier.store", "notifier.services", "motor", "pymongo", "bson"),
        "channels only send: the consumer records outcomes",
    ),
    (
        ("notifier.handlers",),
        ("motor", "pymongo", "notifier.store"),
        "handlers reach the database only through services",
    ),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str, is_package: bool) -> set[str]:
    """Every module an import statement anywhere in `source` may load, as absolute dotted names."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def violations(module: str, names: set[str]) -> list[str]:
    found = []
    for owners, targets, why in FORBIDDEN:
        if not _under(module, owners):
            continue
        for name in sorted(names):
            if _under(name, targets):
                found.append(f"{module} imports {name}: {why}")
    return found


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def package_modules() -> list[Path]:
    return sorted(PACKAGE_ROOT.rglob("*.py"))


def test_no_forbidden_import_in_the_package():
    found = []
    for path in package_modules():
        module = module_name(path)
        found += violations(
            module, imported_names(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
        )
    assert found == []


def test_the_rules_cover_the_parts_they_name():
    modules = {module_name(path) for path in package_modules()}
    for owners, _, _ in FORBIDDEN:
        for owner in owners:
            assert any(_under(m, (owner,)) for m in modules), f"{owner} names no module: a rule would guard nothing"


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("notifier.services.users", "from ..handlers.base import APIHandler", "notifier.handlers.base"),
        ("notifier.services.users", "def f():\n    from notifier.handlers import api", "notifier.handlers.api"),
        ("notifier.queue.consumer", "import tornado.web", "tornado.web"),
        ("notifier.channels.email", "from ..store import Store", "notifier.store"),
        ("notifier.channels", "from ..services import deliveries", "notifier.services"),
        ("notifier.handlers.api.users", "from pymongo import UpdateOne", "pymongo"),
    ],
)
def test_a_forbidden_import_is_caught_wherever_it_hides(module, source, expected):
    found = violations(module, imported_names(source, module, is_package=module == "notifier.channels"))
    assert any(f"imports {expected}" in line for line in found), found


def test_allowed_imports_pass():
    source = "from ..store import Store\nfrom ..domain import Status\nfrom tornado.httpclient import AsyncHTTPClient"
    assert violations("notifier.services.users", imported_names(source, "notifier.services.users", False)) == []


def test_every_directory_of_code_is_a_package_the_install_includes():
    """setup.py's find_packages skips a directory without __init__.py: an installed copy (the image) would
    then lack it, while a checkout still imports it as a namespace package."""
    import setuptools

    root = Path(__file__).resolve().parent.parent
    code_dirs = {
        ".".join(path.parent.relative_to(root).parts)
        for path in (root / "notifier").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert code_dirs <= set(setuptools.find_packages(str(root), include=["notifier", "notifier.*"]))

"""The documentation holds together (issue 23, "Docs"): relative links resolve, the modules and folders the guides
name exist, the README stays a short guide, and every environment variable the code reads is in
docs/configuration.md."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from risk.parameters import PARAMETER_SPECS

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())  # wherever tests/ puts it
DOCS = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")])
README_MAX_LINES = 220
CONFIGURATION = ROOT / "docs" / "configuration.md"
# Markdown links and images: [text](target) / ![alt](target "title")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
EXTERNAL = ("http://", "https://", "mailto:", "#")
GENERATED = {"artifacts", "node_modules", "staticfiles", "media"}  # made by runs, not in a fresh clone
SKIPPED_DIRS = {".git", ".venv", "node_modules", "tests", "bench", "migrations", "artifacts", "staticfiles"}


def relative_links(markdown: str) -> list[tuple[int, str]]:
    """(line number, target) of every link outside fenced code blocks that points into the repository."""
    found, fenced = [], False
    for number, line in enumerate(markdown.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        line = re.sub(r"`[^`]*`", "", line)  # inline code is not a link
        for target in LINK.findall(line):
            if not target.startswith(EXTERNAL):
                found.append((number, target))
    return found


def test_link_finder_sees_links_and_skips_code():
    text = "see [a](docs/a.md#top) and ![p](p.png)\n`[x](no.md)` [w](https://example.com)\n```\n[c](code.md)\n```\n"
    assert relative_links(text) == [(1, "docs/a.md#top"), (1, "p.png")]


@pytest.mark.parametrize("document", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_resolve(document: Path):
    missing = [
        f"{document.relative_to(ROOT)}:{number}: {target}"
        for number, target in relative_links(document.read_text(encoding="utf-8"))
        if not (document.parent / target.split("#", 1)[0]).exists()
    ]
    assert not missing, "links to files that do not exist:\n" + "\n".join(missing)


def named_paths(markdown: str) -> set[str]:
    """Repository paths written as inline code (`risk/desk.py`, `deploy/grafana/dashboards/`): a first folder that
    exists at the top of the repository, then a file name with an extension or a folder with a trailing slash."""
    top = {entry.name for entry in ROOT.iterdir() if entry.is_dir() and not entry.name.startswith(".")} - GENERATED
    paths = re.findall(r"`((?:[\w.-]+/)+(?:[\w-]+\.[a-z]{1,4})?)(?:[ :#`(])", markdown)
    return {path for path in paths if path.split("/", 1)[0] in top}


def test_named_paths_finder():
    text = "`risk/desk.py` `tests/support/` `celery/fixups/django.py` `risk/desk.py:12` `a b/c.py` `docs/x.md#y`"
    assert named_paths(text) == {"risk/desk.py", "tests/support/", "docs/x.md"}


@pytest.mark.parametrize("document", [d for d in DOCS if d.name != "CHANGELOG.md"], ids=lambda path: path.name)
def test_named_paths_exist(document: Path):
    """A module or folder the guide names is there (the changelog may name what is gone)."""
    missing = sorted(path for path in named_paths(document.read_text(encoding="utf-8")) if not (ROOT / path).exists())
    assert not missing, f"{document.relative_to(ROOT)} names paths that do not exist: {missing}"


def test_readme_is_a_short_guide():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move reference to docs/"
    text = "\n".join(lines)
    for must in ("make run", "make test", "PORT=8080", "changepassword", "docs/make-run-1280x800.png"):
        assert must in text, f"the README's first screen lost {must!r}"


def _name(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_environ(node: ast.AST) -> bool:
    """``os.environ`` or a bare ``environ``."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def env_reads(source: str) -> set[str]:
    """Names read from the environment in ``source``: ``env.str("X")`` and the like (django-environ, also on
    ``FileAwareEnv()``), ``_secret("X")``, ``os.environ.get("X")``, ``os.environ["X"]``, ``os.getenv("X")``."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load):
            names.add(_name(node.slice))
        if not isinstance(node, ast.Call) or not node.args:
            continue
        function, first = node.func, _name(node.args[0])
        if isinstance(function, ast.Name) and function.id == "_secret":
            names.add(first)
        elif isinstance(function, ast.Attribute):
            owner = function.value
            django_environ = function.attr in {"str", "int", "bool", "float", "list", "db", "url", "json"} and (
                (isinstance(owner, ast.Name) and owner.id == "env")
                or (isinstance(owner, ast.Call) and getattr(owner.func, "attr", "") == "FileAwareEnv")
            )
            from_environ = function.attr == "get" and _is_environ(owner)
            getenv = function.attr == "getenv"
            if django_environ or from_environ or getenv:
                names.add(first)
    return {name for name in names if name and re.fullmatch(r"[A-Z][A-Z0-9_]*", name)}


def test_env_reads_finds_each_form():
    source = (
        'import os, environ\nenv.int("A_1", default=0)\n_secret("B")\nos.environ.get("C")\nos.environ["D"]\n'
        'os.getenv("E")\nenviron.FileAwareEnv().str("F", default="")\nos.environ["G"] = "x"\nsettings.get("lower")\n'
    )
    assert env_reads(source) == {"A_1", "B", "C", "D", "E", "F"}


def code_env_reads() -> dict[str, set[str]]:
    """Variable → the modules that read it: settings.py and every other module outside tests, benches and
    migrations, plus the risk parameters settings.py seeds from the environment (``seed_from_env(os.environ)``)."""
    readers: dict[str, set[str]] = {name: {"risk/parameters.py"} for name in PARAMETER_SPECS}
    for path in ROOT.rglob("*.py"):
        if SKIPPED_DIRS.intersection(path.relative_to(ROOT).parts[:-1]):
            continue
        for name in env_reads(path.read_text(encoding="utf-8")):
            readers.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return readers


def test_every_environment_variable_is_documented():
    readers = code_env_reads()
    settings_reads = env_reads((ROOT / "cdb_project" / "settings.py").read_text(encoding="utf-8"))
    # the scan must see what settings.py is known to read, or the check below proves nothing
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "NOTIFY_URLS", "LIVE_PENDING_MAX_AGE_SEC"} <= settings_reads
    assert {"PORT", "CDB_ADMIN_USER", "MAX_DAILY_DRAWDOWN_PCT"} <= set(readers)
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]*)`", CONFIGURATION.read_text(encoding="utf-8")))
    missing = sorted(f"{name} (read in {', '.join(sorted(readers[name]))})" for name in set(readers) - documented)
    assert not missing, "docs/configuration.md does not list:\n" + "\n".join(missing)

"""Rules that live in one place stay there: one logging API, one atomic-write helper.

Each rule is a scan of the source tree's syntax (not its text, so a docstring that names a call is not a hit)
with an allow-list that says why each exception is one. A scan that finds nothing proves nothing by itself, so
each rule is also run on a small sample that must be flagged.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("tether", "modules", "datasources", "engine")

# The logging API's own files: tether/log.py forwards to stdlib logging, tether/logs.py sets up its handlers.
LOGGING_OWNERS = {"tether/log.py", "tether/logs.py"}

# The atomic-write helper itself, and the renames that are not a durable write of a file's content.
ATOMIC_WRITE_OWNER = "tether/atomicfile.py"
RENAME_ALLOWED = {
    # systemd-boot's boot counting *is* a rename of the entry file (loader.conf entries named +LEFT-DONE); the
    # content does not change, and the directory is fsynced after the renames
    "engine/boot_systemd.py": "boot counting renames an entry file in place",
    # a sparse data file written by seeks (holes where chunks are zeros), fsynced, then renamed; write_atomic
    # takes content in one piece or as a stream. The index written next (write_atomic) fsyncs the directory.
    "engine/chunks.py": "a sparse file assembled by seeks",
    # shutil.copy2 keeps times and extended attributes (SELinux labels) of what is carried into the new slot,
    # which write_atomic does not copy
    "engine/osconfig.py": "a copy with the source's times and xattrs",
}


def _sources() -> list[tuple[str, ast.Module]]:
    out = []
    for pkg in PACKAGES:
        for p in sorted((REPO / pkg).rglob("*.py")):
            rel = p.relative_to(REPO).as_posix()
            out.append((rel, ast.parse(p.read_text(encoding="utf-8"), rel)))
    return out


def _called(tree: ast.Module, names: set[str]) -> list[tuple[int, str]]:
    """Calls of ``module.func`` in ``names`` (``os.replace``), also when imported as ``from module import func``."""
    direct: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                if f"{node.module}.{a.name}" in names:
                    direct[a.asname or a.name] = f"{node.module}.{a.name}"
    hits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f"{f.value.id}.{f.attr}" in names:
            hits.append((node.lineno, f"{f.value.id}.{f.attr}"))
        elif isinstance(f, ast.Name) and f.id in direct:
            hits.append((node.lineno, direct[f.id]))
    return hits


LOGGER_CALLS = {"logging.getLogger"}
DURABLE_WRITE_CALLS = {"os.replace", "os.rename", "os.renames", "tempfile.mkstemp"}


def test_the_scanner_finds_what_it_looks_for() -> None:
    sample = ast.parse("import os, logging\nfrom tempfile import mkstemp as mk\nfrom logging import getLogger\n"
                       "LOG = logging.getLogger(__name__)\nL2 = getLogger('x')\nos.replace('a', 'b')\nmk()\n"
                       "'os.replace(a, b)'.replace('a', 'b')\n")
    assert _called(sample, LOGGER_CALLS) == [(4, "logging.getLogger"), (5, "logging.getLogger")]
    assert _called(sample, DURABLE_WRITE_CALLS) == [(6, "os.replace"), (7, "tempfile.mkstemp")]


def test_every_file_logs_through_tether_log() -> None:
    found = [f"{rel}:{line}: {name}" for rel, tree in _sources() if rel not in LOGGING_OWNERS
             for line, name in _called(tree, LOGGER_CALLS)]
    assert found == [], "log through `LOG = log.get(__name__)` (tether/log.py):\n" + "\n".join(found)


def test_durable_writes_go_through_the_one_atomic_write_helper() -> None:
    found = [f"{rel}:{line}: {name}" for rel, tree in _sources() if rel != ATOMIC_WRITE_OWNER
             and rel not in RENAME_ALLOWED for line, name in _called(tree, DURABLE_WRITE_CALLS)]
    assert found == [], ("write files with tether.atomicfile.write_atomic / Target.write (temp file, fsync, rename, "
                         "directory fsync), or add the file to RENAME_ALLOWED with the reason:\n" + "\n".join(found))


def test_the_allow_list_has_no_stale_entries() -> None:
    """An exception whose file no longer renames anything is removed, so the list stays the list of reasons."""
    sources = dict(_sources())
    stale = [rel for rel in RENAME_ALLOWED if not _called(sources[rel], DURABLE_WRITE_CALLS)]
    assert stale == []

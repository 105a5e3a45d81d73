"""The network stage's imports, done while the boot server waits for it.

After the local stage the boot server (tether/bootserver.py) sits idle for seconds while networkd, udev and the
rest of the early boot run; then the network stage spends much of its unit's time importing its machinery (the
user-data pipeline, the module runner) and the modules it runs. So the server records which modules the network
stage ran (``/var/lib/tether/data/boot-imports.json``) and, on the next boot, imports those and the machinery while
it waits for that stage. Nothing runs early: importing a module only defines it.

The import work is the same; it moves from the unit's time into the seconds before it, where it competes for the
CPU at the normal priority like any other service (in the guest, at the lowest priority it hardly progressed: the
early boot keeps both vCPUs busy). It stops between two modules as soon as the stage is asked for, so the stage
never waits for more than the import in progress. Only the network stage gets this: between the later stages the
server waits too briefly for it to pay (imports made at the moment a stage is asked for delay it). A missing or
damaged record only means fewer imports ahead.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from collections.abc import Callable

from tether import log

LOG = log.get(__name__)
STAGE = "init"
# subprocess: the runner imports it at the first command (tether/runner.py), which a later boot's network stage
# usually reaches (bootcmd, growpart) but its local stage often does not
MACHINERY = ("tether.userdata_stage", "tether.modrunner", "tether.modules", "subprocess")


def load(path: str) -> list[str]:
    """The modules the network stage ran on the last boot, or [] when the record is missing or damaged."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return []
    names = doc.get(STAGE) if isinstance(doc, dict) else None
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def save(path: str, modules: list[str]) -> None:
    from tether.target import write_atomic

    os.makedirs(os.path.dirname(path), exist_ok=True)
    # a hint for the next boot (a missing or damaged one is ignored): no fsync of its own
    write_atomic(path, (json.dumps({STAGE: modules}) + "\n").encode(), 0o644, fsync=False)


def wanted(modules: list[str]) -> list[str]:
    """The machinery, then the registered tether modules named in ``modules`` (other names are ignored)."""
    from tether.modules import REGISTERED
    return [*MACHINERY, *(f"tether.modules.{m}" for m in modules if m in REGISTERED)]


def prewarm(modules: list[str], asked: Callable[[], bool]) -> list[str]:
    """Import the network stage's machinery and ``modules`` until ``asked()`` is true; returns what was imported
    now."""
    start = time.monotonic()
    done: list[str] = []
    names = wanted(modules)
    for name in names:
        if asked():
            LOG.info("boot server: stage %s asked for; %s and later not imported ahead", STAGE, name)
            break
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception as e:  # the stage will meet and report the same error itself
            LOG.debug("boot server: importing %s ahead failed: %s", name, e)
            continue
        done.append(name)
    LOG.info("boot server: imported %d modules ahead for stage %s in %.2fs; loaded: %s", len(done), STAGE,
             time.monotonic() - start, " ".join(n for n in names if n in sys.modules))
    return done

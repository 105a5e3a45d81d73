"""The later stages' imports, done ahead while the boot server waits for them.

After the local stage the boot server (tether/bootserver.py) sits idle for seconds while networkd, udev and the
rest of the early boot run; then each later stage spends much of its unit time importing its machinery (the
user-data pipeline, the module runner) and the modules it runs. So the server remembers which modules each later
stage ran on the last boot (``/var/lib/tether/data/boot-imports.json``: stage -> module names) and, while it waits
for a stage, imports that stage's machinery and those modules. Nothing runs early: importing a module only defines
it. The CPU work is the same; it moves out of the units' time into time the boot spends waiting anyway. The
record is rewritten after every served boot, so it follows what later boots really run (on a later boot of the
same instance: the ``always`` modules), and a missing or damaged record only means less is imported ahead.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time

LOG = logging.getLogger(__name__)
FILE = "boot-imports.json"
MACHINERY = {
    "init": ("tether.userdata_stage", "tether.modrunner"),
    "modules-config": ("tether.modrunner",),
    "modules-final": ("tether.modrunner",),
}
BUDGET = 10.0  # seconds at most per stage: a request that arrives meanwhile waits no longer than this


def load(path: str) -> dict[str, list[str]]:
    """The record, or {} when it is missing or not stage -> list of names."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return {k: [n for n in v if isinstance(n, str)] for k, v in doc.items()
            if k in MACHINERY and isinstance(v, list)}


def save(path: str, record: dict[str, list[str]]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def prewarm(stage: str, modules: list[str], budget: float = BUDGET) -> list[str]:
    """Import ``stage``'s machinery and the registered tether modules named in ``modules``; names that are not
    registered modules are ignored. Returns what was imported now."""
    from tether.modules import REGISTERED
    names = [*MACHINERY.get(stage, ()), *(f"tether.modules.{m}" for m in modules if m in REGISTERED)]
    import sys
    start = time.monotonic()
    done: list[str] = []
    for name in names:
        if name in sys.modules:
            continue
        if time.monotonic() - start > budget:
            LOG.info("boot server: import budget for stage %s spent; %s and later not imported ahead", stage, name)
            break
        try:
            importlib.import_module(name)
        except Exception as e:  # the stage will meet and report the same error itself
            LOG.debug("boot server: importing %s ahead failed: %s", name, e)
            continue
        done.append(name)
    if done:
        LOG.info("boot server: imported %d modules ahead for stage %s in %.2fs", len(done), stage,
                 time.monotonic() - start)
        LOG.debug("boot server: loaded ahead for stage %s: %s", stage, " ".join(n for n in names if n in sys.modules))
    return done

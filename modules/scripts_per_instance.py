"""scripts_per_instance: run the executables in /var/lib/tether/scripts/per-instance/
once per instance (again after the instance-id changes).

See tether.script_dirs for how they run (live, or chrooted into an offline root that holds a system).
"""

from __future__ import annotations

from tether.module import Frequency
from tether.script_dir_module import KEYS as KEYS
from tether.script_dir_module import RUN_WITHOUT_KEYS as RUN_WITHOUT_KEYS
from tether.script_dir_module import STAGE as STAGE
from tether.script_dir_module import Config as Config
from tether.script_dir_module import handler

NAME = "scripts_per_instance"
FREQUENCY = Frequency.ONCE_PER_INSTANCE
handle = handler(lambda ctx: ctx.paths.scripts("per-instance"))

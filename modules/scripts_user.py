"""scripts_user: runs the user's scripts (``#!`` parts and runcmd) once per instance, in name order.

A failing script does not stop the others; the module reports every failure by name (tether.script_dirs).
"""

from __future__ import annotations

from tether.module import Frequency
from tether.script_dir_module import KEYS as KEYS
from tether.script_dir_module import RUN_WITHOUT_KEYS as RUN_WITHOUT_KEYS
from tether.script_dir_module import STAGE as STAGE
from tether.script_dir_module import Config as Config
from tether.script_dir_module import handler

NAME = "scripts_user"
FREQUENCY = Frequency.ONCE_PER_INSTANCE
handle = handler(lambda ctx: ctx.paths.instance_scripts(ctx.instance_id))

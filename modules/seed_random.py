"""seed_random: feed the kernel's entropy pool from user-data and the datasource, and run a seeding command.

Seeding is about the running kernel, so writing to a device (``/dev/urandom``) and running ``command`` are
live only; in an offline root they would create a plain file under /dev or seed the build host. A
``file`` that is a regular path is written in the target in every mode (replaced, not appended, so a second
run leaves it as it is).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import shutil
from dataclasses import dataclass, field
from typing import Literal

from tether import log
from tether.convert import meta
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.target import REPLACE_LINK

NAME = "seed_random"
STAGE = Stage.INIT
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("random_seed",)
LOG = log.get(__name__)


@dataclass(frozen=True)
class RandomSeed:
    file: str = field(default="/dev/urandom", metadata=meta(doc="where the seed data is written"))
    data: str = field(default="", metadata=meta(doc="seed data, decoded per encoding", sensitive=True))
    encoding: Literal["raw", "base64", "b64", "gzip", "gz"] = "raw"
    command: tuple[str, ...] | None = field(default=None, metadata=meta(
        doc="command run with RANDOM_SEED_FILE set"))
    command_required: bool = False

    def __post_init__(self) -> None:
        if not self.file.startswith("/"):
            raise ValueError(f"file {self.file!r} must be an absolute path")
        if self.command is not None and not self.command:
            raise ValueError("command must not be empty")


@dataclass(frozen=True)
class Config:
    random_seed: RandomSeed | None = None


def decode(data: str, encoding: str) -> bytes:
    raw = data.encode("utf-8", "surrogateescape")
    try:
        if encoding in ("base64", "b64"):
            return base64.b64decode(raw)
        if encoding in ("gzip", "gz"):
            return gzip.decompress(raw)
    except (binascii.Error, OSError, EOFError) as e:
        raise ModuleError(f"random_seed.data: cannot decode {encoding}: {e}")
    return raw


def handle(ctx: ModuleContext, cfg: Config) -> None:
    seed = cfg.random_seed or RandomSeed()
    data = decode(seed.data, seed.encoding)
    ds_seed = ctx.instance.metadata.get("random_seed")
    if isinstance(ds_seed, str) and ds_seed:
        try:
            data += base64.b64decode(ds_seed)
        except binascii.Error:
            data += ds_seed.encode()
    if seed.file.startswith("/dev/"):
        if ctx.live and data:
            # A device: append (write) the bytes; never replace the device node.
            with open(ctx.target.path(seed.file), "ab") as f:
                f.write(data)
            LOG.info("seeded %s with %d bytes", seed.file, len(data))
    elif data:
        ctx.target.ensure_file(seed.file, data, mode=0o600, links=REPLACE_LINK)
    if seed.command is None:
        return
    if not ctx.live:
        LOG.info("random_seed.command: not run offline (it seeds the running kernel)")
        return
    if shutil.which(seed.command[0]) is None:
        msg = f"random_seed.command: {seed.command[0]!r} not found"
        if seed.command_required:
            raise ModuleError(msg)
        LOG.info("%s; skipped (command_required is false)", msg)
        return
    try:
        ctx.run(list(seed.command), env={"RANDOM_SEED_FILE": seed.file}, timeout=120)
    except CommandError as e:
        if seed.command_required:
            raise ModuleError(f"random_seed.command failed: {e}")
        ctx.warn(f"random_seed.command failed: {e}")

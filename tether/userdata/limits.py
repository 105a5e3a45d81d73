"""Bounds on what one user-data (or vendor-data) source may expand to.

cloud-init has none of these; a seed or metadata service is trusted, but a typo (a gzip of /dev/zero, an
include that includes itself) must end in a clear error, not an out-of-memory kill at boot.
"""

from __future__ import annotations

MiB = 1024 * 1024

MAX_INPUT_BYTES = 16 * MiB        # raw user-data as the datasource gave it (seedfiles.MAX_SEED_FILE too)
MAX_PART_BYTES = 16 * MiB         # one part once decoded: a gzip stream, an included URL, a rendered template
MAX_DECOMPRESSED_BYTES = MAX_PART_BYTES  # one gzip stream, stopped while decompressing
MAX_TOTAL_BYTES = 32 * MiB         # everything one source expands to: gunzip output, includes, templates
MAX_PARTS = 1000                   # leaf parts in one source, counting archive entries and includes
MAX_INCLUDE_DEPTH = 8              # an include that includes an include ...
MAX_INCLUDES = 100                 # URLs fetched for one source
MAX_MIME_DEPTH = 10                # multipart inside multipart


class LimitExceeded(Exception):
    """One of the bounds above was crossed by one part; the message says which."""


class BudgetExhausted(LimitExceeded):
    """The whole source crossed a bound: nothing after this point is processed."""


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


class Budget:
    """Counts expanded bytes, parts and fetches for one source."""

    def __init__(self) -> None:
        self.bytes = 0
        self.parts = 0
        self.includes = 0

    def spend_bytes(self, n: int, what: str) -> None:
        self.bytes += n
        if self.bytes > MAX_TOTAL_BYTES:
            raise BudgetExhausted(f"{what}: the data expands to more than {MAX_TOTAL_BYTES >> 20} MiB in all")

    def next_part(self) -> int:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise BudgetExhausted(f"more than {MAX_PARTS} parts")
        return self.parts

    def next_include(self) -> None:
        self.includes += 1
        if self.includes > MAX_INCLUDES:
            raise BudgetExhausted(f"more than {MAX_INCLUDES} included URLs")

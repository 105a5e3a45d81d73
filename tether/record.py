"""A base for the plain record classes on a boot's start-up path (the local stage, before READY=1).

``dataclasses`` would write their ``__init__``/``__repr__``/``__eq__`` by compiling source text when the module is
imported (about 1 ms per class on a fast host, tens of ms in a VM without hardware acceleration) and imports
``inspect`` and ``ast`` on the way; these classes write ``__init__`` by hand and take the rest from here.
Modules that run later (after the boot server reported ready) keep using dataclasses.
"""

from __future__ import annotations


class Record:
    """``repr`` and ``==`` over the attributes named in the subclass's ``__slots__``, in that order. Defining
    ``__eq__`` leaves instances unhashable, as a dataclass without ``frozen=True``; read-only ones add ``__hash__``."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in type(self).__slots__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in type(self).__slots__)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        return self._values() == other._values()

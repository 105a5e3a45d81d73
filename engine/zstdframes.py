"""Walks zstd frame and block headers as compressed bytes pass by, to tell a complete stream from a truncated one.

python-zstandard's bounded ``stream_reader`` returns end-of-data silently when its input stops mid-frame; this
tracker costs a few operations per 128 KiB block and lets the reader raise instead.
"""

from __future__ import annotations

_MAGIC = 0xFD2FB528
_SKIPPABLE = range(0x184D2A50, 0x184D2A60)


class FrameTracker:
    def __init__(self) -> None:
        self._need = 4          # bytes needed for the current header
        self._hdr = bytearray()
        self._state = "magic"   # magic | fhd | frame_header | block | skip_size | skip
        self._skip = 0          # body bytes to pass over
        self._checksum = False
        self._last = False
        self.error = ""

    @property
    def complete(self) -> bool:
        return self._state == "magic" and not self._hdr and self._skip == 0 and not self.error

    def feed(self, data: memoryview | bytes) -> None:
        mv = memoryview(data)
        i, n = 0, len(mv)
        while i < n and not self.error:
            if self._skip:
                take = min(self._skip, n - i)
                self._skip -= take
                i += take
                if not self._skip and self._state == "trailer":
                    self._state, self._need = "magic", 4
                continue
            take = min(self._need - len(self._hdr), n - i)
            self._hdr += mv[i:i + take]
            i += take
            if len(self._hdr) < self._need:
                continue
            self._header_done(bytes(self._hdr))
            self._hdr.clear()

    def _header_done(self, h: bytes) -> None:
        st = self._state
        if st == "magic":
            magic = int.from_bytes(h, "little")
            if magic == _MAGIC:
                self._state, self._need = "fhd", 1
            elif magic in _SKIPPABLE:
                self._state, self._need = "skip_size", 4
            else:
                self.error = f"not a zstd frame (magic {magic:#x})"
        elif st == "skip_size":
            self._skip = int.from_bytes(h, "little")
            self._state, self._need = ("trailer", 4) if self._skip else ("magic", 4)
        elif st == "fhd":
            fhd = h[0]
            fcs_flag, single, dict_flag = fhd >> 6, (fhd >> 5) & 1, fhd & 3
            self._checksum = bool(fhd & 4)
            size = (0 if single else 1) + (0, 1, 2, 4)[dict_flag] + ((1 if single else 0), 2, 4, 8)[fcs_flag]
            if size:
                self._state, self._need = "frame_header", size
            else:
                self._state, self._need = "block", 3
        elif st == "frame_header":
            self._state, self._need = "block", 3
        elif st == "block":
            v = int.from_bytes(h, "little")
            last, btype, bsize = v & 1, (v >> 1) & 3, v >> 3
            if btype == 3:
                self.error = "reserved zstd block type"
                return
            body = 1 if btype == 1 else bsize
            if last:
                tail = 4 if self._checksum else 0
                self._skip = body + tail
                self._state, self._need = ("trailer", 4) if self._skip else ("magic", 4)
            else:
                self._skip = body
                self._need = 3

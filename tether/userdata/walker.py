"""Walk one source (user-data or vendor-data): unpack, split, dispatch each part by type, merge cloud-config.

Problems never raise out of here: each becomes a warning (input tether deliberately ignores, as cloud-init
does) or an error (input that was meant to do something and could not), named by source and part number.
Messages never quote part content, which may hold passwords.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tether.errors import ConfigError
from tether.userdata import detect, include, merge
from tether.userdata.decompress import DecompressError, gunzip, is_gzip
from tether.userdata.limits import MAX_INCLUDE_DEPTH, MAX_INPUT_BYTES, Budget, BudgetExhausted, LimitExceeded, mb
from tether.userdata.model import Part, Script

Fetch = Callable[[str], bytes]
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+@=-]")


def _script_name(filename: str) -> str:
    name = _UNSAFE_NAME.sub("_", filename.replace("\\", "/").rsplit("/", 1)[-1]).lstrip(".")
    return name[:200]


class Walker:
    def __init__(self, source: str, *, instance_data: dict[str, Any], fetch: Fetch | None,
                 cache: include.IncludeCache, launch_index: int | None = None) -> None:
        self.source = source
        self.instance_data = instance_data
        self.fetch = fetch
        self.cache = cache
        self.launch_index = launch_index
        self.budget = Budget()
        self.cfg: dict[str, Any] = {}
        self.scripts: list[Script] = []
        self.boothooks: list[Script] = []
        self.dir_scripts: dict[str, list[Script]] = {}   # "per-boot" | "per-instance" | "per-once" -> scripts
        self.warnings: list[str] = []
        self.errors: list[str] = []
        self._taken: set[str] = set()
        self._chain: list[str] = []   # include URLs being expanded, for loop detection

    # -- documents ------------------------------------------------------------------------------------------

    def run(self, data: bytes) -> None:
        if len(data) > MAX_INPUT_BYTES:
            self.errors.append(f"{self.source}: {mb(len(data))} is over the {MAX_INPUT_BYTES >> 20} MiB limit; "
                               "ignored")
            return
        try:
            self._document(data, "")
        except BudgetExhausted as e:
            self.errors.append(f"{self.source}: {e}; the rest was not processed")

    def _document(self, data: bytes, where: str) -> None:
        """A whole document: the source itself or an included URL's content."""
        what = f"{self.source}{where}"
        if is_gzip(data):
            try:
                data = gunzip(data)
            except (DecompressError, LimitExceeded) as e:
                self.errors.append(f"{what}: {e}; ignored")
                return
            self.budget.spend_bytes(len(data), what)
        if not data.strip():
            return
        if detect.looks_like_mime(data):
            from tether.userdata import mime
            try:
                parts = mime.split(data)
            except (mime.MimeError, LimitExceeded) as e:
                self.errors.append(f"{what}: {e}; ignored")
                return
            for part in parts:
                self._part(part, where)
            return
        self._part(Part(filename="", content_type=detect.NOT_MULTIPART, payload=data), where)

    # -- parts ----------------------------------------------------------------------------------------------

    def _part(self, part: Part, where: str) -> None:
        n = self.budget.next_part()
        ctype = detect.base_type(part.content_type)
        payload = part.payload
        if self._other_launch_index(part.headers.get("launch-index")):
            return
        if is_gzip(payload):
            try:
                payload = gunzip(payload)
            except (DecompressError, LimitExceeded) as e:
                self.errors.append(f"{self.source} part {n} ({detect.short_name(ctype)}{where}): {e}; ignored")
                return
            self.budget.spend_bytes(len(payload), f"{self.source} part {n}")
            if ctype in detect.GZIP_TYPES:
                ctype = ""
        if not ctype or ctype in detect.TYPES_TO_SNIFF:
            ctype = detect.sniff(payload) or ctype or detect.PLAIN
        failed = ""
        try:
            self._dispatch(n, ctype, part, payload, where, via="")
        except MemoryError:  # costs this part only; reported once the block ends and its frames are freed
            failed = "ran out of memory"
        except RecursionError:
            failed = "nested too deeply"
        if failed:
            self.errors.append(f"{self.source} part {n} ({detect.short_name(ctype)}{where}): {failed} while "
                               "processing it; ignored")

    def _dispatch(self, n: int, ctype: str, part: Part, payload: bytes, where: str, via: str) -> None:
        label = f"{self.source} part {n} ({detect.short_name(ctype)}{via}{where})"
        if ctype == detect.CLOUD_CONFIG:
            self._cloud_config(payload, part.headers, label)
        elif ctype == detect.CLOUD_CONFIG_JSONP:
            self._jsonp(payload, label)
        elif ctype == detect.SHELLSCRIPT:
            if not payload.lstrip().startswith(b"#!"):
                self.warnings.append(f"{label}: the script has no #! line; it is run with /bin/sh")
            self.scripts.append(Script(self._name(part, n), payload))
        elif ctype in detect.SCRIPT_DIR_TYPES:
            # installed into the scripts directory for the final stage's scripts_per_* module, as cloud-init does
            # (line endings made Unix, as cloud-init's handler does)
            body = payload.replace(b"\r\n", b"\n")
            if not body.startswith(b"#!"):
                self.warnings.append(f"{label}: the script has no #! line; it is run with /bin/sh")
                body = b"#!/bin/sh\n" + body
            self.dir_scripts.setdefault(detect.SCRIPT_DIR_TYPES[ctype], []).append(Script(self._name(part, n), body))
        elif ctype == detect.BOOTHOOK:
            body = payload.lstrip()
            if body.lower().startswith(b"#cloud-boothook"):
                body = body[len(b"#cloud-boothook"):]
            body = body.replace(b"\r\n", b"\n").lstrip()
            self.boothooks.append(Script(self._name(part, n), body))
        elif ctype == detect.JINJA:
            self._jinja(n, part, payload, where, label)
        elif ctype in (detect.INCLUDE, detect.INCLUDE_ONCE):
            self._include(payload, label, once=ctype == detect.INCLUDE_ONCE)
        elif ctype == detect.CLOUD_CONFIG_ARCHIVE:
            self._archive(payload, where, label)
        elif ctype in (detect.NOT_MULTIPART, detect.PLAIN, "application/octet-stream"):
            self._unknown_text(payload, label)
        elif ctype.startswith("multipart/"):
            self.errors.append(f"{label}: a multipart part without parts (is its boundary right?); ignored")
        else:
            self.warnings.append(f"{label}: not supported by tether, skipped")

    def _unknown_text(self, payload: bytes, label: str) -> None:
        if not payload.strip():
            return
        if detect.is_binary(payload):
            self.errors.append(f"{label}: {mb(len(payload))} of binary data that is neither gzip, MIME nor text; "
                               "ignored")
        else:
            self.warnings.append(f"{label}: no known start line (#cloud-config, #!, #include, "
                                 "#cloud-boothook, ## template: jinja, ...); ignored, as cloud-init does")

    def _other_launch_index(self, value: Any) -> bool:
        """cloud-init's launch-index filter: a part for another launch index is dropped."""
        if self.launch_index is None or value is None:
            return False
        try:
            return int(str(value).strip()) != self.launch_index
        except ValueError:
            return False

    def _name(self, part: Part, n: int) -> str:
        base = _script_name(part.filename) or f"part-{n:03d}"
        name, i = base, 2
        while name in self._taken:
            name, i = f"{base}-{i}", i + 1
        self._taken.add(name)
        return name

    def _text(self, payload: bytes, label: str) -> str | None:
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError as e:
            self.errors.append(f"{label}: not UTF-8 text (byte {e.start}); ignored")
            return None

    # -- part types -----------------------------------------------------------------------------------------

    def _cloud_config(self, payload: bytes, headers: dict[str, str], label: str) -> None:
        from tether import yamlsafe
        from tether.userdata.cloudconfig import policy_for

        text = self._text(payload, label)
        if text is None:
            return
        try:
            cfg = yamlsafe.load(text.removeprefix("\ufeff"), label)
        except ConfigError as e:
            self.errors.append(str(e))
            return
        if cfg is None:
            return
        if not isinstance(cfg, dict):
            self.warnings.append(f"{label}: not a mapping of keys (it is a {type(cfg).__name__}); ignored")
            return
        if self._other_launch_index(cfg.get("launch-index")):
            return
        pol, problems = policy_for(cfg, headers)
        self.errors.extend(f"{label}: {p}" for p in problems)
        if pol.dict_opts is None:
            self.warnings.append(f"{label}: merge_how {pol.describe()!r} has no dict() merger, so this part "
                                 "changes nothing (as in cloud-init)")
        self.cfg = merge.merge(self.cfg, cfg, pol)

    def _jsonp(self, payload: bytes, label: str) -> None:
        from tether.userdata import jsonpatch

        text = self._text(payload, label)
        if text is None:
            return
        body = text.lstrip()
        if body.lower().startswith("#cloud-config-jsonp"):
            body = body[len("#cloud-config-jsonp"):]
        try:
            out = jsonpatch.apply(self.cfg, body)
        except jsonpatch.PatchError as e:
            self.errors.append(f"{label}: {e}; ignored")
            return
        if not isinstance(out, dict):
            self.errors.append(f"{label}: the patch leaves a {type(out).__name__}, not a mapping; ignored")
            return
        self.cfg = out

    def _jinja(self, n: int, part: Part, payload: bytes, where: str, label: str) -> None:
        from tether.userdata import template

        text = self._text(payload, label)
        if text is None:
            return
        try:
            rendered = template.render(text, self.instance_data)
        except template.TemplateError as e:
            self.errors.append(f"{label}: {e}; ignored")
            return
        if rendered.missing:
            names = ", ".join(repr(m) for m in rendered.missing)
            self.warnings.append(f"{label}: undefined template variables rendered as "
                                 f"{template.MISSING_PREFIX}<name>: {names}")
        out = rendered.text.encode()
        self.budget.spend_bytes(len(out), label)
        sub = detect.sniff(out)
        if sub is None:
            if out.strip():
                self.warnings.append(f"{label}: the rendered template does not start with a known line "
                                     "(#cloud-config, #!, ...); ignored")
            return
        if sub == detect.JINJA:
            self.errors.append(f"{label}: a template that renders to another template; ignored")
            return
        self._dispatch(n, sub, part, out, where, via=" from jinja template")

    def _include(self, payload: bytes, label: str, *, once: bool) -> None:
        urls = include.parse(payload.decode("utf-8", errors="replace"), once=once)
        if not urls:
            self.warnings.append(f"{label}: no URLs listed")
            return
        unfetched: list[str] = []
        for url, url_once in urls:
            shown = include.redact_url(url)
            if url in self._chain:
                self.errors.append(f"{label}: {shown} includes itself; skipped")
                continue
            if len(self._chain) >= MAX_INCLUDE_DEPTH:
                self.errors.append(f"{label}: {shown}: includes nested more than {MAX_INCLUDE_DEPTH} deep; skipped")
                continue
            content = self.cache.get(url) if url_once else None
            if content is None:
                if self.fetch is None:
                    unfetched.append(shown)
                    continue
                content = self._fetch(url, shown, label)
                if content is None:
                    continue
                if url_once:
                    try:
                        self.cache[url] = content
                    except OSError as e:
                        self.warnings.append(f"{label}: {shown}: could not cache include-once content "
                                             f"({e.strerror}); it will be fetched again")
            self.budget.spend_bytes(len(content), label)
            self._chain.append(url)
            try:
                self._document(content, f", from {shown}")
            finally:
                self._chain.pop()
        if unfetched:
            self.warnings.append(f"{label}: includes are not fetched here (no fetcher); skipped: "
                                 + ", ".join(unfetched))

    def _fetch(self, url: str, shown: str, label: str) -> bytes | None:
        assert self.fetch is not None
        self.budget.next_include()
        try:
            content = self.fetch(url)
        # the fetcher is the caller's (bounded http); whatever it raises is one failed include, not a crash
        except Exception as e:  # noqa: BLE001
            reason = str(e).replace(url, shown) or type(e).__name__
            self.errors.append(f"{label}: could not fetch {shown}: {reason}")
            return None
        if isinstance(content, str):
            content = content.encode()
        if len(content) > MAX_INPUT_BYTES:
            self.errors.append(f"{label}: {shown} is {mb(len(content))}, over the {MAX_INPUT_BYTES >> 20} MiB "
                               "limit; skipped")
            return None
        return content

    def _archive(self, payload: bytes, where: str, label: str) -> None:
        from tether.userdata import archive

        text = self._text(payload, label)
        if text is None:
            return
        try:
            parts, problems = archive.explode(text, label)
        except ConfigError as e:
            self.errors.append(str(e))
            return
        except archive.ArchiveError as e:
            self.errors.append(f"{label}: {e}; ignored")
            return
        self.warnings.extend(f"{label}: {p}" for p in problems)
        inner = f", from archive {label.split(' (', 1)[0].removeprefix(self.source + ' ')}{where}"
        for p in parts:
            self._part(p, inner)

"""``## template: jinja`` parts, rendered with instance-data variables. jinja2 is imported only here, and only
when a part asks for it.

Variables are cloud-init's: the instance-data document with every ``vN`` block also copied to the top level
(``{{ instance_id }}`` as well as ``{{ v1.instance_id }}``), keys listed in ``base64_encoded_keys`` decoded, and
keys holding characters jinja cannot name (``-``, ``.``) also given an underscore alias
(``{{ ds.meta_data.local_hostname }}`` for ``local-hostname``). A missing variable renders as
``CI_MISSING_JINJA_VAR/<name>`` and is reported, as in cloud-init.
"""

from __future__ import annotations

import base64
import copy
import re
from dataclasses import dataclass, field
from typing import Any

from tether.userdata.detect import JINJA_HEADER
from tether.userdata.limits import MAX_DECOMPRESSED_BYTES

MISSING_PREFIX = "CI_MISSING_JINJA_VAR/"
MAX_OUTPUT_CHARS = MAX_DECOMPRESSED_BYTES
_VERSION_KEY = re.compile(r"v\d+$")
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")


class TemplateError(Exception):
    pass


@dataclass
class Rendered:
    text: str
    missing: list[str] = field(default_factory=list)


def strip_header(text: str) -> str:
    """Drop the ``## template: jinja`` line (and anything before it that is whitespace)."""
    m = JINJA_HEADER.match(text.lstrip().encode())
    if not m:
        return text
    return text.lstrip()[len(m.group(0).decode()):]


def variables(doc: dict[str, Any]) -> dict[str, Any]:
    keys = doc.get("base64_encoded_keys") or doc.get("base64-encoded-keys") or []
    decode = {str(k).replace("-", "_") for k in keys} if isinstance(keys, list) else set()
    return _convert(doc, "", decode)


def _convert(data: dict[str, Any], prefix: str, decode: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted(data, key=str):
        value = data[key]
        path = f"{prefix}/{key}" if prefix else str(key)
        if path in decode and isinstance(value, str):
            try:
                value = base64.b64decode(value).decode("utf-8", errors="replace")
            except ValueError:
                pass
        if isinstance(value, dict):
            value = _convert(value, path, decode)
            if _VERSION_KEY.match(str(key)):
                for sub_k, sub_v in value.items():
                    out[sub_k] = copy.deepcopy(sub_v)
        out[key] = value
        alias = _NOT_NAME.sub("_", str(key))
        if alias != key and alias not in data:
            out[alias] = copy.deepcopy(value)
    return out


def render(text: str, doc: dict[str, Any]) -> Rendered:
    """Render the template ``text`` (header included or not). Raises TemplateError with a line number."""
    try:
        import jinja2
        from jinja2.sandbox import SandboxedEnvironment
    except ImportError:
        raise TemplateError("jinja2 is not importable (a dependency of tether: reinstall tether); the template "
                            "was not rendered") from None

    missing: list[str] = []

    class Missing(jinja2.DebugUndefined):
        """Renders as cloud-init's marker and remembers the name for the warning."""

        def __str__(self) -> str:
            name = str(self._undefined_name)
            missing.append(name)
            return f"{MISSING_PREFIX}{name}"

    body = strip_header(text)
    # The sandbox bounds range() and refuses attribute tricks; user templates only read data and use filters.
    env = SandboxedEnvironment(undefined=Missing, trim_blocks=True, keep_trailing_newline=True,
                               autoescape=False, extensions=["jinja2.ext.do"])
    try:
        chunks: list[str] = []
        size = 0
        # streamed so a runaway loop stops at the size cap instead of filling memory
        for chunk in env.from_string(body).generate(**variables(doc)):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateError(f"the rendered template is larger than {MAX_OUTPUT_CHARS >> 20} MiB")
            chunks.append(chunk)
        out = "".join(chunks)
    except jinja2.TemplateSyntaxError as e:
        # +1: line numbers count the header line the user wrote
        raise TemplateError(f"template syntax error: line {(e.lineno or 0) + 1}: {e.message}") from None
    except jinja2.UndefinedError as e:
        raise TemplateError(f"undefined variable: {e.message}") from None
    except jinja2.TemplateError as e:
        raise TemplateError(f"template error: {e}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError, OverflowError) as e:
        raise TemplateError(f"template error: {type(e).__name__}: {e}") from None
    except RecursionError:
        raise TemplateError("template error: nested too deeply") from None
    return Rendered(out, sorted(set(missing)))

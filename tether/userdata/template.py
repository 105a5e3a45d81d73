"""``## template: jinja`` parts, rendered with instance-data variables. jinja2 is imported only here, and only
when a part asks for it.

Variables are cloud-init's: the instance-data document with every ``vN`` block also copied to the top level
(``{{ instance_id }}`` as well as ``{{ v1.instance_id }}``), keys listed in ``base64_encoded_keys`` decoded, and
keys holding characters jinja cannot name (``-``, ``.``) also given an underscore alias
(``{{ ds.meta_data.local_hostname }}`` for ``local-hostname``). A missing variable renders as
``CI_MISSING_JINJA_VAR/<name>`` and is reported, as in cloud-init.

Rendering is bounded, because a template is code from outside: the sandbox refuses ``**`` and ``*`` whose
result would be huge (checked before Python computes it), the output is capped, and the whole render runs in a
forked child with an address-space limit (``RLIMIT_AS``), a CPU limit (``RLIMIT_CPU``) and a wall-clock deadline
enforced by the parent. A child is what makes the time limit real: a signal or a trace hook only runs between
bytecodes, so one long C-level operation (a big-integer power, a huge string filter) cannot be interrupted in
process, while the kernel stops a child whatever it is doing. A fork costs a millisecond or two (copy-on-write)
and needs no new interpreter or import. Whatever goes wrong costs only that part.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tether.userdata.detect import JINJA_HEADER
from tether.userdata.limits import MAX_PART_BYTES

MISSING_PREFIX = "CI_MISSING_JINJA_VAR/"
MAX_OUTPUT_CHARS = MAX_PART_BYTES
MAX_CPU_SECONDS = 5              # CPU time one render may use (RLIMIT_CPU in the child)
MAX_WALL_SECONDS = 15.0          # from fork to answer, however busy the machine is
MAX_MEMORY_BYTES = 512 * 1024 * 1024  # address space the child may add to what it inherited
MAX_INT_BITS = 100_000           # the largest integer ``**`` or ``*`` may produce (about 30,000 digits)
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
    """Render the template ``text`` (header included or not) in a bounded child process.

    Raises TemplateError naming the problem (line number, limit hit)."""
    try:
        import jinja2  # noqa: F401  # imported here, before the fork, so the child imports nothing
        from jinja2 import sandbox  # noqa: F401
    except ImportError:
        raise TemplateError("jinja2 is not importable (a dependency of tether: reinstall tether); the template "
                            "was not rendered") from None
    answer = _in_child(lambda: _render(text, doc))
    if "error" in answer:
        raise TemplateError(str(answer["error"]))
    return Rendered(str(answer["text"]), [str(m) for m in answer.get("missing", [])])


def _render(text: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The render itself (in the child): the answer as a JSON-able document."""
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    missing: list[str] = []

    class Missing(jinja2.DebugUndefined):
        """Renders as cloud-init's marker and remembers the name for the warning."""

        def __str__(self) -> str:
            name = str(self._undefined_name)
            missing.append(name)
            return f"{MISSING_PREFIX}{name}"

    class Bounded(SandboxedEnvironment):
        """The sandbox (bounded range(), no attribute tricks) with size checks on ``**`` and ``*``."""

        intercepted_binops = frozenset({"**", "*"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            check_binop(operator, left, right)
            return super().call_binop(context, operator, left, right)

    body = strip_header(text)
    env = Bounded(undefined=Missing, trim_blocks=True, keep_trailing_newline=True, autoescape=False,
                  extensions=["jinja2.ext.do"])
    try:
        chunks: list[str] = []
        size = 0
        # streamed so a runaway loop stops at the size cap instead of filling memory
        for chunk in env.from_string(body).generate(**variables(doc)):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateError(f"the rendered template is larger than {MAX_OUTPUT_CHARS >> 20} MiB")
            chunks.append(chunk)
        return {"text": "".join(chunks), "missing": sorted(set(missing))}
    except TemplateError as e:
        return {"error": str(e)}
    except jinja2.TemplateSyntaxError as e:
        # +1: line numbers count the header line the user wrote
        return {"error": f"template syntax error: line {(e.lineno or 0) + 1}: {e.message}"}
    except jinja2.UndefinedError as e:
        return {"error": f"undefined variable: {e.message}"}
    except jinja2.TemplateError as e:
        return {"error": f"template error: {e}"}
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as e:
        return {"error": f"template error: {type(e).__name__}: {e}"}
    except RecursionError:
        return {"error": "template error: nested too deeply"}


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``**`` and ``*`` whose result would be over the bounds, before computing it."""
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if operator == "**" and is_int(left) and is_int(right) and right > 0 and abs(left) > 1:
        if right > MAX_INT_BITS or abs(left).bit_length() * right > MAX_INT_BITS:
            raise TemplateError(f"template error: {left} ** {right} is larger than the {MAX_INT_BITS}-bit "
                                "limit on integers")
    if operator == "*":
        if is_int(left) and is_int(right):
            if abs(left).bit_length() + abs(right).bit_length() > MAX_INT_BITS:
                raise TemplateError(f"template error: a product larger than the {MAX_INT_BITS}-bit limit on "
                                    "integers")
            return
        seq, n = (left, right) if is_int(right) else (right, left)
        if is_int(n) and isinstance(seq, str | bytes | list | tuple) and len(seq) * n > MAX_OUTPUT_CHARS:
            raise TemplateError(f"template error: repeating {len(seq)} items {n} times is over the "
                                f"{MAX_OUTPUT_CHARS >> 20} MiB limit on a template's output")


def _in_child(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``work()`` in a forked child under CPU, memory and time limits; its JSON answer, or an error."""
    import select
    import signal
    import warnings

    try:
        r, w = os.pipe()
    except OSError as e:
        return {"error": f"cannot start the renderer: {e.strerror}"}
    try:
        with warnings.catch_warnings():
            # the child only computes with modules already imported and leaves by os._exit: the fork-with-threads
            # hazards (a lock held by another thread) do not reach it
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError as e:  # no memory or process slots left: this part's problem, not the stage's
        os.close(r)
        os.close(w)
        return {"error": f"cannot start the renderer: {e.strerror}"}
    if pid == 0:  # the child: never returns into the caller's code
        code = 0
        try:
            os.close(r)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _limit_self()
            try:
                result = work()
            except MemoryError:
                result = {"error": f"rendering needs more than {MAX_MEMORY_BYTES >> 20} MiB of memory; stopped"}
            data = json.dumps(result).encode()
            with os.fdopen(w, "wb") as f:
                f.write(data)
        except BaseException:  # noqa: BLE001 - the parent reports a child that gives no answer
            code = 3
        finally:
            os._exit(code)
    os.close(w)
    chunks: list[bytes] = []
    size, cap = 0, 8 * MAX_OUTPUT_CHARS + 65536  # JSON escaping may grow the text
    deadline = time.monotonic() + MAX_WALL_SECONDS
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                timed_out = True
                break
            chunk = os.read(r, 1 << 20)
            if not chunk:
                break
            size += len(chunk)
            if size > cap:
                timed_out = True  # cannot happen with the child's own cap; stop it all the same
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if timed_out:
        return {"error": f"rendering took more than {MAX_WALL_SECONDS:g} s; stopped"}
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            return {"error": f"rendering used more than {MAX_CPU_SECONDS} s of CPU time; stopped"}
        return {"error": f"rendering stopped by signal {sig}"}
    answer: object = None
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError:
        pass
    if not isinstance(answer, dict) or not ("text" in answer or "error" in answer):
        return {"error": f"rendering failed (the renderer exited with status {os.waitstatus_to_exitcode(status)}"
                         " and no answer)"}
    return answer


def _limit_self() -> None:
    """In the child: no core dumps, a CPU limit that kills (SIGXCPU, then SIGKILL), a cap on new memory."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (MAX_CPU_SECONDS, MAX_CPU_SECONDS + 1))
    try:
        with open("/proc/self/statm") as f:
            vsize = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    want = vsize + MAX_MEMORY_BYTES
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if soft == resource.RLIM_INFINITY or want < soft:
        resource.setrlimit(resource.RLIMIT_AS, (want, hard))

"""phone_home: POST the instance's id, host name and SSH host keys to a URL when the boot is done.

Live only: an offline root being prepared is not the instance announcing itself. The POST goes through
tether.http (TLS verified; each try ``timeout`` seconds, 10 by default, for the answer's headers and as much
again for its body; at most ``tries`` tries, pausing 3 s and then 5 s between them, so the whole module takes at
most ``tries x (2 x timeout + 5)`` seconds); a failure is a warning with the URL shown redacted, the boot goes on.
``$INSTANCE_ID`` in the URL is replaced (jinja user-data is rendered before it reaches the module).
"""

from __future__ import annotations

import socket
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Literal

from tether import http, log
from tether.convert import meta
from tether.module import Frequency, ModuleContext, Stage

NAME = "phone_home"
STAGE = Stage.FINAL
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("phone_home",)
LOG = log.get(__name__)
PostKey = Literal["pub_key_rsa", "pub_key_ecdsa", "pub_key_ed25519", "instance_id", "hostname", "fqdn"]
ALL_KEYS: tuple[str, ...] = ("pub_key_rsa", "pub_key_ecdsa", "pub_key_ed25519", "instance_id", "hostname", "fqdn")
TRY_TIMEOUT = 10.0
PAUSE = 3.0
MAX_PAUSE = 5.0


@dataclass(frozen=True)
class PhoneHome:
    url: str = field(metadata=meta(doc="where the data is POSTed"))
    post: Literal["all"] | tuple[PostKey, ...] = "all"
    tries: int = field(default=10, metadata=meta(doc="how many times to try"))
    timeout: float = field(default=TRY_TIMEOUT, metadata=meta(
        doc="seconds per try for the answer's headers, and as much again for its body (tether)"))

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url {http.redact_url(self.url)!r} must be an http:// or https:// URL")
        if self.tries < 1:
            raise ValueError("tries must be at least 1")
        if not 0 < self.timeout <= 600:
            raise ValueError("timeout must be more than 0 and at most 600 seconds")


@dataclass(frozen=True)
class Config:
    phone_home: PhoneHome | None = None


def collect(ctx: ModuleContext, keys: tuple[str, ...]) -> dict[str, str]:
    hostname = ctx.target.read_text("/etc/hostname", default="").strip() or ctx.instance.local_hostname or ""
    fqdn = ctx.cloud_config.get("fqdn") if isinstance(ctx.cloud_config.get("fqdn"), str) else None
    if not fqdn:
        fqdn = socket.getfqdn() if ctx.live else hostname
    values = {"instance_id": ctx.instance_id, "hostname": hostname, "fqdn": fqdn or hostname}
    for kind in ("rsa", "ecdsa", "ed25519"):
        values[f"pub_key_{kind}"] = ctx.target.read_text(f"/etc/ssh/ssh_host_{kind}_key.pub", default="").strip()
    return {k: values.get(k, "") or "N/A" for k in keys}


def handle(ctx: ModuleContext, cfg: Config) -> None:
    ph = cfg.phone_home
    if ph is None:
        return
    if not ctx.live:
        LOG.info("phone_home: not live; nothing posted")
        return
    keys = ALL_KEYS if ph.post == "all" else tuple(ph.post)
    body = urllib.parse.urlencode(collect(ctx, keys)).encode()
    url = ph.url.replace("$INSTANCE_ID", urllib.parse.quote(ctx.instance_id, safe=""))
    deadline = time.monotonic() + ph.tries * (2 * ph.timeout + MAX_PAUSE)
    shown = http.redact_url(ph.url)
    try:
        resp = http.request(url, method="POST", data=body, timeout=ph.timeout, retries=ph.tries - 1,
                            deadline=deadline, sleep=PAUSE, max_body=1 << 20,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    except http.HttpError as e:
        ctx.warn(f"phone_home: posting to {shown} failed after {ph.tries} tries: {e}")
        return
    LOG.info("phone_home: posted %s to %s (HTTP %d)", ", ".join(keys), shown, resp.status)

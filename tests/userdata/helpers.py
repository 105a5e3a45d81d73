"""Builders for user-data test inputs."""

from __future__ import annotations

import gzip
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any

from tether.userdata import Processed, process

INSTANCE_DATA: dict[str, Any] = {
    "base64_encoded_keys": ["ds/meta_data/secret-b64"],
    "ds": {"meta_data": {"local-hostname": "web-1", "instance-id": "iid-abc", "secret-b64": "aGVsbG8="}},
    "v1": {"instance_id": "iid-abc", "instance-id": "iid-abc", "local_hostname": "web-1",
           "local-hostname": "web-1", "platform": "nocloud", "region": None},
    "merged_cfg": {},
}


def run(userdata: bytes | str | None, vendordata: bytes | str | None = None, **kw: Any) -> Processed:
    kw.setdefault("instance_data", INSTANCE_DATA)
    return process(userdata, vendordata, **kw)


def mime(*parts: tuple[str, str | bytes] | tuple[str, str | bytes, dict[str, str]], gzip_parts: bool = False,
         base64: bool = False) -> bytes:
    """A multipart/mixed message; each part is (content type, content[, extra headers])."""
    msg = MIMEMultipart()
    for i, spec in enumerate(parts):
        ctype, content = spec[0], spec[1]
        headers = spec[2] if len(spec) > 2 else {}  # type: ignore[misc]
        maintype, subtype = ctype.split("/", 1)
        if gzip_parts or isinstance(content, bytes):
            data = content.encode() if isinstance(content, str) else content
            if gzip_parts:
                data = gzip.compress(data)
            part: MIMEBase = MIMEBase(maintype, subtype)
            part.set_payload(data)
            from email import encoders
            encoders.encode_base64(part)
        else:
            part = MIMEText(content, _subtype=subtype, _charset="utf-8" if base64 else "us-ascii")
            part.replace_header("Content-Type", f"{ctype}; charset=\"{'utf-8' if base64 else 'us-ascii'}\"")
        part.add_header("Content-Disposition", "attachment", filename=f"file{i + 1}")
        for k, v in headers.items():
            part.add_header(k, v)
        msg.attach(part)
    return msg.as_bytes()

"""#include, #include-once, text/x-include-url: fetching, caching, loops, failures, redaction."""

from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.userdata.helpers import mime, run
from tether.userdata.include import parse, redact_url


class Fetcher:
    def __init__(self, pages: dict[str, bytes]) -> None:
        self.pages = pages
        self.calls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        if url not in self.pages:
            raise OSError(f"{url}: HTTP 404 Not Found")
        return self.pages[url]


def test_parse_include_lines() -> None:
    text = "#include\n# comment\nhttp://a/1\n\n  http://a/2  \n#include-once http://a/3\nhttp://a/4\n#include\nhttp://a/5\n"
    assert parse(text) == [("http://a/1", False), ("http://a/2", False), ("http://a/3", True), ("http://a/4", True),
                           ("http://a/5", False)]
    assert parse("http://x\n", once=True) == [("http://x", True)]


def test_redact_url() -> None:
    assert redact_url("https://user:pw@h.example:8443/p/x.yaml?X-Amz-Signature=abc") == \
        "https://h.example:8443/p/x.yaml?…"
    assert redact_url("http://h/p") == "http://h/p"


def test_include_fetches_and_merges_in_order() -> None:
    f = Fetcher({"http://s/a": b"#cloud-config\nruncmd: [a]\n", "http://s/b": b"#!/bin/sh\necho b\n"})
    r = run(b"#include\nhttp://s/a\nhttp://s/b\n", fetch=f)
    assert r.cloud_config == {"runcmd": ["a"]}
    assert [s.content for s in r.scripts] == [b"#!/bin/sh\necho b\n"]
    assert f.calls == ["http://s/a", "http://s/b"] and r.errors == [] and r.warnings == []


def test_included_content_may_be_gzip_or_mime() -> None:
    f = Fetcher({"http://s/gz": gzip.compress(b"#cloud-config\na: 1\n"),
                 "http://s/mime": mime(("text/cloud-config", "#cloud-config\nb: 2\n"))})
    assert run(b"#include http://s/gz\n#include http://s/mime\n", fetch=f).cloud_config == {"a": 1, "b": 2}


def test_include_url_mime_part() -> None:
    f = Fetcher({"http://s/a": b"#cloud-config\na: 1\n"})
    r = run(mime(("text/x-include-url", "http://s/a\n"), ("text/cloud-config", "#cloud-config\nb: 2\n")), fetch=f)
    assert r.cloud_config == {"a": 1, "b": 2}


def test_without_fetcher_includes_warn_and_are_skipped() -> None:
    r = run(b"#cloud-config\na: 1\n")
    assert r.warnings == []
    r = run(mime(("text/cloud-config", "#cloud-config\na: 1\n"), ("text/x-include-url", "http://s/a?token=SECRET\n")))
    assert r.cloud_config == {"a": 1}
    assert r.warnings == ["user-data part 2 (include): includes are not fetched here (no fetcher); skipped: "
                          "http://s/a?…"]


def test_failed_fetch_is_an_error_with_the_url_redacted() -> None:
    f = Fetcher({"http://s/ok": b"#cloud-config\nok: true\n"})
    r = run(b"#include\nhttp://u:pw@s/missing?sig=SECRET\nhttp://s/ok\n", fetch=f)
    assert r.cloud_config == {"ok": True}
    assert r.errors == ["user-data part 1 (include): could not fetch http://s/missing?…: "
                        "http://s/missing?…: HTTP 404 Not Found"]
    assert not any("SECRET" in m or "pw@" in m for m in r.errors + r.warnings)


def test_include_loop_is_stopped() -> None:
    f = Fetcher({"http://s/a": b"#include http://s/b\n", "http://s/b": b"#include\nhttp://s/a\n"})
    r = run(b"#include http://s/a\n", fetch=f)
    assert r.errors == ["user-data part 3 (include, from http://s/b): http://s/a includes itself; skipped"]
    assert f.calls == ["http://s/a", "http://s/b"]


def test_include_depth_is_bounded() -> None:
    pages = {f"http://s/{i}": f"#include http://s/{i + 1}\n".encode() for i in range(20)}
    r = run(b"#include http://s/0\n", fetch=Fetcher(pages))
    assert len(r.errors) == 1 and "includes nested more than 8 deep" in r.errors[0]


def test_include_count_is_bounded() -> None:
    pages = {f"http://s/{i}": b"#cloud-config\n" for i in range(200)}
    r = run(("#include\n" + "\n".join(pages) + "\n").encode(), fetch=Fetcher(pages))
    assert r.errors == ["user-data: more than 100 included URLs; the rest was not processed"]


def test_include_once_is_fetched_once_per_cache() -> None:
    f = Fetcher({"http://s/once": b"#cloud-config\ntoken: t1\n"})
    cache: dict[str, bytes] = {}
    for _ in range(2):
        r = run(b"#include-once\nhttp://s/once\n", fetch=f, include_once_cache=cache)
        assert r.cloud_config == {"token": "t1"}
    assert f.calls == ["http://s/once"]
    # cached content is used even with no network at all
    assert run(b"#include-once\nhttp://s/once\n", include_once_cache=cache).cloud_config == {"token": "t1"}


def test_include_once_dir_cache(tmp_path: Path) -> None:
    f = Fetcher({"http://s/once": b"#cloud-config\ntoken: t1\n"})
    d = tmp_path / "urlcache"
    run(mime(("text/x-include-once-url", "http://s/once\n")), fetch=f, include_once_cache=d)
    files = list(d.iterdir())
    assert len(files) == 1 and files[0].stat().st_mode & 0o777 == 0o600
    assert "once" not in files[0].name
    r = run(b"#include-once\nhttp://s/once\n", fetch=f, include_once_cache=str(d))
    assert r.cloud_config == {"token": "t1"} and f.calls == ["http://s/once"]


def test_plain_include_is_not_cached() -> None:
    f = Fetcher({"http://s/a": b"#cloud-config\na: 1\n"})
    cache: dict[str, bytes] = {}
    run(b"#include http://s/a\n", fetch=f, include_once_cache=cache)
    run(b"#include http://s/a\n", fetch=f, include_once_cache=cache)
    assert f.calls == ["http://s/a", "http://s/a"] and cache == {}


@pytest.fixture
def server() -> Iterator[str]:
    pages = {"/cfg": b"#cloud-config\nfrom_http: true\n", "/gz": gzip.compress(b"#!/bin/sh\necho gz\n")}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = pages.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_include_over_loopback_http_with_the_bounded_client(server: str) -> None:
    from tether.http import request

    def fetch(url: str) -> bytes:
        return request(url, timeout=2, retries=0).body

    r = run(f"#include\n{server}/cfg\n{server}/gz\n{server}/missing\n".encode(), fetch=fetch)
    assert r.cloud_config == {"from_http": True}
    assert [s.content for s in r.scripts] == [b"#!/bin/sh\necho gz\n"]
    assert len(r.errors) == 1 and "could not fetch" in r.errors[0] and "HTTP 404" in r.errors[0]

"""#include fetching through the one HTTP client, with the system config's ``include`` bounds."""

from __future__ import annotations

import time

from tests.hostile.server import HostileServer
from tether.userdata import process
from tether.userdata.include import Fetcher


def test_bad_bounds_are_reported_and_defaults_used() -> None:
    f = Fetcher({"timeout": "10s", "retries": -1, "max_wait": True})
    assert f.problems == ["system config include.timeout: expected a non-negative number, got str; using 10.0",
                          "system config include.retries: expected a non-negative number, got int; using 2",
                          "system config include.max_wait: expected a non-negative number, got bool; using 60.0"]
    assert f.limits == {"timeout": 10.0, "retries": 2.0, "max_wait": 60.0, "max_bytes": 16 * 1024 * 1024}
    assert Fetcher(["timeout"]).problems == ["system config include: expected a mapping, got list; the default "
                                             "bounds are used"]


def test_max_wait_bounds_all_the_includes_of_one_user_data_together() -> None:
    with HostileServer("never_answers") as srv:
        fetch = Fetcher({"timeout": 0.4, "retries": 5, "max_wait": 1.0})
        urls = "\n".join(f"{srv.url}/part{i}.yaml" for i in range(4))
        t0 = time.monotonic()
        r = process(f"#include\n{urls}\n".encode(), None, instance_data={}, fetch=fetch)
        elapsed = time.monotonic() - t0
    assert len(r.errors) == 4 and all("could not fetch" in e for e in r.errors), r.errors
    # 4 includes x 6 tries x 0.4 s would be 9.6 s; max_wait holds them all to 1 s
    assert elapsed < 1.6, elapsed


def test_max_bytes_per_document() -> None:
    with HostileServer("huge_body") as srv:
        url = srv.url
        r = process(f"#include\n{url}/big.yaml\n".encode(), None, instance_data={},
                    fetch=Fetcher({"timeout": 2, "max_bytes": 100000}))
    assert r.errors == [f"user-data part 1 (include): could not fetch {url}/big.yaml: response larger than "
                        "100000 bytes"]

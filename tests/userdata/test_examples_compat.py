"""Every user-data example in cloud-init's doc/examples and doc/module-docs goes through process() without a
crash or an error; the ones tether deliberately ignores (part-handler, upstart, plain text) say so."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.conftest import compat_dir
from tests.userdata.helpers import INSTANCE_DATA
from tether.userdata import process

# example -> what tether says about it (a substring of each warning, in order)
EXPECTED_WARNINGS = {
    "cloud-config-archive.txt": ["(foo/wark, from archive part 1): not supported", "not a mapping",
                                 "not a mapping"],
    "cloud-config-archive-launch-index.txt": ["(foo/wark, from archive part 1): not supported", "not a mapping",
                                              "not a mapping",
                                              "(text/upstart-job, from archive part 1): not supported"],
    "part-handler.txt": ["(text/part-handler): not supported by tether"],
    "part-handler-v2.txt": ["(text/part-handler): not supported by tether"],
    "plain-ignored.txt": ["no known start line"],
    "kernel-command-line.txt": ["no known start line"],  # prose, not user-data
    "include-once.txt": ["no known start line", "no known start line"],  # the URLs serve web pages
}


def _fetch_from_corpus(examples: Path):  # type: ignore[no-untyped-def]
    def fetch(url: str) -> bytes:
        local = examples / url.rsplit("/", 1)[-1]
        if local.suffix == ".txt" and local.exists():
            return local.read_bytes()
        return b"<html>a web page</html>\n"
    return fetch


def test_every_example_user_data_is_processed() -> None:
    doc = compat_dir("cloud-init", "doc")
    examples = doc / "examples"
    files = sorted(examples.glob("*.txt")) + [examples / "seed" / "user-data"] + sorted(
        (doc / "module-docs").glob("*/*.yaml"))
    kinds: Counter[str] = Counter()
    keys: Counter[str] = Counter()
    problems = []
    for f in files:
        r = process(f.read_bytes(), None, instance_data=INSTANCE_DATA, fetch=_fetch_from_corpus(examples))
        want = EXPECTED_WARNINGS.get(f.name, [])
        if r.errors or len(r.warnings) != len(want) or not all(w in got for w, got in zip(want, r.warnings,
                                                                                            strict=False)):
            problems.append(f"{f.relative_to(doc)}: errors={r.errors} warnings={r.warnings}")
        if r.cloud_config:
            kinds["cloud-config"] += 1
        kinds["scripts"] += len(r.scripts)
        kinds["boothooks"] += len(r.boothooks)
        kinds["ignored with a warning"] += bool(r.warnings)
        keys.update(list(r.cloud_config))
        if f.name == "include.txt":
            assert set(r.cloud_config) == {"runcmd", "bootcmd"}, r.cloud_config
        if f.name == "boothook.txt":
            assert r.boothooks[0].content.startswith(b"#!/bin/sh\necho 192.168.1.130")
        if f.name == "user-script.txt":
            assert r.scripts[0].content.startswith(b"#!/bin/sh\n")
    print(f"\ndoc examples: {len(files)} user-data files, {kinds['cloud-config']} give cloud-config "
          f"({len(keys)} distinct top-level keys), {kinds['scripts']} scripts, {kinds['boothooks']} boothooks, "
          f"{kinds['ignored with a warning']} with warnings, {len(problems)} unexpected")
    assert len(files) > 100
    assert kinds["cloud-config"] > 100
    assert not problems, "\n".join(problems)

"""vendor-data under user-data, and the ways to refuse it."""

from __future__ import annotations

from tests.userdata.helpers import mime, run

VENDOR = (b"#cloud-config\nruncmd: [vendor]\npackages: [ntp]\napt:\n  proxy: http://proxy\n"
          b"  sources: {v: {source: v}}\n")


def test_vendor_fills_in_under_user() -> None:
    r = run(b"#cloud-config\nruncmd: [user]\napt:\n  sources: {u: {source: u}}\n", VENDOR)
    assert r.cloud_config == {
        "runcmd": ["user"],          # both set it: the user's wins
        "packages": ["ntp"],         # only vendor sets it
        "apt": {"sources": {"u": {"source": "u"}, "v": {"source": "v"}}, "proxy": "http://proxy"},  # deep
    }


def test_vendor_only() -> None:
    assert run(None, VENDOR).cloud_config["packages"] == ["ntp"]


def test_vendor_disabled_by_caller() -> None:
    r = run(b"#cloud-config\na: 1\n", VENDOR + b"#!/bin/sh\n", vendor_enabled=False)
    assert r.cloud_config == {"a": 1} and r.vendor_scripts == []


def test_vendor_disabled_by_user_data() -> None:
    for value in ("false", "'no'", "False"):
        r = run(f"#cloud-config\nvendor_data: {{enabled: {value}}}\n".encode(), VENDOR)
        assert "packages" not in r.cloud_config, value
    assert "packages" in run(b"#cloud-config\nvendor_data: {enabled: true}\n", VENDOR).cloud_config


def test_vendor_scripts_and_boothooks_are_kept_apart() -> None:
    vendor = mime(("text/x-shellscript", "#!/bin/sh\necho vendor\n"), ("text/cloud-boothook", "#!/bin/sh\nvb\n"))
    user = mime(("text/x-shellscript", "#!/bin/sh\necho user\n"), ("text/cloud-boothook", "#!/bin/sh\nub\n"))
    r = run(user, vendor)
    assert [s.content for s in r.scripts] == [b"#!/bin/sh\necho user\n"]
    assert [s.content for s in r.vendor_scripts] == [b"#!/bin/sh\necho vendor\n"]
    assert [(h.name, h.content) for h in r.boothooks] == [("file2", b"#!/bin/sh\nub\n"),
                                                          ("vendor-file2", b"#!/bin/sh\nvb\n")]


def test_vendor_problems_are_labelled_vendor_data() -> None:
    r = run(b"#cloud-config\na: 1\n", b"#cloud-config\nb: [\n")
    assert r.cloud_config == {"a": 1}
    assert len(r.errors) == 1 and r.errors[0].startswith("vendor-data part 1 (cloud-config): invalid YAML")


def test_user_merge_how_does_not_reach_across_into_vendor() -> None:
    # as cloud-init: merge_how governs how user-data parts merge with each other; vendor-data is stacked under
    # the result, so a list set by both is the user's
    r = run(b"#cloud-config\nmerge_how: 'dict(recurse_array)+list(append)'\nruncmd: [user]\n", VENDOR)
    assert r.cloud_config["runcmd"] == ["user"]
    assert "merge_how" not in r.cloud_config

"""The power-cut scenario's judge (``vmtests/powercut_judge.py``) without a VM: facts shaped as the guest sends
them (taken from a real recovery boot, trimmed), each rule shown to fail when what it guards is broken."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tether.engine.slots import spec_digest
from vmtests.powercut_judge import default_entry, judge

OLD = {"image": {"url": "file:///srv/tether-images/v1.img"}}
NEW = {"image": {"url": "file:///srv/tether-images/v2.img"}, "os": {"hostname": "powercut-1"}}
BOOTCTL = """         type: Boot Loader Specification Type #1 (.conf)
        title: tether volume-b (5) (default) (selected)
           id: tether-5-volume-b.conf
       source: /efi/loader/entries/tether-5-volume-b.conf
        linux: /tether/volume-b/5/vmlinuz

         type: Boot Loader Specification Type #1 (.conf)
        title: tether volume-a (1)
           id: tether-1-volume-a.conf
        linux: /tether/volume-a/1/vmlinuz
"""


def slot(volume: str, spec: dict[str, Any], state: str = "committed") -> dict[str, Any]:
    return {"state": state, "specDigest": spec_digest(spec), "generation": 2 if volume == "volume-b" else 1}


def marker(volume: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"volume": volume, "specDigest": spec_digest(spec), "generation": 2 if volume == "volume-b" else 1}


def completed() -> dict[str, Any]:
    """Provisioned on B after the update to powercut-1 (A still holds the adopted configuration)."""
    return {
        "status": {"servicingState": "provisioned", "abActiveVolume": "volume-b", "spec": NEW, "specOld": None,
                   "slots": {"volume-a": slot("volume-a", OLD), "volume-b": slot("volume-b", NEW)},
                   "pending": None, "lastError": None, "rejectedSpecs": []},
        "root": "/dev/vda3", "marker": marker("volume-b", NEW), "fstab": True, "hostname": "powercut-1",
        "entries": ["tether-1-volume-a.conf", "tether-5-volume-b.conf"], "bootctl": BOOTCTL, "tetherStatusRc": 0,
        "commitUnit": "Result=success\nExecMainStatus=0\n",
        "devices": {"volume-a": "/dev/vda2", "volume-b": "/dev/vda3"},
        "other": {"volume": "volume-a", "marker": marker("volume-a", OLD), "fstab": True},
    }


def abandoned() -> dict[str, Any]:
    """Still on A after a cut while B was being written: B untrusted, pending explains it."""
    f = completed()
    st = f["status"]
    st.update(abActiveVolume="volume-a", spec=OLD,
              slots={"volume-a": slot("volume-a", OLD), "volume-b": slot("volume-b", NEW, "writing")},
              pending={"untrustedSlots": ["volume-b"], "operation": "ab-update", "step": "writing",
                       "state": "interrupted", "resume": "tether update FILE --allowed-operations stage"})
    f.update(root="/dev/vda2", marker=marker("volume-a", OLD), hostname="localhost",
             bootctl=BOOTCTL.replace(" (default) (selected)", "").replace("volume-a (1)", "volume-a (1) (default)"),
             other={"volume": "volume-b", "mountError": "wrong fs type"})
    return f


def test_good_boots_pass() -> None:
    j = judge(completed(), "powercut-1", None, spec_digest(NEW))
    assert j.ok and j.outcome == "completed" and j.booted == "volume-b", j
    j = judge(abandoned(), "powercut-1", None, spec_digest(NEW))
    assert j.ok and j.outcome == "abandoned" and j.booted == "volume-a", j


@pytest.mark.parametrize(("case", "breaks", "expect"), [
    ("completed", lambda f: f.update(tetherStatusRc=1), "tether status exits 1"),
    ("completed", lambda f: f.update(commitUnit="Result=exit-code\nExecMainStatus=1\n"), "tether-commit.service"),
    ("completed", lambda f: f["status"]["slots"]["volume-b"].update(state="staged"), "not committed"),
    ("completed", lambda f: f.update(marker=marker("volume-b", OLD)), "does not match its record"),
    ("completed", lambda f: f.update(fstab=False), "not configured"),
    ("completed", lambda f: f["status"].update(abActiveVolume="volume-a"), "provisioned on volume-a"),
    ("completed", lambda f: f.update(hostname="engine-vm"), "hostname"),
    ("completed", lambda f: f["status"].update(servicingState="ab-update-finalized"), "servicing state"),
    ("completed", lambda f: f["status"].update(rejectedSpecs=[spec_digest(NEW)]), "now rejected"),
    ("completed", lambda f: f.update(bootctl=""), "default entry"),
    ("abandoned", lambda f: f["status"].update(pending=None), "pending does not name it"),
    ("abandoned", lambda f: f["status"]["pending"].update(state="running"), "does not explain"),
    ("abandoned", lambda f: f.update(bootctl=BOOTCTL), "names volume-b"),
    ("abandoned", lambda f: f["status"].update(spec=NEW), "not the provisioned configuration"),
])
def test_each_rule_fails_when_broken(case: str, breaks: Any, expect: str) -> None:
    facts = copy.deepcopy(completed() if case == "completed" else abandoned())
    breaks(facts)
    j = judge(facts, "powercut-1", None, spec_digest(NEW))
    assert not j.ok and any(expect in p for p in j.problems), j.problems


def test_default_entry_from_bootctl() -> None:
    assert default_entry(BOOTCTL) == "tether-5-volume-b.conf"
    assert default_entry(BOOTCTL.replace(" (default)", "")) is None


def test_an_empty_default_entry_is_named() -> None:
    """The default names the distrusted slot through an entry file whose content was lost (bootctl shows no
    linux line): still a failure (the boot configuration names an unverified slot), and the message says why."""
    facts = abandoned()
    facts["bootctl"] = BOOTCTL.replace("title: tether volume-b (5) (default) (selected)",
                                       "title: tether-5-volume-b.conf (default) (not reported/new)") \
        .replace("        linux: /tether/volume-b/5/vmlinuz\n", "")
    j = judge(facts, "powercut-1", None, spec_digest(NEW))
    assert any("content was lost" in p for p in j.problems), j.problems
    j = judge(abandoned() | {"bootctl": BOOTCTL}, "powercut-1", None, spec_digest(NEW))
    assert not any("content was lost" in p for p in j.problems) and any("names volume-b" in p for p in j.problems)


def test_a_lost_staged_record_is_named() -> None:
    """Finalize had begun (so ab-update-staged was recorded), yet the next boot's datastore has the slot at an
    earlier step: the host is still good (the slot is only distrusted), and the table names the lost record."""
    j = judge(abandoned(), "powercut-1", None, spec_digest(NEW), staged_before_cut=True)
    assert j.ok and any(n.startswith("LOST RECORD") for n in j.notes), j.notes
    j = judge(abandoned(), "powercut-1", None, spec_digest(NEW), staged_before_cut=False)
    assert not any(n.startswith("LOST RECORD") for n in j.notes), j.notes

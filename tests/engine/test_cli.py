"""The engine's command line as a user runs it (``tether.cli.main`` in-process, against a temporary root):
Trident's -s/--status, -e/--error, -v/--verbosity, validate's default path, get rollback-target and -o,
rollback --ab/--runtime."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.engine.test_hostconfig import GOOD
from tether.cli import main
from tether.engine import state

SPEC_1 = {**GOOD, "os": {"hostname": "node-1"}}
SPEC_2 = {**GOOD, "os": {"hostname": "node-2"}}


def run(capsys: pytest.CaptureFixture[str], root: Path, *argv: str) -> tuple[int, str, str]:
    rc = main(["--root", str(root), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def serviced_root(tmp_path: Path, *, rollback_possible: bool = True) -> Path:
    """A root whose datastore says: adopted on volume-a (SPEC_1), then updated to volume-b (SPEC_2) and committed;
    volume-a still holds its committed image unless ``rollback_possible`` is off."""
    root = tmp_path / "root"
    with state.StateStore(root / state.DEFAULT_DATASTORE.lstrip("/")) as store:
        doc = state.empty_status()
        doc.update(servicingState=state.PROVISIONED, spec=SPEC_1, abActiveVolume="volume-a",
                   slots={"volume-a": {"state": "committed"}})
        store.record(doc, "adopted")
        store.update("ab-update-staged", servicingState=state.AB_UPDATE_STAGED, specOld=SPEC_1, spec=SPEC_2,
                     slots={"volume-a": {"state": "committed"}, "volume-b": {"state": "staged"}})
        store.update("ab-update-finalized", servicingState=state.AB_UPDATE_FINALIZED)
        store.update("committed", servicingState=state.PROVISIONED, specOld=None, abActiveVolume="volume-b",
                     slots={"volume-a": {"state": "committed" if rollback_possible else "writing"},
                            "volume-b": {"state": "committed"}})
    return root


# ---- validate -------------------------------------------------------------------------------------------------

def test_validate_without_a_file_reads_tethers_then_tridents_default(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    (root / "etc/trident").mkdir(parents=True)
    (root / "etc/trident/config.yaml").write_text(yaml.safe_dump(GOOD))
    rc, out, _ = run(capsys, root, "validate")
    assert rc == 0 and out == f"{root}/etc/trident/config.yaml: valid\n"
    # tether's own default wins when both exist
    (root / "etc/tether").mkdir(parents=True)
    (root / "etc/tether/host-configuration.yaml").write_text("os: {hostname: 'bad name'}\n")
    rc, _, err = run(capsys, root, "validate")
    assert rc == 1 and f"{root}/etc/tether/host-configuration.yaml: os.hostname:" in err


def test_validate_names_both_defaults_when_neither_exists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, tmp_path, "validate")
    assert rc == 1
    assert "no host configuration given, and neither /etc/tether/host-configuration.yaml nor " \
           "/etc/trident/config.yaml exists in " in err


def test_validate_prints_notes_for_ignored_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "hc.yaml"
    f.write_text(yaml.safe_dump({**GOOD, "internalParams": {"x": True}}))
    rc, out, err = run(capsys, tmp_path, "validate", str(f))
    assert rc == 0 and out == f"{f}: valid\n"
    assert f"tether: {f}: note: internalParams: ignored (x)" in err


def test_validate_reports_every_problem_in_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = copy.deepcopy(GOOD)
    data["storage"]["raid"] = {"software": [{"id": "md0", "name": "md0", "level": "raid1", "devices": ["a", "b"]}]}
    data["os"]["hostname"] = "-bad-"
    data["storage"]["filesystems"].pop(0)  # the ESP
    f = tmp_path / "hc.yaml"
    f.write_text(yaml.safe_dump(data))
    rc, _, err = run(capsys, tmp_path, "validate", str(f))
    lines = err.splitlines()
    assert rc == 1 and len(lines) == 3, lines
    assert lines[0] == f"tether: {f}: storage.raid: software RAID is not supported by tether"
    assert any("storage.filesystems: no EFI system partition" in line for line in lines)
    assert any("os.hostname: '-bad-' is not a valid host name" in line for line in lines)


# ---- -s / -e -----------------------------------------------------------------------------------------------

def test_update_with_a_bad_configuration_writes_the_error_and_status_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = serviced_root(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**GOOD, "os": {"hostname": "bad_host!", "selinux": {"mode": "strict"}}}))
    status, error = tmp_path / "status.yaml", tmp_path / "error.yaml"
    rc, _, err = run(capsys, root, "update", str(bad), "-s", str(status), "--error", str(error))
    assert rc == 1 and "os.selinux.mode: expected one of 'disabled', 'permissive', 'enforcing'" in err
    e = yaml.safe_load(error.read_text())
    assert e["command"] == "update" and e["category"] == "invalid-host-configuration"
    assert {x["path"] for x in e["errors"]} == {"os.selinux.mode"}  # a schema error stops before cross-checks
    s = yaml.safe_load(status.read_text())
    assert s["servicingState"] == "provisioned" and s["spec"]["os"]["hostname"] == "node-2"


def test_commit_writes_the_status_and_no_error_when_nothing_fails(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    root = serviced_root(tmp_path)
    status, error = tmp_path / "s.yaml", tmp_path / "e.yaml"
    rc, _, _ = run(capsys, root, "commit", "-s", str(status), "-e", str(error), "--machine-root", str(tmp_path))
    assert rc == 0
    assert yaml.safe_load(status.read_text())["abActiveVolume"] == "volume-b"
    assert not error.exists()


def test_status_of_a_never_serviced_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = tmp_path / "s.yaml"
    rc, _, _ = run(capsys, tmp_path / "root", "commit", "--status", str(status), "--machine-root", str(tmp_path))
    assert rc == 0 and yaml.safe_load(status.read_text())["servicingState"] == "not-provisioned"


def test_an_unwritable_status_file_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, tmp_path / "root", "commit", "-s", str(tmp_path / "no/such/dir/s.yaml"),
                     "--machine-root", str(tmp_path))
    assert f"tether: --status {tmp_path}/no/such/dir/s.yaml: cannot write: No such file or directory" in err


# ---- rollback --ab / --runtime -----------------------------------------------------------------------------

def test_rollback_runtime_is_refused_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = serviced_root(tmp_path)
    error = tmp_path / "e.yaml"
    rc, _, err = run(capsys, root, "rollback", "--runtime", "-e", str(error))
    assert rc == 1
    assert "no runtime rollback: tether makes no runtime updates" in err
    assert yaml.safe_load(error.read_text())["category"] == "rollback"
    with pytest.raises(SystemExit) as ex:
        main(["--root", str(root), "rollback", "--ab", "--runtime"])
    assert ex.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_rollback_ab_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, serviced_root(tmp_path), "rollback", "--ab", "--check")
    assert rc == 0 and out == "can roll back to volume-a (image file:///images/os.cosi)\n"


# ---- get ---------------------------------------------------------------------------------------------------

def test_get_rollback_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, serviced_root(tmp_path), "get", "rollback-target", "--format", "json")
    assert rc == 0
    import json
    got = json.loads(out)
    assert got["abActiveVolume"] == "volume-a" and got["spec"]["os"]["hostname"] == "node-1"


def test_get_rollback_target_when_there_is_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, serviced_root(tmp_path, rollback_possible=False), "get", "rollback-target")
    assert rc == 0 and out == "null\n"
    assert "no rollback target: volume-a holds no committed image to roll back to (it is writing)" in err
    rc, out, err = run(capsys, tmp_path / "fresh", "get", "rollback-target")
    assert out == "null\n" and "never serviced" in err


@pytest.mark.parametrize("what", ["configuration", "rollback-chain", "last-error"])
def test_get_outfile(tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str) -> None:
    root = serviced_root(tmp_path)
    out_file = tmp_path / "out.yaml"
    rc, out, _ = run(capsys, root, "get", what, "-o", str(out_file))
    assert rc == 0 and out == ""
    rc, printed, _ = run(capsys, root, "get", what)
    assert out_file.read_text() == printed
    got: Any = yaml.safe_load(printed)
    if what == "configuration":
        assert got["os"]["hostname"] == "node-2"
    elif what == "rollback-chain":
        assert [e["abActiveVolume"] for e in got] == ["volume-b", "volume-a"]
    else:
        assert got is None


# ---- -v ----------------------------------------------------------------------------------------------------

def test_verbosity_levels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "hc.yaml"
    f.write_text(yaml.safe_dump(GOOD))
    with pytest.raises(SystemExit) as ex:
        main(["validate", str(f), "-v", "loud"])
    assert ex.value.code == 2 and "unknown level 'loud'" in capsys.readouterr().err
    root = tmp_path / "root"
    (root / "etc/trident").mkdir(parents=True)
    (root / "etc/trident/config.yaml").write_text(yaml.safe_dump(GOOD))
    said = f"tether: INFO: no host configuration given: reading {root}/etc/trident/config.yaml"
    for level, shown in (("info", True), ("DEBUG", True), ("trace", True), ("warn", False), ("off", False)):
        rc, _, err = run(capsys, root, "validate", "-v", level)
        assert rc == 0 and (said in err) == shown, (level, err)
    rc, _, err = run(capsys, root, "validate")  # default: warnings only
    assert said not in err
    rc, _, err = run(capsys, root, "--debug", "validate")
    assert said in err

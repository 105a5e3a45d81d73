"""``tether schema -c`` gives cloud-init's verdict and exit code for every file of the shared cloud-init corpus
(verdicts stored in data/cloudinit-schema-verdicts.json, produced by tools/gen_schema_verdicts.py with
cloud-init's own validator; see the file's ``_how``), and flags the same deprecated values on valid files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import compat_dir
from tether.cli import main

DATA = json.loads((Path(__file__).parent / "data" / "cloudinit-schema-verdicts.json").read_text())
VERDICTS: dict[str, dict] = DATA["verdicts"]
# where tether is knowingly stricter than cloud-init's schema, and why (each must still differ, or go)
KNOWN_DIFFERENCES = {
    "tests/data/merge_sources/source9-2.yaml":
        "phone_home.url '$BLAH_BLAH': tether requires an http(s) URL, cloud-init's schema any string",
}
# cloud-init's verdict -> what tether prints for it
SAYS = {"valid": "Valid schema", "invalid": "Invalid cloud-config", "invalid yaml": "invalid YAML",
        "not a dict": "not a YAML mapping", "not evaluated": "is not evaluated by tether schema",
        "unrecognized header": "unrecognized user-data start line"}


@pytest.fixture(scope="module")
def instance_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("idata") / "instance-data.json"
    p.write_text(json.dumps(DATA["instance_data"]))
    return p


def _deprecated_paths(line: str) -> dict[str, str]:
    """'Cloud config schema deprecations: a.0.b: ... in version 22.2. ..., c: ...' -> {path: version}."""
    body = line.split("deprecations:", 1)[1] if "deprecations:" in line else ""
    return {m.group(1): m.group(2)
            for m in re.finditer(r"(?:^|, )([\w.-]+):\s+\w+ in (?:version|cloud-init) (\d+(?:\.\d+)*)", body.strip())}


def test_verdicts_cover_the_whole_corpus() -> None:
    base = compat_dir("cloud-init")
    files = {str(p.relative_to(base)) for p in (base / "doc").rglob("*") if p.is_file()}
    files |= {str(p.relative_to(base)) for p in (base / "tests/data/merge_sources").glob("*.yaml")}
    assert files == set(VERDICTS), "regenerate data/cloudinit-schema-verdicts.json (tools/gen_schema_verdicts.py)"


@pytest.mark.parametrize("rel", sorted(VERDICTS))
def test_schema_matches_cloud_init(rel: str, instance_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    want = VERDICTS[rel]
    path = compat_dir("cloud-init") / rel
    rc = main(["schema", "-c", str(path), "--instance-data", str(instance_data)])
    out = capsys.readouterr()
    shown = out.out + out.err
    if rel in KNOWN_DIFFERENCES:
        assert rc != want["exit"], f"{rel} now agrees with cloud-init: drop it from KNOWN_DIFFERENCES"
        return
    assert rc == want["exit"], f"{rel}: cloud-init says {want['verdict']} (exit {want['exit']}):\n{shown}"
    assert SAYS[want["verdict"]] in shown, shown
    if want["verdict"] == "valid":
        deprecation_lines = [ln for ln in out.out.splitlines() if ln.startswith("Cloud config schema deprecations")]
        ours = _deprecated_paths(deprecation_lines[0]) if deprecation_lines else {}
        theirs = {p: re.search(r"in version (\d+(?:\.\d+)*)", m).group(1) for p, m in want["deprecations"]}  # type: ignore[union-attr]
        assert ours == theirs


def test_every_top_level_key_of_cloud_inits_schema_is_known(capsys: pytest.CaptureFixture[str]) -> None:
    """A key cloud-init's schema has is never "not a known cloud-config key" (an error) for tether."""
    from tether.cli_schema import validate
    schema = json.loads((compat_dir("cloud-init") / "cloudinit/config/schemas/schema-cloud-config-v1.json")
                        .read_text())
    keys = {k for name, d in schema["$defs"].items() if name.startswith("cc_") or name == "base_config"
            for k in d.get("properties", {})}
    assert len(keys) > 80
    errors, _warnings = validate(dict.fromkeys(keys))
    assert [e for e in errors if e.message == "not a known cloud-config key"] == []

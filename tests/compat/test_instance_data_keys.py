"""instance-data.json / instance-data-sensitive.json written by a real local + network stage carry every key
cloud-init 26.x documents (tests/compat/data/cloudinit-instance-data-keys.json), with the sensitive ones
redacted in the world-readable file, and jinja templates can use the newer names (merged_system_cfg)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.core.test_stages import seed_root, tether

DATA = json.loads((Path(__file__).parent / "data" / "cloudinit-instance-data-keys.json").read_text())


def _boot_init(tmp_path: Path, ud: str) -> Path:
    root = seed_root(tmp_path, ud)
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n')
    (root / "etc/tether").mkdir(parents=True, exist_ok=True)
    (root / "etc/tether/tether.cfg").write_text("system_info:\n  default_user:\n    name: admin\n")
    tether(root, "init", "--local")
    tether(root, "init")
    return root


def test_every_documented_key_is_written(tmp_path: Path) -> None:
    root = _boot_init(tmp_path, "#cloud-config\nhostname: from-user-data\n")
    sensitive = json.loads((root / "run/tether/instance-data-sensitive.json").read_text())
    public = json.loads((root / "run/tether/instance-data.json").read_text())
    for doc in (sensitive, public):
        assert set(DATA["top_level"]) <= set(doc), set(DATA["top_level"]) - set(doc)
        assert set(doc["v1"]) == set(DATA["v1"])
        if DATA["v1_also_top_level"]:
            assert {k: doc[k] for k in DATA["v1"]} == doc["v1"]
        assert set(doc["sys_info"]) == set(DATA["sys_info"])
    v1 = sensitive["v1"]
    assert (v1["distro"], v1["distro_version"], v1["distro_release"], v1["variant"]) == (
        "debian", "12", "bookworm", "debian")
    assert v1["instance_id"] == v1["instance-id"] == "iid-tether-demo-0001"
    for key in DATA["redacted_in_public_file"]:
        assert public[key] == "redacted for non-root user", key
        assert key in public["sensitive_keys"]
    assert sensitive["merged_system_cfg"]["system_info"]["default_user"]["name"] == "admin"
    assert sensitive["merged_cfg"]["system_info"] == sensitive["merged_system_cfg"]["system_info"]
    assert sensitive["system_info"]["default_user"]["name"] == "admin"
    assert "hostname" not in sensitive["merged_system_cfg"]          # system config only
    assert sensitive["combined_cloud_config"]["hostname"] == "from-user-data"   # user-data merged in


def test_template_using_merged_system_cfg_renders(tmp_path: Path) -> None:
    ud = ("## template: jinja\n#cloud-config\nwrite_files:\n  - path: /etc/who\n"
          "    content: \"{{ merged_system_cfg.system_info.default_user.name }} {{ distro_release }}\"\n")
    root = _boot_init(tmp_path, ud)
    tether(root, "modules", "--mode", "config")
    assert (root / "etc/who").read_text() == "admin bookworm"

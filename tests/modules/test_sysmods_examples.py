"""cloud-init's own module examples convert without errors or unknown-key warnings (for the modules in this
group), so those cloud-configs are accepted unchanged."""

from __future__ import annotations

import pytest

from tests.conftest import compat_dir
from tether import yamlsafe
from tether.modrunner import module_config
from tether.modules import load

DOCS = {"timezone": "cc_timezone", "locale": "cc_locale", "keyboard": "cc_keyboard", "ntp": "cc_ntp",
        "ca_certs": "cc_ca_certs", "package_update_upgrade_install": "cc_package_update_upgrade_install",
        "apt_configure": "cc_apt_configure", "mounts": "cc_mounts", "seed_random": "cc_seed_random",
        "rsyslog": "cc_rsyslog", "phone_home": "cc_phone_home", "power_state_change": "cc_power_state_change",
        "scripts_vendor": "cc_scripts_vendor", "disable_ec2_metadata": "cc_disable_ec2_metadata"}


@pytest.mark.parametrize("name", sorted(DOCS))
def test_module_doc_examples_convert_cleanly(name):
    examples = sorted(compat_dir("cloud-init", "doc", "module-docs", DOCS[name]).glob("example*.yaml"))
    assert examples, f"no examples for {name}"
    mod = load(name)
    for ex in examples:
        data = yamlsafe.load(ex.read_bytes(), source=str(ex))
        warnings: list[str] = []
        module_config(mod, data, warnings)  # raises ConfigErrors on any error
        assert [w for w in warnings if "unknown key" in w] == [], ex

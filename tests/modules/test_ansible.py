from __future__ import annotations

import pytest

from tests.modules.sysmod_support import config_errors, config_warnings, fake_system, parse
from tether.module import ModuleError
from tether.modules import ansible as mod

ANSIBLE_USER = "ansible:x:1002:1002::/home/ansible:/bin/bash\n"
CONTROLLER = {"ansible": {
    "install_method": "pip", "package_name": "ansible", "run_user": "ansible",
    "galaxy": {"actions": [["ansible-galaxy", "collection", "install", "community.general"]]},
    "setup_controller": {
        "repositories": [{"path": "/home/ansible/my-repo/", "source": "git@github.com:example/private.git"}],
        "run_ansible": [{"playbook_dir": "/home/ansible/my-repo", "playbook_name": "start-lxd.yml", "timeout": 120,
                         "forks": 1, "private_key": "/home/ansible/.ssh/id_rsa"},
                        {"playbook_dir": "/home/ansible/my-repo", "playbook_name": "configure-lxd.yml",
                         "become_user": "ansible", "inventory": "new_ansible_hosts"}]}}}
PULL = {"ansible": {"package_name": "ansible-core", "install_method": "distro",
                    "pull": [{"url": "https://github.com/example/vmboot.git", "playbook_names": ["ubuntu.yml"],
                              "accept_host_key": True, "clean": False, "checkout": "main"}]}}


def _exe(root, *paths):
    for p in paths:
        f = root / p.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("#!/bin/false\n")
        f.chmod(0o755)


def _root(root, *exes):
    fake_system(root)
    with (root / "etc/passwd").open("a") as f:
        f.write(ANSIBLE_USER)
    _exe(root, *exes)


def test_good_and_bad_configs():
    a = parse(mod, PULL).ansible
    assert a.pulls[0].argv() == ["ansible-pull", "--url=https://github.com/example/vmboot.git", "--accept-host-key",
                                 "--checkout=main", "ubuntu.yml"]
    runs = parse(mod, CONTROLLER).ansible.setup_controller.run_ansible
    assert runs[1].argv() == ["env", "--chdir=/home/ansible/my-repo", "ansible-playbook", "configure-lxd.yml",
                              "--inventory=new_ansible_hosts", "--become-user=ansible"]
    single = parse(mod, {"ansible": {"pull": {"url": "u", "playbook_name": "site.yml"}}}).ansible
    assert single.pulls[0].argv() == ["ansible-pull", "--url=u", "site.yml"]
    assert config_warnings(mod.Config, {"ansible": {"pull": [{"url": "u", "playbook_name": "s.yml"}]}}) == [
        "ansible.pull[0].playbook_name: deprecated, use playbook_names"]
    assert config_errors(mod.Config, {"ansible": {"pull": [{"url": "u"}]}}) == [
        "ansible.pull[0]: playbook_names: give at least one playbook to run"]
    assert config_errors(mod.Config, {"ansible": {"install_method": "snap"}}) == [
        "ansible.install_method: expected one of 'distro', 'pip', got a string ('snap')"]
    assert config_errors(mod.Config, {"ansible": {"galaxy": {}}}) == ["ansible.galaxy.actions: missing required key"]


def test_distro_install_and_pull_as_root(make_ctx, root, fake_runner):
    _root(root, "/usr/bin/git")
    fake_runner.expect("chroot * apt-get *").expect("chroot * ansible-pull *")
    mod.handle(make_ctx(), parse(mod, PULL))
    cmds = [c.split(" ", 2)[2] for c in fake_runner.commands()]
    assert cmds[1].endswith(" install ansible-core")
    assert cmds[2:] == ["ansible-pull --url=https://github.com/example/vmboot.git --accept-host-key --checkout=main "
                        "ubuntu.yml"]


def test_pip_controller_as_run_user(make_ctx, root, fake_runner):
    _root(root, "/usr/bin/pip3", "/usr/bin/git")
    (root / "usr/lib/python3.11").mkdir(parents=True)
    (root / "usr/lib/python3.11/EXTERNALLY-MANAGED").write_text("[externally-managed]\n")
    envs = []
    fake_runner.expect("chroot * runuser -u ansible -- *", handler=lambda argv, kw: envs.append(kw["env"]))
    mod.handle(make_ctx(), parse(mod, CONTROLLER))
    assert [c.split(" -- ", 1)[1] for c in fake_runner.commands()] == [
        "python3 -m pip install --break-system-packages --user ansible",
        "ansible-galaxy collection install community.general",
        "git clone git@github.com:example/private.git /home/ansible/my-repo/",
        "env --chdir=/home/ansible/my-repo ansible-playbook start-lxd.yml --timeout=120 --forks=1 "
        "--private-key=/home/ansible/.ssh/id_rsa",
        "env --chdir=/home/ansible/my-repo ansible-playbook configure-lxd.yml --inventory=new_ansible_hosts "
        "--become-user=ansible"]
    assert envs[0]["HOME"] == "/home/ansible" and envs[0]["PATH"].startswith("/home/ansible/.local/bin:")


def test_already_installed_for_the_user_and_git_installed_when_missing(make_ctx, root, fake_runner):
    _root(root, "/home/ansible/.local/bin/ansible-pull")
    fake_runner.expect("chroot * apt-get *").expect("chroot * runuser *")
    data = {"ansible": {"install_method": "pip", "run_user": "ansible", "ansible_config": "/etc/ansible/a.cfg",
                        "pull": [{"url": "u", "playbook_names": ["a.yml"]}]}}
    envs = []
    fake_runner.rules.insert(0, ("chroot * runuser *", lambda argv, kw: envs.append(kw["env"])))
    mod.handle(make_ctx(), parse(mod, data))
    assert fake_runner.commands(f"chroot {root} apt-get")[-1].endswith(" install git")
    assert [c.split(" -- ", 1)[1] for c in fake_runner.commands(f"chroot {root} runuser")] == [
        "ansible-pull --url=u a.yml"]
    assert envs[0]["ANSIBLE_CONFIG"] == "/etc/ansible/a.cfg"


def test_first_failure_stops_and_is_named(make_ctx, root, fake_runner):
    _root(root, "/usr/bin/ansible-pull", "/usr/bin/git")
    fake_runner.expect("chroot * runuser -u ansible -- ansible-galaxy *", code=1, stderr="ERROR! no such collection")
    with pytest.raises(ModuleError, match="ansible galaxy ansible-galaxy collection install: .*no such collection"):
        mod.handle(make_ctx(), parse(mod, CONTROLLER))
    assert len(fake_runner.calls) == 1


def test_unknown_run_user(make_ctx, root, fake_runner):
    fake_system(root)
    with pytest.raises(ModuleError, match=r"ansible.run_user: no user 'ansible' in .*/etc/passwd"):
        mod.handle(make_ctx(), parse(mod, CONTROLLER))
    assert fake_runner.calls == []


def test_no_runnable_system(make_ctx, root, fake_runner):
    ctx = make_ctx()
    mod.handle(ctx, parse(mod, PULL))
    assert ctx.warnings == [f"ansible: nothing run, {root} holds no runnable system"]
    assert fake_runner.calls == []


def test_single_pull_mapping_is_deprecated_but_runs(make_ctx, root, fake_runner):
    _root(root, "/usr/bin/ansible-pull", "/usr/bin/git")
    fake_runner.expect("chroot * ansible-pull *")
    ctx = make_ctx()
    mod.handle(ctx, parse(mod, {"ansible": {"pull": {"url": "u", "playbook_name": "site.yml"}}}))
    assert fake_runner.commands() == [f"chroot {root} ansible-pull --url=u site.yml"]
    assert ctx.warnings == ["ansible.pull: one mapping is deprecated, give a list of them"]

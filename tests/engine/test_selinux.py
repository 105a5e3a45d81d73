"""os.selinux.mode: the resulting mode, the boot entry's command line, and the relabel of the new root."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_root, needs_root, needs_tool
from tests.fakes import FakeRunner
from tests.modules.sysmod_support import real_chroot_root
from tether.engine import selinux
from tether.engine.bootsetup import entry_cmdline, extra_cmdline
from tether.engine.hostconfig import parse_host_config, to_data
from tether.engine.osconfig import OsConfigError, finish
from tether.runner import Runner
from tether.target import Target

CONTEXTS = "/etc/selinux/targeted/contexts/files/file_contexts"


def image_root(tmp_path: Path, *, config: str | None = "SELINUX=enforcing\nSELINUXTYPE=targeted\n",
               setfiles: bool = True, policy: bool = True, shell: bool = True) -> Target:
    files: dict[str, str] = {}
    if config is not None:
        files["etc/selinux/config"] = config
    if policy:
        files[CONTEXTS.lstrip("/")] = "/.* system_u:object_r:default_t:s0\n"
    if setfiles:
        files["usr/sbin/setfiles"] = "#!/bin/sh\n"
    if shell:
        files["bin/sh"] = "#!/bin/true\n"
    root = make_root(tmp_path / "img", files)
    if shell:
        os.chmod(root / "bin/sh", 0o755)
    return Target.at(root)


def hc(mode: str | None) -> Any:
    return parse_host_config({"os": {"selinux": {"mode": mode}}} if mode else {})


@pytest.mark.parametrize("asked,image,expect", [
    (None, None, None), (None, "disabled", "disabled"), (None, "permissive", "permissive"),
    (None, "enforcing", "enforcing"),
    ("disabled", None, None), ("disabled", "enforcing", "disabled"),
    ("permissive", "disabled", "permissive"), ("permissive", "enforcing", "permissive"),
    ("enforcing", "disabled", "enforcing"), ("enforcing", "permissive", "enforcing"),
])
def test_final_mode_table(asked: Any, image: str | None, expect: str | None) -> None:
    assert selinux.final_mode(asked, image) == expect


@pytest.mark.parametrize("asked", ["permissive", "enforcing"])
def test_final_mode_needs_selinux_in_the_image(asked: Any) -> None:
    with pytest.raises(OsConfigError, match=f"os.selinux.mode: {asked} asks for SELinux"):
        selinux.final_mode(asked, None)


def test_final_mode_rejects_a_broken_image_config() -> None:
    with pytest.raises(OsConfigError, match="SELINUX=maybe"):
        selinux.final_mode(None, "maybe")


@pytest.mark.parametrize("mode,words", [
    (None, []), ("disabled", ["selinux=0"]), ("permissive", ["security=selinux", "selinux=1", "enforcing=0"]),
    ("enforcing", ["security=selinux", "selinux=1"]),
])
def test_boot_entry_words(mode: str | None, words: list[str]) -> None:
    spec = to_data(parse_host_config({"os": {"kernelCommandLine": {"extraCommandLine": ["console=ttyS0"]},
                                             **({"selinux": {"mode": mode}} if mode else {})}}))
    assert extra_cmdline(spec) == ["console=ttyS0", *words]


def test_an_update_swaps_the_old_modes_words_for_the_new() -> None:
    old = to_data(hc("disabled"))
    new = to_data(hc("enforcing"))
    running = ["root=PARTUUID=x", "console=ttyS0", "selinux=0", "tether.entry=a"]
    assert entry_cmdline(running, extra_cmdline(old), extra_cmdline(new)) == \
        "rw console=ttyS0 security=selinux selinux=1"
    # back to "leave it to the image": the words go, nothing replaces them
    assert entry_cmdline(["console=ttyS0", "security=selinux", "selinux=1"], extra_cmdline(new),
                         extra_cmdline(to_data(hc(None)))) == "rw console=ttyS0"


def test_relabel_runs_the_images_setfiles_in_the_new_root(tmp_path: Path) -> None:
    target = image_root(tmp_path)
    runner = FakeRunner().expect(f"chroot {target.root} /usr/sbin/setfiles -m {CONTEXTS} /")
    assert finish(target, hc("permissive"), runner) == []
    assert len(runner.calls) == 1
    # the image's own enforcing mode is relabelled for too, though the host configuration says nothing
    runner = FakeRunner().expect(f"chroot {target.root} /usr/sbin/setfiles -m {CONTEXTS} /")
    finish(target, hc(None), runner)
    assert len(runner.calls) == 1


@pytest.mark.parametrize("mode,image", [("disabled", "SELINUX=enforcing\nSELINUXTYPE=targeted\n"),
                                        (None, "SELINUX=disabled\n"), (None, None)])
def test_no_relabel_when_selinux_ends_up_off(tmp_path: Path, mode: str | None, image: str | None) -> None:
    runner = FakeRunner()  # any command would fail the test
    assert finish(image_root(tmp_path, config=image), hc(mode), runner) == []
    assert runner.calls == []


def test_a_failing_setfiles_names_the_key(tmp_path: Path) -> None:
    target = image_root(tmp_path)
    runner = FakeRunner().expect("chroot *setfiles*", code=1, stderr="setfiles: bad context\n")
    with pytest.raises(OsConfigError, match="os.selinux.mode: relabelling the new root failed: .*bad context"):
        finish(target, hc("enforcing"), runner)


@pytest.mark.parametrize("kwargs,message", [
    ({"setfiles": False}, "the image has no setfiles"),
    ({"policy": False}, "the image has no policy 'targeted'"),
    ({"config": "SELINUX=enforcing\n"}, "names no SELINUXTYPE"),
])
def test_relabel_needs_the_images_tools(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(OsConfigError, match=f"os.selinux.mode: SELinux is enforcing, but .*{message}"):
        finish(image_root(tmp_path, **kwargs), hc("enforcing"), FakeRunner())


def test_a_root_that_cannot_be_entered_relabels_at_first_boot(tmp_path: Path) -> None:
    target = image_root(tmp_path, shell=False)
    runner = FakeRunner()
    notes = finish(target, hc("enforcing"), runner)
    assert runner.calls == []
    assert target.exists("/.autorelabel")
    assert notes and "/.autorelabel makes its first boot relabel /" in notes[0]


@needs_root()
@needs_tool("chroot", "ldd")
def test_relabel_really_runs_chrooted(tmp_path: Path) -> None:
    # a real chroot with the host's shell; the image's "setfiles" records how it was called and from where
    target = image_root(tmp_path, setfiles=False, shell=False)
    real_chroot_root(target.root)
    target.write("/usr/sbin/setfiles", '#!/bin/sh\necho "$*" > /setfiles.args\n', mode=0o755)
    assert finish(target, hc("enforcing"), Runner()) == []
    assert target.read_text("/setfiles.args") == f"-m {CONTEXTS} /\n"

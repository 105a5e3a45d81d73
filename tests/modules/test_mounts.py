from __future__ import annotations

import os

import pytest

from tests.conftest import needs_root, needs_tool
from tests.modules.sysmod_support import apply, apply_twice, config_errors, parse
from tether.modules import mounts as mod
from tether.runner import Runner

GIB = 1 << 30
FSTAB = "# /etc/fstab: static file system information.\nUUID=abcd / ext4 errors=remount-ro 0 1\n" \
        "/dev/sdb1 /mnt ext4 defaults 0 2\n"
EXAMPLE1 = {"mounts": [["/dev/ephemeral0", "/mnt", "auto", "defaults,noexec"], ["sdc", "/opt/data"],
                       ["xvdh", "/opt/data", "auto", "defaults,nofail", "0", "0"]],
            "mount_default_fields": ["None", "None", "auto", "defaults,nofail", "0", "2"]}


def test_good_and_bad_configs():
    assert parse(mod, EXAMPLE1).mounts[1] == ("sdc", "/opt/data")
    assert parse(mod, {"mounts": [["/dev/vdb", "/data", "ext4", "defaults", 0, 2]]}).mounts[0][4] == 0
    assert config_errors(mod.Config, {"mounts": [[]]}) == ["(top): mounts[0]: an entry has 1 to 6 fields, got 0"]
    errs = config_errors(mod.Config, {"mounts": "sdc"})
    assert len(errs) == 1 and errs[0].startswith("mounts: expected a list of") and errs[0].endswith("('sdc')")
    assert config_errors(mod.Config, {"mount_default_fields": [None, None]}) == [
        "(top): mount_default_fields: exactly 6 fields, got 2"]
    assert config_errors(mod.Config, {"swap": {"size": "2X"}}) == [
        "swap: size '2X' is not a size like 2G, 512M or a number of bytes"]
    assert config_errors(mod.Config, {"swap": {"filename": "swap.img"}}) == [
        "swap: filename 'swap.img' must be an absolute path"]


def test_fstab_entries_are_written_once_and_replace_image_lines(make_ctx, root):
    (root / "etc/fstab").write_text(FSTAB)
    changed = apply_twice(mod, make_ctx(), EXAMPLE1, root)
    assert changed == {"/etc/fstab": "changed", "/mnt": "added", "/opt": "added", "/opt/data": "added"}
    assert (root / "etc/fstab").read_text() == (
        "# /etc/fstab: static file system information.\nUUID=abcd / ext4 errors=remount-ro 0 1\n"
        "# replaced by tether: /dev/sdb1 /mnt ext4 defaults 0 2\n"
        "/dev/ephemeral0\t/mnt\tauto\tdefaults,noexec,comment=tether\t0\t2\n"
        "/dev/sdc\t/opt/data\tauto\tdefaults,nofail,comment=tether\t0\t2\n"
        "/dev/xvdh\t/opt/data\tauto\tdefaults,nofail,comment=tether\t0\t0\n")


def test_removed_entries_disappear_and_spaces_are_escaped(make_ctx, root):
    apply_twice(mod, make_ctx(), EXAMPLE1, root)
    data = {"mounts": [["/dev/sr0", "/mnt/Cdrom Drive", "auto", "uid=1000,gid=1000", "0", "0"]]}
    changed = apply_twice(mod, make_ctx(), data, root)
    assert changed == {"/etc/fstab": "changed", "/mnt/Cdrom Drive": "added"}
    assert (root / "etc/fstab").read_text() == (
        "/dev/sr0\t/mnt/Cdrom\\040Drive\tauto\tuid=1000,gid=1000,comment=tether\t0\t0\n")


def test_default_fields_and_skipped_entries(make_ctx, root):
    ctx = make_ctx()
    apply_twice(mod, ctx, {"mounts": [["LABEL=data", "/data"], ["ephemeral0", "/mnt"], ["sdd"]]}, root)
    assert (root / "etc/fstab").read_text() == (
        "LABEL=data\t/data\tauto\tdefaults,nofail,x-systemd.after=tether-network.service,comment=tether\t0\t2\n")
    assert any("ephemeral0" in w and "device mapping" in w for w in ctx.warnings)


def test_swap_file_created_once(make_ctx, root, fake_runner):
    def fallocate(argv, kw):
        with open(argv[-1], "wb") as f:
            f.truncate(4096)
    fake_runner.expect("fallocate -l 2048M *", handler=fallocate).expect("mkswap *")
    changed = apply_twice(mod, make_ctx(), {"swap": {"filename": "/swapfile", "size": "2G", "maxsize": "2G"}}, root)
    assert changed == {"/etc/fstab": "added", "/swapfile": "added"}
    assert (root / "etc/fstab").read_text() == "/swapfile\tnone\tswap\tsw,comment=tether\t0\t0\n"
    assert (root / "swapfile").stat().st_mode & 0o777 == 0o600
    assert fake_runner.commands() == [f"fallocate -l 2048M {root}/swapfile", f"mkswap {root}/swapfile"]


def test_swap_falls_back_to_dd(make_ctx, root, fake_runner):
    def dd(argv, kw):
        open(argv[2][3:], "wb").close()
    fake_runner.expect("fallocate *", code=1).expect("dd *", handler=dd).expect("mkswap *")
    mod.handle(make_ctx(), parse(mod, {"swap": {"filename": "/var/swap", "size": "64M"}}))
    assert [c.split()[0] for c in fake_runner.commands()] == ["fallocate", "dd", "mkswap"]
    assert (root / "var/swap").exists()


def test_size_zero_means_no_swap(make_ctx, root):
    assert apply_twice(mod, make_ctx(), {"swap": {"size": 0}}, root) == {"/etc/fstab": "added"}
    assert (root / "etc/fstab").read_text() == "\n"


def test_suggested_swap_sizes():
    assert mod.suggested_swap_size(2 * GIB, None, None) == 2 * GIB
    assert mod.suggested_swap_size(8 * GIB, None, None) == 4 * GIB
    assert mod.suggested_swap_size(64 * GIB, None, None) == 8 * GIB
    assert mod.suggested_swap_size(64 * GIB, None, 100 * GIB) == 8 * GIB
    assert mod.suggested_swap_size(8 * GIB, 10485760, None) == 10485760
    assert mod.suggested_swap_size(8 * GIB, None, 4 * GIB) == GIB      # a quarter of the free space
    assert mod.suggested_swap_size(8 * GIB, 6 * GIB, 2 * GIB) == int(2 * GIB * 0.9)
    assert mod.parse_size("1.5G", "x") == 3 * GIB // 2 and mod.parse_size("512", "x") == 512


def test_live_activates(make_ctx, root, fake_runner):
    fake_runner.expect("systemctl daemon-reload").expect("mount -a")
    ctx = make_ctx(live=True)
    mod.handle(ctx, parse(mod, {"mounts": [["/dev/vdb", "/data"]]}))
    mod.handle(ctx, parse(mod, {"mounts": [["/dev/vdb", "/data"]]}))
    assert fake_runner.commands() == ["systemctl daemon-reload", "mount -a"]


@needs_root()
@needs_tool("fallocate", "mkswap")
def test_real_swapfile(make_ctx, root):
    mod.handle(make_ctx(runner=Runner()), parse(mod, {"swap": {"filename": "/swap.img", "size": "16M"}}))
    swap = root / "swap.img"
    if not swap.exists():
        pytest.fail("swap file not created")
    assert swap.stat().st_size == 16 << 20
    with open(swap, "rb") as f:
        f.seek(os.sysconf("SC_PAGE_SIZE") - 10)
        assert f.read(10) == b"SWAPSPACE2"


def test_datasource_and_alias_names_resolve_like_disk_setup(make_ctx, root):
    """ephemeral0 comes from the datasource's block-device-mapping, as disk_setup resolves it."""
    ctx = make_ctx()
    ctx.instance.metadata["block-device-mapping"] = {"ephemeral0": "/dev/nonexistent-eph0"}
    apply(mod, ctx, {"mounts": [["ephemeral0", "/mnt/eph"], ["ephemeral1", "/mnt/none"]]}, root)
    fstab = (root / "etc/fstab").read_text()
    assert "/dev/nonexistent-eph0\t/mnt/eph\t" in fstab or "/dev/nonexistent-eph0 /mnt/eph " in fstab
    assert "/mnt/none" not in fstab
    assert any("mounts[1]" in w for w in ctx.warnings)

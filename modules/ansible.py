"""ansible: installs Ansible (``install_method`` distro: the system's package; pip: ``python3 -m pip install``,
``--user`` for ``run_user``), then runs ``ansible-pull`` for each ``pull`` entry, the ``galaxy`` actions, and the
``setup_controller`` steps (``git clone`` of repositories, ``ansible-playbook`` in a playbook directory).

Options become ``--key=value`` arguments (``_`` spelled ``-``; ``true`` is a bare ``--key``, ``false`` leaves it
out), as cloud-init passes them. Commands run as ``run_user`` (root when unset) inside the target: live, or
chrooted into a root that holds a system; otherwise one warning says nothing was run. git is installed when a
step needs it and the target lacks it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from tether import accounts, log, packages
from tether.convert import meta
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.runas import run_as

NAME = "ansible"
STAGE = Stage.FINAL
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("ansible",)
LOG = log.get(__name__)
TIMEOUT = 3600.0
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def options(obj: Any, skip: tuple[str, ...] = ()) -> list[str]:
    """``--key=value`` for each given option of a dataclass (and its ``extra`` keys), in field order."""
    values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name not in skip and f.name != "extra"}
    values.update(getattr(obj, "extra", {}) or {})
    out = []
    for key, value in values.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        out.append(flag if value is True else f"{flag}={value}")
    return out


@dataclass(frozen=True)
class Pull:
    url: str
    playbook_names: tuple[str, ...] = ()
    playbook_name: str | None = field(default=None, metadata=meta(deprecated="use playbook_names"))
    accept_host_key: bool = False
    clean: bool = False
    full: bool = False
    diff: bool = False
    verify_commit: bool = False
    ssh_common_args: str | None = None
    scp_extra_args: str | None = None
    sftp_extra_args: str | None = None
    private_key: str | None = None
    checkout: str | None = None
    module_path: str | None = None
    timeout: str | None = None
    connection: str | None = None
    vault_id: str | None = None
    vault_password_file: str | None = None
    inventory: str | None = None
    module_name: str | None = None
    sleep: str | None = None
    tags: str | None = None
    skip_tags: str | None = None

    def __post_init__(self) -> None:
        if not self.playbook_names and not self.playbook_name:
            raise ValueError("playbook_names: give at least one playbook to run")

    def argv(self) -> list[str]:
        names = list(self.playbook_names) + ([self.playbook_name] if self.playbook_name else [])
        return ["ansible-pull", f"--url={self.url}", *options(self, ("url", "playbook_names", "playbook_name")),
                *names]


@dataclass(frozen=True)
class Repository:
    path: str
    source: str


Number = int | float


@dataclass(frozen=True)
class RunAnsible:
    """One ``ansible-playbook`` run; keys beyond these are passed on as options too (as cloud-init does)."""

    OPEN = True
    playbook_name: str
    playbook_dir: str
    become_password_file: str | None = None
    connection_password_file: str | None = None
    list_hosts: bool = False
    syntax_check: bool = False
    timeout: Number | None = None
    vault_id: str | None = None
    vault_password_file: str | None = None
    background: Number | None = None
    check: bool = False
    diff: bool = False
    module_path: str | None = None
    poll: Number | None = None
    args: str | None = None
    extra_vars: str | None = None
    forks: Number | None = None
    inventory: str | None = None
    scp_extra_args: str | None = None
    sftp_extra_args: str | None = None
    private_key: str | None = None
    connection: str | None = None
    module_name: str | None = None
    sleep: str | None = None
    tags: str | None = None
    skip_tags: str | None = None
    extra: dict[str, str | Number | bool] = field(default_factory=dict)

    def argv(self) -> list[str]:
        # env --chdir: the playbook's directory inside the target, also under chroot (where a cwd would not hold)
        return ["env", f"--chdir={self.playbook_dir}", "ansible-playbook", self.playbook_name,
                *options(self, ("playbook_name", "playbook_dir"))]


@dataclass(frozen=True)
class Controller:
    repositories: tuple[Repository, ...] = ()
    run_ansible: tuple[RunAnsible, ...] = ()


@dataclass(frozen=True)
class Galaxy:
    actions: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Ansible:
    install_method: Literal["distro", "pip"] = "distro"
    package_name: str = "ansible"
    run_user: str | None = None
    ansible_config: str | None = None
    pull: tuple[Pull, ...] | Pull = ()
    galaxy: Galaxy | None = None
    setup_controller: Controller | None = None

    @property
    def pulls(self) -> tuple[Pull, ...]:
        return (self.pull,) if isinstance(self.pull, Pull) else self.pull


@dataclass(frozen=True)
class Config:
    ansible: Ansible | None = None


class StepRunner:
    """Runs the steps as ``run_user`` (or root) in the target, with ~/.local/bin on PATH for pip installs."""

    def __init__(self, ctx: ModuleContext, cfg: Ansible) -> None:
        self.ctx, self.user = ctx, cfg.run_user
        home = "/root"
        if cfg.run_user:
            entry = accounts.read_passwd(ctx.target).get(cfg.run_user)
            if entry is None:
                raise ModuleError(f"ansible.run_user: no user {cfg.run_user!r} in {ctx.target.root}/etc/passwd")
            home = entry.home
        self.home = home
        self.env = {"PATH": f"{home}/.local/bin:{SYSTEM_PATH}"}
        if cfg.ansible_config:
            self.env["ANSIBLE_CONFIG"] = cfg.ansible_config

    def __call__(self, argv: list[str]) -> None:
        if self.user:
            run_as(self.ctx, self.user, argv, env=self.env, timeout=TIMEOUT)
        else:
            self.ctx.run_in_target(argv, env=self.env, timeout=TIMEOUT)

    def has(self, exe: str) -> bool:
        local = f"{self.home}/.local/bin/{exe}"
        return packages.has_executable(self.ctx, exe) or packages.has_executable(self.ctx, local)


def handle(ctx: ModuleContext, cfg: Config) -> None:
    a = cfg.ansible
    if a is None:
        return
    if not ctx.can_run_in_target():
        ctx.warn(f"ansible: nothing run, {ctx.target.root} holds no runnable system")
        return
    if isinstance(a.pull, Pull):
        ctx.warn("ansible.pull: one mapping is deprecated, give a list of them")
    run = StepRunner(ctx, a)
    _install(ctx, a, run)
    if (a.pulls or (a.setup_controller and a.setup_controller.repositories)) and not run.has("git"):
        packages.install(ctx, ["git"], "ansible (git)")
    steps: list[tuple[str, list[str]]] = [(f"pull {p.url}", p.argv()) for p in a.pulls]
    steps += [(f"galaxy {' '.join(action[:3])}", list(action)) for action in (a.galaxy.actions if a.galaxy else ())]
    if a.setup_controller:
        steps += [(f"clone {r.source}", ["git", "clone", r.source, r.path]) for r in a.setup_controller.repositories]
        steps += [(f"playbook {r.playbook_name}", r.argv()) for r in a.setup_controller.run_ansible]
    for what, argv in steps:
        try:
            run(argv)
        except CommandError as e:
            # later steps build on earlier ones (a playbook in a cloned repository): stop at the first failure
            raise ModuleError(f"ansible {what}: {e}") from None


def _install(ctx: ModuleContext, a: Ansible, run: StepRunner) -> None:
    if run.has("ansible-pull"):
        return
    if a.install_method == "distro":
        packages.install(ctx, [a.package_name], "ansible")
        return
    if not packages.has_executable(ctx, "pip3"):
        packages.install(ctx, ["python3-pip"], "ansible (pip)")
    argv = ["python3", "-m", "pip", "install"]
    if any(ctx.target.path("/usr/lib").glob("python3*/EXTERNALLY-MANAGED")):
        argv.append("--break-system-packages")   # the distribution's Python refuses pip installs otherwise
    if a.run_user:
        argv.append("--user")
    try:
        run([*argv, a.package_name])
    except CommandError as e:
        raise ModuleError(f"ansible: pip install {a.package_name}: {e}") from None

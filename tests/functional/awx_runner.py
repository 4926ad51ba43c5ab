"""Run a playbook of this repository the way AWX does: through ansible-runner.

AWX (and Ansible Automation Platform) never calls ``ansible-playbook`` itself. For each job it
writes a *private data dir* and hands it to ansible-runner:

    <private_data_dir>/
        project/            the project checkout (here: a symlink to this repository)
        inventory/hosts     the job's inventory
        env/extravars       the job template's extra vars, survey answers included
        env/envvars         environment from credentials (AWS keys, ...) and settings
        env/settings        runner settings
        env/cmdline         extra ansible-playbook arguments (--limit, --check, ...)
        artifacts/<ident>/  written by runner: rc, status, stdout, job_events/*.json

ansible-runner runs ``ansible-playbook`` with ``project/`` as its working directory, so the
project's own ``ansible.cfg`` applies (as in AWX), and streams every Ansible callback as an
event. This module builds such a directory and returns what AWX would store about the job.

Usage::

    job = run_job(tmp_path, "playbooks/provision.yml", extravars={...}, envvars={...})
    assert job.rc == 0 and job.status == "successful"
    assert job.stats["changed"]["localhost"] > 0

Nothing here knows about the target: the provision test points ``extravars`` at moto, the local
demo test passes the imported ``inventories/local`` as ``inventory`` and runs ``deploy.yml``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any

import ansible_runner
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Environment a developer's shell may carry that AWX's job environment never has: runner
# copies os.environ, so these are removed for the duration of the run.
_DROPPED_ENV_PREFIXES = ("ANSIBLE_", "AWS_", "MOLECULE_")


@dataclass
class RunnerJob:
    """What AWX records about a finished job."""

    private_data_dir: pathlib.Path
    rc: int
    status: str
    events: list[dict[str, Any]]
    stats: dict[str, Any]
    stdout: str
    artifact_dir: pathlib.Path
    counts: dict[str, int] = field(default_factory=dict)

    def event_types(self) -> list[str]:
        return [e.get("event", "") for e in self.events]

    def task_events(self, task: str, event: str = "runner_on_ok") -> list[dict[str, Any]]:
        """The events of ``event`` type of the task named ``task`` (role prefix ignored)."""
        return [
            e
            for e in self.events
            if e.get("event") == event and e.get("event_data", {}).get("task", "").split(" : ")[-1] == task
        ]

    def host_stat(self, key: str, host: str = "localhost") -> int:
        """A recap counter (changed, ok, failures, ...) of ``host``; 0 when absent."""
        return int((self.stats.get(key) or {}).get(host, 0))


def build_private_data_dir(
    base: pathlib.Path,
    *,
    project: pathlib.Path = ROOT,
    inventory: dict[str, Any] | str | None = None,
    extravars: dict[str, Any] | None = None,
    envvars: dict[str, str] | None = None,
    settings: dict[str, Any] | None = None,
    cmdline: list[str] | None = None,
) -> pathlib.Path:
    """Lay out an AWX-like private data dir under ``base`` and return it."""
    pdd = pathlib.Path(base)
    (pdd / "env").mkdir(parents=True, exist_ok=True)
    (pdd / "inventory").mkdir(exist_ok=True)
    link = pdd / "project"
    if not link.exists():
        link.symlink_to(project, target_is_directory=True)
    if inventory is None:
        # AWX's "Demo Inventory": the controller itself.
        inventory = {"all": {"hosts": {"localhost": {"ansible_connection": "local"}}}}
    inventory_text = inventory if isinstance(inventory, str) else yaml.safe_dump(inventory, sort_keys=False)
    (pdd / "inventory" / "hosts").write_text(inventory_text)
    (pdd / "env" / "extravars").write_text(json.dumps(extravars or {}, indent=2))
    # The runner's interpreter first on PATH, so "ansible-playbook" is this venv's.
    env = {"PATH": os.pathsep.join([str(pathlib.Path(sys.executable).parent), os.environ.get("PATH", "")])}
    env.update(envvars or {})
    (pdd / "env" / "envvars").write_text(json.dumps(env, indent=2))
    (pdd / "env" / "settings").write_text(json.dumps({"suppress_ansible_output": True, **(settings or {})}))
    if cmdline:
        (pdd / "env" / "cmdline").write_text(shlex.join(cmdline))
    return pdd


@contextlib.contextmanager
def _job_environment():
    """os.environ without the developer's Ansible/AWS settings (runner copies os.environ)."""
    saved = dict(os.environ)
    try:
        for key in list(os.environ):
            if key.startswith(_DROPPED_ENV_PREFIXES):
                del os.environ[key]
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class PendingJob:
    """A job started with :func:`start_job`; :meth:`wait` returns its :class:`RunnerJob`."""

    def __init__(self, pdd: pathlib.Path, ident: str, thread: Any, runner: Any):
        self.private_data_dir = pdd
        self.ident = ident
        self._thread = thread
        self._runner = runner

    def wait(self, timeout: float | None = None) -> RunnerJob:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"ansible-runner job {self.ident} in {self.private_data_dir} still running")
        return _collect(self.private_data_dir, self.ident, self._runner)


def start_job(
    base: pathlib.Path,
    playbook: str,
    *,
    ident: str = "1",
    timeout: int | None = 600,
    **layout: Any,
) -> PendingJob:
    """Build the private data dir under ``base`` and start ``playbook`` (relative to the project).

    The job runs in a thread (``ansible_runner.run_async``); its environment is fixed before
    this returns, so the caller may go on running other things.
    """
    pdd = build_private_data_dir(base, **layout)
    with _job_environment():
        thread, runner = ansible_runner.run_async(
            private_data_dir=str(pdd),
            playbook=playbook,
            ident=ident,
            timeout=timeout,
            quiet=True,
        )
    return PendingJob(pdd, ident, thread, runner)


def run_job(base: pathlib.Path, playbook: str, **kwargs: Any) -> RunnerJob:
    """Run ``playbook`` as an AWX job and return what AWX records about it."""
    return start_job(base, playbook, **kwargs).wait()


def _collect(pdd: pathlib.Path, ident: str, runner: Any) -> RunnerJob:
    events = list(runner.events)
    artifact_dir = pdd / "artifacts" / ident
    stdout_file = artifact_dir / "stdout"
    counts: dict[str, int] = {}
    for event in events:
        counts[event.get("event", "")] = counts.get(event.get("event", ""), 0) + 1
    return RunnerJob(
        private_data_dir=pdd,
        rc=runner.rc,
        status=runner.status,
        events=events,
        stats=runner.stats or {},
        stdout=stdout_file.read_text() if stdout_file.exists() else "",
        artifact_dir=artifact_dir,
        counts=counts,
    )

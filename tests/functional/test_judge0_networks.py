"""Issue 15: the Judge0 API is open to the app hosts wherever they were provisioned.

The judge0 role's defaults and vars are evaluated by ansible-playbook against a real inventory:
an app group as the aws_ec2 inventory gives it (private_ip_address), a host reached by its
address, and one reached by name only.
"""

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "judge0"

INVENTORY = {
    "app": {
        "hosts": {
            # The default VPC (172.31.0.0/16), which the old fixed 10.0.0.0/16 missed.
            "app-1": {"private_ip_address": "172.31.5.10", "ansible_host": "54.1.2.3"},
            "app-2": {"ansible_host": "172.31.7.20"},
            "app-3": {"ansible_host": "app-3.internal.example"},
        }
    },
    "judge0": {"hosts": {"judge0-1": {"ansible_connection": "local"}}},
}

PLAYBOOK = f"""
- name: Evaluate who may reach the Judge0 API
  hosts: judge0
  gather_facts: false
  vars_files:
    - {ROLE}/defaults/main.yml
    - {ROLE}/vars/main.yml
  tasks:
    - name: Print the allowed networks
      ansible.builtin.debug:
        msg: "ALLOWED={{{{ __judge0_allowed_cidrs | to_json }}}}"
"""


def allowed(tmp_path, **extra_vars):
    (tmp_path / "inventory.json").write_text(json.dumps(INVENTORY))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "vars.json").write_text(json.dumps({"ansible_python_interpreter": sys.executable, **extra_vars}))
    run = subprocess.run(
        [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "inventory.json"),
         "-e", f"@{tmp_path / 'vars.json'}", str(tmp_path / "play.yml")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    line = next(text for text in run.stdout.splitlines() if "ALLOWED=" in text)
    return json.loads(line.split("ALLOWED=", 1)[1].rstrip('"').replace('\\"', '"'))


def test_by_default_each_app_host_is_allowed_by_its_private_address(tmp_path):
    assert allowed(tmp_path) == ["172.31.5.10/32", "172.31.7.20/32"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"judge0_allowed_cidrs": ["10.0.1.0/24"]}, ["10.0.1.0/24"]),  # set: exactly that
        ({"judge0_allowed_group": ""}, []),  # turned off: nobody but the host
        ({"judge0_allowed_group": "workers"}, []),  # a group the inventory does not have
    ],
)
def test_an_explicit_list_or_no_group(tmp_path, extra, expected):
    assert allowed(tmp_path, **extra) == expected

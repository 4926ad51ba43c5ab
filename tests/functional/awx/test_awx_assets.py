"""The AWX side of the project as files: execution environment, job templates, surveys.

* ``ansible-builder create`` turns awx/execution-environment.yml into a build context that
  carries this collection's Galaxy, Python and system dependencies (no image is built here).
* awx/job_templates.yml passes ``--syntax-check`` and runs against a stand-in of awx.awx made
  from the real modules' argument specs (tests/functional/awx/awx_awx_argspecs.yml): every
  option, type and choice the playbook passes is checked as the real modules would, and the
  objects it would create are compared with what the docs promise.
* The surveys are valid AWX survey specs with the questions each job needs, and nothing
  under awx/ holds a credential's secret.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml
from ansible_collections.ec2ops.stack.plugins.module_utils._judge0_version import gate

ROOT = pathlib.Path(__file__).resolve().parents[3]
AWX = ROOT / "awx"
BIN = pathlib.Path(sys.executable).parent
SURVEY_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}
QUESTION_KEYS = {"question_name", "question_description", "required", "type", "variable", "default", "choices"}


def load_yaml(path):
    return yaml.safe_load(pathlib.Path(path).read_text())


def surveys():
    return {p.stem: load_yaml(p) for p in sorted((AWX / "surveys").glob("*.yml"))}


def ansible_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "AWS_", "CONTROLLER_"))}
    env.update(
        PATH=os.pathsep.join([str(BIN), env.get("PATH", "")]),
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        **extra,
    )
    return env


# Execution environment ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def ee_context(tmp_path_factory):
    context = tmp_path_factory.mktemp("ee-context")
    completed = subprocess.run(
        [
            str(BIN / "ansible-builder"),
            "create",
            "-f",
            str(AWX / "execution-environment.yml"),
            "-c",
            str(context),
            "--output-filename",
            "Containerfile",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return context


def test_ee_build_context_has_the_collection_dependencies(ee_context):
    galaxy = load_yaml(ee_context / "_build" / "requirements.yml")
    assert galaxy == load_yaml(ROOT / "requirements.yml")
    # Every dependency the collection declares for Galaxy users is installed into the image.
    declared = load_yaml(ROOT / "galaxy.yml")["dependencies"]
    assert {c["name"] for c in galaxy["collections"]} == set(declared)
    assert {c["name"]: c["version"] for c in galaxy["collections"]} == declared


def test_ee_build_context_has_the_python_and_system_dependencies(ee_context):
    requirements = (ee_context / "_build" / "requirements.txt").read_text()
    assert requirements == (ROOT / "requirements" / "controller.txt").read_text()
    names = {re.split(r"[<>=!~ ]", line, maxsplit=1)[0] for line in requirements.splitlines() if line[:1].isalpha()}
    assert {"boto3", "botocore", "docker", "jmespath"} <= names
    # The lock pins every pip install of the build.
    assert (ee_context / "_build" / "configs" / "constraints.txt").read_text() == (
        ROOT / "requirements" / "constraints.txt"
    ).read_text()
    bindep = (ee_context / "_build" / "bindep.txt").read_text()
    assert "openssh-clients [platform:rpm]" in bindep
    assert "git-core [platform:rpm]" in bindep


def test_ee_containerfile_installs_them_pinned(ee_context):
    containerfile = (ee_context / "Containerfile").read_text()
    base = containerfile.split("FROM base AS galaxy")[0]
    assert 'ARG EE_BASE_IMAGE="quay.io/centos/centos:stream9"' in containerfile
    assert 'ARG PYCMD="/usr/bin/python3.12"' in containerfile
    assert "ansible-core>=2.17,<2.22 ansible-runner>=2.4" in containerfile
    # The constraint is in force before the base stage installs ansible-core and runner.
    assert base.index("ENV PIP_CONSTRAINT=/etc/ec2ops-constraints.txt") < base.index("$ANSIBLE_INSTALL_REFS\n")
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" in containerfile
    assert "--user-pip=requirements.txt --user-bindep=bindep.txt" in containerfile
    assert containerfile.rstrip().endswith('CMD ["bash"]')


# Job templates -----------------------------------------------------------------------------


def test_job_templates_playbook_syntax(tmp_path):
    completed = subprocess.run(
        [str(BIN / "ansible-playbook"), "--syntax-check", str(AWX / "job_templates.yml")],
        cwd=ROOT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


STANDIN_MODULE = """#!/usr/bin/python
# Stand-in for awx.awx.{name}, generated by tests/functional/awx/test_awx_assets.py from the
# real module's argument spec: validates the arguments, records them, changes nothing.
import json
import os

from ansible.module_utils.basic import AnsibleModule

SPEC = json.loads({spec!r})


def main():
    module = AnsibleModule(argument_spec=SPEC, supports_check_mode=True)
    with open(os.environ["AWX_STANDIN_RECORD"], "a") as record:
        record.write(json.dumps({{"module": "{name}", "params": module.params}}) + "\\n")
    module.exit_json(changed=False)


if __name__ == "__main__":
    main()
"""


@pytest.fixture(scope="module")
def awx_objects(tmp_path_factory):
    """Run awx/job_templates.yml against the awx.awx stand-in; return the calls it made."""
    base = tmp_path_factory.mktemp("awx-standin")
    modules = base / "ansible_collections" / "awx" / "awx" / "plugins" / "modules"
    modules.mkdir(parents=True)
    (base / "ansible_collections" / "awx" / "awx" / "galaxy.yml").write_text(
        "namespace: awx\nname: awx\nversion: 0.0.0\nreadme: README.md\nauthors: [test]\n"
    )
    specs = load_yaml(pathlib.Path(__file__).with_name("awx_awx_argspecs.yml"))
    for name, spec in specs.items():
        (modules / f"{name}.py").write_text(STANDIN_MODULE.format(name=name, spec=json.dumps(spec)))
    record = base / "calls.jsonl"
    completed = subprocess.run(
        [str(BIN / "ansible-playbook"), str(AWX / "job_templates.yml")],
        cwd=ROOT,
        env=ansible_env(
            ANSIBLE_COLLECTIONS_PATH=os.pathsep.join([str(base), str(ROOT / ".collections")]),
            ANSIBLE_PYTHON_INTERPRETER=sys.executable,
            AWX_STANDIN_RECORD=str(record),
        ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    by_module = {}
    for call in calls:
        by_module.setdefault(call["module"], []).append(call["params"])
    return by_module


def test_job_templates_create_project_inventory_source_and_ee(awx_objects):
    [ee] = awx_objects["execution_environment"]
    [project] = awx_objects["project"]
    [inventory] = awx_objects["inventory"]
    [source] = awx_objects["inventory_source"]
    assert project["scm_type"] == "git"
    assert project["default_environment"] == ee["name"]
    assert project["scm_update_on_launch"] is True
    # The aws_ec2 inventory comes from the project itself.
    assert (source["source"], source["source_project"], source["source_path"]) == (
        "scm",
        project["name"],
        "inventories/prod/aws_ec2.yml",
    )
    assert source["inventory"] == inventory["name"]
    assert source["credential"] == "ec2ops AWS"
    assert source["update_on_launch"] is True and source["overwrite"] is True


def test_job_templates_for_deploy_rollback_provision_judge0(awx_objects):
    templates = {t["name"]: t for t in awx_objects["job_template"]}
    assert {name: t["playbook"] for name, t in templates.items()} == {
        "ec2ops deploy": "deploy.yml",
        "ec2ops rollback": "rollback.yml",
        "ec2ops provision": "playbooks/provision.yml",
        "ec2ops judge0": "judge0.yml",
        "ec2ops app": "app.yml",
        "ec2ops maintenance": "maintenance.yml",
    }
    assert (ROOT / "playbooks" / "provision.yml").is_file()
    specs = surveys()
    for name, template in templates.items():
        kind = name.split()[-1]
        assert template["survey_enabled"] is True
        assert template["survey_spec"] == specs[kind], f"{name}: survey differs from awx/surveys/{kind}.yml"
        assert template["allow_simultaneous"] is False
        assert template["execution_environment"] == "ec2ops.stack"
    # Credentials by name only: the deploy key for jobs on hosts, the AWS credential to provision.
    for kind in ("deploy", "rollback", "judge0", "app", "maintenance"):
        assert templates[f"ec2ops {kind}"]["credentials"] == ["ec2ops deploy key"]
        assert templates[f"ec2ops {kind}"]["ask_limit_on_launch"] is True
    assert templates["ec2ops provision"]["credentials"] == ["ec2ops AWS"]
    assert templates["ec2ops provision"]["ask_job_type_on_launch"] is True


# Surveys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["deploy", "rollback", "provision", "judge0", "app", "maintenance"])
def test_survey_is_a_valid_awx_survey_spec(kind):
    survey = surveys()[kind]
    assert set(survey) == {"name", "description", "spec"}
    variables = [q["variable"] for q in survey["spec"]]
    assert len(variables) == len(set(variables))
    for question in survey["spec"]:
        assert QUESTION_KEYS <= set(question), question
        assert question["type"] in SURVEY_TYPES
        assert question["type"] != "password", "secrets belong in credentials, not surveys"
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", question["variable"])
        if question["type"] in ("multiplechoice", "multiselect"):
            assert isinstance(question["choices"], list) and question["choices"]
            assert question["default"] in ["", *question["choices"]]
        if question["type"] == "integer":
            assert question["min"] <= question["default"] <= question["max"]


def questions(kind):
    return {q["variable"]: q for q in surveys()[kind]["spec"]}


def test_deploy_survey_asks_for_the_release():
    release = questions("deploy")["compose_app_release"]
    assert (release["type"], release["required"], release["default"]) == ("text", True, "")


def test_rollback_survey_requires_a_confirmation():
    asked = questions("rollback")
    confirm = asked["rollback_confirm"]
    # A required question whose only choice is "yes", with no default: AWX will not launch the
    # job until someone picks it.
    assert (confirm["type"], confirm["required"], confirm["choices"], confirm["default"]) == (
        "multiplechoice",
        True,
        ["yes"],
        "",
    )
    assert asked["compose_app_rollback_to"]["default"] == "previous"


def test_app_survey_offers_every_command_and_run_needs_the_confirmation():
    """Issue 17: the operator commands as one AWX job template; its choices are exactly app.yml's."""
    asked = questions("app")
    assert asked["do"]["choices"] == ["status", "history", "audit", "logs", "lock", "unlock", "run", "rotate"]
    playbook = (ROOT / "playbooks" / "app.yml").read_text()
    assert "do | default('') in ['status', 'history', 'audit', 'logs', 'lock', 'unlock', 'run', 'rotate']" in playbook
    assert (asked["confirm"]["choices"], asked["confirm"]["default"]) == (["yes"], "")
    assert "confirm | default('') | string == 'yes'" in playbook
    assert questions("maintenance")["state"]["choices"] == ["on", "off"]


def test_provision_and_judge0_surveys():
    provision = questions("provision")
    assert provision["ec2_provision_env"]["required"] is True
    assert provision["ec2_provision_judge0_count"]["type"] == "integer"
    role_defaults = load_yaml(ROOT / "roles" / "ec2_provision" / "defaults" / "main.yml")
    assert set(provision) <= set(role_defaults), "survey variables must be the role's"
    version = questions("judge0")["judge0_version"]
    assert version["required"] is True
    # Issue 15: a choice list of versions the role's gate accepts, not free text ("1.13.0-extra" passed once).
    assert version["type"] == "multiplechoice" and version["default"] in version["choices"]
    assert [gate("", choice)["verdict"] for choice in version["choices"]] == ["ok"] * len(version["choices"])


SECRET_PATTERNS = [
    re.compile(r"AKIA[0-9A-Z]{16}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    # A key named like a secret with a literal value (a <placeholder> or a {{ template }} is fine).
    re.compile(r"(?i)(password|secret|token|ssh_key_data|secret_key)\s*[:=]\s*['\"]?[^\s'\"{}<]{6,}"),
]


def test_no_credential_secret_in_the_awx_files():
    files = [p for p in AWX.rglob("*") if p.is_file()]
    assert files
    for path in files:
        text = path.read_text()
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(text), f"{path.relative_to(ROOT)} looks like it holds a secret: {pattern.pattern}"

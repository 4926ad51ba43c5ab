"""One environment from nothing: provision it from its inventory, then find it with the same inventory.

Against a moto server, ``ansible-playbook playbooks/provision.yml -i inventories/prod`` with only
the AWS endpoint overridden (the documented local override) creates the prod stack with what the
inventory says (project, Env tag, the env.yml instance size, the secret grant
``ticketing/prod/app`` that compose_app_secrets reads); ``ansible-inventory -i inventories/prod``
then lists exactly those hosts, in groups app, judge0 and env_prod.
"""

import json
import os
import pathlib
import subprocess
import sys
import urllib.parse

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
REGION = "ap-northeast-2"


def environment(moto_server):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "AWS_"))}
    env.update(
        PATH=os.pathsep.join([str(pathlib.Path(sys.executable).parent), env.get("PATH", "")]),
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        # The aws_ec2 inventory's endpoint (its endpoint_url option reads AWS_URL).
        AWS_URL=moto_server.endpoint_url,
    )
    return env


@pytest.fixture(scope="module")
def provisioned(moto_server, tmp_path_factory):
    # "From nothing": the provisioning stories before it tore ticketing-prod down, and moto cannot read a
    # secret scheduled for deletion the way the role's lookup expects (test_moto_differences.py).
    moto_server.reset()
    tmp = tmp_path_factory.mktemp("provision")
    extra = tmp / "local-overrides.json"
    extra.write_text(
        json.dumps(
            {"ec2_provision_aws_endpoint_url": moto_server.endpoint_url, "ansible_python_interpreter": sys.executable}
        )
    )
    result = subprocess.run(
        ["ansible-playbook", "-i", "inventories/prod", "-e", f"@{extra}", "playbooks/provision.yml"],
        cwd=ROOT,
        env=environment(moto_server),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    yield result
    # This stack is the only one named ticketing-prod here: leave the shared server empty for later modules.
    moto_server.reset()


def test_provisioning_creates_the_stack_the_inventory_describes(moto_server, provisioned):
    ec2 = moto_server.client("ec2", region=REGION)
    filters = [
        {"Name": "tag:Project", "Values": ["ticketing"]},
        {"Name": "tag:Env", "Values": ["prod"]},
        {"Name": "instance-state-name", "Values": ["running"]},
    ]
    instances = [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]
    by_role = {next(t["Value"] for t in i["Tags"] if t["Key"] == "Role"): i for i in instances}
    assert sorted(by_role) == ["app", "judge0"]
    # inventories/prod/group_vars/all/env.yml: ticketing_app_instance_type
    assert by_role["app"]["InstanceType"] == "t3.large"
    # The instance role reads exactly the secrets compose_app_secrets names (the app's, the database's).
    iam = moto_server.client("iam", region=REGION)
    document = iam.get_role_policy(RoleName="ticketing-prod-app", PolicyName="ec2ops-app-runtime")["PolicyDocument"]
    if isinstance(document, str):
        document = json.loads(urllib.parse.unquote(document))
    (statement,) = [s for s in document["Statement"] if s.get("Sid") == "ReadAppSecrets"]
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    assert [r.split(":secret:", 1)[1] for r in resources] == ["ticketing/prod/app-??????", "ticketing/prod/rds-??????"]


def test_the_same_inventory_finds_what_was_provisioned(moto_server, provisioned):
    result = subprocess.run(
        ["ansible-inventory", "-i", "inventories/prod", "--list"],
        cwd=ROOT,
        env=environment(moto_server),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert listed["app"]["hosts"] == ["ticketing-prod-app"]
    assert listed["judge0"]["hosts"] == ["ticketing-prod-judge0"]
    assert sorted(listed["env_prod"]["hosts"]) == ["ticketing-prod-app", "ticketing-prod-judge0"]

"""playbooks/provision.yml and playbooks/teardown.yml end to end against a real moto server.

The tests run in order as one story:

1. the provision job runs the way AWX runs it (ansible-runner, a private data dir with
   project/, inventory/ and env/) and creates exactly the designed security groups, IAM role,
   instances and Elastic IP; its artifacts (rc, status, events) are what AWX would record.
   Beside it, a check-mode run previews a stack that does not exist and changes nothing, and
   a one-host stack loses its app host and gets a new one that keeps the Elastic IP;
3. a second run, now plain ansible-playbook, reports changed=0 (both paths agree), while a
   teardown preview in check mode runs beside it and deletes nothing;
4. teardown refuses without confirmation, then leaves nothing tagged behind.

Every assertion reads AWS state back through boto3 from the same moto server.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import awx_runner
import pytest
import yaml
from botocore.exceptions import ClientError

# ansible-runner starts ansible-playbook through pexpect (forkpty) while other tests run.
pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")

ROOT = pathlib.Path(__file__).resolve().parents[3]
PROVISION = ROOT / "playbooks" / "provision.yml"
TEARDOWN = ROOT / "playbooks" / "teardown.yml"

REGION = "ap-northeast-2"
ACCOUNT = "123456789012"  # moto's account
PROJECT = "ticketing"
ENV = "ci"
PREFIX = f"{PROJECT}-{ENV}"
ADMIN_CIDR = "203.0.113.0/24"
SSM_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
TAGS = {"Project": PROJECT, "Env": ENV, "ManagedBy": "ec2ops.stack"}
LIVE = ("pending", "running", "stopping", "stopped")


def stack_vars(moto_server, **overrides):
    env = overrides.get("ec2_provision_env", ENV)
    return {
        "ec2_provision_s3_buckets": [{"name": f"{PROJECT}-{env}-uploads", "prefix": "images/"}],
        "ec2_provision_aws_endpoint_url": moto_server.endpoint_url,
        "ec2_provision_aws_region": REGION,
        "ec2_provision_project": PROJECT,
        "ec2_provision_env": ENV,
        "ec2_provision_admin_cidrs": [ADMIN_CIDR],
        "ec2_provision_secret_names": [f"{PROJECT}/{ENV}"],
        "ec2_provision_manage_rds_sg": True,
        "ec2_provision_manage_redis_sg": True,
        **overrides,
    }


def tag_filters(tags=None):
    return [{"Name": f"tag:{k}", "Values": [v]} for k, v in (tags or TAGS).items()]


def recap(run, host="localhost"):
    assert run.json is not None, run.output
    return run.json["stats"][host]


class Aws:
    def __init__(self, moto_server):
        self.ec2 = moto_server.client("ec2", region=REGION)
        self.iam = moto_server.client("iam", region=REGION)
        self.ssm = moto_server.client("ssm", region=REGION)
        self.s3 = moto_server.client("s3", region=REGION)
        self.rds = moto_server.client("rds", region=REGION)
        self.secrets = moto_server.client("secretsmanager", region=REGION)

    def instances(self, tags=None, states=LIVE):
        filters = [*tag_filters(tags), {"Name": "instance-state-name", "Values": list(states)}]
        pages = self.ec2.get_paginator("describe_instances").paginate(Filters=filters)
        return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]

    def security_groups(self, tags=None):
        groups = self.ec2.describe_security_groups(Filters=tag_filters(tags))["SecurityGroups"]
        return {g["GroupName"]: g for g in groups}

    def addresses(self, tags=None):
        return self.ec2.describe_addresses(Filters=tag_filters(tags))["Addresses"]

    def volumes(self, tags=None):
        return self.ec2.describe_volumes(Filters=tag_filters(tags))["Volumes"]

    def role_exists(self, name):
        try:
            self.iam.get_role(RoleName=name)
        except ClientError as e:
            assert e.response["Error"]["Code"] == "NoSuchEntity"
            return False
        return True

    def instance_profile_exists(self, name):
        try:
            self.iam.get_instance_profile(InstanceProfileName=name)
        except ClientError as e:
            assert e.response["Error"]["Code"] == "NoSuchEntity"
            return False
        return True

    def bucket_exists(self, name):
        try:
            self.s3.head_bucket(Bucket=name)
        except ClientError as e:
            assert e.response["Error"]["Code"] in ("404", "NoSuchBucket")
            return False
        return True

    def nothing_left(self, prefix, tags=None):
        """What of the stack is still there (empty when nothing)."""
        left = {
            "instances": [i["InstanceId"] for i in self.instances(tags)],
            "security_groups": sorted(self.security_groups(tags)),
            "addresses": [a["PublicIp"] for a in self.addresses(tags)],
            "volumes": [v["VolumeId"] for v in self.volumes(tags)],
            "iam_role": self.role_exists(f"{prefix}-app"),
            "instance_profile": self.instance_profile_exists(f"{prefix}-app"),
            "bucket": self.bucket_exists(f"{prefix}-uploads"),
        }
        return {k: v for k, v in left.items() if v}


def rules(permissions):
    """IpPermissions as a set of (protocol, from, to, source) tuples."""
    out = set()
    for p in permissions:
        key = (p["IpProtocol"], p.get("FromPort"), p.get("ToPort"))
        out |= {(*key, r["CidrIp"]) for r in p.get("IpRanges", [])}
        out |= {(*key, r["CidrIpv6"]) for r in p.get("Ipv6Ranges", [])}
        out |= {(*key, g["GroupId"]) for g in p.get("UserIdGroupPairs", [])}
        out |= {(*key, pl["PrefixListId"]) for pl in p.get("PrefixListIds", [])}
    return out


@pytest.fixture(scope="module")
def aws(moto_server):
    return Aws(moto_server)


def playbook_environment():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "AWS_"))}
    env.update(
        PATH=os.pathsep.join([str(pathlib.Path(sys.executable).parent), env.get("PATH", "")]),
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_CALLBACKS_ENABLED="ansible.posix.json",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    return env


def run_playbook(playbook, extra_vars, tmp_dir, env, check=False):
    """ansible-playbook on localhost with the JSON callback, for runs in a background thread
    (``env`` is built beforehand: the thread must not read os.environ while others change it)."""
    vars_file = pathlib.Path(tmp_dir) / "extra-vars.json"
    vars_file.write_text(json.dumps({"ansible_python_interpreter": sys.executable, **extra_vars}))
    args = [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local"]
    args += ["-e", f"@{vars_file}", str(playbook)] + (["--check"] if check else [])
    completed = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    output = completed.stdout + completed.stderr
    result = json.loads(completed.stdout) if completed.stdout.lstrip().startswith("{") else None
    return completed.returncode, result, output


class Story:
    """What earlier steps of the module's story left for later ones."""

    created = False
    first_instances: dict[str, str]
    teardown_preview = None


@pytest.fixture(scope="module")
def story():
    return Story()


@pytest.fixture(scope="module")
def preview(moto_server, tmp_path_factory):
    """A check-mode run for a stack that is never created (Env=preview), started at once in the
    background so that it shares the machine with the real provisioning of the next test."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(
        run_playbook,
        PROVISION,
        stack_vars(moto_server, ec2_provision_env="preview"),
        tmp_path_factory.mktemp("preview"),
        playbook_environment(),
        check=True,
    )
    yield future
    pool.shutdown(wait=True)


EDGE = {**TAGS, "Env": "edge"}


def replace_app_host(moto_server, aws, tmp_dir, env):
    """Provision a one-host stack (Env=edge), terminate its app host as if it had failed, provision
    again; return what the test needs to compare."""
    edge = stack_vars(
        moto_server,
        ec2_provision_env="edge",
        ec2_provision_judge0_count=0,
        ec2_provision_manage_rds_sg=False,
        ec2_provision_manage_redis_sg=False,
    )
    first = run_playbook(PROVISION, edge, tmp_dir, env)
    if first[0] != 0:
        return {"failed": first[2]}
    [old] = aws.instances({**EDGE, "Role": "app"})
    [address] = aws.addresses(EDGE)
    aws.ec2.terminate_instances(InstanceIds=[old["InstanceId"]])
    rc, _stdout, output = run_playbook(PROVISION, edge, tmp_dir, env)
    return {"rc": rc, "output": output, "old": old, "address": address}


@pytest.fixture(scope="module")
def replacement(moto_server, aws, tmp_path_factory):
    """replace_app_host, started at once in the background (it needs nothing from the other tests)."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(replace_app_host, moto_server, aws, tmp_path_factory.mktemp("edge"), playbook_environment())
    yield future
    pool.shutdown(wait=True)


def test_provision_job_through_ansible_runner(moto_server, aws, story, tmp_path, preview, replacement):
    """The provision job template's path: AWX hands ansible-runner a private data dir."""
    job = awx_runner.run_job(
        tmp_path,
        "playbooks/provision.yml",
        extravars=stack_vars(moto_server),
        # What an AWX "Amazon Web Services" credential injects.
        envvars={"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
    )

    assert (job.rc, job.status) == (0, "successful"), job.stdout[-3000:]
    assert (job.artifact_dir / "rc").read_text().strip() == "0"
    assert (job.artifact_dir / "status").read_text().strip() == "successful"
    types = job.event_types()
    assert types[0] == "playbook_on_start"
    assert types.count("playbook_on_stats") == 1
    assert job.counts.get("runner_on_failed", 0) == job.counts.get("runner_item_on_failed", 0) == 0
    [stats] = [e for e in job.events if e["event"] == "playbook_on_stats"]
    assert stats["event_data"]["failures"] == {}
    # Security groups, the bucket, its lifecycle, IAM role, its policy, instance profile, the hosts, the Elastic IP.
    assert job.host_stat("changed") == 8
    launches = job.task_events("Launch the hosts", "runner_item_on_ok")
    assert [e["event_data"]["res"]["changed"] for e in launches] == [True, True]
    # The project's ansible.cfg applied (AWX runs in the project directory): its
    # profile_tasks callback printed the task timings.
    assert "TASKS RECAP" in job.stdout

    instances = aws.instances()
    roles = sorted({t["Key"]: t["Value"] for t in i["Tags"]}["Role"] for i in instances)
    assert roles == ["app", "judge0"]
    story.created = True
    story.first_instances = {i["InstanceId"]: i["State"]["Name"] for i in instances}
    [summary] = job.task_events("Show the stack")
    lines = summary["event_data"]["res"]["msg"]
    assert lines[0] == f"Stack {PREFIX} in {REGION}, VPC {instances[0]['VpcId']}"
    assert any(line.startswith("app i-") and line.endswith("(Elastic IP)") for line in lines)
    assert f"s3 buckets: {PREFIX}-uploads/images/ read-write" in lines


def test_check_mode_on_an_empty_account_changes_nothing(preview, aws):
    rc, result, output = preview.result(timeout=600)

    assert rc == 0, output
    assert result["stats"]["localhost"]["changed"] > 0, "check mode should preview the creation"
    [launch] = [
        t["hosts"]["localhost"]
        for play in result["plays"]
        for t in play["tasks"]
        if t["task"]["name"] == "ec2ops.stack.ec2_provision : Launch the hosts"
    ]
    assert [r["msg"] for r in launch["results"]] == ["Would have launched instances if not in check_mode."] * 2
    assert aws.nothing_left(f"{PROJECT}-preview", {**TAGS, "Env": "preview"}) == {}
    # s3_bucket and s3_lifecycle have no check mode: skipped, and the summary says what a real run creates.
    assert not aws.bucket_exists(f"{PROJECT}-preview-uploads")
    [summary] = [
        t["hosts"]["localhost"]
        for play in result["plays"]
        for t in play["tasks"]
        if t["task"]["name"] == "ec2ops.stack.ec2_provision : Show the stack"
    ]
    assert f"s3 buckets: {PROJECT}-preview-uploads/images/ read-write (created by a real run)" in summary["msg"]


@pytest.fixture
def created(story):
    if not story.created:
        pytest.fail("the stack was not created (see test_provision_job_through_ansible_runner)")


def test_security_groups_are_exactly_as_designed(aws, created):
    groups = aws.security_groups()
    assert sorted(groups) == [f"{PREFIX}-app", f"{PREFIX}-judge0", f"{PREFIX}-rds", f"{PREFIX}-redis"]
    app = groups[f"{PREFIX}-app"]["GroupId"]
    everywhere = {("-1", None, None, "0.0.0.0/0")}

    assert rules(groups[f"{PREFIX}-app"]["IpPermissions"]) == {
        ("tcp", 80, 80, "0.0.0.0/0"),
        ("tcp", 443, 443, "0.0.0.0/0"),
        ("tcp", 80, 80, "::/0"),
        ("tcp", 443, 443, "::/0"),
        ("tcp", 22, 22, ADMIN_CIDR),
    }
    assert rules(groups[f"{PREFIX}-app"]["IpPermissionsEgress"]) == everywhere
    # Judge0's API only from the app hosts' group; SSH only from the admin network.
    assert rules(groups[f"{PREFIX}-judge0"]["IpPermissions"]) == {
        ("tcp", 2358, 2358, app),
        ("tcp", 22, 22, ADMIN_CIDR),
    }
    assert rules(groups[f"{PREFIX}-judge0"]["IpPermissionsEgress"]) == everywhere
    # The managed database and cache: only from the app group, no egress at all.
    assert rules(groups[f"{PREFIX}-rds"]["IpPermissions"]) == {("tcp", 5432, 5432, app)}
    assert rules(groups[f"{PREFIX}-redis"]["IpPermissions"]) == {("tcp", 6379, 6379, app)}
    assert rules(groups[f"{PREFIX}-rds"]["IpPermissionsEgress"]) == set()
    assert rules(groups[f"{PREFIX}-redis"]["IpPermissionsEgress"]) == set()
    for name, group in groups.items():
        tags = {t["Key"]: t["Value"] for t in group["Tags"]}
        assert tags == {**TAGS, "Name": name, "Role": name.rsplit("-", 1)[1]}


def test_iam_role_allows_only_secrets_and_ecr_pull(aws, created):
    role = aws.iam.get_role(RoleName=f"{PREFIX}-app")["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    assert aws.iam.list_attached_role_policies(RoleName=f"{PREFIX}-app")["AttachedPolicies"] == []
    assert aws.iam.list_role_policies(RoleName=f"{PREFIX}-app")["PolicyNames"] == ["ec2ops-app-runtime"]
    document = aws.iam.get_role_policy(RoleName=f"{PREFIX}-app", PolicyName="ec2ops-app-runtime")["PolicyDocument"]
    assert document == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadAppSecrets",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": [f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{PROJECT}/{ENV}-??????"],
            },
            {
                "Sid": "BatchReadAppSecrets",
                "Effect": "Allow",
                "Action": ["secretsmanager:BatchGetSecretValue"],
                "Resource": "*",
            },
            {"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
            {
                "Sid": "EcrPull",
                "Effect": "Allow",
                "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                "Resource": [f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/*"],
            },
            # The uploads bucket: objects under its prefix only, and listing only that prefix.
            {
                "Sid": "S3TicketingCiUploadsObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": [f"arn:aws:s3:::{PREFIX}-uploads/images/*"],
            },
            {
                "Sid": "S3TicketingCiUploadsList",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{PREFIX}-uploads"],
                "Condition": {"StringLike": {"s3:prefix": ["images/*"]}},
            },
        ],
    }
    profile = aws.iam.get_instance_profile(InstanceProfileName=f"{PREFIX}-app")["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [f"{PREFIX}-app"]


def lifecycle_rules(aws, bucket):
    try:
        return aws.s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except ClientError as e:
        assert e.response["Error"]["Code"] == "NoSuchLifecycleConfiguration"
        return []


def test_uploads_bucket_is_private_encrypted_versioned_and_goes_to_glacier(aws, created):
    bucket = f"{PREFIX}-uploads"
    block = aws.s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
    )
    assert aws.s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}
    ]
    [encryption] = aws.s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert encryption["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert aws.s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    # The seeds' 90 days, for current and old versions; unfinished multipart uploads go after 7.
    [rule] = lifecycle_rules(aws, bucket)
    assert rule["ID"] == "ec2ops-glacier" and rule["Status"] == "Enabled"
    assert rule["Transitions"] == [{"Days": 90, "StorageClass": "GLACIER"}]
    assert rule["NoncurrentVersionTransitions"] == [{"NoncurrentDays": 90, "StorageClass": "GLACIER"}]
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    tags = {t["Key"]: t["Value"] for t in aws.s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags == {**TAGS, "Name": bucket, "Role": "s3"}


def test_instances_have_imdsv2_encrypted_gp3_and_inventory_tags(aws, created):
    ami = aws.ssm.get_parameter(Name=SSM_AMI_PARAMETER)["Parameter"]["Value"]
    groups = aws.security_groups()
    by_role = {}
    for instance in aws.instances():
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        by_role[tags["Role"]] = instance
        assert tags == {**TAGS, "Role": tags["Role"], "Name": f"{PREFIX}-{tags['Role']}"}
        assert instance["ImageId"] == ami
        assert instance["InstanceType"] == "t3.medium"
        assert [g["GroupId"] for g in instance["SecurityGroups"]] == [groups[f"{PREFIX}-{tags['Role']}"]["GroupId"]]
        metadata = instance["MetadataOptions"]
        assert (metadata["HttpTokens"], metadata["HttpEndpoint"]) == ("required", "enabled")
        [mapping] = instance["BlockDeviceMappings"]
        assert mapping["DeviceName"] == instance["RootDeviceName"] == "/dev/xvda"
        assert mapping["Ebs"]["DeleteOnTermination"] is True
        [volume] = aws.ec2.describe_volumes(VolumeIds=[mapping["Ebs"]["VolumeId"]])["Volumes"]
        assert (volume["VolumeType"], volume["Encrypted"], volume["Size"]) == ("gp3", True, 30)
        user_data = aws.ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
        script = base64.b64decode(user_data["UserData"]["Value"]).decode()
        assert script.startswith("#!/bin/sh\n")
        commands = [line for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        # Only python3 for Ansible: no Docker, no users, no keys in user data.
        assert [c.split() for c in commands if "install" in c] == [
            ["dnf", "-y", "install", "python3"],
            ["yum", "-y", "install", "python3"],
            ["apt-get", "-y", "install", "--no-install-recommends", "python3"],
        ]
        assert not [c for c in commands if "docker" in c.lower() or "useradd" in c or "ssh" in c]
    assert set(by_role) == {"app", "judge0"}
    # Containers on the app host reach IMDS (hop 2); Judge0's untrusted code does not (hop 1).
    assert by_role["app"]["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
    assert by_role["judge0"]["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert by_role["app"]["IamInstanceProfile"]["Arn"] == f"arn:aws:iam::{ACCOUNT}:instance-profile/{PREFIX}-app"
    assert "IamInstanceProfile" not in by_role["judge0"]


def test_app_host_has_an_elastic_ip(aws, created):
    [address] = aws.addresses()
    [app] = aws.instances({**TAGS, "Role": "app"})
    assert address["InstanceId"] == app["InstanceId"]
    assert address["Domain"] == "vpc"
    assert app["PublicIpAddress"] == address["PublicIp"]
    assert {t["Key"]: t["Value"] for t in address["Tags"]} == {**TAGS, "Role": "app", "Name": f"{PREFIX}-app"}


def test_prod_inventory_groups_the_provisioned_hosts(moto_server, aws, created, tmp_path):
    """inventories/prod/aws_ec2.yml, as shipped, finds these hosts by their tags and groups them.

    Only what cannot be the same here changes: the moto endpoint and this stack's Env tag (ci).
    """
    source = yaml.safe_load((ROOT / "inventories" / "prod" / "aws_ec2.yml").read_text())
    source["filters"]["tag:Env"] = ENV
    source["endpoint_url"] = moto_server.endpoint_url
    inventory = tmp_path / "aws_ec2.yml"  # the plugin only reads files named *aws_ec2.yml
    inventory.write_text(yaml.safe_dump(source))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        }
    )
    out = subprocess.run(
        [pathlib.Path(sys.executable).with_name("ansible-inventory"), "-i", inventory, "--list"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert listed["app"]["hosts"] == [f"{PREFIX}-app"]
    assert listed["judge0"]["hosts"] == [f"{PREFIX}-judge0"]
    assert sorted(listed[f"env_{ENV}"]["hosts"]) == [f"{PREFIX}-app", f"{PREFIX}-judge0"]
    [app] = aws.instances({**TAGS, "Role": "app"})
    address = listed["_meta"]["hostvars"][f"{PREFIX}-app"]["ansible_host"]
    # ansible-core 2.19+ marks values that came from the API as unsafe (not to be templated).
    if isinstance(address, dict):
        address = address["__ansible_unsafe"]
    assert address == app["PublicIpAddress"]


def test_second_run_changes_nothing(ansible_playbook, moto_server, aws, story, created):
    addresses = aws.addresses()
    # Neither run should change anything, so they may share the machine: the teardown preview
    # runs beside the second provision run and is checked by the next tests.
    with ThreadPoolExecutor(max_workers=2) as pool:
        preview = pool.submit(
            ansible_playbook,
            TEARDOWN,
            extra_vars=stack_vars(moto_server, ec2_provision_destroy_confirm=PREFIX),
            check=True,
        )
        run = ansible_playbook(PROVISION, extra_vars=stack_vars(moto_server))
        story.teardown_preview = preview.result()

    assert run.rc == 0, run.output
    changed = [
        task["task"]["name"]
        for play in run.json["plays"]
        for task in play["tasks"]
        if task["hosts"].get("localhost", {}).get("changed")
    ]
    assert (recap(run)["changed"], changed) == (0, [])
    assert {i["InstanceId"]: i["State"]["Name"] for i in aws.instances()} == story.first_instances
    assert aws.addresses() == addresses


def changed_tasks(run):
    return [
        task["task"]["name"]
        for play in run.json["plays"]
        for task in play["tasks"]
        if task["hosts"].get("localhost", {}).get("changed")
    ]


def test_the_app_role_keeps_what_the_inventory_adds(ansible_playbook, moto_server, aws, created):
    """Issue 19: managed policies and extra statements survive every run; anything else is still removed."""
    role = f"{PREFIX}-app"
    uploads = {"Sid": "Uploads", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
               "Resource": [f"arn:aws:s3:::{PREFIX}-uploads/app/*"]}  # fmt: skip
    managed = ["AmazonSSMManagedInstanceCore", "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"]
    extended = stack_vars(
        moto_server, ec2_provision_app_managed_policies=managed, ec2_provision_app_policy_statements=[uploads]
    )
    # Something attached by hand, which the next run removes.
    aws.iam.attach_role_policy(RoleName=role, PolicyArn="arn:aws:iam::aws:policy/AmazonS3FullAccess")
    first = ansible_playbook(PROVISION, extra_vars=extended)
    assert first.rc == 0, first.output

    def attached():
        return sorted(p["PolicyName"] for p in aws.iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"])

    assert attached() == ["AmazonSSMManagedInstanceCore", "CloudWatchAgentServerPolicy"]
    document = aws.iam.get_role_policy(RoleName=role, PolicyName="ec2ops-app-runtime")["PolicyDocument"]
    assert document["Statement"][-1] == uploads
    assert [st["Sid"] for st in document["Statement"][:-1]] == [
        "ReadAppSecrets",
        "BatchReadAppSecrets",
        "EcrLogin",
        "EcrPull",
        "S3TicketingCiUploadsObjects",
        "S3TicketingCiUploadsList",
    ]
    again = ansible_playbook(PROVISION, extra_vars=extended)
    assert again.rc == 0 and changed_tasks(again) == [], again.output
    assert attached() == ["AmazonSSMManagedInstanceCore", "CloudWatchAgentServerPolicy"]
    # A statement that is not one is refused before any change.
    bad = stack_vars(moto_server, ec2_provision_app_policy_statements=[{"Effect": "Allow", "Action": "s3:*"}])
    refused = ansible_playbook(PROVISION, extra_vars=bad)
    assert refused.rc != 0 and "ec2_provision_app_policy_statements[0]" in refused.output
    assert attached() == ["AmazonSSMManagedInstanceCore", "CloudWatchAgentServerPolicy"]
    # Back to the base stack for the tests that follow.
    base = ansible_playbook(PROVISION, extra_vars=stack_vars(moto_server))
    assert base.rc == 0, base.output
    assert attached() == []


def test_bucket_options_and_refusals(ansible_playbook, moto_server, aws):
    """A read-only bucket under a customer managed key with its own Glacier days; then no Glacier
    rule at all; then buckets the role refuses before any change. A stack of its own (no hosts)."""
    key = aws_kms_key(moto_server)
    bucket = f"{PROJECT}-s3opts-static"
    small = {"ec2_provision_env": "s3opts", "ec2_provision_app_count": 0, "ec2_provision_judge0_count": 0}
    static = {"name": bucket, "access": "read-only", "kms_key_id": key, "glacier_days": 30}
    run = ansible_playbook(PROVISION, extra_vars=stack_vars(moto_server, **small, ec2_provision_s3_buckets=[static]))
    assert run.rc == 0, run.output

    [encryption] = aws.s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert encryption["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}
    assert encryption["BucketKeyEnabled"] is True
    [rule] = lifecycle_rules(aws, bucket)
    assert rule["Transitions"] == [{"Days": 30, "StorageClass": "GLACIER"}]
    document = aws.iam.get_role_policy(RoleName=f"{PROJECT}-s3opts-app", PolicyName="ec2ops-app-runtime")
    assert document["PolicyDocument"]["Statement"][-3:] == [
        {"Sid": "S3TicketingS3optsStaticObjects", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": [f"arn:aws:s3:::{bucket}/*"]},
        {"Sid": "S3TicketingS3optsStaticList", "Effect": "Allow", "Action": ["s3:ListBucket"],
         "Resource": [f"arn:aws:s3:::{bucket}"]},
        {"Sid": "S3TicketingS3optsStaticKms", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [key],
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}}},
    ]  # fmt: skip

    never = stack_vars(moto_server, **small, ec2_provision_s3_buckets=[{**static, "glacier_days": 0}])
    first = ansible_playbook(PROVISION, extra_vars=never)
    assert first.rc == 0, first.output
    assert changed_tasks(first) == [
        "ec2ops.stack.ec2_provision : Move the buckets' objects to Glacier after their days"
    ]
    assert lifecycle_rules(aws, bucket) == []
    again = ansible_playbook(PROVISION, extra_vars=never)
    assert again.rc == 0 and changed_tasks(again) == [], again.output

    for bad, why in (
        ({"name": "Tickets_Uploads"}, "name"),
        ({"name": "ticketing-s3opts-other", "prefix": "/images/"}, "leading slash"),
        ({"name": "ticketing-s3opts-other", "prefix": "images"}, "not a folder"),
        ({"name": "ticketing-s3opts-other", "access": "write-only"}, "access"),
    ):
        refused = ansible_playbook(
            PROVISION, extra_vars=stack_vars(moto_server, **small, ec2_provision_s3_buckets=[bad])
        )
        assert refused.rc != 0, why
        assert "ec2_provision_s3_buckets" in refused.output, (why, refused.output)
        assert not aws.bucket_exists(bad["name"].lower().replace("_", "-")), why


def aws_kms_key(moto_server):
    kms = moto_server.client("kms", region=REGION)
    return kms.create_key(Description="ec2_provision test bucket key")["KeyMetadata"]["Arn"]


DB = {**TAGS, "Env": "db"}


def db_instance(aws, identifier):
    try:
        [instance] = aws.rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"]
    except ClientError as e:
        assert e.response["Error"]["Code"] == "DBInstanceNotFound"
        return None
    return instance


def secret_value(aws, name):
    try:
        return json.loads(aws.secrets.get_secret_value(SecretId=name)["SecretString"])
    except ClientError as e:
        assert e.response["Error"]["Code"] == "ResourceNotFoundException"
        return None


def test_database_for_a_dev_environment(ansible_playbook, moto_server, aws, tmp_path):
    """Issue 19: RDS sized for a non-prod env, its endpoint and a generated password in the app's
    connection secret (never in the output), read into the app's .env; check mode and a second run
    change nothing. A stack of its own (Env=db, no hosts)."""
    db = stack_vars(
        moto_server,
        ec2_provision_env="db",
        ec2_provision_app_count=0,
        ec2_provision_judge0_count=0,
        ec2_provision_manage_rds_sg=False,
        ec2_provision_rds_enabled=True,
        ec2_provision_secret_names=["ticketing/db/app"],
    )
    preview = ansible_playbook(PROVISION, extra_vars=db, check=True)
    assert preview.rc == 0, preview.output
    assert "ec2ops.stack.ec2_provision : Create the database, or bring it to its settings" in changed_tasks(preview)
    assert db_instance(aws, "ticketing-db") is None
    assert secret_value(aws, "ticketing/db/rds") is None

    run = ansible_playbook(PROVISION, extra_vars=db)
    assert run.rc == 0, run.output

    instance = db_instance(aws, "ticketing-db")
    [rds_group] = [g["GroupId"] for n, g in aws.security_groups(DB).items() if n == "ticketing-db-rds"]
    assert (instance["Engine"], instance["EngineVersion"]) == ("postgres", "16")
    # The seeds' dev size: db.t3.micro, single-AZ, no deletion protection.
    assert (instance["DBInstanceClass"], instance["MultiAZ"], instance["DeletionProtection"]) == (
        "db.t3.micro",
        False,
        False,
    )
    assert (instance["StorageType"], instance["StorageEncrypted"]) == ("gp3", True)
    assert (instance["AllocatedStorage"], instance["MaxAllocatedStorage"]) == (20, 100)
    assert instance["BackupRetentionPeriod"] == 7
    assert instance["PubliclyAccessible"] is False
    assert [g["VpcSecurityGroupId"] for g in instance["VpcSecurityGroups"]] == [rds_group]
    assert instance["DBSubnetGroup"]["DBSubnetGroupName"] == "ticketing-db"
    assert len({s["SubnetAvailabilityZone"]["Name"] for s in instance["DBSubnetGroup"]["Subnets"]}) >= 2
    assert {t["Key"]: t["Value"] for t in instance["TagList"]} == {**DB, "Name": "ticketing-db", "Role": "rds"}

    connection = secret_value(aws, "ticketing/db/rds")
    password = connection.pop("DB_PASSWORD")
    assert connection == {
        "DB_HOST": instance["Endpoint"]["Address"],
        "DB_PORT": "5432",
        "DB_NAME": "ticketing",
        "DB_USER": "dbadmin",
    }
    assert len(password) == 32 and password.isalnum()
    assert password not in run.output
    # The app hosts may read the connection secret, beside the inventory's.
    document = aws.iam.get_role_policy(RoleName="ticketing-db-app", PolicyName="ec2ops-app-runtime")["PolicyDocument"]
    assert document["Statement"][0]["Resource"] == [
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ticketing/db/app-??????",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ticketing/db/rds-??????",
    ]

    again = ansible_playbook(PROVISION, extra_vars=db)
    assert again.rc == 0 and changed_tasks(again) == [], again.output
    summary = again.task("ec2ops.stack.ec2_provision : Show the stack")["msg"]
    assert (
        f"database ticketing-db postgres 16 db.t3.micro {instance['Endpoint']['Address']}:5432, secret ticketing/db/rds"
        in summary
    )
    assert secret_value(aws, "ticketing/db/rds") == {**connection, "DB_PASSWORD": password}
    preview = ansible_playbook(PROVISION, extra_vars=db, check=True)
    assert preview.rc == 0 and changed_tasks(preview) == [], preview.output

    # What compose_app does with compose_app_secrets: the app's .env gets the database.
    dest = tmp_path / ".env"
    env = ansible_playbook(
        pathlib.Path(__file__).with_name("app_env.yml"),
        extra_vars={
            "endpoint_url": moto_server.endpoint_url,
            "region": REGION,
            "app_secrets": [{"id": "ticketing/db/rds"}],
            "dest": str(dest),
        },
    )
    assert env.rc == 0, env.output
    lines = dest.read_text().splitlines()
    assert f"DB_HOST='{instance['Endpoint']['Address']}'" in lines
    assert {"DB_PORT='5432'", "DB_NAME='ticketing'", "DB_USER='dbadmin'", f"DB_PASSWORD='{password}'"} <= set(lines)
    assert password not in env.output

    # Teardown: a dev database goes without a final snapshot; its secret stays restorable.
    gone = ansible_playbook(TEARDOWN, extra_vars={**db, "ec2_provision_destroy_confirm": "ticketing-db"})
    assert gone.rc == 0, gone.output
    assert db_instance(aws, "ticketing-db") is None
    assert aws.rds.describe_db_snapshots(DBInstanceIdentifier="ticketing-db")["DBSnapshots"] == []
    assert "DeletedDate" in aws.secrets.describe_secret(SecretId="ticketing/db/rds")
    assert "ticketing-db" not in [g["DBSubnetGroupName"] for g in aws.rds.describe_db_subnet_groups()["DBSubnetGroups"]]
    assert aws.nothing_left("ticketing-db", DB) == {}
    assert password not in gone.output


def test_prod_inventory_reads_the_database_secret():
    """The prod app's .env takes the database from the secret provisioning writes
    (<project>/<env>/rds), and no static DB_HOST overrides it (compose_app_env wins over secrets)."""
    # The app group_vars every environment shares (inventories/shared, linked from inventories/<env>/group_vars).
    app = yaml.safe_load((ROOT / "inventories" / "shared" / "app.yml").read_text())
    defaults = yaml.safe_load((ROOT / "roles" / "ec2_provision" / "defaults" / "main.yml").read_text())
    assert defaults["ec2_provision_rds_secret_name"] == "{{ ec2_provision_project }}/{{ ec2_provision_env }}/rds"
    assert {"id": "ticketing/{{ ticketing_env }}/rds"} in app["compose_app_secrets"]
    assert not {"DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD"} & set(app["compose_app_env"])


def test_prod_database_is_protected(ansible_playbook, moto_server, aws):
    """The prod size (db.t3.small, Multi-AZ, deletion protection); teardown refuses while protection
    is on and changes nothing; once it is off, teardown takes a final snapshot. A stack of its own
    (Env=prod, no hosts)."""
    prod = stack_vars(
        moto_server,
        ec2_provision_env="prod",
        ec2_provision_app_count=0,
        ec2_provision_judge0_count=0,
        ec2_provision_s3_buckets=[],
        ec2_provision_rds_enabled=True,
        ec2_provision_destroy_confirm="ticketing-prod",
    )
    run = ansible_playbook(PROVISION, extra_vars=prod)
    assert run.rc == 0, run.output
    instance = db_instance(aws, "ticketing-prod")
    assert (instance["DBInstanceClass"], instance["MultiAZ"], instance["DeletionProtection"]) == (
        "db.t3.small",
        True,
        True,
    )

    refused = ansible_playbook(TEARDOWN, extra_vars=prod)
    assert refused.rc != 0
    assert "database ticketing-prod has deletion protection on" in refused.output
    assert "-e ec2_provision_rds_deletion_protection=false" in refused.output
    assert db_instance(aws, "ticketing-prod")["DBInstanceStatus"] == "available"
    assert sorted(aws.security_groups({**TAGS, "Env": "prod"})) == [
        "ticketing-prod-app",
        "ticketing-prod-rds",
        "ticketing-prod-redis",
    ]
    assert aws.role_exists("ticketing-prod-app")

    # What provision.yml -e ec2_provision_rds_deletion_protection=false does on AWS; on moto
    # rds_instance cannot modify a gp3 instance (test_moto_differences.py), so boto3 stands in.
    aws.rds.modify_db_instance(DBInstanceIdentifier="ticketing-prod", DeletionProtection=False, ApplyImmediately=True)
    gone = ansible_playbook(TEARDOWN, extra_vars=prod)
    assert gone.rc == 0, gone.output
    assert db_instance(aws, "ticketing-prod") is None
    [snapshot] = aws.rds.describe_db_snapshots(DBInstanceIdentifier="ticketing-prod")["DBSnapshots"]
    assert snapshot["DBSnapshotIdentifier"].startswith("ticketing-prod-final-")
    assert aws.nothing_left("ticketing-prod", {**TAGS, "Env": "prod"}) == {}


def test_teardown_in_check_mode_deletes_nothing(aws, story, created):
    run = story.teardown_preview
    assert run is not None, "the preview runs in test_second_run_changes_nothing"

    assert run.rc == 0, run.output
    assert recap(run)["changed"] > 0
    assert {i["InstanceId"]: i["State"]["Name"] for i in aws.instances()} == story.first_instances
    assert len(aws.security_groups()) == 4
    assert len(aws.addresses()) == 1
    assert aws.role_exists(f"{PREFIX}-app")
    assert aws.instance_profile_exists(f"{PREFIX}-app")


def test_replaced_app_host_gets_the_same_elastic_ip(replacement, aws):
    result = replacement.result(timeout=600)
    assert "failed" not in result, result.get("failed")

    assert result["rc"] == 0, result["output"]
    [new] = aws.instances({**EDGE, "Role": "app"})
    assert new["InstanceId"] != result["old"]["InstanceId"]
    # The stack's address moved to the new host: no second address, DNS stays valid.
    [moved] = aws.addresses(EDGE)
    assert (moved["AllocationId"], moved["InstanceId"]) == (result["address"]["AllocationId"], new["InstanceId"])


def test_teardown_refuses_without_confirmation(ansible_playbook, moto_server, aws, created):
    run = ansible_playbook(TEARDOWN, extra_vars=stack_vars(moto_server, ec2_provision_destroy_confirm="yes"))

    assert run.rc != 0
    assert "Refusing to destroy the ticketing-ci stack" in run.output
    assert f"ec2_provision_destroy_confirm={PREFIX}" in run.output
    assert len(aws.instances()) == 2


def test_teardown_leaves_nothing_tagged_behind(ansible_playbook, moto_server, aws, created):
    # An upload: teardown keeps a bucket that holds objects, and says how to delete it anyway.
    aws.s3.put_object(Bucket=f"{PREFIX}-uploads", Key="images/poster.png", Body=b"png")
    run = ansible_playbook(TEARDOWN, extra_vars=stack_vars(moto_server, ec2_provision_destroy_confirm=PREFIX))

    assert run.rc == 0, run.output
    assert aws.nothing_left(PREFIX) == {"bucket": True}
    assert aws.s3.get_object(Bucket=f"{PREFIX}-uploads", Key="images/poster.png")["Body"].read() == b"png"
    lines = run.task("ec2ops.stack.ec2_provision : Show what was torn down")["msg"]
    assert f"S3 buckets kept because they hold objects: {PREFIX}-uploads" in lines[-1]
    assert "ec2_provision_s3_force_destroy=true" in lines[-1]
    forced = ansible_playbook(
        TEARDOWN,
        extra_vars=stack_vars(moto_server, ec2_provision_destroy_confirm=PREFIX, ec2_provision_s3_force_destroy=True),
    )
    assert forced.rc == 0, forced.output
    assert aws.nothing_left(PREFIX) == {}
    # Terminated instances stay visible for a while (in AWS too); they are all this stack left.
    assert {i["State"]["Name"] for i in aws.instances(states=("terminated",))} == {"terminated"}
    # moto keeps DescribeTags entries of deleted resources, so the check above asks each
    # resource type instead (docs/provisioning.md, "What moto does differently").

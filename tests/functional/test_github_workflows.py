"""The GitHub Actions entry points: the workflows and tools/ssh-deploy.sh, without Docker.

* Every workflow passes actionlint (the real Go binary from the lock, with shellcheck on the
  ``run:`` scripts), and actionlint is shown to catch a script injection, so a pass means something.
* Safety properties: no ssh-keyscan and no host key checking turned off in .github/, tools/,
  inventories/ or ansible.cfg; ``id-token: write`` only on the jobs that assume an AWS role (the
  deploy, the ECR push, and the pipeline's calls of them); secrets and user inputs reach scripts
  only through ``env`` (no ``${{ }}`` inside ``run:``); the deploy job runs tools/ssh-deploy.sh with
  the key from secrets and the known_hosts from a variable, in the environment's GitHub environment
  (prod: production), one at a time per environment; CI runs every stage of tools/test.sh and every
  Molecule scenario.
* The pipeline (build -> push -> deploy): develop -> dev, release/* -> staging, main -> prod (its
  routing script run for real), lint/test before the build, the deploy needing the push and
  deploying the pushed tag (the git sha), the services it builds being the images the inventories
  deploy; tools/build-push.sh (the push step) refuses bad names before building anything and builds
  every image before pushing any (a recording stub stands in for the docker CLI).
* tools/ssh-deploy.sh for real: refusals (empty or malformed DEPLOY_KNOWN_HOSTS, missing or
  wrong DEPLOY_SSH_KEY) exit non-zero naming the variable and the fix, start nothing, and never
  print the key; a run hands ansible-playbook (a stub on PATH that records what it was given) a
  private agent holding the key, the pinned known_hosts (0600 in a 0700 directory) and the SSH
  options, returns its exit code, and leaves no agent, no directory and no key on disk behind,
  also when the run is cancelled.

The real SSH connection (a generated key, a pinned host key, a wrong host key refused) is tested
against the local EC2-like target in the Docker-based suite.
"""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
DEPLOY = WORKFLOWS / "deploy.yml"
PIPELINE = WORKFLOWS / "pipeline.yml"
BUILD_PUSH = WORKFLOWS / "build-push.yml"
ALL_WORKFLOWS = sorted(WORKFLOWS.glob("*.yml"))
BUILD_SCRIPT = ROOT / "tools" / "build-push.sh"
SCRIPT = ROOT / "tools" / "ssh-deploy.sh"
SCANNED = [ROOT / ".github", ROOT / "tools", ROOT / "inventories", ROOT / "ansible.cfg"]


# ----------------------------------------------------------------------------- helpers
def load(path):
    data = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def walk(node, path=()):
    """Every string in a workflow with the path of keys (and list indexes) that leads to it."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, index))
    elif isinstance(node, str):
        yield path, node


def steps(workflow):
    for job_id, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def scanned_files():
    for base in SCANNED:
        if base.is_file():
            yield base
            continue
        for path in sorted(base.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                yield path


KEYSCAN_CALL = re.compile(r"(^|[;&|(`{]|\brun:|\bsudo\b|\bexec\b|\bthen\b|\bdo\b)\s*ssh-keyscan\b")
CHECKING_OFF = [
    re.compile(r"StrictHostKeyChecking\s*[= ]\s*[\"']?(no|off|false|accept-new)\b", re.IGNORECASE),
    re.compile(r"UserKnownHostsFile\s*[= ]\s*[\"']?/dev/null", re.IGNORECASE),
    re.compile(r"host_key_checking\s*[=:]\s*[\"']?(false|no|off|0)\b", re.IGNORECASE),
]


def keyscan_calls(text):
    """Lines that run ssh-keyscan (a command position outside comments), not ones that warn about it."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if KEYSCAN_CALL.search(stripped):
            found.append((number, stripped))
    return found


def checking_off(text):
    return [
        (n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if any(p.search(line) for p in CHECKING_OFF)
    ]


def actionlint_binary():
    path = os.pathsep.join([str(pathlib.Path(sys.executable).parent), os.environ.get("PATH", "")])
    binary = shutil.which("actionlint", path=path)
    assert binary, "actionlint is not installed: it comes with requirements/test.txt (make setup)"
    return binary


# ------------------------------------------------------------------------- actionlint
def test_workflows_pass_actionlint():
    assert {p.name for p in ALL_WORKFLOWS} == {"ci.yml", "deploy.yml", "pipeline.yml", "build-push.yml"}
    result = subprocess.run(
        [actionlint_binary(), "-no-color", *map(str, ALL_WORKFLOWS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_script_injection(tmp_path):
    """The control: actionlint really checks (a pass of the real workflows is not a no-op)."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: issues\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
        '      - run: echo "${{ github.event.issue.title }}"\n'
    )
    result = subprocess.run(
        [actionlint_binary(), "-no-color", str(bad)], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "potentially untrusted" in result.stdout


# --------------------------------------------------------------------- safety properties
@pytest.mark.parametrize(
    ("line", "is_call"),
    [
        ("ssh-keyscan -H 203.0.113.10 >> ~/.ssh/known_hosts", True),
        ('kh=$(ssh-keyscan "$HOST")', True),
        ("run: ssh-keyscan example.com", True),
        ("true && ssh-keyscan h > kh", True),
        ("  # never ssh-keyscan", False),
        ('die "... never use ssh-keyscan"', False),
    ],
)
def test_keyscan_detector(line, is_call):
    assert bool(keyscan_calls(line)) is is_call


@pytest.mark.parametrize(
    ("line", "is_off"),
    [
        ("-o StrictHostKeyChecking=no", True),
        ("StrictHostKeyChecking accept-new", True),
        ("-o UserKnownHostsFile=/dev/null", True),
        ("host_key_checking = False", True),
        ("ANSIBLE_HOST_KEY_CHECKING: 'false'", True),
        ("-o StrictHostKeyChecking=yes -o UserKnownHostsFile=/tmp/x/known_hosts", False),
        ("host_key_checking = true", False),
    ],
)
def test_checking_off_detector(line, is_off):
    assert bool(checking_off(line)) is is_off


def test_no_keyscan_and_no_host_key_checking_off():
    offenders = {}
    for path in scanned_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        hits = keyscan_calls(text) + checking_off(text)
        if hits:
            offenders[str(path.relative_to(ROOT))] = hits
    assert offenders == {}
    assert re.search(r"^host_key_checking\s*=\s*true\s*$", (ROOT / "ansible.cfg").read_text(), re.MULTILINE)


def id_token_writers(workflow):
    """Where a workflow grants id-token: the workflow itself ("*") and the jobs that do."""
    found = set()
    if (workflow.get("permissions") or {}).get("id-token"):
        found.add(("*", workflow["permissions"]["id-token"]))
    for job_id, job in workflow["jobs"].items():
        if (job.get("permissions") or {}).get("id-token"):
            found.add((job_id, job["permissions"]["id-token"]))
    return found


def test_permissions_id_token_only_where_an_aws_role_is_assumed():
    ci = load(CI)
    assert ci["permissions"] == {"contents": "read"}
    for path, value in walk(ci):
        assert "id-token" not in path and "id-token" not in value, path
    assert id_token_writers(ci) == set()
    assert load(DEPLOY)["permissions"] == {"id-token": "write", "contents": "read"}
    # The pipeline: read-only by default; only its calls of the push and of the deploy get a token.
    pipeline = load(PIPELINE)
    assert pipeline["permissions"] == {"contents": "read"}
    assert id_token_writers(pipeline) == {("build", "write"), ("deploy", "write")}
    assert pipeline["jobs"]["build"]["permissions"] == {"id-token": "write", "contents": "read"}
    # The push workflow: only the job that assumes the ECR role.
    build_push = load(BUILD_PUSH)
    assert build_push["permissions"] == {"contents": "read"}
    assert id_token_writers(build_push) == {("build", "write")}
    for workflow in (pipeline, build_push, load(DEPLOY)):
        for job_id, job in workflow["jobs"].items():
            token = (job.get("permissions") or {}).get("id-token") or (workflow.get("permissions") or {}).get(
                "id-token"
            )
            if not token:
                continue
            # A token is granted only where an AWS role is assumed (or a workflow that does is called).
            assumes = any(
                s.get("uses", "").startswith("aws-actions/configure-aws-credentials") for s in job.get("steps", [])
            )
            assert assumes or job.get("uses", "").startswith("./.github/workflows/"), job_id


@pytest.mark.parametrize("workflow", ALL_WORKFLOWS, ids=lambda p: p.stem)
def test_no_expressions_in_run_scripts(workflow):
    """Secrets, inputs and every other ${{ }} value reach scripts through env only (script injection)."""
    for job_id, step in steps(load(workflow)):
        if "run" in step:
            assert "${{" not in step["run"], (job_id, step.get("name"), step["run"])


@pytest.mark.parametrize("workflow", ALL_WORKFLOWS, ids=lambda p: p.stem)
def test_secrets_only_through_env(workflow):
    for path, value in walk(load(workflow)):
        for expression in re.findall(r"\$\{\{(.*?)\}\}", value):
            if "secrets." in expression or "secrets[" in expression:
                assert len(path) >= 2 and path[-2] == "env", (path, value)


def test_ci_runs_the_readme_stages():
    ci = load(CI)
    assert set(ci["on"]) == {"push", "pull_request"}
    assert ci["concurrency"]["cancel-in-progress"] is True
    runs = [step["run"] for _job, step in steps(ci) if "run" in step]
    # The stages of tools/test.sh (what `make test` and README's test command run).
    default = re.search(r"stages=\((setup[^)]*)\)", (ROOT / "tools" / "test.sh").read_text()).group(1).split()
    assert default[0] == "setup"
    for stage in default[1:]:
        if stage == "molecule":
            continue
        assert any(f"bash tools/test.sh setup {stage}" in run for run in runs), stage
    for job_id, job in ci["jobs"].items():
        assert job["runs-on"] == "ubuntu-latest", job_id
        assert 0 < job["timeout-minutes"] <= 90, job_id
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/setup-python"):
                assert step["with"]["python-version"] == "3.13"
    molecule = ci["jobs"]["molecule"]
    scenarios = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))
    assert sorted(molecule["strategy"]["matrix"]["scenario"]) == scenarios
    assert set(scenarios) >= {"docker", "host", "nginx", "compose_app", "kafka", "judge0"}
    (step,) = [s for s in molecule["steps"] if "run" in s]
    assert "bash tools/test.sh setup molecule" in step["run"]
    assert step["env"]["MOLECULE_SCENARIOS"] == "${{ matrix.scenario }}"


def test_deploy_workflow_shape():
    deploy = load(DEPLOY)
    dispatch = deploy["on"]["workflow_dispatch"]["inputs"]
    assert dispatch["release"]["required"] is True
    assert dispatch["playbook"]["type"] == "choice"
    assert dispatch["playbook"]["options"] == ["deploy.yml", "rollback.yml"]
    assert dispatch["rollback_to"]["default"] == "previous"
    call = deploy["on"]["workflow_call"]
    assert call["inputs"]["release"]["required"] is True
    assert "DEPLOY_SSH_KEY" in call["secrets"]
    # One environment per run: dev, staging or prod, prod unless told (as before environments).
    assert dispatch["environment"]["options"] == ["dev", "staging", "prod"]
    assert dispatch["environment"]["default"] == call["inputs"]["environment"]["default"] == "prod"

    (job,) = deploy["jobs"].values()
    # prod runs in the production environment (its reviewers approve), dev and staging in their own.
    assert job["environment"] == "${{ (inputs.environment || 'prod') == 'prod' && 'production' || inputs.environment }}"
    # One deploy at a time per environment; a queued one never cancels a running one.
    assert "concurrency" not in deploy
    assert job["concurrency"] == {"group": "deploy-${{ inputs.environment || 'prod' }}", "cancel-in-progress": False}
    assert job["runs-on"] == "ubuntu-latest"
    assert job["timeout-minutes"] > 0
    by_action = {s["uses"].split("@")[0]: s for s in job["steps"] if "uses" in s}
    aws = by_action["aws-actions/configure-aws-credentials"]["with"]
    assert aws["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert aws["aws-region"] == "ap-northeast-2"
    assert "aws-access-key-id" not in aws and "aws-secret-access-key" not in aws
    assert by_action["actions/setup-python"]["with"]["python-version"] == "3.13"
    assert by_action["actions/checkout"]["with"]["persist-credentials"] is False
    runs = [s["run"] for s in job["steps"] if "run" in s]
    assert any("pip install -r requirements/controller.txt -c requirements/constraints.txt" in run for run in runs), (
        runs
    )

    (ssh_step,) = [s for s in job["steps"] if "tools/ssh-deploy.sh" in s.get("run", "")]
    assert "tools/ssh-deploy.sh deploy.yml" in ssh_step["run"]
    assert "tools/ssh-deploy.sh rollback.yml -e rollback_confirm=yes" in ssh_step["run"]
    env = ssh_step["env"]
    assert env["DEPLOY_SSH_KEY"] == "${{ secrets.DEPLOY_SSH_KEY }}"
    assert env["DEPLOY_KNOWN_HOSTS"] == "${{ vars.DEPLOY_KNOWN_HOSTS }}"
    assert env["RELEASE"] == "${{ inputs.release }}"
    assert env["DEPLOY_INVENTORY"] == "inventories/${{ inputs.environment }}"
    # The AWS session is there before the inventory is read.
    names = [s.get("uses", s.get("name")) for s in job["steps"]]
    assert names.index(next(n for n in names if n.startswith("aws-actions/"))) < job["steps"].index(ssh_step)
    # The only secret in the workflow is the SSH key, and only on the step that needs it.
    secret_uses = [(p, v) for p, v in walk(deploy) if "secrets." in v]
    assert len(secret_uses) == 1 and secret_uses[0][0][-1] == "DEPLOY_SSH_KEY"


def test_deploy_workflow_checks_release_ids():
    """The inputs check keeps '{{ }}' (Ansible would template it) and spaces out of the extra vars."""
    (job,) = load(DEPLOY)["jobs"].values()
    (check,) = [s for s in job["steps"] if s.get("name") == "Check the inputs"]
    assert job["steps"].index(check) < next(i for i, s in enumerate(job["steps"]) if "ssh-deploy" in s.get("run", ""))
    for playbook, release, rollback_to, environment, ok in [
        ("deploy.yml", "3f2c1ab", "previous", "prod", True),
        ("deploy.yml", "v1.2.3_rc-1", "previous", "dev", True),
        ("deploy.yml", "3f2c1ab", "previous", "staging", True),
        ("rollback.yml", "", "previous", "prod", True),
        ("rollback.yml", "x", "r-0123abcd", "staging", True),
        ("deploy.yml", "{{ lookup('pipe', 'id') }}", "previous", "prod", False),
        ("deploy.yml", "v1 -e x=1", "previous", "prod", False),
        ("deploy.yml", "", "previous", "prod", False),
        ("rollback.yml", "v1", "previous x", "prod", False),
        ("site.yml", "v1", "previous", "prod", False),
        # The inventory path is built from it: nothing but the three names.
        ("deploy.yml", "3f2c1ab", "previous", "production", False),
        ("deploy.yml", "3f2c1ab", "previous", "../local", False),
        ("deploy.yml", "3f2c1ab", "previous", "", False),
    ]:
        env = {
            "PATH": os.environ["PATH"],
            "RELEASE": release,
            "PLAYBOOK": playbook,
            "ROLLBACK_TO": rollback_to,
            "ENVIRONMENT": environment,
        }
        result = subprocess.run(
            ["bash", "-e", "-c", check["run"]], env=env, capture_output=True, text=True, check=False
        )
        assert (result.returncode == 0) is ok, (playbook, release, rollback_to, environment, result.stdout)


# ------------------------------------------------------------- the pipeline: build -> push -> deploy
def route_script():
    (step,) = load(PIPELINE)["jobs"]["route"]["steps"]
    return step


@pytest.mark.parametrize(
    ("ref", "environment"),
    [
        ("refs/heads/develop", "dev"),
        ("refs/heads/release/1.4.0", "staging"),
        ("refs/heads/release/2026-12/hotfix", "staging"),
        ("refs/heads/main", "prod"),
        ("refs/heads/feature/seat-map", None),
        ("refs/heads/developer", None),
        ("refs/heads/mainline", None),
        ("refs/heads/releases/1.0", None),
        ("refs/tags/v1.0.0", None),
        ("refs/pull/16/merge", None),
    ],
)
def test_pipeline_maps_branches_to_environments(tmp_path, ref, environment):
    """The routing step, run for real: the coding-test seed's table (develop, release/*, main)."""
    step = route_script()
    assert step["env"] == {"REF": "${{ github.ref }}"}
    output, summary = tmp_path / "output", tmp_path / "summary"
    env = {
        "PATH": os.environ["PATH"],
        "REF": ref,
        "SERVICES": load(PIPELINE)["env"]["SERVICES"],
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    result = subprocess.run(["bash", "-e", "-c", step["run"]], env=env, capture_output=True, text=True, check=False)
    if environment is None:
        assert result.returncode != 0
        assert "deploys nowhere" in result.stdout
        assert not output.exists() or "environment=" not in output.read_text()
        return
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert lines["environment"] == environment
    assert json.loads(lines["services"]) == json.loads(env["SERVICES"])


def test_pipeline_triggers_and_order():
    pipeline = load(PIPELINE)
    assert pipeline["on"] == {"push": {"branches": ["develop", "release/**", "main"]}}
    # A newer push waits for the running pipeline (never cancels a deploy half-way).
    assert pipeline["concurrency"]["cancel-in-progress"] is False
    jobs = pipeline["jobs"]
    assert jobs["route"]["if"] == "vars.AWS_ECR_PUSH_ROLE_ARN != ''"
    # lint/test -> build and push -> deploy
    assert jobs["test"]["needs"] == "route"
    assert set(jobs["build"]["needs"]) == {"route", "test"}
    assert set(jobs["deploy"]["needs"]) == {"route", "build"}
    assert jobs["build"]["uses"] == "./.github/workflows/build-push.yml"
    assert jobs["build"]["with"]["services"] == "${{ needs.route.outputs.services }}"
    deploy = jobs["deploy"]
    assert deploy["uses"] == "./.github/workflows/deploy.yml"
    # The release deployed is the tag the push job pushed, in the environment the branch chose.
    assert deploy["with"] == {
        "release": "${{ needs.build.outputs.tag }}",
        "environment": "${{ needs.route.outputs.environment }}",
    }
    assert deploy["secrets"] == "inherit"
    # The approval for prod is the deploy workflow's: its job runs in "production" for prod.
    (deploy_job,) = load(DEPLOY)["jobs"].values()
    assert "'production'" in deploy_job["environment"]


def test_push_workflow_tags_with_the_git_sha_through_oidc():
    build_push = load(BUILD_PUSH)
    assert set(build_push["on"]) == {"workflow_call"}
    assert build_push["on"]["workflow_call"]["outputs"]["tag"]["value"] == "${{ jobs.build.outputs.tag }}"
    job = build_push["jobs"]["build"]
    assert job["strategy"]["matrix"]["service"] == "${{ fromJSON(inputs.services) }}"
    assert job["strategy"]["fail-fast"] is True
    by_action = {s["uses"].split("@")[0]: s for s in job["steps"] if "uses" in s}
    aws = by_action["aws-actions/configure-aws-credentials"]["with"]
    assert aws["role-to-assume"] == "${{ vars.AWS_ECR_PUSH_ROLE_ARN }}"
    assert "aws-access-key-id" not in aws and "aws-secret-access-key" not in aws
    assert "aws-actions/amazon-ecr-login" in by_action
    names = [s.get("uses", "").split("@")[0] or s.get("name") for s in job["steps"]]
    (push,) = [s for s in job["steps"] if "tools/build-push.sh" in s.get("run", "")]
    assert names.index("aws-actions/amazon-ecr-login") < job["steps"].index(push)
    assert push["env"]["TAG"] == "${{ github.sha }}"
    assert push["env"]["REGISTRY"] == "${{ steps.ecr.outputs.registry }}"
    assert job["outputs"]["tag"] == "${{ steps.push.outputs.tag }}"


def test_pipeline_builds_the_images_the_inventories_deploy():
    """Every image inventories/shared/app.yml deploys is built and pushed, under the same repository name."""
    services = json.loads(load(PIPELINE)["env"]["SERVICES"])
    app = yaml.safe_load((ROOT / "inventories" / "shared" / "app.yml").read_text())
    prefix = load(BUILD_PUSH)["on"]["workflow_call"]["inputs"]["repository-prefix"]["default"]
    deployed = []
    for image in app["compose_app_images"].values():
        registry, rest = image.split("/", 1)
        assert registry == "{{ ticketing_ecr }}"
        repository, tag = rest.rsplit(":", 1)
        assert tag == "{{ compose_app_release }}"
        assert repository.startswith(prefix)
        deployed.append(repository.removeprefix(prefix))
    assert sorted(deployed) == sorted(services)


# ------------------------------------------------------------------- tools/build-push.sh
DOCKER_STUB = r"""#!/bin/bash
# Stands in for the docker CLI: records each call, builds and pushes nothing.
printf '%s\n' "$*" >>"$DOCKER_RECORD"
exit "${DOCKER_RC:-0}"
"""


class BuildPush:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        stub = bin_dir / "docker"
        stub.write_text(DOCKER_STUB)
        stub.chmod(0o755)
        self.record = tmp_path / "docker.calls"
        for service in ("gateway-service", "user-service"):
            (tmp_path / "services" / service).mkdir(parents=True)
            (tmp_path / "services" / service / "Dockerfile").write_text("FROM scratch\n")
        self.env = {
            "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "DOCKER_RECORD": str(self.record),
            "REGISTRY": "123456789012.dkr.ecr.ap-northeast-2.amazonaws.com",
            "TAG": "3f2c1ab",
        }

    def run(self, *services, **env):
        merged = {**self.env, **{k: v for k, v in env.items() if v is not None}}
        for key in [k for k, v in env.items() if v is None]:
            merged.pop(key, None)
        return subprocess.run(
            ["bash", str(BUILD_SCRIPT), *services],
            env=merged,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def calls(self):
        return self.record.read_text().splitlines() if self.record.exists() else []


def test_build_push_builds_every_image_then_pushes_them(tmp_path):
    bp = BuildPush(tmp_path)
    result = bp.run("gateway-service", "user-service")
    assert result.returncode == 0, result.stderr
    registry = bp.env["REGISTRY"]
    assert bp.calls() == [
        f"build --label org.opencontainers.image.revision=3f2c1ab -t {registry}/ticketing/gateway-service:3f2c1ab "
        "services/gateway-service",
        f"build --label org.opencontainers.image.revision=3f2c1ab -t {registry}/ticketing/user-service:3f2c1ab "
        "services/user-service",
        f"push {registry}/ticketing/gateway-service:3f2c1ab",
        f"push {registry}/ticketing/user-service:3f2c1ab",
    ]
    assert "compose_app_release=3f2c1ab" in result.stderr


def test_build_push_failed_build_pushes_nothing(tmp_path):
    bp = BuildPush(tmp_path)
    result = bp.run("gateway-service", "user-service", DOCKER_RC="1")
    assert result.returncode != 0
    assert len(bp.calls()) == 1 and bp.calls()[0].startswith("build ")


@pytest.mark.parametrize(
    ("services", "env", "expect"),
    [
        ((), {}, "usage: tools/build-push.sh SERVICE"),
        (("gateway-service",), {"REGISTRY": None}, "REGISTRY must be a registry host"),
        (("gateway-service",), {"REGISTRY": "reg.example/evil path"}, "REGISTRY must be a registry host"),
        (("gateway-service",), {"TAG": None}, "TAG must be an image tag"),
        (("gateway-service",), {"TAG": "{{ lookup('pipe', 'id') }}"}, "TAG must be an image tag"),
        (("gateway-service",), {"TAG": "-e x=1"}, "TAG must be an image tag"),
        (("gateway-service",), {"REPOSITORY_PREFIX": "Ticketing/"}, "REPOSITORY_PREFIX must be empty"),
        (("gateway-service",), {"REPOSITORY_PREFIX": "ticketing"}, "REPOSITORY_PREFIX must be empty"),
        (("Gateway",), {}, "is not a repository name"),
        (("../etc",), {}, "is not a repository name"),
        (("gateway-service", "payment-service"), {}, "no services/payment-service/Dockerfile"),
    ],
    ids=[
        "usage",
        "no-registry",
        "bad-registry",
        "no-tag",
        "template-tag",
        "option-tag",
        "upper-prefix",
        "prefix-without-slash",
        "upper-service",
        "path-service",
        "missing-dockerfile",
    ],
)
def test_build_push_refuses_before_building_anything(tmp_path, services, env, expect):
    bp = BuildPush(tmp_path)
    result = bp.run(*services, **env)
    assert result.returncode != 0
    assert expect in result.stderr
    assert bp.calls() == []


def test_build_push_is_shellcheck_clean():
    assert shutil.which("shellcheck"), "shellcheck comes with tools/ensure-apt.sh (make setup)"
    result = subprocess.run(
        ["shellcheck", "-x", str(BUILD_SCRIPT)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


# ------------------------------------------------------------------- tools/ssh-deploy.sh
STUB = r"""#!/bin/bash
# Stands in for ansible-playbook: records what tools/ssh-deploy.sh handed it.
kh=$(sed -n 's/.*UserKnownHostsFile=\([^ ]*\).*/\1/p' <<<"$ANSIBLE_SSH_ARGS")
dir=$(dirname "$kh")
python3 - "$kh" "$dir" "$@" <<'EOF' >"$STUB_RECORD"
import json, os, stat, subprocess, sys
kh, d, args = sys.argv[1], sys.argv[2], sys.argv[3:]
on_disk = []
for root, _dirs, files in os.walk(d):
    for f in files:
        p = os.path.join(root, f)
        try:
            with open(p, "rb") as h:
                if b"PRIVATE KEY" in h.read():
                    on_disk.append(p)
        except OSError:
            pass
agent = subprocess.run(["ssh-add", "-L"], capture_output=True, text=True)
print(json.dumps({
    "args": args, "cwd": os.getcwd(), "dir": d,
    "dir_mode": stat.S_IMODE(os.stat(d).st_mode), "kh_mode": stat.S_IMODE(os.stat(kh).st_mode),
    "known_hosts": open(kh).read(), "ssh_args": os.environ.get("ANSIBLE_SSH_ARGS"),
    "host_key_checking": os.environ.get("ANSIBLE_HOST_KEY_CHECKING"),
    "auth_sock": os.environ.get("SSH_AUTH_SOCK"), "agent_keys": agent.stdout, "agent_rc": agent.returncode,
    "key_in_env": any("PRIVATE KEY" in v for v in os.environ.values()), "key_on_disk": on_disk,
}))
EOF
if [ -n "${STUB_SLEEP:-}" ]; then
  touch "$STUB_RECORD.started"
  sleep "$STUB_SLEEP"
fi
exit "${STUB_RC:-0}"
"""


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    for name in ("deploy", "host"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}-test", "-f", str(d / name)], check=True
        )
    private = (d / "deploy").read_text()
    host_type, host_b64 = (d / "host.pub").read_text().split()[:2]
    return {
        "private": private,
        "public": (d / "deploy.pub").read_text().split()[1],
        "body": [line for line in private.splitlines() if line and not line.startswith("-----")],
        "known_hosts": f"203.0.113.10 {host_type} {host_b64}\n[ticketing-local-app]:2222 {host_type} {host_b64}",
        "host_line": f"{host_type} {host_b64}",
    }


class Runner:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        stub_dir = tmp_path / "bin"
        stub_dir.mkdir()
        stub = stub_dir / "ansible-playbook"
        stub.write_text(STUB)
        stub.chmod(0o755)
        self.record = tmp_path / "record.json"
        self.pidfile = tmp_path / "agent.pid"
        # A short TMPDIR of its own: the script's directory is found (and must be gone) there.
        self.tmpdir = pathlib.Path(tempfile.mkdtemp(prefix="sdt", dir="/tmp"))
        self.env = {
            "PATH": f"{stub_dir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "TMPDIR": str(self.tmpdir),
            "STUB_RECORD": str(self.record),
            "DEPLOY_DEBUG_AGENT_PIDFILE": str(self.pidfile),
            # A caller's agent must not be used: point at one that does not exist.
            "SSH_AUTH_SOCK": str(tmp_path / "callers-agent.sock"),
        }

    def env_for(self, **env):
        merged = dict(self.env)
        for key, value in env.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return merged

    def run(self, *args, **env):
        return subprocess.run(
            ["bash", str(SCRIPT), *args],
            env=self.env_for(**env),
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def recorded(self):
        return json.loads(self.record.read_text())

    def leftovers(self):
        return sorted(str(p) for p in self.tmpdir.iterdir())


@pytest.fixture
def runner(tmp_path):
    r = Runner(tmp_path)
    yield r
    shutil.rmtree(r.tmpdir, ignore_errors=True)


def agent_alive(pid):
    try:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def assert_no_key_in(text, keys):
    assert keys["private"].splitlines()[0] not in text  # -----BEGIN OPENSSH PRIVATE KEY-----
    for line in keys["body"]:
        assert line not in text


def test_usage_without_a_playbook(runner, keys):
    result = runner.run(DEPLOY_SSH_KEY=keys["private"], DEPLOY_KNOWN_HOSTS=keys["known_hosts"])
    assert result.returncode != 0
    assert "usage: tools/ssh-deploy.sh PLAYBOOK" in result.stderr
    assert not runner.record.exists()


@pytest.mark.parametrize(
    ("known_hosts", "expect"),
    [
        (None, "DEPLOY_KNOWN_HOSTS is empty or not set"),
        ("", "DEPLOY_KNOWN_HOSTS is empty or not set"),
        (" \n\t\n", "DEPLOY_KNOWN_HOSTS is empty or not set"),
        ("# only a comment\n", "DEPLOY_KNOWN_HOSTS holds no host key line"),
        ("HOST_LINE", "DEPLOY_KNOWN_HOSTS line 1 starts with a key type, not a host"),
        ("203.0.113.10 ssh-ed25519", "DEPLOY_KNOWN_HOSTS line 1 is not a known_hosts line"),
        ("203.0.113.10", "DEPLOY_KNOWN_HOSTS line 1 is not a known_hosts line"),
        ("203.0.113.10 ssh-foo AAAAC3NzaC1lZDI1NTE5AAAAIA", "DEPLOY_KNOWN_HOSTS line 1 is not a known_hosts line"),
        ("203.0.113.10 ssh-ed25519 not*base64!", "DEPLOY_KNOWN_HOSTS line 1 is not a known_hosts line"),
        ("GOOD\n\n# c\nh1 ssh-ed25519", "DEPLOY_KNOWN_HOSTS line 4 is not a known_hosts line"),
        ("@cert-authority *.example.com HOST_LINE", "DEPLOY_KNOWN_HOSTS line 1 has a marker"),
        ("PRIVATE", "DEPLOY_KNOWN_HOSTS line 1 is not a known_hosts line"),
    ],
    ids=[
        "unset",
        "empty",
        "blank",
        "comments-only",
        "no-host",
        "no-key",
        "host-only",
        "bad-type",
        "bad-base64",
        "second-line-bad",
        "marker",
        "private-key-pasted",
    ],
)
def test_refuses_bad_known_hosts(runner, keys, known_hosts, expect):
    if known_hosts is not None:
        good = keys["known_hosts"].splitlines()[0]
        known_hosts = (
            known_hosts.replace("HOST_LINE", keys["host_line"])
            .replace("GOOD", good)
            .replace("PRIVATE", keys["private"])
        )
    result = runner.run("deploy.yml", DEPLOY_SSH_KEY=keys["private"], DEPLOY_KNOWN_HOSTS=known_hosts)
    assert result.returncode != 0
    assert expect in result.stderr
    # The fix: where to set it, what goes in, and never keyscan.
    assert "set the repository variable DEPLOY_KNOWN_HOSTS" in result.stderr
    assert "never use ssh-keyscan" in result.stderr
    assert_no_key_in(result.stdout + result.stderr, keys)
    # Nothing was started or written.
    assert not runner.record.exists()
    assert not runner.pidfile.exists()
    assert runner.leftovers() == []


@pytest.mark.parametrize(
    ("key", "expect"),
    [
        (None, "DEPLOY_SSH_KEY is empty or not set"),
        ("", "DEPLOY_SSH_KEY is empty or not set"),
        ("PUBLIC", "DEPLOY_SSH_KEY is not a private key"),
        ("/home/runner/.ssh/id_ed25519", "DEPLOY_SSH_KEY is not a private key"),
    ],
    ids=["unset", "empty", "public-key", "file-name"],
)
def test_refuses_missing_or_wrong_key(runner, keys, key, expect):
    if key == "PUBLIC":
        key = f"ssh-ed25519 {keys['public']} deploy-test"
    result = runner.run("deploy.yml", DEPLOY_SSH_KEY=key, DEPLOY_KNOWN_HOSTS=keys["known_hosts"])
    assert result.returncode != 0
    assert expect in result.stderr
    assert "set the repository secret DEPLOY_SSH_KEY" in result.stderr
    assert not runner.record.exists()
    assert not runner.pidfile.exists()
    assert runner.leftovers() == []


def test_refuses_a_key_ssh_add_cannot_load(runner, keys):
    """A damaged key gets as far as ssh-add: refused, the key not shown, the agent stopped."""
    lines = keys["private"].splitlines()
    damaged = "\n".join([lines[0], *("A" * len(line) for line in lines[1:-1]), lines[-1]]) + "\n"
    result = runner.run("deploy.yml", DEPLOY_SSH_KEY=damaged, DEPLOY_KNOWN_HOSTS=keys["known_hosts"])
    assert result.returncode != 0
    assert "ssh-add refused DEPLOY_SSH_KEY" in result.stderr
    assert "AAAAAAAAAAAA" not in result.stdout + result.stderr
    assert_no_key_in(result.stdout + result.stderr, keys)
    assert not runner.record.exists()
    pid = int(runner.pidfile.read_text())
    assert not agent_alive(pid)
    assert runner.leftovers() == []


def test_run_hands_ansible_a_private_agent_and_pinned_known_hosts(runner, keys):
    result = runner.run(
        "deploy.yml",
        "-e",
        "compose_app_release=3f2c1ab",
        DEPLOY_SSH_KEY=keys["private"],
        DEPLOY_KNOWN_HOSTS=keys["known_hosts"],
        STUB_RC="0",
    )
    assert result.returncode == 0, result.stderr
    rec = runner.recorded()
    assert rec["args"] == ["-i", "inventories/prod", "deploy.yml", "-e", "compose_app_release=3f2c1ab"]
    assert rec["cwd"] == str(ROOT)
    d = rec["dir"]
    assert d.startswith(str(runner.tmpdir) + "/ssh-deploy.")
    assert rec["dir_mode"] == 0o700
    assert rec["kh_mode"] == 0o600
    assert rec["known_hosts"] == keys["known_hosts"] + "\n"
    assert rec["host_key_checking"] == "True"
    assert rec["ssh_args"].split() == [
        *("-o", "ControlMaster=auto"),
        *("-o", "ControlPersist=60s"),
        *("-o", f"ControlPath={d}/cp-%C"),
        *("-o", f"UserKnownHostsFile={d}/known_hosts"),
        *("-o", "GlobalKnownHostsFile=/dev/null"),
        *("-o", "StrictHostKeyChecking=yes"),
        *("-o", "ServerAliveInterval=30"),
    ]
    # Its own agent (not the caller's), holding exactly the deploy key.
    assert rec["auth_sock"] == f"{d}/agent.sock"
    assert rec["agent_rc"] == 0
    assert [line.split()[1] for line in rec["agent_keys"].splitlines()] == [keys["public"]]
    # The key: not in Ansible's environment, not in any file, not in the output.
    assert rec["key_in_env"] is False
    assert rec["key_on_disk"] == []
    assert_no_key_in(result.stdout + result.stderr, keys)
    assert "compose_app_release=3f2c1ab" not in result.stderr
    # Afterwards: no agent, no directory.
    assert not agent_alive(int(runner.pidfile.read_text()))
    assert not pathlib.Path(d).exists()
    assert runner.leftovers() == []


@pytest.mark.parametrize("rc", [2, 4, 99])
def test_returns_ansible_playbooks_exit_code_and_cleans_up(runner, keys, rc):
    result = runner.run(
        "rollback.yml",
        "-e",
        "rollback_confirm=yes",
        DEPLOY_SSH_KEY=keys["private"].replace("\n", "\r\n"),  # pasted with CRLF: still works
        DEPLOY_KNOWN_HOSTS=keys["known_hosts"],
        DEPLOY_INVENTORY="inventories/local",
        STUB_RC=str(rc),
    )
    assert result.returncode == rc, result.stderr
    rec = runner.recorded()
    assert rec["args"] == ["-i", "inventories/local", "rollback.yml", "-e", "rollback_confirm=yes"]
    assert [line.split()[1] for line in rec["agent_keys"].splitlines()] == [keys["public"]]
    assert not agent_alive(int(runner.pidfile.read_text()))
    assert not pathlib.Path(rec["dir"]).exists()
    assert runner.leftovers() == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cancelled_run_cleans_up(runner, keys, sig):
    """A cancelled Actions job signals the whole process group: the agent and the directory still go."""
    proc = subprocess.Popen(
        ["bash", str(SCRIPT), "deploy.yml"],
        env=runner.env_for(DEPLOY_SSH_KEY=keys["private"], DEPLOY_KNOWN_HOSTS=keys["known_hosts"], STUB_SLEEP="30"),
        cwd=runner.tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    started = pathlib.Path(f"{runner.record}.started")
    deadline = time.monotonic() + 30
    while not started.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the stub never started"
        time.sleep(0.05)
    pid = int(runner.pidfile.read_text())
    assert agent_alive(pid)
    os.killpg(proc.pid, sig)
    err = proc.communicate(timeout=30)[1]
    assert proc.returncode != 0
    assert_no_key_in(err, keys)
    assert not agent_alive(pid)
    assert not pathlib.Path(runner.recorded()["dir"]).exists()
    assert runner.leftovers() == []


def test_script_is_shellcheck_clean():
    assert shutil.which("shellcheck"), "shellcheck comes with tools/ensure-apt.sh (make setup)"
    result = subprocess.run(["shellcheck", "-x", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout
    result = subprocess.run(["shellcheck", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout

"""The ticketing example as the inventories ship it, without Docker's daemon.

* The compose file each inventory renders (``tests/functional/ticketing/render.yml``: Ansible's own
  ``template``, as the compose_app role runs it, with the inventory's group_vars as they are):
  every service of the seed design on the kafka role's external network with its bootstrap
  servers, the Spring variables the seed's services read, a container healthcheck on the same
  path compose_deploy checks, the image tag = the release; the app secret named once for the app
  and for provisioning, and the docs naming the same secret.
* ``docker compose config`` (the CLI only, no daemon) accepts the rendered files with a test
  ``.env`` and interpolates the variables to what a Spring service needs.
* The local demo's rendering keeps what the demo depends on (one gateway, its health path, no Kafka
  network, DATABASE_URL/REDIS_URL as before).
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import urllib.parse

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
RENDER = ROOT / "tests" / "functional" / "ticketing" / "render.yml"
RELEASE = "3f2c1ab"
SERVICES = {"gateway", "user-service", "event-service", "queue-service", "reservation-service", "payment-service"}
# A test .env: made-up values, nothing real.
TEST_ENV = {
    "DB_HOST": "db.test.invalid",
    "DB_NAME": "ticketing",
    "DB_USER": "ticketing_test",
    "DB_PASSWORD": "test-only-db-password",
    "REDIS_HOST": "cache.test.invalid",
    "REDIS_PASSWORD": "test-only-redis-password",
    "SPRING_PROFILES_ACTIVE": "prod",
}


def render(tmp_path, *inventory_args, extra=()):
    """Run the render playbook; returns (compose files by name, the variables it wrote)."""
    dest = tmp_path / "rendered"
    dest.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANSIBLE_"))}
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    cmd = [
        str(pathlib.Path(sys.executable).with_name("ansible-playbook")),
        *inventory_args,
        str(RENDER),
        "-e",
        f"render_root={ROOT}",
        "-e",
        f"render_dest={dest}",
        "-e",
        f"compose_app_release={RELEASE}",
        "-e",
        "ansible_connection=local",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        *extra,
    ]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    variables = json.loads((dest / "vars.json").read_text())
    files = {f["dest"]: (dest / f["dest"]).read_text() for f in variables["compose_app_compose_files"]}
    return files, variables, dest


def app_host(tmp_path, name="ticketing-test-app"):
    """An inventory source that puts one host, reached locally, into group app."""
    path = tmp_path / "app-host.yml"
    path.write_text(yaml.safe_dump({"all": {"children": {"app": {"hosts": {name: {}}}}}}))
    return path


def compose_config(directory, files, env=None):
    """`docker compose config` of the rendered files with a test .env, or None without the CLI."""
    docker = shutil.which("docker")
    if not docker:
        return None
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return None
    (directory / ".env").write_text("".join(f"{k}={v}\n" for k, v in (env or TEST_ENV).items()))
    args = [a for f in files for a in ("-f", f)]
    result = subprocess.run(
        [docker, "compose", *args, "config", "--format", "json"],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ----------------------------------------------------------------------- dev, staging, prod
# What differs per environment (inventories/<env>/group_vars/all/env.yml); everything else is shared.
ENVS = {
    "dev": {"domain": "dev.ticket.example.com", "le_staging": True, "verify": 10, "instance": "t3.medium"},
    "staging": {"domain": "staging.ticket.example.com", "le_staging": False, "verify": 30, "instance": "t3.medium"},
    "prod": {"domain": "ticket.example.com", "le_staging": False, "verify": 30, "instance": "t3.large"},
}


@pytest.fixture(scope="module", params=sorted(ENVS))
def prod(request, tmp_path_factory):
    """The rendering of one environment's inventory (the shape is the same in all three)."""
    tmp = tmp_path_factory.mktemp(request.param)
    inventory = ROOT / "inventories" / request.param / "hosts.yml"
    return (*render(tmp, "-i", str(inventory), "-i", str(app_host(tmp))), request.param)


def test_prod_renders_every_service_of_the_seed(prod):
    files, variables, _dest, _env = prod
    assert [f["src"].rsplit("/", 3)[-3:] for f in variables["compose_app_compose_files"]] == [
        ["apps", "ticketing", "compose.yml.j2"]
    ]
    compose = yaml.safe_load(files["compose.yml"])
    assert compose["name"] == "ticketing"
    assert set(compose["services"]) == SERVICES
    for name, service in compose["services"].items():
        image = service["image"]
        assert image.endswith(f":{RELEASE}"), image
        assert ".dkr.ecr.ap-northeast-2.amazonaws.com/ticketing/" in image
        assert "ports" not in service, name


def test_prod_services_are_on_the_kafka_network_with_its_bootstrap_servers(prod):
    files, variables, _dest, _env = prod
    compose = yaml.safe_load(files["compose.yml"])
    assert variables["ec2ops_kafka_enabled"] is True
    # The network the kafka role creates (kafka_network_name), joined as an external network.
    assert variables["kafka_network_name"] == "ec2ops"
    assert compose["networks"]["kafka"] == {"name": variables["kafka_network_name"], "external": True}
    bootstrap = f"{variables['kafka_internal_host']}:{variables['kafka_internal_port']}"
    assert bootstrap == "kafka:29092"
    for name, service in compose["services"].items():
        assert set(service["networks"]) == {"default", "kafka"}, name
        assert service["environment"]["SPRING_KAFKA_BOOTSTRAP_SERVERS"] == bootstrap, name


def test_prod_app_network_is_the_one_the_broker_is_on(prod):
    """The kafka role's own compose file, rendered with the same inventory: its broker sits on the
    network the app joins, under the name and port the app's bootstrap servers use."""
    files, _variables, dest, _env = prod
    app = yaml.safe_load(files["compose.yml"])
    broker_project = yaml.safe_load((dest / "kafka-compose.yml").read_text())
    network = app["networks"]["kafka"]["name"]
    assert broker_project["networks"] == {network: {"external": True}}
    broker = broker_project["services"]["kafka"]
    host, port = app["services"]["gateway"]["environment"]["SPRING_KAFKA_BOOTSTRAP_SERVERS"].split(":")
    assert broker["networks"] == {network: {"aliases": [host]}}
    advertised = broker["environment"]["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert f"INTERNAL://{host}:{port}" in advertised


def test_prod_services_get_the_spring_variables_the_seed_reads(prod):
    files, _variables, _dest, _env = prod
    compose = yaml.safe_load(files["compose.yml"])
    for name, service in compose["services"].items():
        env = service["environment"]
        assert env["SPRING_DATASOURCE_URL"] == "jdbc:postgresql://${DB_HOST}:${DB_PORT:-5432}/${DB_NAME}", name
        assert env["SPRING_DATASOURCE_USERNAME"] == "${DB_USER}"
        assert env["SPRING_DATASOURCE_PASSWORD"] == "${DB_PASSWORD}"
        # The seed's name (Spring Boot 2) and Boot 3's: each version reads its own.
        assert env["SPRING_REDIS_HOST"] == env["SPRING_DATA_REDIS_HOST"] == "${REDIS_HOST}"
        assert env["SPRING_REDIS_PASSWORD"] == env["SPRING_DATA_REDIS_PASSWORD"] == "${REDIS_PASSWORD}"
        assert env["SPRING_PROFILES_ACTIVE"].startswith("${SPRING_PROFILES_ACTIVE")
        assert env["APP_VERSION"] == RELEASE


def health_paths(compose, services):
    """(container healthcheck URL, compose_deploy's health URL) per service, {ip} as the container sees it."""
    pairs = {}
    for name, service in compose["services"].items():
        check = service.get("healthcheck", {}).get("test", [])
        url = check[-1] if check else None
        deploy_url = ((services.get(name) or {}).get("health") or {}).get("url")
        pairs[name] = (url, deploy_url.replace("{ip}", "127.0.0.1") if deploy_url else None)
    return pairs


def test_prod_healthcheck_and_deploy_check_ask_the_same_path(prod):
    files, variables, _dest, _env = prod
    compose = yaml.safe_load(files["compose.yml"])
    pairs = health_paths(compose, variables["compose_app_services"])
    for name, (container_url, deploy_url) in pairs.items():
        assert container_url is not None and deploy_url is not None, name
        assert container_url == deploy_url, name
        assert urllib.parse.urlsplit(container_url).path == "/actuator/health", name
    assert variables["compose_app_services"]["gateway"]["strategy"] == "rolling"
    assert all(s["health"]["body"] == '"status":"UP"' for s in variables["compose_app_services"].values())


def test_prod_names_the_app_secret_once(prod):
    _files, variables, _dest, env = prod
    ids = [s["id"] for s in variables["compose_app_secrets"]]
    # The app's own secret, and the database's that provisioning writes (issue 19; the role grants it itself).
    assert ids == [f"ticketing/{env}/app", f"ticketing/{env}/rds"]
    assert variables["ec2_provision_secret_names"] == ids[:1] and variables["ec2_provision_rds_enabled"] is True
    docs = (ROOT / "docs" / "provisioning.md").read_text()
    assert "ticketing/prod/app" in docs
    assert "[ticketing/prod]" not in docs and "secret:ticketing/prod-" not in docs


def test_each_environment_differs_only_where_it_says(prod):
    _files, variables, _dest, env = prod
    want = ENVS[env]
    assert variables["ec2_provision_env"] == env
    assert variables["compose_app_env"]["SPRING_PROFILES_ACTIVE"] == env
    assert "DB_HOST" not in variables["compose_app_env"]  # from ticketing/<env>/rds, never a static value
    assert f"ticketing-{env}." in variables["compose_app_env"]["REDIS_HOST"]
    assert [site["server_names"] for site in variables["nginx_sites"]] == [[want["domain"]]]
    assert variables["nginx_letsencrypt_staging"] is want["le_staging"]
    assert variables["compose_app_verify_seconds"] == want["verify"]
    assert variables["ec2_provision_app_instance_type"] == want["instance"]


@pytest.mark.parametrize("env", sorted(ENVS))
def test_environments_share_their_group_vars(env):
    """One copy of the shared variables: every environment links the same files, and adds only env.yml."""
    group_vars = ROOT / "inventories" / env / "group_vars"
    files = sorted(str(p.relative_to(group_vars)) for p in group_vars.rglob("*") if p.is_file() or p.is_symlink())
    assert files == ["all/env.yml", "all/shared.yml", "app/shared.yml", "judge0/shared.yml"]
    for group in ("all", "app", "judge0"):
        link = group_vars / group / "shared.yml"
        assert link.is_symlink()
        assert link.resolve() == ROOT / "inventories" / "shared" / f"{group}.yml"
    # env.yml sets ticketing_* values only (the shared files read them).
    own = yaml.safe_load((group_vars / "all" / "env.yml").read_text())
    assert own["ticketing_env"] == env
    assert all(name.startswith("ticketing_") for name in own), own


@pytest.mark.parametrize("env", sorted(ENVS))
def test_provisioning_reads_the_same_inventory(env):
    """playbooks/provision.yml runs on localhost: group_vars/all of the inventory reach it."""
    vars_ = "ec2_provision_project ec2_provision_env ec2_provision_secret_names ec2_provision_app_instance_type"
    msg = "{{ {" + ", ".join(f"'{v}': {v}" for v in vars_.split()) + "} | to_json }}"
    env_vars = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANSIBLE_"))}
    env_vars.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    result = subprocess.run(
        [
            str(pathlib.Path(sys.executable).with_name("ansible")),
            "localhost",
            "-i",
            str(ROOT / "inventories" / env / "hosts.yml"),
            "-m",
            "ansible.builtin.debug",
            "-a",
            f"msg={msg}",
        ],
        cwd=ROOT,
        env=env_vars,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    got = json.loads(json.loads(result.stdout.split("=>", 1)[1])["msg"])
    assert got == {
        "ec2_provision_project": "ticketing",
        "ec2_provision_env": env,
        "ec2_provision_secret_names": [f"ticketing/{env}/app"],
        "ec2_provision_app_instance_type": ENVS[env]["instance"],
    }


def test_prod_compose_config_accepts_it(prod):
    _files, _variables, dest, env = prod
    config = compose_config(dest, ["compose.yml"])
    if config is None:
        pytest.skip("no docker compose CLI on this machine")
    assert set(config["services"]) == SERVICES
    assert config["networks"]["kafka"]["name"] == "ec2ops"
    assert config["networks"]["kafka"]["external"] is True
    for name, service in config["services"].items():
        env = service["environment"]
        assert env["SPRING_DATASOURCE_URL"] == "jdbc:postgresql://db.test.invalid:5432/ticketing", name
        assert env["SPRING_DATA_REDIS_HOST"] == env["SPRING_REDIS_HOST"] == "cache.test.invalid"
        assert env["SPRING_PROFILES_ACTIVE"] == "prod"
        assert set(service["networks"]) == {"default", "kafka"}


# ------------------------------------------------------------------------------ the demo
def test_local_demo_renders_as_before(tmp_path):
    files, variables, dest = render(tmp_path, "-i", str(ROOT / "inventories" / "local"))
    compose = yaml.safe_load(files["compose.yml"])
    assert set(compose["services"]) == {"gateway"}
    assert "networks" not in compose
    gateway = compose["services"]["gateway"]
    assert "networks" not in gateway
    assert "SPRING_KAFKA_BOOTSTRAP_SERVERS" not in gateway["environment"]
    (container_url, deploy_url) = health_paths(compose, variables["compose_app_services"])["gateway"]
    assert container_url == deploy_url == "http://127.0.0.1:8080/api/v1/health"
    assert (
        gateway["environment"]["DATABASE_URL"]
        == "postgres://${DB_USER}:${DB_PASSWORD}@${DB_HOST}:${DB_PORT:-5432}/${DB_NAME}"
    )
    env = {**TEST_ENV, "DB_HOST": "postgres", "REDIS_HOST": "redis"}
    config = compose_config(dest, ["compose.yml", "compose.databases.yml"], env)
    if config is None:
        pytest.skip("no docker compose CLI on this machine")
    assert set(config["services"]) == {"gateway", "postgres", "redis"}
    got = config["services"]["gateway"]["environment"]
    assert got["DATABASE_URL"] == "postgres://ticketing_test:test-only-db-password@postgres:5432/ticketing"
    assert got["REDIS_URL"] == "redis://:test-only-redis-password@redis:6379/0"


# ------------------------------------------------------------- aws_ec2 per environment (moto)
@pytest.fixture(scope="module")
def tagged_instances(moto_server):
    """Running instances in ap-northeast-2 for each environment, plus two that no inventory may list."""
    ec2 = moto_server.client("ec2", region="ap-northeast-2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    created = []

    def run(name, **tags):
        tags = {"Project": "ticketing", "ManagedBy": "ec2ops.stack", "Name": name, **tags}
        reply = ec2.run_instances(
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
        )
        created.append(reply["Instances"][0]["InstanceId"])

    for env in ENVS:
        run(f"ticketing-{env}-app", Env=env, Role="app")
        run(f"ticketing-{env}-judge0", Env=env, Role="judge0")
    run("ticketing-qa-app", Env="qa", Role="app")  # an environment no inventory names
    run("shop-prod-app", Env="prod", Role="app", Project="shop")  # another project's prod
    yield created
    ec2.terminate_instances(InstanceIds=created)


@pytest.mark.parametrize("env", sorted(ENVS))
def test_each_inventory_lists_only_its_environment(moto_server, tagged_instances, env):
    """`ansible-inventory -i inventories/<env> --list` as shipped; only the endpoint (AWS_URL) points at moto."""
    env_vars = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANSIBLE_"))}
    env_vars.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_URL=moto_server.endpoint_url,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
    )
    result = subprocess.run(
        [str(pathlib.Path(sys.executable).with_name("ansible-inventory")), "-i", f"inventories/{env}", "--list"],
        cwd=ROOT,
        env=env_vars,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Failed to parse" not in result.stderr, result.stderr
    listed = json.loads(result.stdout)
    hostvars = listed["_meta"]["hostvars"]
    assert sorted(hostvars) == [f"ticketing-{env}-app", f"ticketing-{env}-judge0"]
    assert listed["app"]["hosts"] == [f"ticketing-{env}-app"]
    assert listed["judge0"]["hosts"] == [f"ticketing-{env}-judge0"]
    assert sorted(listed[f"env_{env}"]["hosts"]) == sorted(hostvars)
    assert not [group for group in listed if group.startswith("env_") and group != f"env_{env}"]
    # The environment's own group_vars reach its hosts (ansible-inventory shows them untemplated).
    for host in hostvars.values():
        assert host["ticketing_env"] == env
        assert host["ticketing_domain"] == ENVS[env]["domain"]

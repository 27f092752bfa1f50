"""The files in deploy/ parse and fit together: compose services, nginx, Prometheus, Helm values.

What a real tool can check is checked with it when it is installed (`docker compose config`,
`nginx -t`); otherwise the test says so in its skip reason. The Helm values are compared with the
official chart's values layout (its pydantic schema, `helm/dagster/schema/schema/charts/` in the
Dagster repository, chart 1.13), since the chart itself is not vendored here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
REPO = DEPLOY.parent
YAML_FILES = sorted([*DEPLOY.glob("*.yml"), *DEPLOY.glob("*.yaml"), *DEPLOY.glob("helm/*.yaml")])


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load("docker-compose.yml")


@pytest.fixture(scope="module")
def helm() -> dict:
    return load("helm/values.yaml")


# --------------------------------------------------------------------------- every YAML file


def test_deploy_has_the_expected_files() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in YAML_FILES}
    assert {"dagster.yaml", "dagster.local.yaml", "docker-compose.yml", "prometheus.yml", "workspace.yaml",
            "helm/values.yaml"} <= names  # fmt: skip
    for name in ("Dockerfile", "nginx.conf", "README.md"):
        assert (DEPLOY / name).is_file(), name


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_yaml_parses_to_a_mapping(path: Path) -> None:
    assert isinstance(yaml.safe_load(path.read_text()), dict)


# --------------------------------------------------------------------------- docker compose

REQUIRED_SERVICES = {
    "postgres", "redis", "minio", "minio-init", "user-code", "dagster-webserver", "dagster-daemon",
    "celery-worker", "celery-render", "prometheus", "grafana", "nginx",
}  # fmt: skip
AUTOEDIT_SERVICES = ("user-code", "dagster-webserver", "dagster-daemon", "celery-worker", "celery-render")


def needs(service: dict) -> dict[str, str]:
    depends = service.get("depends_on", {})
    return {name: "service_started" for name in depends} if isinstance(depends, list) else {
        name: spec["condition"] for name, spec in depends.items()
    }  # fmt: skip


def test_compose_has_every_service_with_an_image(compose: dict) -> None:
    services = compose["services"]
    assert set(services) >= REQUIRED_SERVICES
    for name, service in services.items():
        assert service.get("image"), f"{name} has no image"
        if ":" in service["image"] and not service["image"].startswith("${"):
            assert not service["image"].endswith(":latest"), f"{name}: pin third-party images"


def test_compose_long_running_services_have_healthchecks(compose: dict) -> None:
    one_shots = {name for name, s in compose["services"].items() if s.get("restart") == "no"}
    assert one_shots == {"minio-init", "tls-init", "metrics-token"}
    for name, service in compose["services"].items():
        if name in one_shots or "profiles" in service:
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"


def test_compose_start_order_waits_for_health(compose: dict) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in needs(service).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            expected = "service_completed_successfully" if services[dependency].get("restart") == "no" else (
                "service_healthy"
            )  # fmt: skip
            assert condition == expected, f"{name} -> {dependency}: {condition}"
    assert {"postgres", "user-code"} <= set(needs(services["dagster-webserver"]))
    assert {"postgres", "user-code"} <= set(needs(services["dagster-daemon"]))
    assert "minio-init" in needs(services["user-code"])
    for worker in ("celery-worker", "celery-render"):
        assert {"postgres", "redis", "minio-init"} <= set(needs(services[worker]))
    # nginx reaches the UI only through the gateway (the webserver has no authentication).
    assert {"gateway", "tls-init"} <= set(needs(services["nginx"]))
    assert "dagster-webserver" not in needs(services["nginx"])
    assert "profiles" not in services["gateway"] and "profiles" not in services["metrics-token"]
    assert needs(services["minio-init"]) == {"minio": "service_healthy"}


def test_compose_commands_match_the_code_location(compose: dict) -> None:
    services = compose["services"]
    code = services["user-code"]["command"]
    assert code[:3] == ["dagster", "code-server", "start"]
    assert code[code.index("-m") + 1] == "autoedit_dagster.definitions" and code[code.index("-a") + 1] == "defs"
    port = int(code[code.index("-p") + 1])
    workspace = load("workspace.yaml")["load_from"][0]["grpc_server"]
    assert (workspace["host"], workspace["port"]) == ("user-code", port)
    for name in ("dagster-webserver", "dagster-daemon"):
        command = services[name]["command"]
        assert command[command.index("-w") + 1] == "/opt/dagster/workspace.yaml", name
    assert services["dagster-webserver"]["command"][0] == "dagster-webserver"
    assert services["dagster-daemon"]["command"][:2] == ["dagster-daemon", "run"]
    queues = {}
    for name in ("celery-worker", "celery-render"):
        command = services[name]["command"]
        assert command[:3] == ["dagster-celery", "worker", "start"], name
        assert command[command.index("-A") + 1] == "dagster_celery.app"
        queues[name] = command[command.index("-q") + 1]
        config_target = command[command.index("-y") + 1]
        assert config_target in {c["target"] for c in services[name]["configs"]}, name
    assert queues == {"celery-worker": "dagster", "celery-render": "autoedit-render"}
    # The worker's celery.yaml takes broker and backend from the environment the workers get.
    celery = yaml.safe_load(compose["configs"]["celery_yaml"]["content"])["execution"]["config"]
    assert celery == {"broker": {"env": "CELERY_BROKER_URL"}, "backend": {"env": "CELERY_RESULT_BACKEND"}}


def test_compose_celery_queues_and_config_match_the_code_location(compose: dict) -> None:
    """The queues the workers listen on are the ones the executor routes steps to."""
    executors = pytest.importorskip("autoedit_dagster.executors")
    services = compose["services"]
    render = services["celery-render"]["command"]
    general = services["celery-worker"]["command"]
    assert render[render.index("-q") + 1] == executors.RENDER_QUEUE
    assert executors.RENDER_OP_TAGS == {executors.CELERY_QUEUE_TAG: executors.RENDER_QUEUE}
    assert general[general.index("-q") + 1] == executors.DEFAULT_QUEUE
    celery = yaml.safe_load(compose["configs"]["celery_yaml"]["content"])["execution"]["config"]
    assert celery == dict(executors.CELERY_EXECUTOR_CONFIG)
    for name in ("user-code", "celery-worker", "celery-render"):
        assert services[name]["environment"][executors.EXECUTOR_ENV] == "celery", name


def test_compose_env_wiring(compose: dict) -> None:
    services = compose["services"]
    for name in AUTOEDIT_SERVICES:
        service = services[name]
        env = service["environment"]
        assert {"DAGSTER_HOME", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"} <= set(env), name
        assert env["PGHOST"] == "postgres"
        assert {"source": "dagster_yaml", "target": f"{env['DAGSTER_HOME']}/dagster.yaml"} in service["configs"]
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    for name in ("user-code", "celery-worker", "celery-render"):
        env = services[name]["environment"]
        assert env["AUTOEDIT_STORAGE"].startswith("s3://"), name
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379/")
        assert env["CELERY_RESULT_BACKEND"].startswith("redis://redis:6379/")
    # The webserver and daemon never touch media: no S3 credentials there.
    for name in ("dagster-webserver", "dagster-daemon"):
        assert "AWS_SECRET_ACCESS_KEY" not in services[name]["environment"]
    assert compose["configs"]["dagster_yaml"]["file"] == "./dagster.yaml"
    bucket = services["user-code"]["environment"]["AUTOEDIT_STORAGE"].removeprefix("s3://").split("/")[0]
    assert services["minio-init"]["environment"]["AUTOEDIT_BUCKET"] in bucket
    assert "mc mb --ignore-existing" in services["minio-init"]["command"][0]


def test_compose_publishes_only_nginx_publicly(compose: dict) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if name != "nginx":
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert set(compose["services"]["nginx"]["ports"]) == {"443:443", "80:80"}
    assert "ports" not in compose["services"]["dagster-webserver"]


def docker_compose_available() -> str | None:
    """None if `docker compose` works here, else why not."""
    if shutil.which("docker") is None:
        return "the docker client is not installed"
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        why = (probe.stderr or probe.stdout).strip().splitlines()
        return f"the docker compose plugin is not available ({why[0] if why else probe.returncode})"
    return None


def test_docker_compose_config_accepts_the_file() -> None:
    reason = docker_compose_available()
    if reason:
        pytest.skip(reason)
    result = subprocess.run(
        ["docker", "compose", "-f", str(DEPLOY / "docker-compose.yml"), "--profile", "gateway", "config", "--quiet"],
        capture_output=True, text=True, cwd=DEPLOY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_dockerfile_builds_the_code_location() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert re.search(r"apt-get install .*\bffmpeg\b", text)
    assert "pip install ." in text
    assert "COPY deploy/dagster.yaml $DAGSTER_HOME/dagster.yaml" in text
    assert re.search(r"^USER dagster", text, re.M)
    # Everything it COPYs is let through by its .dockerignore (BuildKit's <Dockerfile>.dockerignore).
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for item in source.split():
            assert f"!{item.rstrip('/')}" in ignore, item
            assert (REPO / item).exists(), item


# --------------------------------------------------------------------------- nginx


def nginx_conf() -> str:
    return re.sub(r"#.*", "", (DEPLOY / "nginx.conf").read_text())


def test_nginx_rate_limit_is_100_per_minute_per_client() -> None:
    conf = nginx_conf()
    zone = re.search(r"limit_req_zone\s+\$binary_remote_addr\s+zone=(\w+):\d+m\s+rate=(\d+)r/m;", conf)
    assert zone and zone.group(2) == "100"
    assert re.search(rf"limit_req\s+zone={zone.group(1)}\b", conf)
    assert "limit_req_status 429;" in conf


def test_nginx_terminates_tls_and_upgrades_websockets(compose: dict) -> None:
    conf = nginx_conf()
    assert re.search(r"listen\s+443\s+ssl;", conf)
    cert = re.search(r"ssl_certificate\s+(\S+);", conf).group(1)
    key = re.search(r"ssl_certificate_key\s+(\S+);", conf).group(1)
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    assert "return 301 https://$host$request_uri;" in conf
    # The certificate folder is the one compose mounts (and tls-init fills).
    mount = next(v for v in compose["services"]["nginx"]["volumes"] if v.startswith("./tls:"))
    folder = mount.split(":")[1]
    assert cert.startswith(folder + "/") and key.startswith(folder + "/")
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "proxy_set_header Connection $connection_upgrade;" in conf
    assert re.search(r"map\s+\$http_upgrade\s+\$connection_upgrade", conf)
    upstream = re.search(r"upstream\s+(\w+)\s*\{\s*server\s+([\w.-]+):(\d+)", conf)
    assert upstream and upstream.group(2) == "gateway" and upstream.group(3) == "8080"
    assert f"proxy_pass http://{upstream.group(1)};" in conf
    assert conf.count("{") == conf.count("}")


def test_nginx_t_accepts_the_config(tmp_path: Path) -> None:
    nginx = shutil.which("nginx")
    if nginx is None:
        pytest.skip("nginx is not installed (the structural nginx tests above still ran)")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a throwaway certificate for nginx -t")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=t",
                    "-keyout", str(tmp_path / "tls.key"), "-out", str(tmp_path / "tls.crt")],
                   check=True, capture_output=True)  # fmt: skip
    conf = (DEPLOY / "nginx.conf").read_text()
    conf = conf.replace("/etc/nginx/tls", str(tmp_path)).replace("gateway:8080", "127.0.0.1:8080")
    conf = conf.replace("pid /tmp/nginx.pid;", f"pid {tmp_path}/nginx.pid;")
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", version)
    if found and tuple(map(int, found.groups())) < (1, 25, 1):
        # The image's nginx 1.27 reads `http2 on;`; an older local nginx (Debian 12 ships 1.22) still
        # checks everything else with the older spelling of the same thing.
        conf = conf.replace("        http2 on;\n", "").replace(" 443 ssl;", " 443 ssl http2;")
    (tmp_path / "nginx.conf").write_text(conf)
    result = subprocess.run([nginx, "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- prometheus


def test_prometheus_scrapes_services_of_the_stack(compose: dict) -> None:
    config = load("prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"autoedit", "minio", "prometheus"} <= set(jobs)
    assert jobs["autoedit"]["metrics_path"] == "/metrics"
    for name, job in jobs.items():
        for target in (t for sc in job["static_configs"] for t in sc["targets"]):
            host, port = target.rsplit(":", 1)
            assert host == "localhost" or host in compose["services"], f"{name}: unknown host {host}"
            assert port.isdigit()
    volume = next(v for v in compose["services"]["prometheus"]["volumes"] if v.startswith("./prometheus.yml:"))
    assert volume.split(":")[1] == "/etc/prometheus/prometheus.yml"


# --------------------------------------------------------------------------- the gateway (issue 11)

GENERATE_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"


def test_no_secret_has_a_known_default() -> None:
    """Issue 11.2: `AUTOEDIT_JWT_SECRET=change-me-trial-only` in compose and the README let anyone forge
    an operator token."""
    for path in [*DEPLOY.rglob("*"), REPO / "README.md"]:
        if path.is_file() and path.suffix in {".yml", ".yaml", ".conf", ".md", ".json", ""}:
            assert "change-me" not in path.read_text(errors="replace").lower(), path


def test_compose_requires_the_jwt_secret(compose: dict) -> None:
    services = compose["services"]
    for name in ("gateway", "metrics-token"):
        value = services[name]["environment"]["AUTOEDIT_JWT_SECRET"]
        assert value.startswith("${AUTOEDIT_JWT_SECRET:?") and GENERATE_SECRET in value, name
    readme = (REPO / "README.md").read_text() + (DEPLOY / "README.md").read_text()
    assert GENERATE_SECRET in readme and "AUTOEDIT_JWT_SECRET=" in readme


def test_compose_gateway_trusts_exactly_nginx(compose: dict) -> None:
    """Issue 11.6: without a trusted proxy every client behind nginx shared nginx's rate-limit bucket."""
    import ipaddress

    services = compose["services"]
    gateway = services["gateway"]
    nginx_address = services["nginx"]["networks"]["edge"]["ipv4_address"]
    assert gateway["environment"]["AUTOEDIT_TRUSTED_PROXIES"] == nginx_address
    assert "edge" in gateway["networks"]
    [subnet] = [c["subnet"] for c in compose["networks"]["edge"]["ipam"]["config"]]
    assert ipaddress.ip_address(nginx_address) in ipaddress.ip_network(subnet)
    # Only nginx and the gateway are on it, so nothing else can claim nginx's address.
    assert {name for name, s in services.items() if "edge" in (s.get("networks") or {})} == {"nginx", "gateway"}
    conf = nginx_conf()
    for header in ("Host $http_host", "X-Forwarded-For $proxy_add_x_forwarded_for", "X-Forwarded-Proto $scheme"):
        assert f"proxy_set_header {header};" in conf


def test_prometheus_scrapes_the_gateway_with_a_metrics_token(compose: dict) -> None:
    """Issue 11.7: /metrics needs a token; Prometheus' is scoped to metrics and minted by compose."""
    job = next(j for j in load("prometheus.yml")["scrape_configs"] if j["job_name"] == "autoedit")
    assert job["authorization"]["type"] == "Bearer"
    token_file = job["authorization"]["credentials_file"]
    services = compose["services"]
    mint = services["metrics-token"]
    command = mint["command"][0]
    assert "autoedit token --scope metrics" in command and "--role" not in command
    [volume] = mint["volumes"]
    source, target = volume.split(":")[:2]
    written = re.search(r"mv \S+ (\S+)", command).group(1)
    assert written.startswith(target + "/")
    mounted = next(v for v in services["prometheus"]["volumes"] if v.startswith(source + ":"))
    assert mounted.endswith(":ro") and token_file == mounted.split(":")[1] + written.removeprefix(target)
    assert needs(services["prometheus"])["metrics-token"] == "service_completed_successfully"


def helm_manifest(helm: dict, kind: str) -> dict:
    [manifest] = [m for m in helm["extraManifests"] if m["kind"] == kind]
    return manifest


def test_helm_serves_the_gateway_with_its_secret_from_a_secret(helm: dict) -> None:
    """Issue 11.2 and 11.6 for Kubernetes: the secret comes from a Secret, the trusted proxy is set, and
    the only ingress leads to the gateway."""
    deployment = helm_manifest(helm, "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["autoedit", "gateway"]
    env = {item["name"]: item for item in container["env"]}
    assert set(env["AUTOEDIT_JWT_SECRET"]) == {"name", "valueFrom"}  # never a literal value
    assert env["AUTOEDIT_JWT_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "autoedit-gateway", "key": "jwt-secret"}
    assert env["AUTOEDIT_TRUSTED_PROXIES"]["value"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    upstream = container["command"][container["command"].index("--upstream") + 1]
    assert upstream.startswith("http://autoedit-dagster-webserver:")
    assert helm["ingress"] == {"enabled": False}  # the chart's ingress would bypass the gateway
    ingress = helm_manifest(helm, "Ingress")
    service = helm_manifest(helm, "Service")
    [rule] = ingress["spec"]["rules"]
    [path] = rule["http"]["paths"]
    assert path["backend"]["service"]["name"] == service["metadata"]["name"] == "autoedit-gateway"
    assert ingress["spec"]["tls"][0]["secretName"]
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/limit-rpm"] == "100"
    policy = helm_manifest(helm, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert (REPO / "deploy" / "README.md").read_text().count("autoedit-gateway") >= 1


# --------------------------------------------------------------------------- helm

# Top-level keys of the chart's values (DagsterHelmValues, plus the un-modelled template keys).
CHART_TOP_LEVEL = {
    "global", "nameOverride", "fullnameOverride", "rbacEnabled", "imagePullSecrets", "dagsterWebserver",
    "dagster-user-deployments", "postgresql", "generatePostgresqlPasswordSecret", "generateCeleryConfigSecret",
    "rabbitmq", "redis", "flower", "ingress", "computeLogManager", "scheduler", "runLauncher", "pythonLogs",
    "dagsterDaemon", "busybox", "migrate", "telemetry", "serviceAccount", "retention", "concurrency",
    "additionalInstanceConfig", "extraManifests", "pipelineRun",
}  # fmt: skip
USER_DEPLOYMENT_KEYS = {
    "name", "image", "port", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns", "env",
    "envConfigMaps", "envSecrets", "annotations", "nodeSelector", "affinity", "tolerations", "podSecurityContext",
    "securityContext", "resources", "livenessProbe", "readinessProbe", "startupProbe", "labels", "volumeMounts",
    "volumes", "schedulerName",
}  # fmt: skip
K8S_RUN_LAUNCHER_KEYS = {
    "image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile", "envConfigMaps",
    "envSecrets", "envVars", "volumeMounts", "volumes", "labels", "failPodOnRunFailure", "resources",
    "schedulerName", "securityContext", "runK8sConfig",
}  # fmt: skip
RUN_K8S_CONFIG_KEYS = {"containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig", "jobMetadata"}
QUEUED_RUN_COORDINATOR_KEYS = {
    "maxConcurrentRuns", "tagConcurrencyLimits", "dequeueIntervalSeconds", "dequeueNumWorkers", "dequeueUseThreads",
    "blockOpConcurrencyLimitedRuns",
}  # fmt: skip


def test_helm_values_use_the_chart_layout(helm: dict) -> None:
    assert set(helm) <= CHART_TOP_LEVEL, set(helm) - CHART_TOP_LEVEL
    users = helm["dagster-user-deployments"]
    assert users["enabled"] and users["enableSubchart"]
    [deployment] = users["deployments"]
    assert set(deployment) <= USER_DEPLOYMENT_KEYS, set(deployment) - USER_DEPLOYMENT_KEYS
    assert {"repository", "tag", "pullPolicy"} == set(deployment["image"]) and deployment["image"]["tag"] != "latest"
    args = deployment["codeServerArgs"]
    assert args[args.index("-m") + 1] == "autoedit_dagster.definitions" and args[args.index("-a") + 1] == "defs"
    assert all(set(item) == {"name", "value"} for item in deployment["env"])
    assert any(item["name"] == "AUTOEDIT_STORAGE" and item["value"].startswith("s3://") for item in deployment["env"])
    assert helm["runLauncher"]["type"] in {"K8sRunLauncher", "CeleryK8sRunLauncher", "CustomRunLauncher"}
    assert helm["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = helm["runLauncher"]["config"]["k8sRunLauncher"]
    assert set(launcher) <= K8S_RUN_LAUNCHER_KEYS, set(launcher) - K8S_RUN_LAUNCHER_KEYS
    assert set(launcher["runK8sConfig"]) <= RUN_K8S_CONFIG_KEYS
    assert {"requests", "limits"} >= set(launcher["resources"])
    coordinator = helm["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert set(queued) <= QUEUED_RUN_COORDINATOR_KEYS
    assert helm["scheduler"] == {"type": "DagsterDaemonScheduler", "config": helm["scheduler"]["config"]}
    assert set(helm["scheduler"]["config"]) == {"daemonScheduler"}
    assert set(helm["pythonLogs"]) <= {"pythonLogLevel", "managedPythonLoggers", "dagsterHandlerConfig"}
    assert helm["computeLogManager"]["type"] == "S3ComputeLogManager"
    assert set(helm["computeLogManager"]["config"]) == {"s3ComputeLogManager"}
    assert helm["telemetry"] == {"enabled": False}


def test_helm_postgres_matches_the_instance_yaml(helm: dict) -> None:
    postgres = helm["postgresql"]
    assert {"postgresqlHost", "postgresqlUsername", "postgresqlPassword", "postgresqlDatabase", "service"} <= set(
        postgres
    )  # fmt: skip
    production = load("dagster.yaml")["storage"]["custom"]["config"]["postgres_db"]
    assert postgres["postgresqlScheme"] == production["scheme"] == "postgresql+psycopg2"
    assert helm["generatePostgresqlPasswordSecret"] is False and helm["global"]["postgresqlSecretName"]


def test_helm_limits_equal_the_instance_yaml(helm: dict) -> None:
    """The chart refuses limits in both `concurrency` and the run coordinator; ours sit in `concurrency`."""
    production = load("dagster.yaml")
    concurrency = helm["concurrency"]
    assert concurrency["enabled"]
    assert set(concurrency) <= {"enabled", "pools", "runs"}
    assert set(concurrency["pools"]) <= {"defaultLimit", "granularity", "opGranularityRunBuffer"}
    assert set(concurrency["runs"]) <= {"maxConcurrentRuns", "tagConcurrencyLimits"}
    assert concurrency["runs"]["maxConcurrentRuns"] == production["concurrency"]["runs"]["max_concurrent_runs"]
    assert concurrency["runs"]["tagConcurrencyLimits"] == production["concurrency"]["runs"]["tag_concurrency_limits"]
    assert concurrency["pools"]["defaultLimit"] == production["concurrency"]["pools"]["default_limit"]
    assert concurrency["pools"]["granularity"] == production["concurrency"]["pools"]["granularity"]
    queued = helm["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert not {"maxConcurrentRuns", "tagConcurrencyLimits", "blockOpConcurrencyLimitedRuns"} & set(queued)
    assert queued["dequeueIntervalSeconds"] == production["run_queue"]["dequeue_interval_seconds"]
    assert helm["pythonLogs"]["dagsterHandlerConfig"] == production["python_logs"]["dagster_handler_config"]
    assert helm["scheduler"]["config"]["daemonScheduler"]["maxCatchupRuns"] == (
        production["scheduler"]["config"]["max_catchup_runs"]
    )  # fmt: skip

"""docker-compose.yml, the Dockerfile and deploy/ cannot be run here (no Docker engine): their structure is
checked by parsing them."""

import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from tests.support import processes

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "cdb_postgres",
    "cdb_redis",
    "cdb_web",
    "cdb_worker",
    "cdb_beat",
    "cdb_feed",
    "cdb_notify",
    "cdb_optimize",
    "cdb_prometheus",
    "cdb_grafana",
}
APP = ("cdb_web", "cdb_worker", "cdb_beat", "cdb_feed", "cdb_notify", "cdb_optimize")
SECRETS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "SECRET_KEY", "GRAFANA_ADMIN_PASSWORD", "METRICS_TOKEN")
# Each container and the secrets it uses, no more (docs/security.md "Secrets in compose").
SECRETS_OF = {
    "cdb_postgres": {"postgres_password"},
    "cdb_redis": {"redis_password"},
    "cdb_web": {
        "secret_key", "postgres_password", "redis_password", "cdb_admin_password", "metrics_token",
        "mexc_api_key", "mexc_api_secret", "notify_urls", "email_url",
    },
    "cdb_worker": {"secret_key", "postgres_password", "redis_password", "mexc_api_key", "mexc_api_secret"},
    "cdb_notify": {
        "secret_key", "postgres_password", "redis_password", "notify_urls", "mexc_api_key", "mexc_api_secret",
    },
    "cdb_optimize": {"secret_key", "postgres_password", "redis_password"},
    "cdb_beat": {"secret_key", "redis_password"},
    "cdb_feed": {"secret_key", "postgres_password", "redis_password"},
    "cdb_prometheus": {"metrics_token"},
    "cdb_grafana": {"grafana_admin_password"},
}  # fmt: skip


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_service_is_there_with_the_cdb_prefix_and_restart_policy():
    services = _compose()["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        assert name.startswith("cdb_")
        assert service["restart"] == "unless-stopped", name


def test_every_service_is_hardened():
    for name, service in _compose()["services"].items():
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["read_only"] is True, name
        assert any(str(t).startswith("/tmp") for t in service.get("tmpfs", [])), name
        limits = service["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0 and re.fullmatch(r"\d+[mg]", limits["memory"]), name
        assert limits["pids"] > 0, name
        added = set(service.get("cap_add", []))
        assert added <= {"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"}, (name, added)
        assert not service.get("privileged"), name
        for port in service.get("ports", []):  # published only on the loopback interface
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_every_service_has_a_healthcheck():
    for name, service in _compose()["services"].items():
        check = service["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name
        assert check["interval"] and check["timeout"] and check["retries"] >= 1, name
    web = _compose()["services"]["cdb_web"]["healthcheck"]["test"]
    assert "/health" in " ".join(web)


def test_app_services_reach_postgres_and_redis_with_passwords_from_secret_files():
    services = _compose()["services"]
    for name in APP:
        env = services[name]["environment"]
        assert env["DATABASE_URL"] == "postgres://cdb@cdb_postgres:5432/cdb"  # settings.py adds DATABASE_PASSWORD
        assert env["REDIS_URL"] == "redis://cdb_redis:6379/0"  # … and REDIS_PASSWORD
        assert env["REDIS_PASSWORD_FILE"] == "/run/secrets/redis_password"
        assert env["SECRET_KEY_FILE"] == "/run/secrets/secret_key"
        assert services[name]["env_file"] == "cdb.env"
        assert services[name]["depends_on"]["cdb_postgres"]["condition"] == "service_healthy"
        assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    assert services["cdb_worker"]["environment"]["WORKER_METRICS_PORT"] == "9808"
    assert services["cdb_postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    grafana = services["cdb_grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"


def _secret_files(service: dict) -> dict[str, str]:
    """NAME_FILE variables pointing into /run/secrets/: {variable: secret}."""
    env = service.get("environment", {})
    return {k: v.removeprefix("/run/secrets/") for k, v in env.items() if str(v).startswith("/run/secrets/")}


def test_each_container_gets_only_the_secrets_it_uses():
    compose = _compose()
    services = compose["services"]
    defined = compose["secrets"]
    assert {name: set(service.get("secrets", [])) for name, service in services.items()} == SECRETS_OF
    # every secret is one value from one .env variable, and every one defined is handed to someone
    assert set(defined) == set().union(*SECRETS_OF.values())
    for secret, source in defined.items():
        assert set(source) == {"environment"} and source["environment"] == secret.upper(), secret
    for name, service in services.items():
        held = set(service.get("secrets", []))
        files = _secret_files(service)
        assert set(files.values()) <= held, (name, "reads a secret it is not given")
        if name in APP:  # the app reads each secret it holds through a NAME_FILE variable (settings.py)
            assert set(files.values()) == held, (name, "holds a secret it never reads")
            for variable, secret in files.items():
                assert variable.removesuffix("_FILE") in (secret.upper(), "DATABASE_PASSWORD"), variable
    # the others: Prometheus reads metrics_token (deploy/prometheus.yml), Redis its password (deploy/redis/start.sh)
    assert "/run/secrets/metrics_token" in (ROOT / "deploy" / "prometheus.yml").read_text()
    assert "/run/secrets/redis_password" in (ROOT / "deploy" / "redis" / "start.sh").read_text()
    # beat only schedules: no database password, and no NAME_FILE pointing at one it does not have
    assert services["cdb_beat"]["environment"]["DATABASE_PASSWORD_FILE"] == ""


def test_no_secret_reaches_a_container_through_its_environment_or_a_command_line():
    compose = _compose()
    secret_vars = {source["environment"] for source in compose["secrets"].values()}
    interpolated = re.compile(r"\$\{(" + "|".join(secret_vars) + r")\b")
    for name, service in compose["services"].items():
        for key in ("environment", "command", "entrypoint", "healthcheck", "env_file"):
            text = json.dumps(service.get(key, ""))
            assert not interpolated.search(text), (name, key, "a secret's value in", text)
        commands = json.dumps([service.get("command", ""), service.get("entrypoint", ""), service["healthcheck"]])
        assert not re.search(r'[" ](-a|--requirepass|--pass|--password)[" =]', commands), (name, commands)
        assert "REDISCLI_AUTH" not in json.dumps(service.get("environment", {})), name
    # the app containers' env_file holds settings only: no secret's name in its example
    settings_file = (ROOT / "cdb.env.example").read_text()
    for variable in secret_vars | {"DATABASE_PASSWORD", "DATABASE_URL", "REDIS_URL"}:
        assert not re.search(rf"^\s*#?\s*{variable}=", settings_file, re.MULTILINE), variable
    # … and .env.example names every secret compose makes (an unset variable makes no secret file)
    example = (ROOT / ".env.example").read_text()
    for variable in secret_vars:
        assert re.search(rf"^{variable}=", example, re.MULTILINE), variable


def test_redis_takes_its_password_from_a_private_config_file_not_its_command_line(tmp_path):
    # deploy/redis/start.sh as cdb_redis runs it, with the real redis-server: the password file → a 0600 redis.conf
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    import redis

    from tests.support.processes import free_port

    password = "RedisSecret-" + os.urandom(8).hex()
    secret = tmp_path / "redis_password"
    secret.write_text(password + "\n")
    (tmp_path / "conf").mkdir(mode=0o700)
    port = free_port()
    env = {"PATH": os.environ["PATH"], "REDIS_PASSWORD_FILE": str(secret), "REDIS_CONF_DIR": str(tmp_path / "conf")}
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    proc = processes.start(["sh", str(ROOT / "deploy" / "redis" / "start.sh"), *args], env=env)

    def answers() -> bool:
        try:
            return bool(redis.Redis(port=port, password=password).ping())
        except redis.ConnectionError:
            return False

    try:
        processes.wait_until(answers, timeout=10, interval=0.05, message="redis-server to start")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        conf = tmp_path / "conf" / "redis.conf"
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600
        assert conf.read_text() == f"requirepass {password}\n"
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()  # the exec'd redis-server
        assert "redis-server" in cmdline and password not in cmdline
        # the healthcheck's way: redis-cli with REDISCLI_AUTH, no -a
        check = processes.run(
            ["sh", "-c", f'REDISCLI_AUTH="$(cat {secret})" redis-cli -p {port} ping'], capture_output=True, text=True
        )
        assert check.stdout.strip() == "PONG"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    secret.write_text("has a space\n")
    refused = processes.run(
        ["sh", str(ROOT / "deploy" / "redis" / "start.sh")], env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "letters, digits" in refused.stderr


def test_no_secret_value_is_written_in_the_compose_file():
    text = (ROOT / "docker-compose.yml").read_text()

    def walk(node, key=""):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, str(k))
        elif isinstance(node, list):
            for v in node:
                yield from walk(v, key)
        else:
            yield key, str(node)

    checked = 0
    for key, value in walk(_compose()):
        if re.search(r"PASSWORD|SECRET|_KEY|TOKEN|_AUTH", key):
            # the path of a file that holds it (empty: none), or interpolated from .env; never written here
            assert value == "" or value.startswith(("${", "/")), (key, value)
            checked += 1
        for password in re.findall(r"://[^:/@]*:([^@]+)@", value):
            assert password.startswith("${"), (key, value)
    assert checked >= 3
    assert "change-me" not in text


def test_app_services_run_the_entrypoint_roles_and_the_worker_scales():
    services = _compose()["services"]
    assert services["cdb_web"]["command"] == ["web"]
    assert services["cdb_worker"]["command"] == ["worker"]
    assert services["cdb_beat"]["command"] == ["beat"]
    assert services["cdb_feed"]["command"][0] == "feed"
    assert services["cdb_notify"]["command"] == ["worker", "-Q", "notify"]  # CELERY_TASK_ROUTES: notify.* → notify
    assert services["cdb_notify"]["environment"]["WORKER_NAME"] == "notify"
    # optimize.* → optimize; solo: the entrypoint's -P prefork comes first, the last -P is the one celery takes
    assert services["cdb_optimize"]["command"] == ["worker", "-Q", "optimize", "-P", "solo"]
    assert services["cdb_optimize"]["profiles"] == ["optimize"] and "ports" not in services["cdb_optimize"]
    worker = services["cdb_worker"]
    assert "container_name" not in worker and not worker.get("ports"), "a fixed name or port prevents --scale"
    entry = (ROOT / "docker" / "entrypoint.sh").read_text()
    for role in ("web)", "worker)", "beat)", "feed)"):
        assert role in entry


def test_entrypoint_is_valid_shell():
    processes.run(["sh", "-n", str(ROOT / "docker" / "entrypoint.sh")], check=True)


def test_dockerfile_is_multi_stage_non_root_with_the_entrypoint():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.MULTILINE | re.IGNORECASE)
    assert len(stages) >= 2, stages
    assert "COPY --from=" in text
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["/app/docker/entrypoint.sh"]' in text
    assert "HEALTHCHECK" in text
    # PYTHONDONTWRITEBYTECODE at run time: the project is byte-compiled in the image, not by every process's start
    assert "PYTHONDONTWRITEBYTECODE=1" not in text or "compileall" in text


def test_env_file_is_not_committed_but_its_example_is():
    assert (ROOT / ".env.example").exists()
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert ".env" in (ROOT / ".dockerignore").read_text().split()
    example = (ROOT / ".env.example").read_text()
    for name in SECRETS:
        assert re.search(rf"^{name}=change-me$", example, re.MULTILINE), name
    assert (ROOT / "cdb.env.example").exists()
    assert "cdb.env" in (ROOT / ".gitignore").read_text().split()
    assert "cdb.env" in (ROOT / ".dockerignore").read_text().split()
    tracked = processes.run(["git", "ls-files", ".env", "cdb.env"], cwd=ROOT, capture_output=True, text=True).stdout
    assert tracked.strip() == ""


def test_prometheus_scrapes_web_and_workers_with_alert_rules():
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["cdb_web"]["static_configs"][0]["targets"] == ["cdb-web:8000"]
    assert jobs["cdb_worker"]["dns_sd_configs"][0]["names"] == ["cdb_worker"]
    assert jobs["cdb_worker"]["dns_sd_configs"][0]["port"] == 9808
    assert "/etc/prometheus/alerts.yml" in config["rule_files"]
    rules = yaml.safe_load((ROOT / "deploy" / "alerts.yml").read_text())["groups"][0]["rules"]
    by_name = {rule["alert"]: rule["expr"] for rule in rules}
    assert "trading_state" in by_name["TradingHalted"] and "== 2" in by_name["TradingHalted"]
    assert "0.8 * max(daily_drawdown_limit_percent)" in by_name["DrawdownNearLimit"]
    assert "last_market_data_age_seconds" in by_name["MarketDataStale"]
    assert 'service_health{component="workers"}' in by_name["WorkerDown"]
    mounted = " ".join(_compose()["services"]["cdb_prometheus"]["volumes"])
    assert "./deploy/prometheus.yml:" in mounted and "./deploy/alerts.yml:" in mounted


def test_prometheus_sends_the_metrics_token_from_a_compose_secret():
    # /metrics answers only Authorization: Bearer <METRICS_TOKEN>: Prometheus reads it from a secret file that
    # compose fills from the environment (.env); the web checks it. No other service is handed that secret.
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    web = {job["job_name"]: job for job in config["scrape_configs"]}["cdb_web"]
    assert web["authorization"] == {"type": "Bearer", "credentials_file": "/run/secrets/metrics_token"}
    compose = _compose()
    assert compose["secrets"]["metrics_token"] == {"environment": "METRICS_TOKEN"}
    holders = [name for name, service in compose["services"].items() if "metrics_token" in service.get("secrets", [])]
    assert holders == ["cdb_web", "cdb_prometheus"]
    assert "METRICS_TOKEN=" in (ROOT / ".env.example").read_text()


def test_alert_and_dashboard_metrics_are_the_ones_the_app_exports():
    from cdb_project import ops

    exported = {
        "trading_state",
        "daily_drawdown_percent",
        "daily_drawdown_limit_percent",
        "total_exposure_percent",
        "equity",
        "service_health",
        "celery_queue_length",
        "celery_unacked_tasks",
        "celery_workers",
        "last_market_data_age_seconds",
        "trades_total",
        "trades_failed_total",
        "risk_checks_passed_total",
        "risk_checks_failed_total",
        "events_rejected_total",
        "notifications_sent_total",
        "signal_latency_seconds_bucket",
        "order_latency_seconds_bucket",
        "up",
        "django_http_responses_total_by_status_total",
    }
    assert ops.signal_latency_seconds and ops.events_rejected_total
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "claire-de-binare.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    exprs += [
        rule["expr"] for rule in yaml.safe_load((ROOT / "deploy" / "alerts.yml").read_text())["groups"][0]["rules"]
    ]
    functions = {"max", "sum", "rate", "increase", "histogram_quantile", "by", "or", "absent", "le", "side", "status"}
    for expr in exprs:
        for name in re.findall(r"\b([a-z_][a-z0-9_]*)\s*(?:\{|\[|\)|\s*[<>=]|$)", expr):
            if name in functions or name in ("component", "layer", "topic", "job", "destination", "result"):
                continue
            assert name in exported, (name, expr)
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for word in ("equity", "drawdown", "exposure", "trades", "latency", "health"):
        assert word in titles, word


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboard():
    base = ROOT / "deploy" / "grafana"
    source = yaml.safe_load((base / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert source["type"] == "prometheus" and source["url"] == "http://cdb_prometheus:9090"
    provider = yaml.safe_load((base / "provisioning" / "dashboards" / "cdb.yml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((base / "dashboards" / "claire-de-binare.json").read_text())
    assert {target["datasource"]["uid"] for p in dashboard["panels"] for target in p["targets"]} == {source["uid"]}
    volumes = " ".join(_compose()["services"]["cdb_grafana"]["volumes"])
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning" in volumes
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards" in volumes

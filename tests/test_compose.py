"""docker-compose.yml, the Dockerfile and deploy/ cannot be run here (no Docker engine): their structure is
checked by parsing them."""

import json
import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {
    "cdb_postgres",
    "cdb_redis",
    "cdb_web",
    "cdb_worker",
    "cdb_beat",
    "cdb_feed",
    "cdb_notify",
    "cdb_prometheus",
    "cdb_grafana",
}
APP = ("cdb_web", "cdb_worker", "cdb_beat", "cdb_feed", "cdb_notify")
SECRETS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "SECRET_KEY", "GRAFANA_ADMIN_PASSWORD")


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


def test_app_services_reach_postgres_and_redis_with_secrets_from_env():
    services = _compose()["services"]
    for name in APP:
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://cdb:${POSTGRES_PASSWORD")
        assert "@cdb_postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD") and "@cdb_redis:6379/" in env["REDIS_URL"]
        assert services[name]["env_file"] == ".env"
        assert services[name]["depends_on"]["cdb_postgres"]["condition"] == "service_healthy"
        assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    command = services["cdb_redis"]["command"]
    assert "--requirepass" in command and command[command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD")
    assert services["cdb_worker"]["environment"]["WORKER_METRICS_PORT"] == "9808"
    assert services["cdb_grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD")


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
            # interpolated from .env, or the path of a file that holds it; never written here
            assert value.startswith(("${", "/")), (key, value)
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
    worker = services["cdb_worker"]
    assert "container_name" not in worker and not worker.get("ports"), "a fixed name or port prevents --scale"
    entry = (ROOT / "docker" / "entrypoint.sh").read_text()
    for role in ("web)", "worker)", "beat)", "feed)"):
        assert role in entry


def test_entrypoint_is_valid_shell():
    subprocess.run(["sh", "-n", str(ROOT / "docker" / "entrypoint.sh")], check=True)


def test_dockerfile_is_multi_stage_non_root_with_the_entrypoint():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.MULTILINE | re.IGNORECASE)
    assert len(stages) >= 2, stages
    assert "COPY --from=" in text
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["/app/docker/entrypoint.sh"]' in text
    assert "HEALTHCHECK" in text


def test_env_file_is_not_committed_but_its_example_is():
    assert (ROOT / ".env.example").exists()
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert ".env" in (ROOT / ".dockerignore").read_text().split()
    example = (ROOT / ".env.example").read_text()
    for name in SECRETS:
        assert re.search(rf"^{name}=change-me$", example, re.MULTILINE), name
    tracked = subprocess.run(["git", "ls-files", ".env"], cwd=ROOT, capture_output=True, text=True).stdout
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
    # compose fills from the environment (.env), and no other service is handed that secret.
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    web = {job["job_name"]: job for job in config["scrape_configs"]}["cdb_web"]
    assert web["authorization"] == {"type": "Bearer", "credentials_file": "/run/secrets/metrics_token"}
    compose = _compose()
    assert compose["secrets"]["metrics_token"] == {"environment": "METRICS_TOKEN"}
    holders = [name for name, service in compose["services"].items() if "metrics_token" in service.get("secrets", [])]
    assert holders == ["cdb_prometheus"]
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

"""The chart as rendered by helm: platform completeness, routing, security, failure modes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helpers import CHART, NAMESPACE, ROOT, Rendered, render, run_helm

pytestmark = pytest.mark.unit

KSVC = "serving.knative.dev/v1"
# DESIGN.md section 2: every deployable and what it is on a cluster (devplane is local only,
# fnkit is the library inside every image).
FUNCTIONS = {
    "products-api",
    "minio-source",
    "image-processor",
    "orders-api",
    "order-steps",
    "workflow-launcher",
    "bulk-jobs",
    "item-processor",
    "job-aggregator",
    "dead-letter",
}
CRON_JOBS = {"cleanup", "warmer"}


def knative_services(rendered: Rendered) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in rendered.of("Service") if d["apiVersion"] == KSVC}


def pod_specs(rendered: Rendered) -> list[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every workload that runs containers."""
    return [(where, spec) for where, _, spec in workloads(rendered)]


def workloads(rendered: Rendered) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(kind/name, object, pod spec) of every workload that runs containers."""
    found = []
    for doc in rendered:
        kind, name, spec = doc["kind"], doc["metadata"]["name"], doc.get("spec", {})
        if kind == "Service" and doc["apiVersion"] == KSVC:
            found.append((f"ksvc/{name}", doc, spec["template"]["spec"]))
        elif kind == "CronJob":
            found.append((f"cronjob/{name}", doc, spec["jobTemplate"]["spec"]["template"]["spec"]))
        elif kind in ("Job", "StatefulSet", "Deployment"):
            found.append((f"{kind.lower()}/{name}", doc, spec["template"]["spec"]))
        elif kind == "Pod":
            found.append((f"pod/{name}", doc, spec))
    return found


def test_every_deployable_of_the_design_is_present_with_default_values(default):
    assert set(knative_services(default)) == FUNCTIONS
    cron = {
        d["metadata"]["name"].removeprefix("kp-knative-playbook-") for d in default.of("CronJob")
    }
    assert cron == {"cleanup"}, "warmer is off by default (min-scale is the better tool)"
    assert default.names("Broker") == {"default"}
    assert {"kp-knative-playbook-mongodb", "kp-knative-playbook-minio"} <= default.names(
        "StatefulSet"
    )
    jobs = {d["metadata"]["name"] for d in default.of("Job")}
    assert jobs == {"kp-knative-playbook-minio-setup", "kp-knative-playbook-minio-users"}
    assert any(
        p.get("metadata", {}).get("annotations", {}).get("helm.sh/hook") == "test"
        for p in default.of("Pod")
    )


def test_the_warmer_is_a_cronjob_pinging_the_configured_functions_when_enabled(tmp_path):
    rendered = render(values="cronJobs:\n  warmer:\n    enabled: true\n", tmp=tmp_path)
    warmer = rendered.get("CronJob", "kp-knative-playbook-warmer")
    container = warmer["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "warmer"]
    targets = rendered.get("ConfigMap", "kp-knative-playbook-warmer")["data"]["WARMER_TARGETS"]
    assert targets.split(",") == [
        f"http://{f}.{NAMESPACE}.svc.cluster.local" for f in ("products-api", "orders-api")
    ]


def test_each_function_serves_its_module_from_its_own_image(default, chart_values):
    for name, ksvc in knative_services(default).items():
        container = ksvc["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["fnkit-serve", chart_values["functions"][name]["module"]]
        assert container["image"] == f"knative-playbook/{name}:0.1.0"
        probes = (
            container["livenessProbe"]["httpGet"]["path"],
            container["readinessProbe"]["httpGet"]["path"],
        )
        assert probes == ("/health/liveness", "/health/readiness")
        assert [e["configMapRef"]["name"] for e in container["envFrom"][:1]] == [
            f"kp-knative-playbook-{name}"
        ]
        assert container["envFrom"][1]["secretRef"]["name"] == f"kp-knative-playbook-{name}"


def test_scaling_annotations_merge_function_overrides_over_the_defaults(default):
    annotations = {
        n: k["spec"]["template"]["metadata"]["annotations"]
        for n, k in knative_services(default).items()
    }
    image = annotations["image-processor"]
    assert image["autoscaling.knative.dev/target"] == "4"
    assert image["autoscaling.knative.dev/max-scale"] == "10"
    items = annotations["item-processor"]
    assert (
        items["autoscaling.knative.dev/max-scale"],
        items["autoscaling.knative.dev/target"],
        items["autoscaling.knative.dev/scale-down-delay"],
    ) == ("30", "50", "30s")
    for name, found in annotations.items():
        for key in ("min-scale", "max-scale", "initial-scale", "target", "scale-down-delay"):
            assert f"autoscaling.knative.dev/{key}" in found, name


def test_every_container_runs_restricted(default):
    specs = pod_specs(default)
    assert len(specs) >= len(FUNCTIONS) + 4
    for where, spec in specs:
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["runAsNonRoot"] is True, where
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["capabilities"] == {"drop": ["ALL"]}, where
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert container["resources"]["limits"]["memory"], where
            assert "/tmp" in {m["mountPath"] for m in container.get("volumeMounts", [])}, where


def test_knative_pods_set_only_what_knative_accepts(default):
    # Knative's webhook refuses a pod-level securityContext unless a feature flag is on, and
    # accepts automountServiceAccountToken only as false.
    for name, ksvc in knative_services(default).items():
        spec = ksvc["spec"]["template"]["spec"]
        assert "securityContext" not in spec, name
        assert spec.get("automountServiceAccountToken", False) is False, name


def test_only_workflow_launcher_and_argo_pods_get_an_api_token(default):
    accounts = {
        sa["metadata"]["name"]: sa["automountServiceAccountToken"]
        for sa in default.of("ServiceAccount")
    }
    with_token = {name for name, mounted in accounts.items() if mounted}
    assert with_token == {"kp-knative-playbook-workflow-launcher", "kp-knative-playbook-workflow"}
    for where, spec in pod_specs(default):
        if where != "ksvc/workflow-launcher":
            assert spec["automountServiceAccountToken"] is False, where
            assert accounts[spec["serviceAccountName"]] is False, where


def test_every_function_has_a_service_account_of_its_own(default):
    accounts = [
        k["spec"]["template"]["spec"]["serviceAccountName"]
        for k in knative_services(default).values()
    ]
    assert len(set(accounts)) == len(FUNCTIONS)


def test_rbac_is_namespaced_and_minimal(default):
    assert not default.of("ClusterRole") and not default.of("ClusterRoleBinding")
    launcher = default.get("Role", "kp-knative-playbook-workflow-launcher")
    assert launcher["rules"] == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create", "get"]}
    ]
    binding = default.get("RoleBinding", "kp-knative-playbook-workflow-launcher")
    assert binding["subjects"][0]["name"] == "kp-knative-playbook-workflow-launcher"
    executor = default.get("Role", "kp-knative-playbook-workflow-executor")
    verbs = {(r["resources"][0], tuple(r["verbs"])) for r in executor["rules"]}
    assert ("workflowtaskresults", ("create", "patch")) in verbs
    assert all(v not in ("delete", "*") for _, vs in verbs for v in vs)


def test_triggers_are_the_values_devplane_routes_by(default, chart_values):
    triggers = {t["metadata"]["name"]: t for t in default.of("Trigger")}
    expected = {
        f"{name}-{trigger['name']}": (name, trigger["filter"]["attributes"])
        for name, fn in chart_values["functions"].items()
        for trigger in fn["triggers"]
    }
    assert set(triggers) == set(expected)
    for trigger_name, (function, attributes) in expected.items():
        spec = triggers[trigger_name]["spec"]
        assert spec["broker"] == chart_values["eventing"]["broker"]
        assert spec["filter"]["attributes"] == attributes
        assert spec["subscriber"]["ref"] == {
            "apiVersion": KSVC,
            "kind": "Service",
            "name": function,
        }


def test_every_trigger_retries_with_backoff_then_dead_letters_to_a_rendered_function(default):
    services = knative_services(default)
    assert default.of("Trigger")
    for trigger in default.of("Trigger"):
        spec = trigger["spec"]
        assert spec["subscriber"]["ref"]["name"] in services
        delivery = spec["delivery"]
        assert delivery["retry"] >= 1
        assert delivery["backoffPolicy"] == "exponential"
        assert re.fullmatch(r"PT[0-9.]+S", delivery["backoffDelay"])
        sink = delivery["deadLetterSink"]["ref"]
        assert (sink["kind"], sink["name"]) == ("Service", "dead-letter")
        assert sink["name"] in services


def test_a_trigger_may_override_part_of_the_delivery_policy(tmp_path, chart_values):
    job_aggregator = chart_values["functions"]["job-aggregator"]
    triggers = [dict(t) for t in job_aggregator["triggers"]]
    triggers[0]["delivery"] = {"retry": 12, "backoffPolicy": "linear"}
    values = yaml.safe_dump({"functions": {"job-aggregator": {"triggers": triggers}}})
    rendered = render(values=values, tmp=tmp_path)
    delivery = rendered.get("Trigger", f"job-aggregator-{triggers[0]['name']}")["spec"]["delivery"]
    assert (delivery["retry"], delivery["backoffPolicy"]) == (12, "linear")
    assert delivery["backoffDelay"] == chart_values["eventing"]["delivery"]["backoffDelay"]
    assert delivery["deadLetterSink"]["ref"]["name"] == "dead-letter"


def test_a_dead_letter_sink_that_is_not_deployed_refuses_to_render():
    result = run_helm("--set", "functions.dead-letter.enabled=false")
    assert result.returncode != 0
    assert "deadLetterSink" in result.stderr and "dead-letter" in result.stderr


def test_every_emitted_event_type_has_a_trigger_or_is_documented_terminal(chart_values):
    consumed = {
        t["filter"]["attributes"]["type"]
        for fn in chart_values["functions"].values()
        if fn["enabled"]
        for t in fn["triggers"]
        if "type" in t["filter"]["attributes"]
    }
    terminal = set(chart_values["eventing"]["terminalEvents"])
    producers = [*chart_values["functions"].items(), *chart_values["cronJobs"].items()]
    emitted = {event for _, spec in producers for event in spec["emits"]}
    assert emitted - consumed - terminal == set()
    assert terminal & consumed == set(), "a type cannot be both terminal and consumed"
    assert terminal - emitted == set(), "terminal types nobody emits are stale"


def test_functions_and_jobs_get_k_sink_from_the_broker(default):
    bindings = default.of("SinkBinding")
    subjects = {b["spec"]["subject"].get("name") for b in bindings}
    assert subjects >= FUNCTIONS
    for binding in bindings:
        assert binding["spec"]["sink"]["ref"] == {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "name": "default",
        }
    jobs = [b for b in bindings if b["spec"]["subject"]["kind"] == "Job"]
    cleanup = default.get("CronJob", "kp-knative-playbook-cleanup")
    job_labels = cleanup["spec"]["jobTemplate"]["metadata"]["labels"]
    assert len(jobs) == 1
    assert jobs[0]["spec"]["subject"]["selector"]["matchLabels"].items() <= job_labels.items()


def test_cronjob_policy_comes_from_values(default, chart_values):
    cleanup = default.get("CronJob", "kp-knative-playbook-cleanup")["spec"]
    values = chart_values["cronJobs"]["cleanup"]
    assert (cleanup["schedule"], cleanup["timeZone"]) == (values["schedule"], values["timeZone"])
    assert cleanup["concurrencyPolicy"] == "Forbid"
    assert cleanup["startingDeadlineSeconds"] > 0
    assert cleanup["successfulJobsHistoryLimit"] >= 1 and cleanup["failedJobsHistoryLimit"] >= 1
    job = cleanup["jobTemplate"]["spec"]
    assert job["backoffLimit"] >= 0 and job["activeDeadlineSeconds"] > 0
    assert job["ttlSecondsAfterFinished"] > 0
    assert job["template"]["spec"]["containers"][0]["command"] == values["command"]


def test_network_policies_deny_by_default_and_open_the_data_stores_to_their_clients(default):
    policies = {p["metadata"]["name"]: p["spec"] for p in default.of("NetworkPolicy")}
    deny = policies["kp-knative-playbook-default-deny"]
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny and "egress" not in deny
    mongo_from = policies["kp-knative-playbook-mongodb"]["ingress"][0]["from"][0]["podSelector"]
    assert mongo_from["matchLabels"]["knative-playbook.io/mongo-client"] == "true"
    labels = {
        n: k["spec"]["template"]["metadata"]["labels"] for n, k in knative_services(default).items()
    }
    assert "knative-playbook.io/mongo-client" not in labels["minio-source"]
    assert "knative-playbook.io/minio-client" not in labels["products-api"]
    assert labels["image-processor"]["knative-playbook.io/minio-client"] == "true"
    # The deny-all policy selects every pod the chart makes.
    selector = deny["podSelector"]["matchLabels"]
    for where, doc, _ in workloads(default):
        assert selector.items() <= _pod_labels(doc).items(), where
    api = policies["kp-knative-playbook-workflow-launcher"]["egress"]
    assert any(6443 in [p["port"] for p in rule.get("ports", [])] for rule in api)
    assert not any(
        6443 in [p["port"] for p in rule.get("ports", [])]
        for rule in policies["kp-knative-playbook-products-api"]["egress"]
    )


def _pod_labels(doc: dict[str, Any]) -> dict[str, str]:
    spec = doc.get("spec", {})
    if doc["kind"] == "Pod":
        return dict(doc["metadata"]["labels"])
    if doc["kind"] == "CronJob":
        return dict(spec["jobTemplate"]["spec"]["template"]["metadata"]["labels"])
    return dict(spec["template"]["metadata"]["labels"])


def test_per_function_minio_users_match_the_functions_secrets(default):
    users = json.loads(
        default.get("ConfigMap", "kp-knative-playbook-minio-users")["data"]["users.json"]
    )["users"]
    by_name = {u["name"]: u for u in users}
    assert by_name["image-processor"]["buckets"] == {"uploads": "read", "processed": "readwrite"}
    assert set(by_name) == {"image-processor", "bulk-jobs", "cleanup"}
    job = default.get("Job", "kp-knative-playbook-minio-users")
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    for user in users:
        secret = default.get("Secret", f"kp-knative-playbook-{user['name']}")["stringData"]
        assert secret["MINIO_ACCESS_KEY"] == user["accessKey"]
        assert len(secret["MINIO_SECRET_KEY"]) == 40
        ref = env[user["secretKeyEnv"]]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"kp-knative-playbook-{user['name']}", "key": "MINIO_SECRET_KEY"}
    script = default.get("ConfigMap", "kp-knative-playbook-minio-users")["data"]["minio_users.py"]
    assert script == (CHART / "files" / "minio_users.py").read_text()


def test_mongo_url_takes_the_password_from_the_one_mongodb_secret(default):
    secret = default.get("Secret", "kp-knative-playbook-mongodb")["stringData"]
    assert len(secret["password"]) == 32 and secret["password"] != secret["root-password"]
    ksvc = knative_services(default)["orders-api"]
    env = ksvc["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0]["valueFrom"]["secretKeyRef"] == {
        "name": "kp-knative-playbook-mongodb",
        "key": "password",
    }
    assert env[1]["name"] == "MONGO_URL" and "$(MONGO_PASSWORD)@" in env[1]["value"]
    assert (
        "password"
        not in json.dumps(default.get("Secret", "kp-knative-playbook-orders-api")).lower()
    )


def test_minio_notifies_minio_source_with_the_token_minio_source_checks(default):
    minio = default.get("StatefulSet", "kp-knative-playbook-minio")
    env = {e["name"]: e for e in minio["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MINIO_NOTIFY_WEBHOOK_ENDPOINT_PLAYBOOK"]["value"] == (
        f"http://minio-source.{NAMESPACE}.svc.cluster.local/minio/webhook"
    )
    minio_token = env["MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_PLAYBOOK"]["valueFrom"]["secretKeyRef"]
    source = knative_services(default)["minio-source"]["spec"]["template"]["spec"]
    source_env = {e["name"]: e for e in source["containers"][0]["env"]}
    assert source_env["WEBHOOK_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == minio_token
    config = default.get("ConfigMap", "kp-knative-playbook-minio-source")["data"]
    assert config["NOTIFY_TARGET_ID"] == "PLAYBOOK"
    setup = default.get("Job", "kp-knative-playbook-minio-setup")
    assert setup["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    command = setup["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "minio_source.setup"]


def test_external_services_replace_the_bundled_ones():
    rendered = render("external-services-values.yaml")
    assert not rendered.of("StatefulSet")
    env = knative_services(rendered)["orders-api"]["spec"]["template"]["spec"]["containers"][0]
    assert env["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "mongo-connection", "key": "url"}
    config = rendered.get("ConfigMap", "kp-knative-playbook-image-processor")["data"]
    assert (config["MINIO_ENDPOINT"], config["MINIO_SECURE"]) == (
        "s3.storage.example.com:443",
        "true",
    )
    assert knative_services(rendered)["orders-api"]["spec"]["template"]["spec"][
        "imagePullSecrets"
    ] == [{"name": "registry-credentials"}]


def test_monitoring_is_off_by_default_and_complete_when_on(default):
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert not default.of(kind)
    rendered = render("monitoring-enabled-values.yaml")
    assert len(rendered.of("ServiceMonitor")) == 1
    rules = rendered.of("PrometheusRule")[0]["spec"]["groups"]
    alerts = {r["alert"] for g in rules for r in g["rules"] if "alert" in r}
    assert alerts == {
        "FunctionErrorRateHigh",
        "DeadLettersGrowing",
        "FunctionLatencyRegression",
        "FunctionColdStartSpike",
    }
    dashboard = json.loads(
        rendered.get("ConfigMap", "kp-knative-playbook-dashboard")["data"]["knative-playbook.json"]
    )
    assert len(dashboard["panels"]) >= 8


def test_alerts_and_dashboard_query_metrics_the_functions_really_export():
    from fnkit import metrics  # noqa: F401 - registers the fnkit metrics
    from prometheus_client import REGISTRY

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    exported = {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in suffixes.get(family.type, [""])
    }
    exported |= {"dead_letter_stored_total", "dead_letters_current"}  # the dead-letter service's
    rendered = render("monitoring-enabled-values.yaml")
    exprs = [
        r["expr"] for g in rendered.of("PrometheusRule")[0]["spec"]["groups"] for r in g["rules"]
    ]
    dashboard = (CHART / "files" / "dashboard.json").read_text()
    queries = [t["expr"] for p in json.loads(dashboard)["panels"] for t in p["targets"]]
    used = {
        m
        for text in exprs + queries
        for m in re.findall(r"(?<![:\w])((?:fnkit|process|dead_letter)\w*)(?![:\w])", text)
    }
    recorded = {
        r["record"]
        for g in rendered.of("PrometheusRule")[0]["spec"]["groups"]
        for r in g["rules"]
        if "record" in r
    }
    assert used - exported - recorded == set()
    assert {"fnkit_invocations_total", "fnkit_cold_starts_total"} <= used


def test_workflow_templates_are_the_files_of_workflows(default):
    files = sorted((ROOT / "workflows").glob("*.yaml"))
    rendered = {t["metadata"]["name"]: t for t in default.of("WorkflowTemplate")}
    assert len(rendered) == len(files)
    for path in files:
        source = yaml.safe_load(path.read_text())
        template = rendered[source["metadata"]["name"]]
        expected = dict(source["spec"])
        expected.setdefault("serviceAccountName", "kp-knative-playbook-workflow")
        assert template["spec"] == expected, path.name
    assert (CHART / "workflows").resolve() == (ROOT / "workflows").resolve()


def test_unknown_values_are_refused():
    result = run_helm("--set", "functions.orders-api.scaling.minscale=1")
    assert result.returncode != 0 and "minscale" in result.stderr
    result = run_helm("--set", "eventing.delivery.backoffDelay=5s")
    assert result.returncode != 0 and "backoffDelay" in result.stderr


def test_every_key_of_values_yaml_is_documented():
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for index, line in enumerate(lines):
        if not re.match(r"^\s*[A-Za-z0-9_.-]+:", line) or _inside_list_or_free_map(lines, index):
            continue
        comments = []
        for previous in reversed(lines[:index]):
            if not previous.strip().startswith("#"):
                break
            comments.append(previous.strip())
        if not any(c.startswith("# --") for c in comments):
            undocumented.append(f"values.yaml:{index + 1}: {line.strip()}")
    assert undocumented == []


FREE_FORM = ("resources:", "env:", "labels:", "commonLabels:", "minioBuckets:", "attributes:")


def _inside_list_or_free_map(lines: list[str], index: int) -> bool:
    """Keys of list items (triggers) and of free-form maps are documented by their parent."""
    indent = len(lines[index]) - len(lines[index].lstrip())
    for previous in reversed(lines[:index]):
        stripped = previous.strip()
        if not stripped or stripped.startswith("#"):
            continue
        previous_indent = len(previous) - len(previous.lstrip())
        if stripped.startswith("- ") and previous_indent <= indent:
            return True
        if previous_indent < indent:
            if stripped.startswith(FREE_FORM):
                return True
            indent = previous_indent
    return False


def test_k8s_manifests_are_numbered_in_apply_order():
    names = sorted(p.name for p in (ROOT / "k8s").glob("*.yaml"))
    assert names, "k8s/ holds the plain manifests"
    assert all(re.match(r"^[1-9]00-[a-z0-9-]+\.yaml$", n) for n in names), names


def test_chart_workflows_symlink_stays_inside_the_repository():
    link = CHART / "workflows"
    assert link.is_symlink() and Path(link.readlink()) == Path("../../workflows")


def test_k8s_manifests_refer_to_objects_the_chart_creates_for_release_knative_playbook():
    result = run_helm(release="knative-playbook")
    assert result.returncode == 0, result.stderr
    rendered = Rendered(d for d in yaml.safe_load_all(result.stdout) if d)
    job = yaml.safe_load((ROOT / "k8s" / "200-bucket-notification-job.yaml").read_text())
    spec = job["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] in rendered.names("ServiceAccount")
    container = spec["containers"][0]
    assert container["envFrom"][0]["configMapRef"]["name"] in rendered.names("ConfigMap")
    hook = rendered.get("Job", "knative-playbook-minio-setup")["spec"]["template"]["spec"]
    assert container["command"][:3] == hook["containers"][0]["command"][:3]
    secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]}
    assert secrets <= rendered.names("Secret")
    # The bundled MinIO's NetworkPolicy lets the Job in.
    policy = rendered.get("NetworkPolicy", "knative-playbook-minio")["spec"]["ingress"][0]
    allowed = policy["from"][0]["podSelector"]["matchLabels"]
    assert allowed.items() <= job["spec"]["template"]["metadata"]["labels"].items()
    sources = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "k8s").glob("*.yaml"))]
    sinks = [s["spec"]["sink"]["ref"] for s in sources if "sink" in s.get("spec", {})]
    assert sinks and all(ref["name"] == "default" and ref["kind"] == "Broker" for ref in sinks)

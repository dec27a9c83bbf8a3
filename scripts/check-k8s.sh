#!/usr/bin/env bash
# Offline checks of the Kubernetes manifests (no cluster, no kubeconfig needed):
#   1. `kubectl kustomize` renders the kustomization (YAML syntax, apiVersion/kind/name of
#      every object, every listed file present);
#   2. every manifest in the folder (secret.example.yaml included) decodes as Kubernetes
#      objects (`kubectl label --local`, which never contacts a server);
#   3. the rendered objects and secret.example.yaml against the Kubernetes OpenAPI schema,
#      unknown fields rejected (kubernetes-validate from PyPI, installed into
#      .build-k8s-validate/ when missing; skipped with a warning when it cannot be had,
#      or when K8S_SCHEMA=off);
#   4. the embedded cluster.yaml and haproxy.cfg are extracted (to K8S_OUT, default a new
#      temporary folder) and haproxy.cfg is checked with `haproxy -c` if haproxy is installed;
#      with DRS=<path of a drs binary>, cluster.yaml is checked with `drs check-config`
#      (with a throwaway key and token in the environment, as the pods get them);
#   5. every StatefulSet pod drs-<n> is a node of cluster.yaml and a server of haproxy.cfg.
# Exits 1 on the first failed check.
#
# Usage: scripts/check-k8s.sh [DIR]     (DIR defaults to deploy/kubernetes)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-$root/deploy/kubernetes}"
# kubectl must not find (or try) a cluster.
export KUBECONFIG=/dev/null

fail() { echo "check-k8s: FAIL: $*" >&2; exit 1; }
ok() { echo "check-k8s: ok: $*"; }

command -v kubectl >/dev/null || fail "kubectl not found"
[ -f "$dir/kustomization.yaml" ] || fail "$dir/kustomization.yaml not found"

if [ -n "${K8S_OUT:-}" ]; then
    out="$K8S_OUT"
else
    out="$(mktemp -d -t drs-k8s.XXXXXX)"
    trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"
rendered="$out/rendered.yaml"

# 1. The kustomization renders.
kubectl kustomize "$dir" >"$rendered" || fail "kubectl kustomize $dir"
ok "kubectl kustomize $dir ($(grep -c '^kind:' "$rendered") objects)"

# 2. Every manifest decodes on its own.
for f in "$dir"/*.yaml; do
    [ "$(basename "$f")" = kustomization.yaml ] && continue
    kubectl label --local -f "$f" check-k8s=1 -o name >/dev/null || fail "$f does not decode as Kubernetes objects"
done
ok "every manifest in $dir decodes (kubectl label --local)"

# 3. Schema.
schema_files=("$rendered")
[ -f "$dir/secret.example.yaml" ] && schema_files+=("$dir/secret.example.yaml")
validator=""
if [ "${K8S_SCHEMA:-on}" != off ]; then
    if command -v kubernetes-validate >/dev/null; then
        validator="$(command -v kubernetes-validate)"
    else
        venv="$root/.build-k8s-validate"
        if [ ! -x "$venv/bin/kubernetes-validate" ]; then
            echo "check-k8s: installing kubernetes-validate into $venv"
            { python3 -m venv "$venv" && "$venv/bin/pip" install -q 'kubernetes-validate==1.37.0'; } >&2 || true
        fi
        [ -x "$venv/bin/kubernetes-validate" ] && validator="$venv/bin/kubernetes-validate"
    fi
fi
if [ -n "$validator" ]; then
    "$validator" --strict --quiet "${schema_files[@]}" || fail "schema validation (kubernetes-validate --strict)"
    ok "schema, unknown fields rejected ($("$validator" --version 2>/dev/null | head -1 | sed 's/^/kubernetes-validate /'))"
else
    echo "check-k8s: WARNING: schema check skipped (kubernetes-validate unavailable or K8S_SCHEMA=off)" >&2
fi

# 4. The embedded files.
[ -f "$dir/configmap.yaml" ] || fail "$dir/configmap.yaml not found"
kubectl label --local -f "$dir/configmap.yaml" check-k8s=1 -o jsonpath='{.data.cluster\.yaml}' >"$out/cluster.yaml" \
    || fail "cannot read cluster.yaml from $dir/configmap.yaml"
[ -s "$out/cluster.yaml" ] || fail "$dir/configmap.yaml holds no cluster.yaml"
ok "cluster.yaml extracted to $out/cluster.yaml"
if [ -f "$dir/haproxy.yaml" ]; then
    kubectl label --local -f "$dir/haproxy.yaml" check-k8s=1 -o jsonpath='{.data.haproxy\.cfg}' >"$out/haproxy.cfg" \
        || fail "cannot read haproxy.cfg from $dir/haproxy.yaml"
    [ -s "$out/haproxy.cfg" ] || fail "$dir/haproxy.yaml holds no haproxy.cfg"
    ok "haproxy.cfg extracted to $out/haproxy.cfg"
    if command -v haproxy >/dev/null; then
        # The pods' names do not resolve here: HAProxy warns and starts those servers
        # disabled (init-addr none), which is not an error.
        haproxy -c -f "$out/haproxy.cfg" >"$out/haproxy-check.log" 2>&1 || { cat "$out/haproxy-check.log" >&2; fail "haproxy -c"; }
        ok "haproxy -c: $(grep -m1 -i 'valid' "$out/haproxy-check.log" || echo valid)"
    else
        echo "check-k8s: WARNING: haproxy not installed, haproxy.cfg not checked" >&2
    fi
fi
if [ -n "${DRS:-}" ]; then
    DRS_CLUSTER_KEY="$(head -c 32 /dev/urandom | base64)" DRS_HTTP_TOKEN=check-k8s \
        "$DRS" check-config --config "$out/cluster.yaml" || fail "$DRS check-config --config $out/cluster.yaml"
    ok "drs check-config"
fi

# 5. The static member list matches the StatefulSet.
replicas="$(kubectl label --local -f "$dir/statefulset.yaml" check-k8s=1 -o jsonpath='{.spec.replicas}')"
sts="$(kubectl label --local -f "$dir/statefulset.yaml" check-k8s=1 -o jsonpath='{.metadata.name}')"
[ -n "$replicas" ] || fail "$dir/statefulset.yaml: no spec.replicas"
for ((i = 0; i < replicas; i++)); do
    pod="$sts-$i"
    grep -Eq "name: *$pod *[,}]|name: *$pod *(#.*)?$" "$out/cluster.yaml" || fail "pod $pod is not a node of cluster.yaml"
    if [ -s "$out/haproxy.cfg" ]; then
        grep -Eq "^ *server +$pod " "$out/haproxy.cfg" || fail "pod $pod is not a server of haproxy.cfg"
    fi
done
ok "StatefulSet $sts: $replicas pods, each a node of cluster.yaml$([ -s "$out/haproxy.cfg" ] && echo ' and a server of haproxy.cfg')"
echo "check-k8s: all checks passed ($dir)"

#!/usr/bin/env bash
# `make deploy-check`: render the kustomize base and every overlay with `kubectl kustomize`, and
# validate each rendering strictly (unknown fields are errors) with kubernetes-validate against
# the oldest Kubernetes the manifests support and the newest schema it knows.
#
#   KUBERNETES_VERSIONS="1.27.0 1.37.0" deploy/check.sh
set -euo pipefail
cd "$(dirname "$0")"

VALIDATE="${KUBERNETES_VALIDATE:-../.venv/bin/kubernetes-validate}"
VERSIONS="${KUBERNETES_VERSIONS:-1.27.0 1.37.0}"
command -v kubectl > /dev/null || { echo "deploy-check needs kubectl (kustomize built in)" >&2; exit 2; }

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for dir in k8s/base k8s/overlays/*/; do
  dir="${dir%/}"
  name="$(basename "$dir")"
  kubectl kustomize "$dir" > "$out/$name.yaml"
  for version in $VERSIONS; do
    "$VALIDATE" --strict --quiet --kubernetes-version "$version" "$out/$name.yaml"
  done
  echo "$dir: $(grep -c '^kind:' "$out/$name.yaml") objects, valid (strict) for Kubernetes $VERSIONS"
done

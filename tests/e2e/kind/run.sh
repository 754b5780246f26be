#!/usr/bin/env bash
# End-to-end run on a kind cluster: builds the vtmove and vtsim images, creates the cluster,
# installs etcd, a vtsim fleet, the CRDs and the chart, then runs tests/e2e.rs against it.
# Needs docker, kind, kubectl, helm and cargo. See README.md in this directory.
set -euo pipefail
cd "$(dirname "$0")/../../.."

cluster="${VTMOVE_KIND_CLUSTER:-vtmove-e2e}"
ns=vtmove
here=tests/e2e/kind

echo "==> building images"
docker build -t vtmove:e2e --target vtmove .
docker build -t vtsim:e2e --target vtsim .

echo "==> creating kind cluster $cluster"
if ! kind get clusters | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --wait 120s
fi
if [ "${VTMOVE_KIND_KEEP:-0}" != 1 ]; then
  trap 'kind delete cluster --name "$cluster"' EXIT
fi
KUBECONFIG="$(mktemp)"
export KUBECONFIG
kind get kubeconfig --name "$cluster" >"$KUBECONFIG"
kind load docker-image --name "$cluster" vtmove:e2e vtsim:e2e

echo "==> etcd and the vtsim fleet in namespace $ns"
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$ns" apply -f "$here/etcd.yaml"
kubectl -n "$ns" rollout status deployment/etcd --timeout=180s
kubectl -n "$ns" create configmap vtsim-layout \
  --from-file=crates/vtsim/layouts/commerce-customer.yaml --dry-run=client -o yaml |
  kubectl apply -f -
kubectl -n "$ns" apply -f "$here/vtsim.yaml"
kubectl -n "$ns" rollout status deployment/vtsim --timeout=180s

echo "==> CRDs and the vtmove chart"
kubectl apply -f crds/
kubectl wait --for condition=Established --timeout=60s \
  crd/movetablesworkflows.vtmove.dev crd/keyspaces.vtmove.dev
helm upgrade --install vtmove charts/vtmove --namespace "$ns" --skip-crds --wait --timeout 180s \
  --set image.repository=vtmove --set image.tag=e2e --set image.pullPolicy=Never \
  --set topology.globalServerAddress=etcd:2379 \
  --set logFormat=text

echo "==> e2e test"
if ! VTMOVE_E2E_KUBECONFIG="$KUBECONFIG" cargo test --locked --test e2e -- --nocapture; then
  kubectl -n "$ns" logs deployment/vtmove --all-containers --tail=200 || true
  exit 1
fi

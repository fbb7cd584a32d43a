#!/usr/bin/env bash
# Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok
# from their Go modules at the versions pinned in versions.env. The result is cached
# under $LOCALPV_LAB_CACHE/bin/<k8s>-<kwok>; a warm cache makes this a no-op.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lab/versions.env
. "$here/versions.env"
cache=${LOCALPV_LAB_CACHE:-$HOME/.cache/localpv-lab}
out="$cache/bin/$K8S_VERSION-$KWOK_VERSION"
want="etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwok-stages.yaml"
missing=0
for b in $want; do [ -s "$out/$b" ] || missing=1; done
if [ "$missing" = 0 ]; then echo "control plane binaries cached in $out"; exit 0; fi

export GOPATH="$cache/go" GOCACHE="$cache/go-build" GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
mkdir -p "$out.tmp"

# k8s.io/kubernetes cannot be built with `go install pkg@version`: its go.mod replaces
# the staging modules with local directories. A throwaway module requires it and
# points every staging module at its published release instead.
work="$cache/src/k8s-$K8S_VERSION"
mkdir -p "$work/etcd"
cd "$work"
rm -f go.mod go.sum
cat > go.mod <<MOD
module localpv.invalid/lab

go 1.26.0
MOD
cat > etcd/main.go <<'GO'
// etcd built from the same module graph as the API server, so the versions agree.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
curl -fsS "https://proxy.golang.org/k8s.io/kubernetes/@v/$K8S_VERSION.mod" -o upstream.mod \
  || go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
[ -s upstream.mod ] || cp "$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod" upstream.mod
etcd_version=$(sed -n 's#^\s*go.etcd.io/etcd/server/v3 \(v[^ ]*\).*#\1#p' upstream.mod)
go mod edit -require="k8s.io/kubernetes@$K8S_VERSION" -require="go.etcd.io/etcd/server/v3@$etcd_version"
while read -r m; do
  go mod edit -replace="$m=$m@$K8S_STAGING_VERSION"
done < <(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' upstream.mod)
# tool directives keep the commands' module in the graph for `go mod tidy`
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  go mod edit -tool="k8s.io/kubernetes/cmd/$b"
done
go mod tidy
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
echo "building kube-apiserver kube-controller-manager kube-scheduler kubectl $K8S_VERSION, etcd $etcd_version"
# one go build for all: the packages they share compile once, in parallel
go build -trimpath -ldflags "$ldflags" -o "$out.tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl ./etcd

echo "building kwok $KWOK_VERSION"
GOBIN="$out.tmp" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
# kwok does nothing without Stages; take the ones its release ships: nodes that
# become and stay Ready (with leases), pods that start, run and go away on delete.
stages="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
{
  cat "$stages/node/fast/node-initialize.yaml"; echo "---"
  cat "$stages/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml"
  for f in "$stages"/pod/general/pod-*.yaml; do echo "---"; cat "$f"; done
} > "$out.tmp/kwok-stages.yaml"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "control plane binaries built in $out"

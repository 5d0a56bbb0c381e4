#!/usr/bin/env bash
# Usage: hack/kustomize-image.sh KUSTOMIZE IMG OVERLAY
# Prints config/OVERLAY built with the manager's image set to IMG, as
# kubebuilder's `kustomize edit set image` does, but in a copy of config/:
# the working tree is left as it is.
set -euo pipefail
kustomize=$1 img=$2 overlay=$3
[[ $kustomize != */* ]] || kustomize=$(cd "$(dirname "$kustomize")" && pwd)/$(basename "$kustomize")
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$root/config" "$tmp/config"
(cd "$tmp/config/manager" && "$kustomize" edit set image "controller=$img")
"$kustomize" build "$tmp/config/$overlay"

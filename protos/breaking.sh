#!/usr/bin/env bash
# buf breaking (FILE rules) of protos/ against a baseline commit, offline.
# The baseline's own protos are exported from git and built with today's third_party/ (the
# googleapis files are generated, not in git), so the comparison needs no registry.
#   protos/breaking.sh [REF]      REF defaults to $BUF_AGAINST, else HEAD~1
set -euo pipefail
cd "$(dirname "$0")"
ref="${1:-${BUF_AGAINST:-HEAD~1}}"
buf="${BUF:-../.venv/bin/buf}"
if ! git rev-parse --verify --quiet "$ref^{commit}" >/dev/null; then
  echo "buf breaking: no baseline $ref; skipped"; exit 0
fi
if ! git cat-file -e "$ref:protos/buf.yaml" 2>/dev/null; then
  echo "buf breaking: $ref has no protos/ yet; skipped"; exit 0
fi
base="$(mktemp -d)"
trap 'rm -rf "$base"' EXIT
git -C .. archive "$ref" protos | tar -x -C "$base"
rm -rf "$base/protos/third_party"
cp -r third_party "$base/protos/third_party"
"$buf" build "$base/protos" -o "$base/before.binpb"
"$buf" build . -o "$base/after.binpb"
"$buf" breaking "$base/after.binpb" --against "$base/before.binpb"
echo "buf breaking: no breaking change against $ref"

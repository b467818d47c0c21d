#!/usr/bin/env bash
# Refreshes the console's vendored scripts (services/gateway/src/loyalty_gateway/console/
# static/vendor/) from the npm registry with `npm pack`: htmx (the 2.0 line) and Apache
# ECharts, each with its licence, and VENDOR.txt listing name, version, sha256 and licence.
# Run by `make console-vendor`; the files are committed, so the console works offline.
set -euo pipefail
HTMX="${HTMX:-htmx.org@2.0}"
ECHARTS="${ECHARTS:-echarts@6.1.0}"
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/src/loyalty_gateway/console/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
cd "$work"
unpack() {  # <spec> <folder>
  local tarball
  tarball="$(npm pack --silent "$1" | tail -1)"
  mkdir -p "$2" && tar -xzf "$tarball" -C "$2"
}
unpack "$HTMX" htmx
unpack "$ECHARTS" echarts
cp htmx/package/dist/htmx.min.js "$out/htmx.min.js"
cp htmx/package/LICENSE "$out/htmx.LICENSE"
cp echarts/package/dist/echarts.min.js "$out/echarts.min.js"
cp echarts/package/LICENSE "$out/echarts.LICENSE"
cp echarts/package/NOTICE "$out/echarts.NOTICE"
version() { node -p "require('./$1/package/package.json').version"; }
licence() { node -p "require('./$1/package/package.json').license"; }
{
  echo "# name version sha256 licence file (made by console-vendor.sh with npm pack)"
  echo "htmx.org $(version htmx) $(sha256sum "$out/htmx.min.js" | cut -d' ' -f1) $(licence htmx) htmx.min.js"
  echo "echarts $(version echarts) $(sha256sum "$out/echarts.min.js" | cut -d' ' -f1) $(licence echarts) echarts.min.js"
} > "$out/VENDOR.txt"
cat "$out/VENDOR.txt"

#!/usr/bin/env bash
# `make contracts`: the contracts for other teams, from protos/, into dist/contracts/:
#   loyalty_contracts-<version>-py3-none-any.whl   Python messages, gRPC stubs, type stubs
#   loyalty-contracts-<version>.tgz                TypeScript (@loyalty/contracts, protoc-gen-es)
# Each is checked as a consumer would use it: the wheel installed alone into a fresh venv and
# imported; the npm package's built module loaded by node.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=dist/contracts
UV="${UV:-.tools/bin/uv}"
rm -rf "$OUT" && mkdir -p "$OUT"

echo "== Python wheel"
"$UV" build --quiet --package loyalty-contracts --wheel --out-dir "$OUT"
check="$(mktemp -d)"
trap 'rm -rf "$check"' EXIT
"$UV" venv --quiet --python "${PYTHON:-python3}" "$check/venv"
"$UV" pip install --quiet --python "$check/venv/bin/python" "$OUT"/loyalty_contracts-*.whl
(cd "$check" && venv/bin/python -c '
from loyalty.points.v1 import points_service_pb2, points_service_pb2_grpc
assert points_service_pb2_grpc.PointsServiceStub
print("wheel:", points_service_pb2.DESCRIPTOR.services_by_name["PointsService"].full_name)')

echo "== TypeScript package"
(
  cd clients/typescript
  npm ci --no-audit --no-fund --loglevel=error
  PATH="$PWD/../../.venv/bin:$PATH" npm run --silent build
  node --input-type=module -e '
const m = await import("./dist/loyalty/points/v1/points_service_pb.js");
if (!m.PointsService?.method?.earnPoints) throw new Error("no PointsService.earnPoints");
console.log("typescript:", m.PointsService.typeName);'
  npm pack --silent --pack-destination "../../$OUT" > /dev/null
)
ls -l "$OUT"

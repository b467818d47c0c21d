"""Generate the Python contracts package from protos/ (run by `make protos`).

Steps:
1. copy the google/api, google/rpc and google/type .proto files that the installed
   googleapis-common-protos wheel ships into protos/third_party/ (git-ignored), so protoc and
   buf resolve imports offline against exactly what the Python runtime uses;
2. run grpc_tools.protoc on every protos/loyalty/**/*.proto, writing messages, gRPC stubs and
   typed stubs (.pyi from mypy-protobuf) into libs/contracts/src/;
3. add an __init__.py to each generated package so mypy and importers see regular packages;
4. write the contracts with their comments as a FileDescriptorSet (`loyalty/descriptors.binpb`):
   the gateway's OpenAPI document takes its descriptions from it.

The output is deterministic, so running it twice changes nothing.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import google.api
import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
THIRD_PARTY = PROTOS / "third_party"
OUT = ROOT / "libs" / "contracts" / "src"
GENERATED_ROOT = OUT / "loyalty"
KEPT = {"__init__.py", "py.typed"}
DESCRIPTORS = "descriptors.binpb"  # the contracts with their comments (source info)


def copy_third_party() -> None:
    google_dir = Path(next(iter(google.api.__path__))).parent
    if THIRD_PARTY.exists():
        shutil.rmtree(THIRD_PARTY)
    for sub in ("api", "rpc", "type"):
        for proto in sorted((google_dir / sub).glob("*.proto")):
            target = THIRD_PARTY / "google" / sub / proto.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(proto, target)


def clean_output() -> None:
    for child in GENERATED_ROOT.iterdir():
        if child.name in KEPT:
            continue
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def generate() -> int:
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "loyalty").rglob("*.proto"))
    if not sources:
        print("no .proto files under protos/loyalty", file=sys.stderr)
        return 1
    well_known = Path(next(iter(grpc_tools.__path__))) / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{THIRD_PARTY}",
        f"-I{well_known}",
        f"--python_out={OUT}",
        f"--grpc_python_out={OUT}",
        f"--mypy_out={OUT}",
        f"--mypy_grpc_out={OUT}",
        f"--descriptor_set_out={GENERATED_ROOT / DESCRIPTORS}",
        "--include_source_info",
        *sources,
    ]
    code = protoc.main(args)
    if code != 0:
        return int(code)
    for directory in sorted(p for p in GENERATED_ROOT.rglob("*") if p.is_dir()):
        (directory / "__init__.py").touch()
    print(f"generated {len(sources)} proto files into {OUT.relative_to(ROOT)}")
    return 0


def main() -> int:
    copy_third_party()
    clean_output()
    return generate()


if __name__ == "__main__":
    raise SystemExit(main())

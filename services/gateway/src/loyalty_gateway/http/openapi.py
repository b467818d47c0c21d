"""An OpenAPI 3.0 document generated from the same annotations as the routes, and a docs page
(Swagger UI from the swagger-ui-bundle wheel, served by the gateway itself: no CDN, works
offline)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf.descriptor import FieldDescriptor
from loyalty_kit.contract_comments import comments

from loyalty_gateway.http.transcoding import Route, Variable
from loyalty_gateway.http.uploads import MEDIA_TYPES, REQUEST_ID_PARAMETER, SPEC_HEADER, Upload

FD = FieldDescriptor
INT32 = {FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32, FD.TYPE_UINT32, FD.TYPE_FIXED32}
INT64 = {FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64, FD.TYPE_UINT64, FD.TYPE_FIXED64}
WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.Any": {"type": "object"},
    "google.protobuf.Empty": {"type": "object"},
}

# Ids whose form the services check: documented so generated clients send well-formed ones.
ID_SCHEMAS: dict[str, dict[str, Any]] = {
    "memberId": {"type": "string", "format": "uuid"},
    "tierGrantId": {"type": "string", "format": "uuid"},
}

DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Loyalty platform API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>
"""


def swagger_ui_dir() -> str:
    import swagger_ui_bundle

    return str(Path(swagger_ui_bundle.swagger_ui_path))


def _required(f: Any) -> bool:
    behaviours = f.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    return field_behavior_pb2.REQUIRED in behaviours


def _described(schema: dict[str, Any], name: str) -> dict[str, Any]:
    text = comments().get(name)
    if text and "$ref" not in schema:
        schema["description"] = text
    return schema


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


class _Schemas:
    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def message(self, descriptor: Any, *, without: frozenset[str] = frozenset()) -> str:
        name = str(descriptor.full_name) + ("Body" if without else "")
        if name in self.schemas:
            return name
        self.schemas[name] = {}  # placeholder: recursive messages refer to it
        fields = [f for f in descriptor.fields if f.name not in without]
        properties = {f.json_name: _described(self.field(f), f.full_name) for f in fields}
        schema: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        required = [f.json_name for f in fields if _required(f)]
        if required:
            schema["required"] = required
        self.schemas[name] = _described(schema, descriptor.full_name)
        return name

    def field(self, f: Any) -> dict[str, Any]:
        if f.type == FD.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
            value = f.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.single(value)}
        single = self.single(f)
        if f.is_repeated:
            return {"type": "array", "items": single}
        return single

    def single(self, f: Any) -> dict[str, Any]:
        if f.type == FD.TYPE_MESSAGE:
            known = WELL_KNOWN.get(f.message_type.full_name)
            if known is not None:
                return dict(known)
            return _ref(self.message(f.message_type))
        if f.type == FD.TYPE_ENUM:
            return {"type": "string", "enum": [v.name for v in f.enum_type.values]}
        if f.type in INT32:
            return {"type": "integer", "format": "int32"}
        if f.type in INT64:
            return {"type": "string", "format": "int64", "pattern": r"^-?[0-9]+$"}
        if f.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
            return {"type": "number"}
        if f.type == FD.TYPE_BOOL:
            return {"type": "boolean"}
        if f.type == FD.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        return {"type": "string"}


ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "status": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object"}},
            },
            "required": ["code", "message", "status", "details"],
        }
    },
    "required": ["error"],
}
ERROR_RESPONSE = {
    "description": "A google.rpc.Status (AIP-193): ErrorInfo reason and domain, field "
    "violations for bad input.",
    "content": {"application/json": {"schema": _ref("Error")}},
}


def _operation(route: Route, schemas: _Schemas) -> tuple[str, dict[str, Any]]:
    path, params = route.template.openapi_path()
    bound = {p.field_path.split(".")[0] for p in route.template.parts if isinstance(p, Variable)}
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": ID_SCHEMAS.get(name, {"type": "string", "pattern": "^[^/]+$"}),
            "description": f"part of `{field}`",
        }
        for name, field, _ in params
    ]
    request: Any = route.method.input_type
    operation: dict[str, Any] = {
        "operationId": f"{route.service.name}_{route.method.name}",
        "tags": [route.service.name],
        "summary": f"{route.service.full_name}.{route.method.name}",
        "description": comments().get(route.method.full_name, ""),
        "responses": {
            "201" if route.creates else "200": {
                "description": "OK",
                "content": {
                    "application/json": {"schema": _ref(schemas.message(route.method.output_type))}
                },
            },
            "default": ERROR_RESPONSE,
        },
    }
    if route.body == "*":
        schema = _ref(schemas.message(request, without=frozenset(bound)))
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    else:
        if route.body:
            target = request.fields_by_name[route.body].message_type
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(schemas.message(target))}},
            }
        parameters.extend(_query_parameters(request, schemas, skip=frozenset({*bound, route.body})))
    if parameters:
        operation["parameters"] = parameters
    return path, operation


def _query_parameters(
    message: Any, schemas: _Schemas, skip: frozenset[str], prefix: str = "", depth: int = 0
) -> Iterator[dict[str, Any]]:
    """Every field a query string can set: scalars and repeated scalars by their JSON names,
    fields of nested messages by dotted names (`identity.type`), timestamps, durations and
    field masks in their JSON forms (`startTime=2026-11-29T13:00:00Z`, `updateMask=fullName`)."""
    for f in message.fields:
        if f.name in skip:
            continue
        name = f"{prefix}{f.json_name}"
        if f.type == FD.TYPE_MESSAGE and f.message_type.full_name not in WELL_KNOWN:
            if not f.is_repeated and depth < 2 and not f.message_type.GetOptions().map_entry:
                yield from _query_parameters(
                    f.message_type, schemas, frozenset(), f"{name}.", depth + 1
                )
            continue
        if f.type == FD.TYPE_MESSAGE and f.message_type.full_name not in (
            "google.protobuf.Timestamp",
            "google.protobuf.Duration",
            "google.protobuf.FieldMask",
        ):
            continue
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": not prefix and _required(f),
            "schema": schemas.field(f),
        }
        if f.is_repeated:
            parameter.update(style="form", explode=True)
        text = comments().get(f.full_name)
        if text:
            parameter["description"] = text
        yield parameter


def _upload_operation(upload: Upload, schemas: _Schemas) -> dict[str, Any]:
    """An upload (uploads.py): the spec in a header, the request id in the query, the file as
    the body."""
    request = upload.method.input_type
    spec = request.fields_by_name["spec"].message_type
    file = {"schema": {"type": "string", "format": "binary"}}
    how = (
        f"The file is the raw body ({', '.join(MEDIA_TYPES)}; `; charset=gb18030` for a "
        f"GB18030 CSV), streamed to the service as it arrives; the spec is JSON in the "
        f"`{SPEC_HEADER}` header (non-ASCII as `\\u` escapes or UTF-8). A body larger than "
        "the gateway's upload limit is 413 BODY_TOO_LARGE, another Content-Type 415."
    )
    return {
        "operationId": f"{upload.service.name}_{upload.method.name}",
        "tags": [upload.service.name],
        "summary": f"{upload.service.full_name}.{upload.method.name} (upload)",
        "description": "\n\n".join(
            text for text in (comments().get(upload.method.full_name, ""), how) if text
        ),
        "parameters": [
            {
                "name": SPEC_HEADER,
                "in": "header",
                "required": True,
                "description": comments().get(f"{request.full_name}.spec", ""),
                "content": {"application/json": {"schema": _ref(schemas.message(spec))}},
            },
            {
                "name": REQUEST_ID_PARAMETER,
                "in": "query",
                "required": False,
                "description": comments().get(f"{request.full_name}.request_id", ""),
                "schema": {"type": "string"},
            },
        ],
        "requestBody": {
            "required": True,
            "content": dict.fromkeys(MEDIA_TYPES, file),
        },
        "responses": {
            "201": {
                "description": "Created: the file is stored and the import runs",
                "content": {
                    "application/json": {"schema": _ref(schemas.message(upload.method.output_type))}
                },
            },
            "413": ERROR_RESPONSE,
            "415": ERROR_RESPONSE,
            "default": ERROR_RESPONSE,
        },
    }


def document(routes: list[Route], uploads: list[Upload] | None = None) -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path, operation = _operation(route, schemas)
        paths.setdefault(path, {})[route.verb] = operation
    for upload in uploads or ():
        paths.setdefault(upload.path, {})["post"] = _upload_operation(upload, schemas)
    paths["/v1/token"] = {
        "post": {
            "operationId": "Token",
            "tags": ["Auth"],
            "summary": "A bearer token for an API client (OAuth 2.0 client credentials)",
            "security": [],
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "grant_type": {"type": "string", "enum": ["client_credentials"]},
                                "client_id": {"type": "string"},
                                "client_secret": {"type": "string"},
                            },
                            "required": ["client_id", "client_secret"],
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "A token",
                    "content": {"application/json": {"schema": _ref("Token")}},
                },
                "default": ERROR_RESPONSE,
            },
        }
    }
    schemas.schemas["Error"] = ERROR_SCHEMA
    schemas.schemas["Token"] = {
        "type": "object",
        "properties": {
            "access_token": {"type": "string"},
            "token_type": {"type": "string"},
            "expires_in": {"type": "integer"},
            "scope": {"type": "string"},
            "unit": {"type": "string"},
        },
        "required": ["access_token", "token_type", "expires_in"],
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Loyalty platform",
            "version": "v1",
            "description": "One membership across a group's business units. Generated from "
            "the services' protobuf contracts (google.api.http annotations).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas.schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }

"""Uploads: the Create methods that take a file by client stream (CreateMemberImport,
CreateOrderImport), which no `google.api.http` annotation can express, as
`POST /v1/memberImports` (`/v1/orderImports`).

The request message is sent in three parts, each where HTTP carries it best:

- the **spec** as JSON in the `X-Import-Spec` header: the spec message (`MemberImportSpec`) as
  the import's JSON shows it (`memberImport.spec`), read by the same json_format rules as every
  body (unknown fields refused). A header rather than query parameters: the spec has a map
  (`tierMapping`) and a list of messages (`mapping.consents`), which query parameters as the
  gateway transcodes them cannot say. Non-ASCII column names are written as JSON `\\u`
  escapes (or sent as UTF-8);
- the **request id** as the query parameter `requestId`, as fields outside the body always are;
- the **file** as the raw body, `Content-Type: text/csv` or `application/x-ndjson` (its format,
  with `; charset=gb18030` its encoding, when the spec does not say), streamed on in parts of
  at most 1 MiB as it arrives: the gateway never holds more than a part.

The caller is authenticated, held to its rate limit and its token forwarded, as on every route:
the identity service checks the scope and that a unit imports only its own members. The body
may be up to `LOYALTY_GATEWAY_MAX_UPLOAD_BYTES` (a declared length above it is refused unread,
a streamed body as soon as it passes it, the call to the service cancelled, so nothing is
stored): 413 BODY_TOO_LARGE. Another Content-Type is 415. The answer is 201 with the import.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from loyalty_kit.auth import AUTHORIZATION, TokenVerifier, caller_of_claims
from loyalty_kit.caller import set_current_caller
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.validation import refuse_hostile_text
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from loyalty_gateway.adapters.backends import Backends
from loyalty_gateway.http.bodies import body_too_large, malformed, parse_json
from loyalty_gateway.http.contracts import RateLimits, bearer
from loyalty_gateway.http.exchange import REQUEST_ID, Exchange
from loyalty_gateway.http.metrics import note_route
from loyalty_gateway.settings import GatewaySettings

SPEC_HEADER = "X-Import-Spec"
REQUEST_ID_PARAMETER = "requestId"
PART_BYTES = 1024 * 1024  # the contracts' bound on one part of a file
UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
# Media types of the body and the format they are (a spec naming another format is refused);
# application/octet-stream leaves the format to the spec.
MEDIA_TYPES = {
    "text/csv": "CSV",
    "application/x-ndjson": "JSON_LINES",
    "application/jsonl": "JSON_LINES",
    "application/octet-stream": "",
}


@dataclass(frozen=True)
class Upload:
    """One client-streaming Create method and its HTTP route."""

    service: ServiceDescriptor
    method: MethodDescriptor
    path: str  # "/v1/memberImports"

    @property
    def grpc_path(self) -> str:
        return f"/{self.service.full_name}/{self.method.name}"

    @property
    def request_type(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.input_type)

    @property
    def response_type(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.output_type)


def is_upload(method: MethodDescriptor) -> bool:
    """A Create method taking a spec and then a file's parts by client stream."""
    fields = method.input_type.fields_by_name
    return (
        method.client_streaming
        and not method.server_streaming
        and method.name.startswith("Create")
        and {"request_id", "spec", "content"} <= set(fields)
    )


def uploads_of(services: Iterable[ServiceDescriptor]) -> list[Upload]:
    """Every upload of `services`, at the collection of the resource it creates: the
    response's one field, `memberImport`, is made in `/v1/memberImports`."""
    found = []
    for service in services:
        for method in service.methods:
            if is_upload(method):
                (resource,) = method.output_type.fields
                found.append(Upload(service, method, f"/v1/{resource.json_name}s"))
    return found


def spec_of(request: Request, spec: Message, max_depth: int) -> None:
    """Read the spec header into `spec` (its violations named after the header)."""
    raw = request.headers.get(SPEC_HEADER)
    if raw is None or not raw.strip():
        raise InvalidArgument.of(
            [FieldViolation(SPEC_HEADER, 'the import\'s spec as JSON, e.g. {"unit": "mall"}')]
        )
    try:
        text = raw.encode("latin-1").decode("utf-8")  # HTTP gives the header's bytes as latin-1
    except UnicodeError:
        raise InvalidArgument.of([FieldViolation(SPEC_HEADER, "JSON in UTF-8")]) from None
    try:
        data = parse_json(text.encode(), max_depth)
    except InvalidArgument:
        raise InvalidArgument.of([FieldViolation(SPEC_HEADER, "a JSON object")]) from None
    if not isinstance(data, dict):
        raise InvalidArgument.of([FieldViolation(SPEC_HEADER, "a JSON object")])
    try:
        json_format.ParseDict(data, spec)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as error:
        raise InvalidArgument.of([FieldViolation(SPEC_HEADER, str(error))]) from None


def format_of(request: Request, spec: Any) -> None:
    """The body's media type as the spec's format (and its charset as the encoding) where the
    spec leaves them out; 415 for a type that is no import file, 400 for one the spec
    contradicts."""
    media, *params = [p.strip() for p in request.headers.get("content-type", "").split(";")]
    media = media.lower() or "application/octet-stream"
    if media not in MEDIA_TYPES:
        raise InvalidArgument(
            f"Content-Type {media} is not an import file: one of {', '.join(MEDIA_TYPES)}",
            reason=UNSUPPORTED_MEDIA_TYPE,
            field_violations=[FieldViolation("Content-Type", ", ".join(MEDIA_TYPES))],
        )
    formats = spec.DESCRIPTOR.fields_by_name["format"].enum_type
    prefix = formats.values_by_number[0].name[: -len("UNSPECIFIED")]
    problems = []
    if MEDIA_TYPES[media]:
        wanted = formats.values_by_name[prefix + MEDIA_TYPES[media]].number
        if spec.format and spec.format != wanted:
            named = formats.values_by_number[spec.format].name
            problems.append(FieldViolation("Content-Type", f"{media} is not the spec's {named}"))
        spec.format = wanted
    charset = next(
        (
            p.partition("=")[2].strip('" ').lower()
            for p in params
            if p.lower().startswith("charset=")
        ),
        "",
    )
    if charset:
        if spec.encoding and _codec(spec.encoding) != _codec(charset):
            problems.append(
                FieldViolation(
                    "Content-Type", f"charset {charset} is not the spec's {spec.encoding}"
                )
            )
        spec.encoding = spec.encoding or charset
    if problems:
        raise InvalidArgument.of(problems)


def _codec(name: str) -> str:
    """An encoding's canonical name (`UTF8` and `utf-8` are one)."""
    try:
        return codecs.lookup(name).name
    except LookupError:
        return name.lower()


def first_message(upload: Upload, request: Request, max_depth: int) -> Message:
    """The stream's first message: the request id from the query, the spec from its header."""
    message = upload.request_type()
    problems = []
    for key, value in parse_qsl(request.url.query, keep_blank_values=True):
        if key in (REQUEST_ID_PARAMETER, "request_id"):
            message.request_id = value  # type: ignore[attr-defined]
        elif key != "access_token":
            problems.append(
                FieldViolation(key, f"not a parameter here (only {REQUEST_ID_PARAMETER})")
            )
    if problems:
        raise InvalidArgument.of(problems)
    spec = message.spec  # type: ignore[attr-defined]
    spec_of(request, spec, max_depth)
    format_of(request, spec)
    refuse_hostile_text(message)
    return message


async def parts(
    body: AsyncIterator[bytes], limit: int, size: int = PART_BYTES
) -> AsyncIterator[bytes]:
    """The body in parts of `size` bytes (the last one shorter), never more than `limit` in
    all (BODY_TOO_LARGE as soon as it passes)."""
    pending = bytearray()
    total = 0
    async for chunk in body:
        total += len(chunk)
        if total > limit:
            raise body_too_large(limit)
        pending += chunk
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


class Uploads:
    """The endpoint behind every upload route."""

    def __init__(
        self,
        uploads: Iterable[Upload],
        backends: Backends,
        verifier: TokenVerifier,
        config: GatewaySettings,
        limits: RateLimits,
    ) -> None:
        self.by_path = {upload.path: upload for upload in uploads}
        self.backends = backends
        self.verifier = verifier
        self.config = config
        self.limits = limits

    async def answer(self, request: Request) -> Response:
        exchange = Exchange(request)
        upload = self.by_path[request.url.path]
        note_route(request, upload.path)
        try:
            token, claims = bearer(request, self.verifier)
            exchange.called_by(str(claims["sub"]))
            set_current_caller(caller_of_claims(claims))
            await self.limits.hit(claims)
            limit = self.config.max_upload_bytes
            declared = request.headers.get("content-length")
            if declared is not None and not declared.isdigit():
                raise malformed("Content-Length is not a number")
            if declared is not None and int(declared) > limit:
                raise body_too_large(limit)
            first = first_message(upload, request, self.config.max_json_depth)
            metadata = (
                (AUTHORIZATION, f"Bearer {token}"),
                (REQUEST_ID, exchange.request_id),
                *exchange.carrier.items(),
            )
            reply, unread = await self._send(upload, first, request, limit, metadata)
            body = json_format.MessageToDict(reply, always_print_fields_with_no_presence=True)
            response = JSONResponse(body, status_code=201)
            if unread:  # the service answered before the file was all sent (a retry)
                response.headers["Connection"] = "close"
            return exchange.finish(response)
        except ClientDisconnect:
            return exchange.finish(Response(status_code=499))
        except Exception as error:
            failed = exchange.failed(error, upload.path)
            failed.headers["Connection"] = "close"  # the rest of the body is not wanted
            return failed

    async def _send(
        self,
        upload: Upload,
        first: Message,
        request: Request,
        limit: int,
        metadata: tuple[tuple[str, str], ...],
    ) -> tuple[Message, bool]:
        """Stream the first message and then the body's parts to the service; its answer, and
        whether the body was left unread because the service answered first. A failure while
        reading the body (too large, the client gone) cancels the call: nothing is stored."""
        channel = self.backends.channel_for(upload.service)
        call = channel.stream_unary(
            upload.grpc_path,
            request_serializer=upload.request_type.SerializeToString,
            response_deserializer=upload.response_type.FromString,
        )(metadata=metadata, timeout=self.config.upload_deadline_seconds)
        unread = True
        try:
            await call.write(first)
            async for part in parts(request.stream(), limit):
                await call.write(upload.request_type(content=part))  # type: ignore[call-arg]
            unread = False
            await call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass  # the service has answered already: its answer (or refusal) is below
        except BaseException:
            call.cancel()
            raise
        reply: Message = await call
        return reply, unread

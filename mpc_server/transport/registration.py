"""Registering a servicer for a service, with raw bytes for the bulk methods.

The generated ``add_*Servicer_to_server`` functions serialize every message
with the protobuf runtime. For the methods that carry share vectors the
servicers read and write the bytes themselves (``mpc_core.protowire``,
``transport.exchange_codec``), so those methods are registered here without
a (de)serializer; all other methods keep the generated classes'. The
method list, names and streaming kinds come from the service descriptor,
exactly as in the generated code.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor

_Factory = Callable[..., Any]
_FACTORIES: dict[tuple[bool, bool], _Factory] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def add_servicer(
    server: grpc.aio.Server,
    servicer: object,
    service: ServiceDescriptor,
    *,
    raw_requests: Collection[str] = (),
    raw_responses: Collection[str] = (),
) -> None:
    """Serve every method of ``service`` from the same-named ``servicer`` method.

    Methods named in ``raw_requests`` receive the request bytes as sent;
    those in ``raw_responses`` must produce ``bytes`` (an encoded response).
    """
    unknown = (set(raw_requests) | set(raw_responses)) - {m.name for m in service.methods}
    if unknown:
        raise ValueError(f"{service.full_name} has no methods {sorted(unknown)}")
    handlers = {}
    for method in service.methods:
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        factory = _FACTORIES[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = factory(
            getattr(servicer, method.name),
            request_deserializer=None if method.name in raw_requests else request.FromString,
            response_serializer=None if method.name in raw_responses else response.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)

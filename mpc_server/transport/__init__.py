"""gRPC transport: TLS credentials, caller identity, and the peer links.

Imports ``mpc_core``, ``mpc_server.protocol``, the generated ``mpc_proto``
code and grpc; never the service or API layers.
"""

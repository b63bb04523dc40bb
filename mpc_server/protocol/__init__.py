"""Protocols as small async functions over an abstract :class:`Channel`.

Imports only ``mpc_core`` and the standard library (never gRPC or the
generated code), so three parties can run in one event loop over
:class:`~mpc_server.protocol.memory.InMemoryNetwork` in tests.
"""

"""Business logic of a server: datasets, uploads, jobs, programs, outputs.

No gRPC here: the API layer decodes requests into these domain types and
maps the ``mpc_core.errors`` this layer raises onto status codes. Imports
``mpc_core`` and ``mpc_server.protocol`` only.
"""

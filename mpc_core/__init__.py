"""Pure core of the MPC service: the ring Z_2^64, fixed point, sharing, PRG/PRF.

Nothing in this package performs I/O, touches the network, reads files or the
environment, or imports gRPC, asyncio or the generated protocol code. It is
shared by the servers and the client SDK.
"""

from mpc_core.version import PROTOCOL_VERSION, SOFTWARE_VERSION

__all__ = ["PROTOCOL_VERSION", "SOFTWARE_VERSION"]

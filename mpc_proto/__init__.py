"""Generated protocol buffer and gRPC code for package ``mpc.v1``."""

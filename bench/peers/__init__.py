"""Peer systems (CrypTen, MPyC) run on the same workloads, each in its own venv."""

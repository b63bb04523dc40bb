"""Run by each bank on its own machine: upload one column as secret shares.

Usage: python bank.py IDENTITY DATASET VALUE [VALUE ...]
  e.g. python bank.py bank-1 income 101234.56 87000 130500.25
Run it in a directory holding cluster.toml and certs/IDENTITY.{pem,key}.
"""

import sys

from mpc_client import Grant, MpcClient

identity, dataset, *values = sys.argv[1:]
with MpcClient.connect("cluster.toml", f"certs/{identity}.pem", f"certs/{identity}.key") as bank:
    ref = bank.upload(
        dataset,
        [float(v) for v in values],
        grants=[Grant("model-owner", "linear_regression.predict")],
        overwrite=True,
    )
    print(f"{identity}: uploaded {ref} as secret shares to the three servers")

"""Run by each bank on its own machine: upload one column, granting exactly one job.

Usage: python bank.py IDENTITY DATASET WEIGHTS INTERCEPT VALUE [VALUE ...]
  e.g. python bank.py bank-1 income model-owner/weights@3f2a... model-owner/intercept@9c1b... 101234.56 87000
WEIGHTS and INTERCEPT are the pinned names `model_owner.py upload` printed: the grant
allows the model owner this prediction with that version of the model only.
Run it in a directory holding cluster.toml and certs/IDENTITY.{pem,key}.
"""

import sys

from mpc_client import Grant, MpcClient

identity, dataset, weights, intercept, *values = sys.argv[1:]
job = {"features": ["bank-1/income", "bank-2/debt"], "weights": weights, "intercept": intercept}
with MpcClient.connect("cluster.toml", f"certs/{identity}.pem", f"certs/{identity}.key") as bank:
    ref = bank.upload(
        dataset,
        [float(v) for v in values],
        grants=[Grant.pinned("model-owner", "linear_regression.predict", job)],
        overwrite=True,
    )
    print(f"{identity}: uploaded {ref} as secret shares to the three servers")

"""Run by the model owner: upload the model first, predict once the banks have uploaded.

Usage: python model_owner.py upload    prints the model's pinned names, to give to the banks
       python model_owner.py predict   after both banks have uploaded their columns
Run it in a directory holding cluster.toml and certs/model-owner.{pem,key}.
"""

import sys

from mpc_client import Grant, MpcClient

PREDICT = "linear_regression.predict"
JOB = {"features": ["bank-1/income", "bank-2/debt"], "weights": "weights", "intercept": "intercept"}
with MpcClient.connect("cluster.toml", "certs/model-owner.pem", "certs/model-owner.key") as owner:
    if sys.argv[1] == "upload":
        grant = [Grant.pinned("model-owner", PREDICT, JOB)]  # its own model: in this one job only
        weights = owner.upload("weights", [0.2731, -0.5912], grants=grant, overwrite=True)
        intercept = owner.upload("intercept", 1250.75, grants=grant, overwrite=True)
        print("model:", weights.pinned, intercept.pinned)
    else:
        job = owner.run(PREDICT, JOB)
        predictions = owner.fetch(job)  # checked: both copies of every share component must agree
        print("predictions:", [round(float(y), 2) for y in predictions])

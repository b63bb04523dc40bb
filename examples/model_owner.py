"""Run by the model owner: upload the model, predict, reconstruct the result.

Usage: python model_owner.py   (after both banks have uploaded)
Run it in a directory holding cluster.toml and certs/model-owner.{pem,key}.
"""

from mpc_client import Grant, MpcClient

grant = [Grant("model-owner", "linear_regression.predict")]
with MpcClient.connect("cluster.toml", "certs/model-owner.pem", "certs/model-owner.key") as owner:
    owner.upload("weights", [0.2731, -0.5912], grants=grant, overwrite=True)
    owner.upload("intercept", 1250.75, grants=grant, overwrite=True)
    job = owner.run(
        "linear_regression.predict",
        {"features": ["bank-1/income", "bank-2/debt"], "weights": "weights", "intercept": "intercept"},
    )
    predictions = owner.fetch(job)  # checked: both copies of every share component must agree
    print("predictions:", [round(float(y), 2) for y in predictions])

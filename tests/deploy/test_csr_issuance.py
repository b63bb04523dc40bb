"""The guide's signing-request flow works: keys made on their own host, signed with OpenSSL.

Runs the OpenSSL commands of deploy/README.md ("Keys that never leave their host") for a
server and a client, against the CA that ``mpc certs`` made, then starts a real cluster
with that server certificate and asks ``mpc status`` with that client certificate.
Keep the commands here and in the guide the same.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_cli.main import main

pytestmark = pytest.mark.e2e

MAKE_KEY_AND_REQUEST = """
openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out {name}.key
chmod 600 {name}.key
openssl req -new -key {name}.key -subj /CN={name} -out {name}.csr
"""
SIGN = """
cat > {name}.ext <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = {usage}
subjectAltName = {san}
EOF
openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 \\
  -sha256 -extfile {name}.ext -out {name}.pem
"""


def _issue_with_openssl(directory: Path, name: str, usage: str, san: str) -> None:
    for template in (MAKE_KEY_AND_REQUEST, SIGN):
        script = "set -eu\n" + template.format(name=name, usage=usage, san=san)
        completed = subprocess.run(
            ["sh", "-c", script], cwd=directory, capture_output=True, text=True, timeout=60, check=False
        )
        assert completed.returncode == 0, completed.stderr


def test_server_and_client_certificates_from_signing_requests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    local = LocalCluster(tmp_path, clients=("model-owner",))
    local.prepare()  # mpc certs: the CA, the servers' and model-owner's certificates
    certs = local.cert_dir
    for suffix in (".pem", ".key"):
        (certs / f"server-2{suffix}").unlink()
    server_san = "URI:urn:mpc:server:server-2, DNS:server-2, DNS:mpc.org-c.example"
    _issue_with_openssl(certs, "server-2", "serverAuth, clientAuth", server_san)
    _issue_with_openssl(certs, "bank-1", "clientAuth", "URI:urn:mpc:client:bank-1")
    try:
        for index in range(3):
            local.start_server(index)  # not start(): it would reissue what it did not make
        local.wait_ready(timeout=30)
        client = ["--cert", str(certs / "bank-1.pem"), "--key", str(certs / "bank-1.key")]
        assert main(["status", "--cluster", str(local.cluster_file), *client]) == 0
        assert "3 of 3 servers reachable and ready" in capsys.readouterr().out
    finally:
        local.stop()

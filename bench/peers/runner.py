"""Launch a peer system as three processes on loopback and turn its output into rows."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import statistics
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mpc_cli.local_cluster import free_ports

from ..workloads import Row, Workload
from .envs import PeerUnavailableError, crypten_python, mpyc_python

HERE = Path(__file__).resolve().parent
MPYC_MAX = {"multiply": 100_000, "linreg": 100_000, "dot": 1_000_000}
"""MPyC needs about 4 minutes and 17 GiB for 10^6 multiplications; larger
workloads are skipped to keep the full run under 10 minutes."""


def _run_three(commands: list[list[str]], envs: list[dict[str, str]], cwd: Path, timeout: float) -> list[str]:
    processes = [
        subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for cmd, env in zip(commands, envs, strict=True)
    ]
    outputs = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            if process.returncode != 0:
                raise PeerUnavailableError(f"a party exited with {process.returncode}: {err.strip()[-300:]}")
            outputs.append(out)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return outputs


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


CRYPTEN_TRAINING = frozenset({"stats", "fit-ridge", "fit-ols", "decide", "compare", "logistic"})
"""Workloads of ``crypten_training_party.py``; the others are ``crypten_party.py``'s."""
CRYPTEN_KINDS = CRYPTEN_TRAINING | {"multiply", "linreg", "dot"}
MPYC_KINDS = frozenset(MPYC_MAX)


def run_crypten(
    workload: Workload, scratch: Path, progress: Callable[[str], None], options: Sequence[str] = ()
) -> Row:
    """CrypTen (3 processes, gloo over loopback, its default dealer, no TLS).

    ``options`` are extra arguments of the party script (for the training
    rows: our plan's iteration counts, trace bound, momentum and clip).
    """
    python = crypten_python(progress)
    port = free_ports(1)[0]
    base = dict(os.environ, RENDEZVOUS="env://", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    base.update(WORLD_SIZE="3", DISTRIBUTED_BACKEND="gloo", GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    args = [workload.kind, "-n", str(workload.n), "-d", str(workload.d), "--reps", str(workload.reps)]
    script = "crypten_training_party.py" if workload.kind in CRYPTEN_TRAINING else "crypten_party.py"
    commands = [[str(python), str(HERE / script), *args, *options] for _ in range(3)]
    envs = [dict(base, RANK=str(rank)) for rank in range(3)]
    timeout = 3600 if workload.kind in CRYPTEN_TRAINING else 900
    results = [record for out in _run_three(commands, envs, scratch, timeout) for record in _json_lines(out)]
    times = [max(float(r["times"][i]) for r in results) for i in range(workload.reps)]
    return Row(
        system="crypten",
        workload=workload.kind,
        n=workload.n,
        d=workload.d,
        median_s=statistics.median(times),
        min_s=min(times),
        max_s=max(times),
        reps=workload.reps,
        max_abs_error=max(float(r["max_abs_error"]) for r in results),
        bytes_between_servers=int(sum(float(r["bytes"]) for r in results) / 2),
        rounds=int(results[0]["rounds"]),
        note=CRYPTEN_NOTES.get(workload.kind, "input sharing + op + reveal") + "; dealer sees inputs; no TLS",
        extra=_crypten_extra(workload, results, statistics.median(times)),
    )


FROM_SHARES = "inputs already shared (sharing timed apart): op + reveal"
CRYPTEN_NOTES = {
    "compare": "x > t alone on x already shared, result left in shares (reveal untimed)",
    **dict.fromkeys(("stats", "fit-ridge", "fit-ols", "decide", "logistic"), FROM_SHARES),
}
"""What a CrypTen row's time includes, where not input sharing + the computation + the reveal."""


def _crypten_extra(workload: Workload, results: list[dict[str, Any]], median_s: float) -> dict[str, Any]:
    sent = [int(r["bytes"]) for r in sorted(results, key=lambda r: r["rank"])]
    extra: dict[str, Any] = {"bytes_per_party": sent}
    if all("busy_s" in r for r in results):
        busy = sum(float(b) for b in results[0]["busy_s"])  # rank order does not matter: one machine
        own = sum(float(c) for r in results for c in r["cpu_s"])
        extra["parties_cpu_s"] = round(own, 2)
        extra["others_cpu_s"] = round(max(0.0, busy - own), 2)
    if all(r.get("sharing_s") for r in results):
        sharing = [max(float(r["sharing_s"][i]) for r in results) for i in range(workload.reps)]
        extra["input_sharing_s"] = round(statistics.median(sharing), 4)
    if workload.kind == "compare":
        extra["bits_per_comparison_per_party"] = [round(8 * b / workload.n, 1) for b in sent]
        extra["comparisons_per_s"] = round(workload.n / median_s)
    return extra


def run_mpyc(
    workload: Workload, scratch: Path, progress: Callable[[str], None], options: Sequence[str] = ()
) -> Row:
    """MPyC (3 processes, Shamir over a prime field, TLS between parties); ``options`` unused."""
    if workload.n > MPYC_MAX.get(workload.kind, 0):
        return Row(
            "mpyc", workload.kind, workload.n, workload.d, None, note="skipped: too slow / too large for MPyC"
        )
    python = mpyc_python(progress)
    _mpyc_certificates(scratch / ".config")
    reps = 1 if workload.products >= 100_000 else min(workload.reps, 3)
    port = _free_port_block()
    args = [workload.kind, "-n", str(workload.n), "-d", str(workload.d), "--reps", str(reps)]
    commands = [
        [str(python), str(HERE / "mpyc_party.py"), *args, "-M3", f"-I{i}", f"-B{port}", "--ssl", "--no-log"]
        for i in range(3)
    ]
    outputs = _run_three(commands, [dict(os.environ)] * 3, scratch, 900)
    (record,) = _json_lines(outputs[0])
    times = [float(t) for t in record["times"]]
    return Row(
        system="mpyc",
        workload=workload.kind,
        n=workload.n,
        d=workload.d,
        median_s=statistics.median(times),
        min_s=min(times),
        max_s=max(times),
        reps=reps,
        max_abs_error=float(record["max_abs_error"]),
        bytes_between_servers=int(3 * float(record["bytes_per_party"])),
        note="input sharing + op + output; TLS on",
    )


def _free_port_block() -> int:
    """A base port B with B, B+1, B+2 free (MPyC listens on B + party index)."""
    for _ in range(100):
        base = free_ports(1)[0]
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + 3):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise PeerUnavailableError("no free block of three ports for MPyC")


def _mpyc_certificates(directory: Path) -> None:
    """TLS material MPyC's --ssl expects: a CA and ``party_<i>`` certificates."""
    if (directory / "party_2.crt").exists():
        return
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MPyC Certification Authority")])
    ca = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, now, is_ca=True)
    _write(directory / "mpyc_ca", ca_key, ca)
    for party in range(3):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"MPyC party {party}")])
        _write(
            directory / f"party_{party}",
            key,
            _certificate(name, ca_name, key.public_key(), ca_key, now, is_ca=False),
        )


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    public: ec.EllipticCurvePublicKey,
    signer: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    *,
    is_ca: bool,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )


def _write(stem: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    stem.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = stem.with_suffix(".key")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)

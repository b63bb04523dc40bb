"""What the output store keeps about each output, and the files it keeps it in.

An output's share file (``share_files``) carries its metadata in the header
(:func:`header_of`, read back by :func:`entry_from_header`). An output whose
background write failed leaves a *loss record* beside where its file would
be (``<output>.lost``, a small JSON file with the same metadata and the
reason): after a restart the server then knows the output existed and was
lost, and a fetch fails with ``DataLossError`` instead of "not found".
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpc_server.service import share_files
from mpc_server.service.model import OutputInfo, StoredOutput, output_key

LOST_SUFFIX = ".lost"


@dataclass
class Entry:
    """One kept output: its metadata, and the output itself while in memory."""

    created: float
    job_id: str
    receiver: str
    info: OutputInfo
    digest: bytes
    nbytes: int
    submitter: str
    index: int = 0
    """The output's position among its program's outputs."""
    in_memory: StoredOutput | None = None
    """The output itself: always until its file is written, then while it fits the memory budget."""
    written: bool = True
    charged: bool = True
    """Whether it counts against its submitter's quota (not once handed over for good)."""
    lost: str | None = None
    """Why its file could not be written (a loss record exists), if it could not."""

    @property
    def key(self) -> str:
        """``submitter/job_id/output``."""
        return output_key(self.submitter, self.job_id, self.info.name)


def entry_of(output: StoredOutput, created: float) -> Entry:
    """The entry of a fresh output (not yet written)."""
    nbytes = int(output.share.first.nbytes + output.share.second.nbytes)
    submitter = output.submitter or output.receiver
    return Entry(
        created,
        output.job_id,
        output.receiver,
        output.info,
        output.job_digest,
        nbytes,
        submitter,
        output.index,
        written=False,
    )


def entry_from_header(header: dict[str, Any]) -> Entry:
    """The entry a share file's (or loss record's) header describes."""
    failure = header.get("truncation_failure_log2")
    info = OutputInfo(
        tuple(header["shape"]),
        int(header["fractional_bits"]),
        int(header.get("ring_bits", 64)),
        int(header.get("magnitude_bits", 0)),
        None if failure is None else float(failure),
        name=str(header["output"]),
    )
    nbytes = 2 * (info.ring_bits // 8) * int(header["count"])
    digest = bytes.fromhex(header["digest"])
    submitter = header.get("submitter") or header["receiver"]  # files from before scoping: receiver
    return Entry(
        float(header["created"]),
        header["job_id"],
        header["receiver"],
        info,
        digest,
        nbytes,
        submitter,
        int(header.get("index", 0)),
    )


def header_of(entry: Entry) -> dict[str, object]:
    """The metadata stored with an output."""
    return {
        "job_id": entry.job_id,
        "output": entry.info.name,
        "index": entry.index,
        "submitter": entry.submitter,
        "receiver": entry.receiver,
        "shape": list(entry.info.shape),
        "fractional_bits": entry.info.fractional_bits,
        "magnitude_bits": entry.info.magnitude_bits,
        "truncation_failure_log2": entry.info.truncation_failure_log2,
        "digest": entry.digest.hex(),
        "created": entry.created,
    }


def write_loss_record(tmp_dir: Path, target: Path, entry: Entry, reason: str) -> None:
    """Durably record that ``entry``'s output was lost (blocking; raises ``OSError``)."""
    record = {**header_of(entry), "ring_bits": entry.info.ring_bits, "count": 0, "lost": reason}
    temp = tmp_dir / f"{secrets.token_hex(8)}.lost"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(json.dumps(record, sort_keys=True).encode())
            handle.flush()
            os.fsync(handle.fileno())
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, target)
        share_files.fsync_directory(target.parent)
    finally:
        temp.unlink(missing_ok=True)


def read_loss_record(path: Path) -> Entry:
    """The entry a loss record describes (``KeyError``/``ValueError`` if it is malformed)."""
    record = json.loads(path.read_bytes())
    entry = entry_from_header(record)
    entry.lost = str(record["lost"])
    entry.written = False
    entry.charged = False
    return entry

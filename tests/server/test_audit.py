"""The audit trail: append-only per owner, jobs per identity, readable after a crash."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from mpc_server.service.audit import AuditInput, AuditLog, JobRecord
from mpc_server.service.model import DatasetRef

INCOME, DEBT, WEIGHTS = (
    DatasetRef("bank-1", "income"),
    DatasetRef("bank-2", "debt"),
    DatasetRef("model-owner", "w"),
)


def _record(job_id: str, submitter: str = "model-owner", *datasets: DatasetRef) -> JobRecord:
    inputs = tuple(AuditInput("x", d, bytes([i]) * 16, bytes([9 - i]) * 16) for i, d in enumerate(datasets))
    return JobRecord(job_id, submitter, "model-owner", "dot", inputs, 1000.0, 1001.0, "OK")


def test_each_owner_sees_every_job_that_read_its_data_and_nothing_else(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    first = _record("j1", "model-owner", INCOME, WEIGHTS)
    second = _record("j2", "outsider", DEBT)
    third = _record("j3", "model-owner", INCOME, DEBT)
    for record in (first, second, third):
        log.append(record)
    assert log.trail("bank-1") == [first, third]
    assert log.trail("bank-2") == [second, third]
    assert log.trail("bank-2", "debt", limit=1) == [third]
    assert log.trail("bank-1", "other") == []
    assert log.jobs("outsider") == [second]
    assert log.jobs("model-owner") == [first, second, third]  # the receiver of all three
    log.close()
    reopened = AuditLog(tmp_path)
    assert reopened.trail("bank-1") == [first, third]  # durable across a restart
    reopened.append(_record("j4", "model-owner", INCOME))
    assert [r.job_id for r in reopened.trail("bank-1")] == ["j1", "j3", "j4"]  # appended, never rewritten


def test_a_line_cut_by_a_crash_loses_only_that_line(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    log.append(_record("j1", "model-owner", INCOME))
    log.close()
    path = tmp_path / "audit" / "bank-1.jsonl"
    with path.open("a") as handle:
        handle.write(json.dumps(_record("cut", "model-owner", INCOME).to_json())[:40])
    assert [r.job_id for r in AuditLog(tmp_path).trail("bank-1")] == ["j1"]


def test_records_round_trip_and_sync_writes_them_out(tmp_path: Path) -> None:
    record = _record("j1", "model-owner", INCOME, DEBT)
    assert JobRecord.from_json(record.to_json()) == record

    async def main() -> None:
        log = AuditLog(tmp_path, sync_delay=0.01)
        log.append(record)
        log.sync_soon()
        await asyncio.sleep(0.05)
        await log.sync()
        log.close()

    asyncio.run(main())
    lines = (tmp_path / "jobs" / "model-owner.jsonl").read_text().splitlines()
    assert [json.loads(line)["job_id"] for line in lines] == ["j1"]
    assert oct((tmp_path / "audit" / "bank-1.jsonl").stat().st_mode & 0o777) == "0o600"

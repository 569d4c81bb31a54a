"""``lean(ledger="postgresql://...")``: the URL names the shared PostgreSQL ledger."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tokenlean.core import CallRecord, Usage
from tokenlean.core.presets import ledger_from


def test_a_postgresql_url_is_the_postgres_ledger(postgres_server: Any) -> None:
    import psycopg

    name = f"ledger_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = postgres_server.dsn.replace("/postgres?", f"/{name}?")
    ledger = ledger_from(url)
    try:
        assert type(ledger).__name__ == "PostgresLedger"
        ledger.record(CallRecord(request_id="r1", model="gpt-4o",
                                 usage=Usage(input_tokens=10, output_tokens=2)))
        assert [r.usage.input_tokens for r in ledger.records()] == [10]
    finally:
        ledger.close()


@pytest.mark.parametrize("bad", ["postgresql:/missing-slash", "ledger.csv", 3])
def test_anything_else_is_a_config_error(bad: object) -> None:
    from tokenlean.core import ConfigError

    with pytest.raises(ConfigError, match="ledger="):
        ledger_from(bad)


def test_a_postgres_ledger_from_before_the_reasoning_column_is_migrated(
        postgres_server: Any) -> None:
    """A table written before reasoning tokens had their own column gets it when the
    ledger opens, filled from each row's body, and the SQL totals count it."""
    import psycopg

    from tokenlean.core import PostgresLedger

    name = f"ledger_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = postgres_server.dsn.replace("/postgres?", f"/{name}?")
    ledger = PostgresLedger(url, table="calls")
    ledger.record(CallRecord(request_id="r1", model="gpt-4o",
                             usage=Usage(input_tokens=10, output_tokens=9, reasoning_tokens=7)))
    ledger.close()
    with psycopg.connect(url, autocommit=True) as conn:  # the old layout: no column
        conn.execute("ALTER TABLE calls DROP COLUMN reasoning_tokens")
    reopened = PostgresLedger(url, table="calls")
    try:
        reopened.record(CallRecord(request_id="r2", model="gpt-4o",
                                   usage=Usage(input_tokens=1, output_tokens=3,
                                               reasoning_tokens=2)))
        [total] = reopened.totals(by="model")
        assert total.reasoning_tokens == 9 and total.calls == 2
    finally:
        reopened.close()

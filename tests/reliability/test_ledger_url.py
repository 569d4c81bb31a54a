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

"""Database built-ins: ``db_query`` (a small result kept as step outputs) and ``db_extract``
(a result of any size streamed to a file artifact). Both use a ``db`` resource through
``ctx.connectors`` (``db:sqlite3``, ``db:postgres``, ``db:sqlalchemy`` or a plugin's), whose
placeholder style ``params`` follow.

Values become JSON-friendly: numbers, strings, booleans and null stay; ``Decimal`` becomes a
string (no precision lost), dates and times ISO-8601 strings, bytes base64, UUIDs strings,
JSON documents stay structured (``db_query``, ``jsonl``) or JSON text (``tsv``, ``csv``).
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from aetherflow.api import (
    STEP_SKIPPED,
    STEP_SUCCESS,
    ConnectorError,
    Step,
    StepContext,
    StepError,
    StepResult,
    atomic_open,
    register_step,
)
from aetherflow.steps._paths import workspace_path

#: the `resource` input of the db steps (db_query, db_extract, db_load)
RESOURCE_INPUT = {"type": "string", "minLength": 1, "description": "Name of a db resource (resources: section)."}
_SQL = {"type": "string", "minLength": 1, "description": "The SQL statement, in the driver's placeholder style."}
_PARAMS = {
    "type": ["array", "object", "null"],
    "description": "Placeholder values: a list for positional (? / %s), a mapping for named (:name / %(name)s).",
}
FORMATS = ("tsv", "csv", "jsonl")


def jsonable(value: Any) -> Any:
    """A database value as a JSON value (see module docstring)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value)


def text_value(value: Any) -> str:
    """A database value as one TSV/CSV field: null is empty, booleans true/false."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    v = jsonable(value)
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return str(v)


def sql_connector(ctx: StepContext, resource: str) -> Any:
    conn = ctx.connectors[resource]
    if not all(callable(getattr(conn, m, None)) for m in ("query", "stream")):
        raise StepError(f"resource '{resource}' is not a database (its connector has no query/stream)", code="db.not_a_database")
    return conn


@register_step(
    "db_query",
    inputs_schema={
        "type": "object",
        "properties": {
            "resource": RESOURCE_INPUT,
            "sql": _SQL,
            "params": _PARAMS,
            "max_rows": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 1000,
                         "description": "More rows than this fail the step: use db_extract for big results."},
        },
        "required": ["resource", "sql"],
        "additionalProperties": False,
    },
)
class DbQuery(Step):
    """Run SQL and keep a small result as outputs: rows (list of objects), row_count, columns."""

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        conn = sql_connector(ctx, str(inputs["resource"]))
        max_rows = int(inputs.get("max_rows", 1000))
        try:
            columns, rows = conn.query(str(inputs["sql"]), inputs.get("params"), max_rows=max_rows)
        except ConnectorError as exc:
            if exc.code != "db.too_many_rows":
                raise
            raise StepError(
                f"query returned more than max_rows={max_rows} rows; db_query keeps its result in the run store",
                code="db.too_many_rows",
                hint="use db_extract to stream large results to a file, or raise max_rows",
            ) from exc
        out_rows = [{c: jsonable(v) for c, v in zip(columns, row, strict=False)} for row in rows]
        return StepResult(STEP_SUCCESS, {"rows": out_rows, "row_count": len(out_rows), "columns": list(columns)})


class _HashingWriter:
    """Text sink for csv.writer / json lines: encodes UTF-8, hashes and counts bytes."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.digest = hashlib.sha256()
        self.bytes = 0

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        self._fh.write(data)
        self.digest.update(data)
        self.bytes += len(data)
        return len(text)


@register_step(
    "db_extract",
    inputs_schema={
        "type": "object",
        "properties": {
            "resource": RESOURCE_INPUT,
            "sql": _SQL,
            "params": _PARAMS,
            "output": {"type": "string", "minLength": 1,
                       "description": "File to write, relative to the job's artifacts directory (default <step id>.<format>)."},
            "format": {"enum": list(FORMATS), "default": "tsv"},
            "header": {"type": "boolean", "default": True, "description": "First line names the columns (tsv, csv)."},
            "batch_size": {"type": "integer", "minimum": 1, "maximum": 1000000, "default": 1000},
            "skip_if_empty": {"type": "boolean", "default": False,
                              "description": "Zero rows: SUCCESS with a file holding only the header (false, as in "
                              "aetherflow-core), or SKIPPED and no file (true)."},
        },
        "required": ["resource", "sql"],
        "additionalProperties": False,
    },
)
class DbExtract(Step):
    """Stream a query result to a tsv/csv/jsonl artifact, written atomically; outputs path,
    row_count, sha256, bytes, format, columns (and aetherflow-core's output and rows: the path
    and the row count). Zero rows → a header-only file (SKIPPED and no file with skip_if_empty)."""

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        fmt = str(inputs.get("format", "tsv"))
        if fmt not in FORMATS:
            raise StepError(f"format must be one of {', '.join(FORMATS)}", code="step.bad_inputs")
        target = workspace_path(ctx, str(inputs.get("output") or f"{ctx.step_id}.{fmt}"), what="output")
        conn = sql_connector(ctx, str(inputs["resource"]))
        batch = int(inputs.get("batch_size", 1000))
        columns, rows = conn.stream(str(inputs["sql"]), inputs.get("params"), batch=batch)
        try:
            rows_iter = iter(rows)
            first = next(rows_iter, None)
            if first is None and inputs.get("skip_if_empty", False):
                reason = "query returned no rows"
                return StepResult(
                    STEP_SKIPPED,
                    {"row_count": 0, "has_data": False, "reason": reason, "format": fmt, "columns": list(columns)},
                    reason=reason,
                )
            count, sink = self._write(ctx, target, fmt, columns, first, rows_iter, bool(inputs.get("header", True)))
        finally:
            close = getattr(rows, "close", None)
            if callable(close):
                close()
        return StepResult(
            STEP_SUCCESS,
            {"path": str(target), "row_count": count, "sha256": sink.digest.hexdigest(), "bytes": sink.bytes,
             "format": fmt, "columns": list(columns), "has_data": count > 0,
             "output": str(target), "rows": count},  # aetherflow-core's names
        )

    def _write(self, ctx: StepContext, target: Path, fmt: str, columns: Sequence[str], first: Any, rows: Any,
               header: bool) -> tuple[int, _HashingWriter]:
        count = 0
        with atomic_open(target, "wb") as fh:
            sink = _HashingWriter(fh)
            if fmt == "jsonl":
                def emit(row: Sequence[Any]) -> None:
                    obj = {c: jsonable(v) for c, v in zip(columns, row, strict=False)}
                    sink.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
            else:
                writer = csv.writer(sink, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n",
                                    quoting=csv.QUOTE_MINIMAL)
                if header:
                    writer.writerow(columns)

                def emit(row: Sequence[Any]) -> None:
                    writer.writerow([text_value(v) for v in row])
            if first is not None:
                emit(first)
                count = 1
                for row in rows:
                    emit(row)
                    count += 1
                    if count % 10000 == 0 and ctx.cancelled():
                        raise StepError("extract interrupted", code="step.interrupted")
        return count, sink

"""``db_load``: the mirror of ``db_extract``. Reads a ``tsv``, ``csv`` or ``jsonl`` file as
``db_extract`` writes them and inserts its rows into a table of a ``db`` resource, all in one
transaction: a bad row (in the file or refused by the database) loads nothing and names its line.

* The file: ``input``, relative to the job's ``artifacts/`` directory, or absolute (it is only
  read). UTF-8 (a byte-order mark is skipped); no physical line longer than 16 MiB.
* ``tsv`` / ``csv``: ``header: true`` (default) takes the column names from the first line;
  without a header the file's columns are named ``1``, ``2``, ... and ``columns`` must map
  them. An empty field loads as NULL (``db_extract`` writes NULL as an empty field). Every line
  must have as many fields as the header.
* ``jsonl``: one JSON object per line (blank lines are skipped); the columns are the keys of
  the first object, a key missing from a later line is NULL and a key it does not have is an
  error. Objects and lists load as JSON text.
* ``columns``: file column -> table column; only the mapped file columns are loaded.
* ``mode``: ``append`` (default) or ``truncate`` (every row of the table is deleted first, in
  the same transaction). ``create: true`` creates the table when it is missing
  (``CREATE TABLE IF NOT EXISTS``) with TEXT columns, or, for ``jsonl``, types read from the
  first batch of rows (BIGINT, DOUBLE PRECISION, BOOLEAN, else TEXT).
* Identifiers: the table (``name`` or ``schema.name``) and the column names are always quoted
  (``"name"``, inner quotes doubled), so they are used exactly as written and can never inject
  SQL; values are always bound parameters.
* The rows are inserted ``batch_size`` at a time, each batch under a savepoint: when the
  database refuses a batch, its rows are tried one by one to name the line of the bad one,
  then the whole transaction is rolled back.

Outputs: ``table``, ``row_count``, ``columns`` (the table columns loaded), ``path``,
``format``, ``mode``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from aetherflow.api import (
    STEP_SUCCESS,
    ConnectorError,
    Step,
    StepContext,
    StepError,
    StepResult,
    register_step,
)

# what db_extract writes, and how a resource is named
from aetherflow.steps.data import FORMATS, RESOURCE_INPUT

_EXTENSIONS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
MAX_LINE_CHARS = 16 * 1024 * 1024

Row = tuple[int, list[Any]]  # (line number in the file, values in file-column order)


@register_step(
    "db_load",
    inputs_schema={
        "type": "object",
        "properties": {
            "resource": RESOURCE_INPUT,
            "table": {"type": "string", "minLength": 1,
                      "description": "The table (name or schema.name), used exactly as written (quoted)."},
            "input": {"type": "string", "minLength": 1,
                      "description": "The file to load: relative to the job's artifacts directory, or absolute."},
            "format": {"enum": list(FORMATS),
                       "description": "tsv, csv or jsonl; default from the file name (.csv, .jsonl), else tsv."},
            "header": {"type": "boolean", "default": True, "description": "First line names the columns (tsv, csv)."},
            "mode": {"enum": ["append", "truncate"], "default": "append",
                     "description": "truncate: delete every row of the table first (same transaction)."},
            "create": {"type": "boolean", "default": False, "description": "Create the table when it is missing."},
            "columns": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string", "minLength": 1},
                        "description": "File column -> table column; only these file columns are loaded."},
            "batch_size": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 1000},
        },
        "required": ["resource", "table", "input"],
        "additionalProperties": False,
    },
)
class DbLoad(Step):
    """Load a tsv/csv/jsonl file into a table in one transaction (a bad row loads nothing and
    names its line); outputs row_count and table."""

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        path = _input_path(ctx, str(inputs["input"]))
        fmt = str(inputs.get("format") or _EXTENSIONS.get(path.suffix.lower(), "tsv"))
        table = str(inputs["table"])
        qtable = quote_table(table)
        batch_size = int(inputs.get("batch_size", 1000))
        mode = str(inputs.get("mode", "append"))
        resource = str(inputs["resource"])
        conn = ctx.connectors[resource]
        if not callable(getattr(conn, "transaction", None)) or not isinstance(getattr(conn, "placeholder", None), str):
            raise StepError(f"resource '{resource}' cannot load rows (its connector offers no transaction)",
                            code="db.not_a_database")
        try:
            fh = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise StepError(f"input file {path} cannot be read: {exc.strerror}", code="db.no_input") from exc
        with fh:
            reader = _Reader(fh, path.name, fmt, bool(inputs.get("header", True)))
            file_columns = reader.columns()
            picks, columns = _mapping(file_columns, inputs.get("columns"), reader)
            rows = (( line, [values[i] for i in picks]) for line, values in reader.rows())
            batch = _take(rows, batch_size)
            count = 0
            with conn.transaction() as tx:
                if inputs.get("create", False):
                    tx.execute(_create_sql(qtable, columns, _column_types(fmt, batch, len(columns))))
                if mode == "truncate":
                    tx.execute(f"DELETE FROM {qtable}")
                insert = _insert_sql(qtable, columns, tx.placeholder)
                while batch:
                    _insert(tx, insert, batch, path.name)
                    count += len(batch)
                    if ctx.cancelled():
                        raise StepError("load interrupted; nothing was loaded", code="step.interrupted")
                    batch = _take(rows, batch_size)
        return StepResult(STEP_SUCCESS, {"table": table, "row_count": count, "columns": columns, "path": str(path),
                                         "format": fmt, "mode": mode})


# ---------------------------------------------------------------------------------------------
# SQL


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (inner quotes doubled): never more than a name."""
    if not name or "\x00" in name:
        raise StepError(f"invalid SQL name {name!r}: it must be non-empty and contain no NUL", code="db.bad_identifier")
    return '"' + name.replace('"', '""') + '"'


def quote_table(table: str) -> str:
    """``name`` or ``schema.name``, each part quoted."""
    parts = table.split(".")
    if len(parts) > 2:
        raise StepError(f"table {table!r}: write 'name' or 'schema.name'", code="db.bad_identifier")
    return ".".join(quote_ident(p) for p in parts)


def _create_sql(qtable: str, columns: Sequence[str], types: Sequence[str]) -> str:
    cols = ", ".join(f"{quote_ident(c)} {t}" for c, t in zip(columns, types, strict=True))
    return f"CREATE TABLE IF NOT EXISTS {qtable} ({cols})"


def _insert_sql(qtable: str, columns: Sequence[str], placeholder: str) -> str:
    sql = f"INSERT INTO {qtable} ({', '.join(quote_ident(c) for c in columns)}) VALUES "
    if placeholder == "%s":  # the driver reads % signs in the statement: a quoted name may hold one
        sql = sql.replace("%", "%%")
    return sql + "(" + ", ".join([placeholder] * len(columns)) + ")"


def _insert(tx: Any, sql: str, batch: Sequence[Row], name: str) -> None:
    """Insert one batch under a savepoint; when the database refuses it, find the bad row."""
    tx.savepoint()
    try:
        tx.executemany(sql, [values for _, values in batch])
    except ConnectorError as exc:
        tx.rollback_to()
        for line, values in batch:
            try:
                tx.execute(sql, values)
            except ConnectorError as row_exc:
                raise StepError(f"line {line} of {name}: {row_exc}; nothing was loaded", code="db.bad_row") from row_exc
        raise StepError(f"{name}: {exc}; nothing was loaded", code="db.bad_row") from exc
    tx.release()


def _column_types(fmt: str, batch: Sequence[Row], n: int) -> list[str]:
    if fmt != "jsonl":
        return ["TEXT"] * n
    types = []
    for i in range(n):
        seen = {type(values[i]) for _, values in batch if values[i] is not None}
        if seen == {bool}:
            types.append("BOOLEAN")
        elif seen == {int}:
            types.append("BIGINT")
        elif seen and seen <= {int, float}:
            types.append("DOUBLE PRECISION")
        else:
            types.append("TEXT")
    return types


# ---------------------------------------------------------------------------------------------
# the file


def _input_path(ctx: StepContext, given: str) -> Path:
    p = Path(given)
    path = p if p.is_absolute() else ctx.artifacts_dir() / p
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise StepError(f"input file {path} {what}", code="db.no_input",
                        hint="a relative input is relative to the job's artifacts directory; "
                             "another job's file: use its absolute path, e.g. {{ jobs.export.outputs.path }}")
    return path


def _take(rows: Iterator[Row], n: int) -> list[Row]:
    out = []
    for row in rows:
        out.append(row)
        if len(out) >= n:
            break
    return out


def _mapping(file_columns: Sequence[str], columns: Any, reader: _Reader) -> tuple[list[int], list[str]]:
    """(indexes of the file columns to load, their table column names)."""
    if columns is None:
        if not reader.named:
            raise StepError(f"{reader.name}: without a header line, name the columns with "
                            "columns: {\"1\": id, \"2\": amount, ...}", code="step.bad_inputs")
        picks, names = list(range(len(file_columns))), list(file_columns)
    else:
        index = {c: i for i, c in enumerate(file_columns)}
        picks, names = [], []
        for file_col, table_col in columns.items():
            if str(file_col) not in index:
                raise StepError(f"columns: '{file_col}' is not a column of {reader.name} "
                                f"(its columns: {', '.join(file_columns) or 'none'})", code="step.bad_inputs")
            picks.append(index[str(file_col)])
            names.append(str(table_col))
    for i, c in enumerate(names):
        if not c:
            raise StepError(f"{reader.name}: column {i + 1} of the header has no name", code="db.bad_row")
        if c in names[:i]:
            raise StepError(f"{reader.name}: column '{c}' is loaded twice", code="step.bad_inputs")
    return picks, names


class _Reader:
    """The rows of a tsv/csv/jsonl file with their line numbers, values in file-column order."""

    def __init__(self, fh: IO[str], name: str, fmt: str, header: bool) -> None:
        self.fh = fh
        self.name = name
        self.fmt = fmt
        self.named = header or fmt == "jsonl"
        self.line = 0  # physical lines read so far
        self._columns: list[str] = []
        self._first: Row | None = None
        self._records: Iterator[tuple[int, Any]] = self._json() if fmt == "jsonl" else self._delimited()

    def fail(self, line: int, message: str) -> StepError:
        return StepError(f"line {line} of {self.name}: {message}; nothing was loaded", code="db.bad_row")

    def _lines(self) -> Iterator[str]:
        while True:
            try:
                text = self.fh.readline(MAX_LINE_CHARS + 1)
            except UnicodeDecodeError as exc:
                raise self.fail(self.line + 1, f"not UTF-8 text ({exc.reason})") from exc
            if not text:
                return
            self.line += 1
            if len(text) > MAX_LINE_CHARS and not text.endswith("\n"):
                raise self.fail(self.line, f"longer than {MAX_LINE_CHARS // (1024 * 1024)} MiB")
            yield text

    def _delimited(self) -> Iterator[tuple[int, Any]]:
        reader = csv.reader(self._lines(), delimiter="\t" if self.fmt == "tsv" else ",", strict=True)
        start = 1
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise self.fail(start, str(exc)) from exc
            yield start, record or [""]  # a line holding one empty field
            start = self.line + 1

    def _json(self) -> Iterator[tuple[int, Any]]:
        for text in self._lines():
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except ValueError as exc:
                raise self.fail(self.line, f"not JSON ({exc})") from exc
            if not isinstance(obj, dict):
                raise self.fail(self.line, f"a JSON {type(obj).__name__}, not an object")
            yield self.line, obj

    def columns(self) -> list[str]:
        first = next(self._records, None)
        if self.fmt == "jsonl":
            self._columns = list(first[1]) if first else []
            self._first = (first[0], self._values(first)) if first else None
        elif self.named:
            self._columns = list(first[1]) if first else []
        else:
            self._columns = [str(i + 1) for i in range(len(first[1]))] if first else []
            self._first = (first[0], self._values(first)) if first else None
        return self._columns

    def rows(self) -> Iterator[Row]:
        if self._first is not None:
            yield self._first
        for record in self._records:
            yield record[0], self._values(record)

    def _values(self, record: tuple[int, Any]) -> list[Any]:
        line, data = record
        if self.fmt == "jsonl":
            extra = [k for k in data if k not in self._columns]
            if extra:
                raise self.fail(line, f"key '{extra[0]}' is not one of the columns of the first line "
                                      f"({', '.join(self._columns)})")
            return [_json_value(data.get(c)) for c in self._columns]
        if len(data) != len(self._columns):
            what = "the header" if self.named else "the first line"
            raise self.fail(line, f"{len(data)} field(s), {what} has {len(self._columns)}")
        return [None if v == "" else v for v in data]


def _json_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value

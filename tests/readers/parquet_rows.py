"""An independent reader of wrt's Parquet objects, for the tests.

Reads every `.parquet` file under a folder with pyarrow and prints one JSON document:
{"<relative path>": {"types": {column: arrow type}, "metadata": {key: value},
"rows": [row, ...]}}. Each value is rendered as wrt renders it in JSON Lines (decimals and
text as strings, bytes as base64, JSON documents parsed, dates `YYYY-MM-DD`, times
`HH:MM:SS[.fraction]`, timestamps RFC 3339 in UTC), so a test can compare the two formats'
rows value for value. Usage: python parquet_rows.py <folder>
"""

import base64
import datetime
import json
import pathlib
import sys

import pyarrow as pa
import pyarrow.parquet as pq

EPOCH = datetime.datetime(1970, 1, 1)


def fraction(nanos):
    """`.250`, `.000250` or `.000000250`: the shortest of 3, 6 or 9 digits that is exact."""
    if nanos == 0:
        return ""
    if nanos % 1_000_000 == 0:
        return f".{nanos // 1_000_000:03}"
    if nanos % 1_000 == 0:
        return f".{nanos // 1_000:06}"
    return f".{nanos:09}"


def per_second(unit):
    return {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]


def time_of_day(count, unit):
    nanos = count * (1_000_000_000 // per_second(unit))
    sign = "-" if nanos < 0 else ""
    seconds, rest = divmod(abs(nanos), 1_000_000_000)
    return f"{sign}{seconds // 3600:02}:{seconds // 60 % 60:02}:{seconds % 60:02}{fraction(rest)}"


def instant(count, unit):
    seconds, rest = divmod(count, per_second(unit))
    nanos = rest * (1_000_000_000 // per_second(unit))
    at = EPOCH + datetime.timedelta(seconds=seconds)
    return at.strftime("%Y-%m-%dT%H:%M:%S") + fraction(nanos) + "Z"


def column_values(field, column):
    kind = field.type
    metadata = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
    if pa.types.is_time(kind):
        return [None if v is None else time_of_day(v, kind.unit) for v in column.cast(pa.int64()).to_pylist()]
    if pa.types.is_timestamp(kind):
        assert kind.tz == "UTC", f"{field.name}: timestamps must be UTC, not {kind.tz}"
        return [None if v is None else instant(v, kind.unit) for v in column.cast(pa.int64()).to_pylist()]
    if pa.types.is_date32(kind):
        return [None if v is None else v.isoformat() for v in column.to_pylist()]
    if pa.types.is_decimal(kind):
        return [None if v is None else f"{v:f}" for v in column.to_pylist()]
    if pa.types.is_binary(kind):
        return [None if v is None else base64.b64encode(v).decode() for v in column.to_pylist()]
    # pyarrow turns the canonical `arrow.json` extension into its own type.
    if isinstance(kind, pa.BaseExtensionType):
        is_json = kind.extension_name == "arrow.json"
    else:
        is_json = metadata.get("ARROW:extension:name") == "arrow.json"
    values = column.to_pylist()
    if is_json:
        return [None if v is None else json.loads(v) for v in values]
    return values


def read(path):
    # One file as it is, without the folder names as Hive partition columns.
    table = pq.ParquetFile(path).read()
    schema = table.schema
    columns = [column_values(field, table.column(field.name)) for field in schema]
    rows = [
        {field.name: values[i] for field, values in zip(schema, columns)}
        for i in range(table.num_rows)
    ]
    metadata = pq.read_metadata(path).metadata or {}
    return {
        "types": {field.name: str(field.type) for field in schema},
        "metadata": {k.decode(): v.decode() for k, v in metadata.items() if not k.startswith(b"ARROW:")},
        "rows": rows,
    }


def main():
    root = pathlib.Path(sys.argv[1])
    files = sorted(root.rglob("*.parquet"))
    json.dump({str(p.relative_to(root)): read(p) for p in files}, sys.stdout)


if __name__ == "__main__":
    main()

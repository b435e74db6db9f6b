"""Write wrt transforms in Python.

A transform is a class: ``__init__(self, config)`` reads the configuration and
``process(self, event)`` returns the output records of one change event, or raises
``TransformError`` (the host dead-letters that event). The project's ``transform.py``
exports it::

    import wrt_sdk

    class Passthrough:
        def __init__(self, config):
            pass

        def process(self, event):
            row = wrt_sdk.row_of(event)
            return [wrt_sdk.OutputRecord(event.source.table, row, [])] if row else []

    Transform = wrt_sdk.export_transform(Passthrough)

Build with ``sdk/python/build <project-dir> <out.wasm>``. Events and values are the
dataclasses componentize-py generates from ``sdk/wit/transform.wit`` (re-exported here).

What a transform may rely on: the same events give the same output, so a replay rewrites
the same bytes. ``time.time()`` reads 1970: time comes from the events
(``event.commit_time``, ``now()``); ``time.monotonic()`` is a virtual clock that measures
nothing real. String hashing is fixed when the component is built, so a ``set`` or ``dict``
of strings iterates in the same order on every run. ``os.urandom`` is seeded by the
component's digest and the batch's first source position (never use it for secrets); the
``random`` module's functions continue one stream from call to call, so seed a
``random.Random`` from the event when its numbers reach the output. ``wrt deploy --events``
refuses a transform whose output depends on earlier calls.
"""

from __future__ import annotations  # `list` is also a Config method name

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import clock, config as wit_config, logging, primitives
from wit_world.imports.logging import Level
from wit_world.imports.types import (  # noqa: F401 (re-exported for transforms)
    ChangeEvent,
    Column,
    Operation,
    OutputRecord,
    Timestamp,
    Value_Boolean,
    Value_Bytes,
    Value_Date,
    Value_Decimal,
    Value_Float,
    Value_Int,
    Value_Json,
    Value_Null,
    Value_Text,
    Value_Time,
    Value_Timestamp,
)
from wit_world.imports import types as _types


class TransformError(Exception):
    """Why a transform rejected one event: a short machine-readable code and a message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Config:
    """The transform's configuration, as set by the host."""

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of ``key``, or ``default`` when unset."""
        value = wit_config.get(key)
        return default if value is None else value

    def list(self, key: str) -> list[str] | None:
        """A comma-separated list (empty items dropped), or None when unset."""
        raw = wit_config.get(key)
        if raw is None:
            return None
        return [item.strip() for item in raw.split(",") if item.strip()]

    def entries(self) -> list[tuple[str, str]]:
        """Every key and value, sorted by key."""
        return wit_config.entries()


def log(level: Level, message: str) -> None:
    """Writes a line to the host's log."""
    logging.log(level, message)


def now() -> Timestamp:
    """The newest commit time in the current batch."""
    return clock.now()


_OP_CODES = {
    Operation.CREATE: "c",
    Operation.UPDATE: "u",
    Operation.DELETE: "d",
    Operation.READ: "r",
    Operation.TRUNCATE: "t",
}


def op_code(op: Operation) -> str:
    """Debezium's one-letter code of an operation: c, u, d, r or t."""
    return _OP_CODES[op]


def row_of(event: ChangeEvent) -> list[Column] | None:
    """The row as it stands after the change, or as it was for a delete."""
    return event.before if event.op == Operation.DELETE else event.after


def set_column(row: list[Column], name: str, value) -> None:
    """Sets column ``name``, appending it when the row does not have it."""
    for column in row:
        if column.name == name:
            column.value = value
            return
    row.append(Column(name, value))


def type_name(value) -> str:
    """The WIT case name of a value (``text``, ``int``, ...), for error messages."""
    return type(value).__name__.removeprefix("Value_").lower()


# The host's primitives: native code shared by every language's SDK, so hashes, case mapping
# and timestamps agree byte for byte.


def _utf8(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data


def sha256(data: str | bytes) -> bytes:
    """SHA-256 of ``data`` (a ``str`` is hashed as UTF-8)."""
    return primitives.sha256(_utf8(data))


def hmac_sha256(key: str | bytes, data: str | bytes) -> bytes:
    """HMAC-SHA-256 of ``data`` under ``key``."""
    return primitives.hmac_sha256(_utf8(key), _utf8(data))


def hmac_sha256_config(config_key: str, data: str | bytes) -> bytes | None:
    """HMAC-SHA-256 of ``data`` keyed by the configuration entry ``config_key``, so the
    transform's code need not handle a secret salt; ``None`` when it is not set."""
    return primitives.hmac_sha256_config(config_key, _utf8(data))


def lower(text: str) -> str:
    """Unicode lower case, full and language-neutral: what Rust's ``to_lowercase`` gives."""
    return primitives.lower(text)


def trim(text: str) -> str:
    """``text`` without leading and trailing Unicode White_Space (``str.strip()`` also strips
    U+001C..U+001F)."""
    return primitives.trim(text)


def rfc3339(ts: Timestamp) -> str:
    """RFC 3339 in UTC with a ``Z`` and 0, 3, 6 or 9 fraction digits as needed, years before
    1970 included: the host's own rendering."""
    return primitives.rfc3339(ts)


def export_transform(cls):
    """The component's ``Transform`` export for a transform class: one instance made by
    ``init``, then ``process(event)`` per event, a raised ``TransformError`` becoming that
    event's error. Assign it to ``Transform`` in the project's ``transform.py``."""

    class Adapter(exports.Transform):
        instance = None

        def init(self) -> None:
            try:
                Adapter.instance = cls(Config())
            except Exception as e:  # any refusal to start is the host's `init` error
                raise Err(str(e)) from e

        def process(self, events):
            outcomes = []
            for event in events:
                try:
                    outcomes.append(Ok(Adapter.instance.process(event)))
                except TransformError as e:
                    outcomes.append(Err(_types.TransformError(e.code, e.message)))
            return outcomes

    return Adapter

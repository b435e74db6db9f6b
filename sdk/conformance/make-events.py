"""Writes events.jsonl, the conformance suite's input: Debezium envelopes (as the MySQL and
MariaDB connectors write them) covering every value type, NULLs, Unicode edge cases,
timestamps before 1970, past 9999 and with 9-digit fractions, and large decimals.

    python3 sdk/conformance/make-events.py > sdk/conformance/events.jsonl
"""

import base64
import json
import sys


def field(name, type_, logical=None, optional=True, **parameters):
    f = {"type": type_, "optional": optional, "field": name}
    if logical:
        f["name"] = logical
        f["version"] = 1
    if parameters:
        f["parameters"] = parameters
    return f


DECIMAL = "org.apache.kafka.connect.data.Decimal"
COLUMNS = [
    field("id", "int32", optional=False),
    field("email", "string"),
    field("phone", "string"),
    field("full_name", "string"),
    field("password_hash", "string"),
    field("active", "boolean"),
    field("small", "int16"),
    field("big", "int64"),
    field("ratio", "float64"),
    field("ratio32", "float32"),
    field("price", "bytes", DECIMAL, scale="10", **{"connect.decimal.precision": "38"}),
    field("amount", "struct", "io.debezium.data.VariableScaleDecimal"),
    field("blob", "bytes"),
    field("doc", "string", "io.debezium.data.Json"),
    field("status", "string", "io.debezium.data.Enum", allowed="new,old,ünïcode"),
    field("tags", "string", "io.debezium.data.EnumSet", allowed="a,b,c"),
    field("born", "int32", "io.debezium.time.Date"),
    field("year", "int32", "io.debezium.time.Year"),
    field("at_us", "int64", "io.debezium.time.MicroTime"),
    field("at_ns", "int64", "io.debezium.time.NanoTime"),
    field("ts_ms", "int64", "io.debezium.time.Timestamp"),
    field("ts_us", "int64", "io.debezium.time.MicroTimestamp"),
    field("ts_ns", "int64", "io.debezium.time.NanoTimestamp"),
    field("ts_zoned", "string", "io.debezium.time.ZonedTimestamp"),
]
COLUMNS[11]["fields"] = [field("scale", "int32", optional=False), field("value", "bytes", optional=False)]


def unscaled(digits: int) -> str:
    """A Connect Decimal: the unscaled value, big-endian two's complement, base64."""
    length = max(1, (digits.bit_length() + 8) // 8)
    return base64.b64encode(digits.to_bytes(length, "big", signed=True)).decode()


# Every row starts from this one; each case changes what it tests.
BASE = {
    "id": 0, "email": "someone@example.com", "phone": "+44 20 7946 0958", "full_name": "Ada",
    "password_hash": "secret", "active": True, "small": 1, "big": 1, "ratio": 0.5,
    "ratio32": 0.25, "price": unscaled(12_5000000000), "amount": {"scale": 2, "value": unscaled(1250)},
    "blob": base64.b64encode(b"\x00\xff").decode(), "doc": '{"a":[1,2]}', "status": "new",
    "tags": "a,c", "born": 0, "year": 2024, "at_us": 0, "at_ns": 0, "ts_ms": 0, "ts_us": 0,
    "ts_ns": 0, "ts_zoned": "1970-01-01T00:00:00Z",
}
NULLS = {name: None for name in BASE if name != "id"}

CASES = [
    # Unicode lower-casing and trimming, through the host's primitives in every language.
    {"email": "  ΟΔΥΣΣΕΥΣ@Example.GR  ", "full_name": "Ὀδυσσεύς"},  # final sigma before '@'
    {"email": "İSTANBUL@ÖRNEK.COM.TR", "full_name": "Iğdır ılık"},  # dotted capital I, dotless ı
    {"email": "E\u0301LODIE@Exemple.FR", "full_name": "Élodie E\u0301lodie"},  # combining acute
    {"email": "\u3000\u00a0 Mixed.Case@Example.COM\t\u2003\n", "full_name": "\u3000padded\u3000"},
    {"email": "\ufeffBOM@Example.com", "full_name": "zero\u200bwidth"},  # U+FEFF is not White_Space
    {"email": "GROẞE.STRASSE@Example.DE", "full_name": "ǅemal ǈuba ǋuna"},  # capital sharp s, titlecase digraphs
    {"email": "🦀CRAB@例え.JP", "full_name": "李雷 👨‍👩‍👧 한국어"},  # emoji (a ZWJ family), CJK, Hangul
    {"email": "ΣΑΣ@Σ.GR", "full_name": "Σ"},  # sigma alone and word-final
    # Masking keeps ASCII digits only.
    {"phone": "٠١٢٣٤٥٦٧٨٩ 12"},  # Arabic-Indic digits are not kept
    {"phone": "7"},
    {"phone": ""},
    # NULLs everywhere a column allows one.
    NULLS,
    # Integers and floats at their limits.
    {"big": 9_223_372_036_854_775_807, "small": -32_768, "active": False},
    {"big": -9_223_372_036_854_775_808, "ratio": 1.7976931348623157e308, "ratio32": -3.4028235e38},
    {"ratio": 5e-324, "ratio32": 1.401298464324817e-45},
    {"ratio": -0.0, "ratio32": 0.1},
    # Decimals beyond 64 bits and below zero.
    {"price": unscaled(12345678901234567890_1234567890), "amount": {"scale": 0, "value": unscaled(-(10**30))}},
    {"price": unscaled(-1), "amount": {"scale": 20, "value": unscaled(1)}},
    # Dates and times of day before 1970 and at MySQL's limits.
    {"born": -354_285, "year": 1000, "at_us": -3_020_399_000_000, "at_ns": 86_399_999_999_999},
    {"born": 2_932_896, "year": 9999, "at_us": 3_020_399_999_999, "at_ns": 1},
    # Timestamps before 1970, with 9-digit fractions, at year 1000 and 9999.
    {"ts_ms": -1, "ts_us": -1, "ts_ns": -1, "ts_zoned": "1969-07-20T20:17:40.123456789Z"},
    {"ts_ms": -30_610_224_000_000, "ts_us": 253_402_300_799_999_999, "ts_ns": 1, "ts_zoned": "9999-12-31T23:59:59.999999999Z"},
    {"ts_ms": 1_714_521_600_250, "ts_us": 1_714_521_600_000_250, "ts_ns": 1_714_521_600_123_456_789, "ts_zoned": "1000-01-01T00:00:00.000001Z"},
    {"ts_ms": -86_400_001, "ts_us": -62_135_596_800_000_000 + 1, "ts_ns": -9_223_372_036_854_775_808, "ts_zoned": "1969-12-31T23:59:59.9Z"},
    # Years past 9999 and before year 0 (more digits, a minus sign), the last nanosecond.
    {"ts_ms": 253_402_300_800_000, "ts_us": -62_198_755_200_000_000, "ts_ns": 9_223_372_036_854_775_807},
]

SOURCE_SCHEMA = {
    "type": "struct", "optional": False, "name": "io.debezium.connector.mysql.Source", "field": "source",
    "fields": [
        field("version", "string", optional=False), field("connector", "string", optional=False),
        field("name", "string", optional=False), field("ts_ms", "int64", optional=False),
        field("snapshot", "string", "io.debezium.data.Enum", allowed="true,last,false,incremental"),
        field("db", "string", optional=False), field("sequence", "string"),
        field("ts_us", "int64"), field("ts_ns", "int64"), field("table", "string"),
        field("server_id", "int64", optional=False), field("gtid", "string"),
        field("file", "string", optional=False), field("pos", "int64", optional=False),
        field("row", "int32", optional=False), field("thread", "int64"), field("query", "string"),
    ],
}


def envelope(table, columns, op, before, after, offset, commit_ns):
    row_schema = lambda name: {"type": "struct", "fields": columns, "optional": True,
                               "name": f"conf.conf.{table}.Value", "field": name}
    schema = {
        "type": "struct", "optional": False, "name": f"conf.conf.{table}.Envelope", "version": 2,
        "fields": [row_schema("before"), row_schema("after"), SOURCE_SCHEMA,
                   field("op", "string", optional=False), field("ts_ms", "int64")],
    }
    source = {
        "version": "3.4.0.Final", "connector": "mariadb", "name": "conf", "ts_ms": commit_ns // 10**6,
        "snapshot": "false", "db": "conf", "sequence": None, "ts_us": commit_ns // 1000,
        "ts_ns": commit_ns, "table": table, "server_id": 1, "gtid": None,
        "file": "mysql-bin.000001", "pos": 4 + offset, "row": 0, "thread": 7, "query": None,
    }
    row = after if after is not None else before
    key_schema = {"type": "struct", "optional": False, "name": f"conf.conf.{table}.Key",
                  "fields": [field("id", columns[0]["type"], optional=False)]}
    return {
        "topic": f"conf.conf.{table}", "partition": 0, "offset": offset,
        "timestamp_ms": commit_ns // 10**6,
        "key": {"schema": key_schema, "payload": {"id": row["id"]}},
        "value": {"schema": schema, "payload": {
            "before": before, "after": after, "source": source, "op": op, "ts_ms": commit_ns // 10**6,
        }},
    }


def main():
    out = []
    # Commit times with 0, 3, 6 and 9 fraction digits.
    commits = [1_714_521_600_000_000_000, 1_714_521_600_250_000_000, 1_714_521_600_000_250_000,
               1_714_521_600_000_000_001]
    for i, case in enumerate(CASES):
        row = {**BASE, **case, "id": i + 1}
        out.append(envelope("t", COLUMNS, "c", None, row, len(out), commits[i % 4]))
    # An update (both images), a delete (the row as it was) and a snapshot read.
    first = {**BASE, **CASES[0], "id": 1}
    changed = {**first, "email": "NEW.ΣΙΣΥΦΟΣ@Example.GR", "phone": None}
    out.append(envelope("t", COLUMNS, "u", first, changed, len(out), commits[1]))
    out.append(envelope("t", COLUMNS, "d", changed, None, len(out), commits[2]))
    out.append(envelope("t", COLUMNS, "r", None, {**BASE, "id": 99}, len(out), commits[3]))
    # A PII column that is not text: every language rejects it with the same error.
    odd = [field("id", "int32", optional=False), field("email", "int64")]
    out.append(envelope("odd", odd, "c", None, {"id": 1, "email": 42}, 0, commits[0]))
    for record in out:
        json.dump(record, sys.stdout, ensure_ascii=False, separators=(",", ":"))
        sys.stdout.write("\n")


main()

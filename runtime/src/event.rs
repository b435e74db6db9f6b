//! The change-event model. The types are generated from `sdk/wit/` so host and guest share one
//! definition; this module adds what the host needs on top (JSON rendering, constructors).

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "transformer",
        additional_derives: [PartialEq],
    });
}

pub use bindings::wrt::transform::types::{
    ChangeEvent, Column, Operation, Outcome, OutputRecord, Row, Source, Timestamp, TransformError,
    Value,
};

impl Operation {
    /// Debezium's one-letter code.
    pub fn code(self) -> &'static str {
        match self {
            Operation::Create => "c",
            Operation::Update => "u",
            Operation::Delete => "d",
            Operation::Read => "r",
            Operation::Truncate => "t",
        }
    }
}

impl Value {
    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Boolean(_) => "boolean",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Decimal(_) => "decimal",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Json(_) => "json",
            Value::Date(_) => "date",
            Value::Time(_) => "time",
            Value::Timestamp(_) => "timestamp",
        }
    }
}

impl Timestamp {
    pub const EPOCH: Timestamp = Timestamp {
        seconds: 0,
        nanos: 0,
    };

    /// RFC 3339 in UTC with `Z` and 0, 3, 6 or 9 fraction digits as needed. Guests render
    /// with this too (the contract's `primitives.rfc3339`; the JavaScript SDK's own copy must
    /// agree), so host- and guest-rendered times agree whatever the year (chrono would write
    /// years past 9999 as `+10000` and fail beyond ±262,143).
    pub fn to_rfc3339(self) -> String {
        let (days, secs) = (
            self.seconds.div_euclid(86_400),
            self.seconds.rem_euclid(86_400),
        );
        let (y, m, d) = civil_from_days(days);
        let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
        format!(
            "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}{}Z",
            fraction(self.nanos)
        )
    }

    pub fn to_datetime(self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::from_timestamp(self.seconds, self.nanos)
    }
}

/// A value as JSON for the data lake: decimals as exact strings, bytes as base64, dates and
/// times as ISO-8601 text, JSON documents inline.
pub fn value_to_json(value: &Value) -> serde_json::Value {
    serde_json::to_value(LakeValue(value)).expect("a lake value always converts")
}

/// [`value_to_json`]'s rendering, written straight to a serializer with no JSON tree.
pub struct LakeValue<'a>(pub &'a Value);

impl serde::Serialize for LakeValue<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Boolean(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Float(f) => s.serialize_str(&f.to_string()),
            Value::Decimal(d) | Value::Text(d) => s.serialize_str(d),
            Value::Bytes(b) => {
                s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
            }
            // A document that does not parse is kept as text rather than lost.
            Value::Json(doc) => match serde_json::from_str::<serde_json::Value>(doc) {
                Ok(parsed) => parsed.serialize(s),
                Err(_) => s.serialize_str(doc),
            },
            Value::Date(days) => s.serialize_str(
                &chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                    .and_then(|epoch| {
                        epoch.checked_add_signed(chrono::TimeDelta::days((*days).into()))
                    })
                    .map_or_else(|| format!("{days}d"), |d| d.to_string()),
            ),
            Value::Time(nanos) => s.serialize_str(&time_of_day(*nanos)),
            Value::Timestamp(ts) => s.serialize_str(&ts.to_rfc3339()),
        }
    }
}

/// A row as [`row_to_json`] renders it, written straight to a serializer.
pub struct LakeRow<'a>(pub &'a Row);

impl serde::Serialize for LakeRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let row = self.0;
        // A JSON object holds a name once: the last value wins, in the first one's place.
        let repeated = row
            .iter()
            .enumerate()
            .any(|(i, c)| row[..i].iter().any(|earlier| earlier.name == c.name));
        if repeated {
            return row_to_json(row).serialize(s);
        }
        let mut map = s.serialize_map(Some(row.len()))?;
        for column in row {
            map.serialize_entry(&column.name, &LakeValue(&column.value))?;
        }
        map.end()
    }
}

/// `[-]HH:MM:SS[.fraction]`; MySQL TIME spans -838:59:59 to 838:59:59, so hours may exceed 24.
fn time_of_day(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let secs = n / 1_000_000_000;
    let fraction = fraction((n % 1_000_000_000) as u32);
    format!(
        "{sign}{:02}:{:02}:{:02}{fraction}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `.250`, `.000250` or `.000000250`: the shortest of 3, 6 or 9 digits that is exact.
fn fraction(nanos: u32) -> String {
    match nanos {
        0 => String::new(),
        n if n % 1_000_000 == 0 => format!(".{:03}", n / 1_000_000),
        n if n % 1_000 == 0 => format!(".{:06}", n / 1_000),
        n => format!(".{n:09}"),
    }
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to a proleptic Gregorian date.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A row as a JSON object, columns in row order.
pub fn row_to_json(row: &Row) -> serde_json::Map<String, serde_json::Value> {
    row.iter()
        .map(|c| (c.name.clone(), value_to_json(&c.value)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_render_as_lake_json() {
        let ts = Timestamp {
            seconds: 1_714_521_600,
            nanos: 250_000_000,
        };
        let cases = [
            (Value::Null, json!(null)),
            (Value::Boolean(true), json!(true)),
            (Value::Int(-7), json!(-7)),
            (Value::Float(1.5), json!(1.5)),
            (Value::Float(f64::NAN), json!("NaN")),
            (Value::Decimal("-0.10".into()), json!("-0.10")),
            (Value::Bytes(vec![0, 255]), json!("AP8=")),
            (Value::Json(r#"{"a":[1]}"#.into()), json!({"a": [1]})),
            (Value::Json("{oops".into()), json!("{oops")),
            (Value::Date(19_844), json!("2024-05-01")),
            (Value::Date(-1), json!("1969-12-31")),
            (Value::Time(3_723_000_000_000), json!("01:02:03")),
            (
                Value::Time(-(838 * 3600 + 59 * 60 + 59) * 1_000_000_000),
                json!("-838:59:59"),
            ),
            (Value::Time(1_500_000), json!("00:00:00.001500")),
            (Value::Timestamp(ts), json!("2024-05-01T00:00:00.250Z")),
        ];
        for (value, expected) in cases {
            assert_eq!(value_to_json(&value), expected, "{value:?}");
        }
    }

    #[test]
    fn rows_written_directly_match_the_json_tree() {
        let column = |name: &str, value| Column {
            name: name.into(),
            value,
        };
        let rows = [
            vec![
                column("id", Value::Int(7)),
                column("f", Value::Float(f64::NEG_INFINITY)),
                column("x", Value::Float(0.1)),
                column("doc", Value::Json(r#"{ "b": 1, "a": [true] }"#.into())),
                column("zoë", Value::Text("\u{1F642} \"q\"\n".into())),
                column("d", Value::Date(-1)),
            ],
            // A name given twice: the later value, in the first place.
            vec![
                column("a", Value::Int(1)),
                column("b", Value::Null),
                column("a", Value::Int(2)),
            ],
            vec![],
        ];
        for row in rows {
            let tree = serde_json::to_vec(&row_to_json(&row)).unwrap();
            assert_eq!(
                serde_json::to_vec(&LakeRow(&row)).unwrap(),
                tree,
                "{}",
                String::from_utf8_lossy(&tree)
            );
        }
    }

    #[test]
    fn timestamps_match_the_sdk_rendering() {
        let render = |seconds, nanos| Timestamp { seconds, nanos }.to_rfc3339();
        assert_eq!(render(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(render(-1, 5), "1969-12-31T23:59:59.000000005Z");
        assert_eq!(
            render(1_714_521_600, 250_000_000),
            "2024-05-01T00:00:00.250Z"
        );
        assert_eq!(render(-30_610_224_000, 0), "1000-01-01T00:00:00Z");
        assert_eq!(render(253_402_300_799, 0), "9999-12-31T23:59:59Z");
        // Past chrono's range and RFC 3339's four digits, as the SDKs write them.
        assert_eq!(render(253_402_300_800, 0), "10000-01-01T00:00:00Z");
        assert_eq!(render(-62_198_755_200, 0), "-001-01-01T00:00:00Z");
        assert_eq!(render(i64::MAX, 0), "292277026596-12-04T15:30:07Z");
        assert_eq!(
            render(1_714_521_600, 250_000),
            "2024-05-01T00:00:00.000250Z"
        );
    }
}

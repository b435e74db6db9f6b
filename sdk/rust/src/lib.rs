//! Write wrt transforms in Rust.
//!
//! A transform is a type implementing [`Transform`], exported with [`export_transform!`]:
//!
//! ```no_run
//! use wrt_sdk::{ChangeEvent, Config, OutputRecord, Transform, TransformError};
//!
//! struct Passthrough;
//!
//! impl Transform for Passthrough {
//!     fn init(_config: &Config) -> Result<Self, String> {
//!         Ok(Passthrough)
//!     }
//!
//!     fn process(&mut self, event: ChangeEvent) -> Result<Vec<OutputRecord>, TransformError> {
//!         let table = event.source.table.clone();
//!         Ok(event.into_row().map(|row| OutputRecord::new(table, row)).into_iter().collect())
//!     }
//! }
//!
//! wrt_sdk::export_transform!(Passthrough);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; test it with `wrt test`.
//!
//! What a transform may rely on: the same events give the same output, so a replay rewrites
//! the same bytes. `SystemTime::now()` reads 1970: time comes from the events
//! ([`ChangeEvent::commit_time`], [`now`]). `Instant` reads a virtual clock that moves 1 µs
//! per reading and jumps ahead when the guest sleeps, so it measures nothing real. WASI
//! randomness (`getrandom`, `wasip2::random`) is seeded by the component's digest and the
//! batch's first source position: a replay of a batch draws the same numbers; never use it
//! for secrets. `HashMap`'s keys come from one seed per component, but std keys each new
//! `RandomState` one step further, so a hash or an iteration order from a map made during a
//! call depends on the calls before it: use a fixed hasher, or sort, when it reaches the
//! output. `wrt deploy --events` refuses a transform whose output depends on earlier calls.

use std::cell::RefCell;
use std::str::FromStr;

/// Bindings generated from `sdk/wit/`, the one WIT package every guest uses.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "transformer",
        pub_export_macro: true,
        export_macro_name: "export_transformer",
        default_bindings_module: "::wrt_sdk::bindings",
    });
}

pub use bindings::wrt::transform::logging::Level;
pub use bindings::wrt::transform::types::{
    ChangeEvent, Column, Operation, Outcome, OutputRecord, Row, Source, Timestamp, TransformError,
    Value,
};

/// A transform: built once from its configuration, then fed events in batches.
pub trait Transform: Sized + 'static {
    /// Reads the configuration; an error refuses the component before any event is sent.
    fn init(config: &Config) -> Result<Self, String>;

    /// Turns one event into zero or more records, or rejects it (the host dead-letters it).
    fn process(&mut self, event: ChangeEvent) -> Result<Vec<OutputRecord>, TransformError>;
}

/// The transform's configuration, as set by the host.
#[derive(Debug, Clone, Copy, Default)]
pub struct Config;

impl Config {
    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<String> {
        bindings::wrt::transform::config::get(key)
    }

    /// The value of `key`, or `default` when unset.
    pub fn get_or(&self, key: &str, default: &str) -> String {
        self.get(key).unwrap_or_else(|| default.to_string())
    }

    /// The value of `key` parsed as `T`; the error names the key and the bad value.
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<Option<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        self.get(key)
            .map(|raw| {
                raw.parse()
                    .map_err(|e| format!("config `{key}` = {raw:?}: {e}"))
            })
            .transpose()
    }

    /// A comma-separated list (empty items dropped).
    pub fn list(&self, key: &str) -> Option<Vec<String>> {
        self.get(key).map(|raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
    }

    /// Every key and value, sorted by key.
    pub fn entries(&self) -> Vec<(String, String)> {
        bindings::wrt::transform::config::entries()
    }
}

/// Writes a line to the host's log.
pub fn log(level: Level, message: &str) {
    bindings::wrt::transform::logging::log(level, message);
}

/// The newest commit time in the current batch: the clock a transform may read.
pub fn now() -> Timestamp {
    bindings::wrt::transform::clock::now()
}

/// Pure helpers the host runs natively (the WIT `primitives` interface): every language's
/// SDK calls the same code, so hashes and Unicode case mapping agree byte for byte.
pub mod primitives {
    use super::bindings::wrt::transform::primitives as host;

    /// SHA-256 of `data`.
    pub fn sha256(data: &[u8]) -> Vec<u8> {
        host::sha256(data)
    }

    /// HMAC-SHA-256 of `data` under `key`.
    pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
        host::hmac_sha256(key, data)
    }

    /// HMAC-SHA-256 of `data` keyed by the configuration entry `config_key`, so the
    /// transform's code need not handle a secret salt; `None` when that entry is not set.
    pub fn hmac_sha256_config(config_key: &str, data: &[u8]) -> Option<Vec<u8>> {
        host::hmac_sha256_config(config_key, data)
    }

    /// Unicode lower case (full, language-neutral mapping): what `str::to_lowercase` gives.
    pub fn lower(text: &str) -> String {
        host::lower(text)
    }

    /// Without leading and trailing Unicode White_Space: what `str::trim` gives.
    pub fn trim(text: &str) -> String {
        host::trim(text)
    }

    /// Lower-case hexadecimal.
    pub fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl Timestamp {
    /// RFC 3339 in UTC with a `Z`, with 0, 3, 6 or 9 fraction digits as needed
    /// (`2024-05-01T12:00:00Z`, `2024-05-01T12:00:00.250Z`): the host's `rfc3339`, so every
    /// language renders timestamps with the same code.
    pub fn to_rfc3339(&self) -> String {
        bindings::wrt::transform::primitives::rfc3339(*self)
    }
}

impl Value {
    /// The text of a `text` value.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The integer of an `int` value.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

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

/// Column access by name on a [`Row`].
pub trait RowExt {
    /// The value of column `name`.
    fn get(&self, name: &str) -> Option<&Value>;
    /// A mutable reference to the value of column `name`.
    fn get_mut(&mut self, name: &str) -> Option<&mut Value>;
    /// Sets column `name`, appending it when the row does not have it.
    fn set(&mut self, name: &str, value: Value);
    /// Removes column `name`, returning its value.
    fn remove(&mut self, name: &str) -> Option<Value>;
}

impl RowExt for Row {
    fn get(&self, name: &str) -> Option<&Value> {
        self.iter().find(|c| c.name == name).map(|c| &c.value)
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.iter_mut()
            .find(|c| c.name == name)
            .map(|c| &mut c.value)
    }

    fn set(&mut self, name: &str, value: Value) {
        match self.get_mut(name) {
            Some(slot) => *slot = value,
            None => self.push(Column {
                name: name.to_string(),
                value,
            }),
        }
    }

    fn remove(&mut self, name: &str) -> Option<Value> {
        let at = self.iter().position(|c| c.name == name)?;
        Some(self.remove(at).value)
    }
}

impl Operation {
    /// Debezium's one-letter code: `c`, `u`, `d`, `r` or `t`.
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

impl ChangeEvent {
    /// The row as it stands after the change, or as it was for a delete.
    pub fn into_row(self) -> Option<Row> {
        match self.op {
            Operation::Delete => self.before,
            _ => self.after,
        }
    }
}

impl OutputRecord {
    /// A record for `destination` with no extra partition values.
    pub fn new(destination: impl Into<String>, row: Row) -> Self {
        OutputRecord {
            destination: destination.into(),
            row,
            partition: Vec::new(),
        }
    }

    /// Adds a Hive-style partition value (`name=value` in the object's path).
    pub fn with_partition(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.partition.push((name.into(), value.into()));
        self
    }
}

impl TransformError {
    /// An error with a short machine-readable `code` and a message for people.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        TransformError {
            code: code.into(),
            message: message.into(),
        }
    }
}

#[doc(hidden)]
pub mod __private {
    use super::*;

    pub fn init<T: Transform>(slot: &RefCell<Option<T>>) -> Result<(), String> {
        *slot.borrow_mut() = Some(T::init(&Config)?);
        Ok(())
    }

    pub fn process<T: Transform>(
        slot: &RefCell<Option<T>>,
        events: Vec<ChangeEvent>,
    ) -> Vec<Outcome> {
        let mut slot = slot.borrow_mut();
        match slot.as_mut() {
            Some(transform) => events.into_iter().map(|e| transform.process(e)).collect(),
            // The host always calls `init` first; this only guards a host bug.
            None => events
                .iter()
                .map(|_| {
                    Err(TransformError::new(
                        "not-initialised",
                        "init was not called",
                    ))
                })
                .collect(),
        }
    }
}

/// Exports a [`Transform`] implementation as the component's `transform` interface.
#[macro_export]
macro_rules! export_transform {
    ($ty:ty) => {
        ::std::thread_local! {
            static __WRT_TRANSFORM: ::std::cell::RefCell<::std::option::Option<$ty>> =
                const { ::std::cell::RefCell::new(::std::option::Option::None) };
        }

        struct __WrtGuest;

        impl $crate::bindings::exports::wrt::transform::transform::Guest for __WrtGuest {
            fn init() -> ::std::result::Result<(), ::std::string::String> {
                __WRT_TRANSFORM.with(|slot| $crate::__private::init(slot))
            }

            fn process(events: ::std::vec::Vec<$crate::ChangeEvent>) -> ::std::vec::Vec<$crate::Outcome> {
                __WRT_TRANSFORM.with(|slot| $crate::__private::process(slot, events))
            }
        }

        $crate::bindings::export_transformer!(__WrtGuest with_types_in $crate::bindings);
    };
}

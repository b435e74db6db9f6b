//! wrt: a host that runs WebAssembly transforms over Debezium change events.
//!
//! The data path is [`pipeline`]: source → decode → transform → encode → batch → sink →
//! commit; [`host`] assembles it from a pipeline file.

pub mod admin;
pub mod config;
pub mod event;
pub mod host;
pub mod model;
pub mod pipeline;
pub mod registry;
pub mod sample;
pub mod telemetry;
pub mod verify;

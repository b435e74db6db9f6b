//! wrt: a host that runs WebAssembly transforms over Debezium change events.
//!
//! The data path is [`pipeline`]: source → decode → transform → batch/encode → sink → ack.

pub mod admin;
pub mod batch;
pub mod config;
pub mod decode;
pub mod encode;
pub mod event;
pub mod pipeline;
pub mod registry;
pub mod sample;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod transform;

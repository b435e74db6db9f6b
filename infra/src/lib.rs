//! `wrt infra`: the AWS topology wrt runs in (DESIGN §5), provisioned through the AWS SDK.
//!
//! A [`Topology`] (the `infra.toml` file, defaults = the recipe) is validated without I/O,
//! then bound to an account as a [`Stack`], which finds its resources by the `wrt:stack`
//! tag (no state file), plans, converges (`up`), and tears down (`down`).

mod artifacts;
mod aws;
mod config;
mod connect;
mod database;
mod error;
mod glue;
mod hosts;
mod iam;
mod kafka;
mod network;
mod plan;
mod plugin;
mod stack;
mod storage;

pub use artifacts::{DeployFuture, HostBinary, TransformDeploy};
pub use aws::{Clients, STACK_TAG, Waits, load_config};
pub use config::{
    Cidr, ConfigProvider, Connector, Database, Hosts, Kafka, LakeFormat, Network, Storage, Subnet,
    Topology, stack_debezium_version,
};
pub use connect::ConnectorFacts;
pub use error::{ConfigError, Error, Failure, Result};
pub use hosts::{HostFacts, READY_TAG, host_pipeline, user_data};
pub use plan::{Action, Bucket, Health, Plan, Readiness, Resource, Step, Tier};
pub use plugin::{Check, Part, PluginZip, Recipe, assemble};
pub use stack::{Progress, Stack, Teardown};

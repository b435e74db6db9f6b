//! SDK clients, the stack's tags, and bounded waiting.

use std::future::Future;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_smithy_runtime_api::client::waiters::error::WaiterError;

use crate::error::{Error, Result};

/// The tag whose value marks a resource as this stack's.
pub const STACK_TAG: &str = "wrt:stack";

/// One client per AWS service the topology uses.
#[derive(Debug, Clone)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub rds: aws_sdk_rds::Client,
    pub s3: aws_sdk_s3::Client,
    pub glue: aws_sdk_glue::Client,
    pub iam: aws_sdk_iam::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub kafka: aws_sdk_kafka::Client,
    pub connect: aws_sdk_kafkaconnect::Client,
}

impl Clients {
    /// Builds the clients from a loaded SDK configuration.
    pub fn new(config: &SdkConfig) -> Self {
        // Path-style addressing: a custom endpoint (moto) has no per-bucket host names.
        let s3 = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        Self {
            ec2: aws_sdk_ec2::Client::new(config),
            rds: aws_sdk_rds::Client::new(config),
            s3: aws_sdk_s3::Client::from_conf(s3),
            glue: aws_sdk_glue::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
            kafka: aws_sdk_kafka::Client::new(config),
            connect: aws_sdk_kafkaconnect::Client::new(config),
        }
    }
}

/// Loads credentials the usual way (environment, profile, instance role) for `region`,
/// sending every call to `endpoint_url` when given.
pub async fn load_config(region: &str, endpoint_url: Option<&str>) -> SdkConfig {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_owned()));
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// How long `up` and `down` wait for each kind of resource before giving up.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    /// NAT gateways.
    pub network: Duration,
    /// The RDS instance (creation takes 10-20 minutes).
    pub database: Duration,
    /// The MSK cluster (creation takes 20-40 minutes).
    pub kafka: Duration,
    /// EC2 instances, and instance-profile propagation.
    pub hosts: Duration,
    /// MSK Connect plugins and connectors.
    pub connector: Duration,
    /// The longest pause between two polls of our own loops.
    pub poll: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Self {
            network: Duration::from_secs(10 * 60),
            database: Duration::from_secs(60 * 60),
            kafka: Duration::from_secs(90 * 60),
            hosts: Duration::from_secs(15 * 60),
            connector: Duration::from_secs(45 * 60),
            poll: Duration::from_secs(30),
        }
    }
}

/// Polls `done` until it says yes or `limit` passes, backing off up to `poll`.
pub(crate) async fn wait_until<F, Fut>(
    resource: &str,
    wanted: &str,
    limit: Duration,
    poll: Duration,
    mut done: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(500).min(poll);
    loop {
        if done().await? {
            return Ok(());
        }
        let elapsed = start.elapsed();
        if elapsed >= limit {
            return Err(Error::Timeout {
                resource: resource.into(),
                wanted: wanted.into(),
                limit,
            });
        }
        tokio::time::sleep(pause.min(limit - elapsed)).await;
        pause = (pause * 2).min(poll);
    }
}

/// Turns an SDK waiter's failure into ours: running out of time is a [`Error::Timeout`].
pub(crate) fn waited<O, E>(
    resource: &str,
    wanted: &str,
    limit: Duration,
) -> impl FnOnce(WaiterError<O, E>) -> Error
where
    O: std::fmt::Debug + Send + Sync + 'static,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (resource, wanted) = (resource.to_owned(), wanted.to_owned());
    move |e| match e {
        WaiterError::ExceededMaxWait(_) => Error::Timeout {
            resource,
            wanted,
            limit,
        },
        WaiterError::OperationFailed(e) => {
            crate::error::aws(format!("waiting for {resource}"))(e.into_error())
        }
        other => Error::Conflict {
            resource,
            message: format!("never became {wanted}: {}", DisplayErrorContext(&other)),
        },
    }
}

/// Whether a set of `(key, value)` tags marks a resource as `stack`'s.
pub(crate) fn tagged<'a>(mut tags: impl Iterator<Item = (&'a str, &'a str)>, stack: &str) -> bool {
    tags.any(|(k, v)| k == STACK_TAG && v == stack)
}

/// An SDK configuration in us-west-2 with fixed credentials whose calls go to `http`: unit
/// tests answer them with recorded responses.
#[cfg(test)]
pub(crate) fn offline_config(
    http: impl aws_smithy_runtime_api::client::http::HttpClient + 'static,
) -> SdkConfig {
    use aws_sdk_ec2::config::{Credentials, SharedCredentialsProvider};
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-west-2"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "test",
        )))
        .http_client(http)
        .build()
}

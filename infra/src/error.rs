//! The crate's errors, classified so the CLI can tell the user what to do.

use std::fmt;
use std::path::PathBuf;

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::RequestId;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

/// Everything `wrt infra` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The topology file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The topology file is not valid TOML for a topology.
    #[error("parsing {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// The topology parsed but makes no sense (user's fault; fix the file).
    #[error("the topology is invalid:{}", list(.0))]
    Invalid(Vec<ConfigError>),
    /// An AWS call failed (the service's fault or the account's; `code` says which). It
    /// prints as one line; [`Error::details`] has the SDK's own account of it.
    #[error("{}", aws_line(.op, *.status, .code.as_deref(), .message, .request_id.as_deref()))]
    Aws {
        /// `service:Operation`, e.g. `ec2:RunInstances`.
        op: String,
        /// The HTTP status, when AWS answered.
        status: Option<u16>,
        code: Option<String>,
        message: String,
        request_id: Option<String>,
        /// The SDK's full error, for `-v`.
        details: String,
    },
    /// An artifact `up` ships (the connector plugin, the wrt binary, the transform) could not
    /// be made or checked; `field` names the setting or flag to change.
    #[error("{field}: {message}")]
    Artifact { field: String, message: String },
    /// A resource did not reach the wanted state in time (retrying `up` resumes).
    #[error("{resource}: still not {wanted} after {} s; run the command again to keep waiting", limit.as_secs())]
    Timeout {
        resource: String,
        wanted: String,
        limit: std::time::Duration,
    },
    /// Something in the account stops convergence and needs a person.
    #[error("{resource}: {message}")]
    Conflict { resource: String, message: String },
    /// `down` went on past these failures; every one is listed.
    #[error("{} deletion(s) failed:{}", .0.len(), list(.0))]
    Teardown(Vec<Failure>),
}

/// One invalid topology value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub value: String,
    pub problem: String,
    pub fix: String,
}

/// A resource `down` could not delete, and why.
#[derive(Debug)]
pub struct Failure {
    pub resource: String,
    pub error: Error,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {}: {}; {}",
            self.field, self.value, self.problem, self.fix
        )
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.resource, self.error)
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    items.iter().map(|i| format!("\n  {i}")).collect()
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The SDK's full account of an AWS error (response, metadata), for `-v`; `None` for
    /// other errors, whose message is all there is.
    pub fn details(&self) -> Option<&str> {
        match self {
            Error::Aws { details, .. } => Some(details),
            Error::Teardown(failures) => failures.iter().find_map(|f| f.error.details()),
            _ => None,
        }
    }

    /// The AWS error code, when this is an AWS error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Whether AWS said the thing being created is already there: success for `up`.
    pub fn is_already_exists(&self) -> bool {
        self.code().is_some_and(|c| {
            c.contains("AlreadyExists")
                || c.contains("AlreadyOwnedByYou")
                || c == "EntityAlreadyExists"
                || c == "ResourceExistsException"
                || c == "ConflictException"
                || c.ends_with(".Duplicate")
        })
    }

    /// Whether AWS said the thing is not there: success for `down`.
    pub fn is_not_found(&self) -> bool {
        self.code()
            .is_some_and(|c| c.contains("NotFound") || c == "NoSuchEntity" || c == "NoSuchBucket")
    }
}

/// Turns an SDK error from any AWS service into ours, naming the operation.
pub(crate) fn aws<E>(op: impl Into<String>) -> impl FnOnce(SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |e| {
        let (status, request_id) = match e.raw_response() {
            Some(raw) => (
                Some(raw.status().as_u16()),
                (e.meta().request_id())
                    .or_else(|| raw.headers().request_id())
                    .map(str::to_owned),
            ),
            None => (None, None),
        };
        let message = match (e.message(), e.as_service_error()) {
            (Some(message), _) => message.to_owned(),
            // A service error without a message (S3's HEAD answers have no body).
            (None, Some(_)) => String::new(),
            // Never reached AWS, or its answer could not be read: the chain of causes says why.
            (None, None) => DisplayErrorContext(&e).to_string(),
        };
        Error::Aws {
            op: op.into(),
            status,
            code: e.code().map(str::to_owned),
            message,
            request_id,
            details: format!("{e:?}"),
        }
    }
}

/// `service:Operation: HTTP status Code: message (request id)`, on one line whatever the
/// message holds.
fn aws_line(
    op: &str,
    status: Option<u16>,
    code: Option<&str>,
    message: &str,
    request_id: Option<&str>,
) -> String {
    let mut line = op.to_owned();
    line.push(':');
    if let Some(status) = status {
        line.push_str(&format!(" HTTP {status}"));
    }
    if let Some(code) = code {
        line.push_str(&format!(" {code}"));
    }
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if !message.is_empty() {
        if status.is_some() || code.is_some() {
            line.push(':');
        }
        line.push_str(&format!(" {message}"));
    }
    if let Some(id) = request_id {
        line.push_str(&format!(" (request {id})"));
    }
    line
}

#[cfg(test)]
mod tests {
    use aws_config::SdkConfig;
    use aws_sdk_s3::primitives::SdkBody;
    use aws_smithy_http_client::test_util::capture_request;

    use super::*;
    use crate::aws::offline_config;

    /// An SDK configuration whose one call is answered with this recorded response.
    fn answering(status: u16, headers: &[(&str, &str)], body: &'static str) -> SdkConfig {
        let mut response = http::Response::builder().status(status);
        for (name, value) in headers {
            response = response.header(*name, *value);
        }
        let (http, _) = capture_request(Some(response.body(SdkBody::from(body)).unwrap()));
        offline_config(http)
    }

    /// A failed call prints as one line: service and operation, HTTP status, code, message,
    /// request id; the SDK's structure only under `details` (`-v`).
    #[tokio::test]
    async fn an_aws_error_renders_as_one_line() {
        let config = answering(
            400,
            &[],
            include_str!("../fixtures/errors/ec2-run-instances-400.xml"),
        );
        let ec2 = (aws_sdk_ec2::Client::new(&config).run_instances())
            .image_id("ami-0abc")
            .instance_type("t9.nano".into())
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .map_err(aws("ec2:RunInstances"))
            .unwrap_err();
        let config = answering(403, &[("x-amz-request-id", "8Z4Q2X7W1V3T5R9P")], "");
        let s3 = (aws_sdk_s3::Client::new(&config).head_object())
            .bucket("wrt-registry")
            .key("bin/wrt")
            .send()
            .await
            .map_err(aws("s3:HeadObject"))
            .unwrap_err();
        let rendered = format!("{ec2}\n{s3}\n");
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/snapshots/aws-errors.txt"
        );
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(path, &rendered).unwrap();
        }
        assert_eq!(rendered, std::fs::read_to_string(path).unwrap());
        assert!(ec2.details().unwrap().contains("InvalidParameterValue"));
        assert_eq!(ec2.code(), Some("InvalidParameterValue"));
    }
}

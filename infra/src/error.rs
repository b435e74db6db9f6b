//! The crate's errors, classified so the CLI can tell the user what to do.

use std::fmt;
use std::path::PathBuf;

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

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
    /// An AWS call failed (the service's fault or the account's; `code` says which).
    #[error("{op}: {message}")]
    Aws {
        op: String,
        code: Option<String>,
        message: String,
    },
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
pub(crate) fn aws<E, R>(op: impl Into<String>) -> impl FnOnce(SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    move |e| Error::Aws {
        op: op.into(),
        code: e.code().map(str::to_owned),
        message: DisplayErrorContext(&e).to_string(),
    }
}

//! The transform stage: a batch of change events in, one outcome per event out.
//!
//! [`sandbox`] runs WebAssembly components; other implementations (a native baseline in
//! `bench/`) plug into the same [`Transform`] trait so they can be measured side by side.

pub mod sandbox;

use tokio::sync::mpsc;

use crate::event::{ChangeEvent, Outcome};

/// Something that turns change events into output records.
pub trait Transform: Send {
    /// Identifies the code that produced an output: the component's SHA-256 (hex), or a
    /// name for a built-in. It goes into object keys and metadata.
    fn digest(&self) -> &str;

    /// One [`Outcome`] per event, in order; a per-event error is data (dead-lettered).
    /// `Err` means the whole call failed (trap, timeout, memory cap) and the transform
    /// has already recovered for the next call, which may be on part of the same batch.
    fn process(&mut self, events: &[ChangeEvent]) -> Result<Vec<Outcome>, BatchFailure>;

    /// Another instance of the same code, started and initialised, for another lane: its
    /// own state, the same outputs for the same events.
    fn another(&self) -> Result<Box<dyn Transform>, InstanceError>;
}

/// Why another instance of a transform that already runs could not be started.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("starting another instance of the transform: {0}")]
pub struct InstanceError(pub String);

/// The transform a pipeline runs, and the newer versions that arrive while it runs
/// ([`crate::registry::watch`]), which the pipeline switches to at a batch boundary.
pub struct Current {
    pub transform: Box<dyn Transform>,
    pub versions: Versions,
}

/// What the watcher hands the pipeline, loaded and initialised.
pub enum Newer {
    /// A version to switch to.
    Current(Box<dyn Transform>),
    /// A candidate to run beside the current version, comparing outputs and writing
    /// nothing; `None` ends the shadow run.
    Shadow(Option<Box<dyn Transform>>),
}

/// Where newer versions of a running transform arrive.
pub struct Versions(Option<mpsc::Receiver<Newer>>);

impl Versions {
    /// A newer version or shadow, if one is ready and `busy` is false (a switch is under
    /// way: one change at a time, in order).
    pub fn ready_unless(&mut self, busy: bool) -> Option<Newer> {
        if busy {
            return None;
        }
        self.0.as_mut()?.try_recv().ok()
    }
}

impl Current {
    /// A transform that is never replaced.
    pub fn fixed(transform: Box<dyn Transform>) -> Current {
        Current {
            transform,
            versions: Versions(None),
        }
    }

    /// A transform replaced by whatever arrives on `newer`.
    pub fn watched(transform: Box<dyn Transform>, newer: mpsc::Receiver<Newer>) -> Current {
        Current {
            transform,
            versions: Versions(Some(newer)),
        }
    }
}

/// Why a whole batch failed inside the transform. Always the transform's fault, so retrying
/// the same events would fail again: the host calls again on the batch's halves to find the
/// events that fail alone, dead-letters those, and carries on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct BatchFailure {
    pub kind: FailureKind,
    pub message: String,
}

/// The class of a [`BatchFailure`], for metrics and dead-letter records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The guest trapped (panic, `unreachable`, out-of-bounds access, ...).
    Trap,
    /// The call ran past its CPU deadline.
    Timeout,
    /// The guest tried to grow its memory past the cap.
    MemoryLimit,
    /// The guest broke the contract (e.g. returned the wrong number of outcomes).
    Contract,
}

impl FailureKind {
    /// The class's name in dead letters and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::MemoryLimit => "memory-limit",
            FailureKind::Contract => "contract",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailureKind::Trap => "transform trapped",
            FailureKind::Timeout => "transform timed out",
            FailureKind::MemoryLimit => "transform exceeded its memory cap",
            FailureKind::Contract => "transform broke the contract",
        })
    }
}

//! The transform stage: a batch of change events in, one outcome per event out.
//!
//! [`sandbox`] runs WebAssembly components; other implementations (a native baseline in
//! `bench/`) plug into the same [`Transform`] trait so they can be measured side by side.

pub mod sandbox;
pub mod watch;

use tokio::sync::mpsc;

use crate::event::{ChangeEvent, Outcome};

/// Something that turns change events into output records.
pub trait Transform: Send {
    /// Identifies the code that produced an output: the component's SHA-256 (hex), or a
    /// name for a built-in. It goes into object keys and metadata.
    fn digest(&self) -> &str;

    /// One [`Outcome`] per event, in order; a per-event error is data (dead-lettered).
    /// `Err` means the whole call failed (trap, timeout, memory cap) and the transform
    /// has already recovered for the next batch.
    fn process(&mut self, events: &[ChangeEvent]) -> Result<Vec<Outcome>, BatchFailure>;
}

/// The transform a pipeline runs, and the newer versions that arrive while it runs
/// ([`watch`]), which the pipeline switches to at a batch boundary.
pub struct Current {
    pub transform: Box<dyn Transform>,
    newer: Option<mpsc::Receiver<Box<dyn Transform>>>,
}

impl Current {
    /// A transform that is never replaced.
    pub fn fixed(transform: Box<dyn Transform>) -> Current {
        Current {
            transform,
            newer: None,
        }
    }

    /// A transform replaced by whatever arrives on `newer`, loaded and initialised.
    pub fn watched(
        transform: Box<dyn Transform>,
        newer: mpsc::Receiver<Box<dyn Transform>>,
    ) -> Current {
        Current {
            transform,
            newer: Some(newer),
        }
    }

    /// A newer version, if one is ready.
    pub fn newer(&mut self) -> Option<Box<dyn Transform>> {
        self.newer.as_mut()?.try_recv().ok()
    }
}

/// Why a whole batch failed inside the transform. Always the transform's fault, so the
/// batch goes to the dead-letter path and the host carries on; retrying would fail again.
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

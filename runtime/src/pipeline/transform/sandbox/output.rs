//! What a guest writes to its stdout and stderr. Each line goes to the host log, tagged with
//! the transform version and the batch's first source position (and, under `wrt run`, the
//! pipeline's name, from the host's span), at most [`LINES_PER_SECOND`]
//! a second per instance, so a guest that prints per event cannot flood the log. The stderr
//! of the call under way is also kept (its last [`KEPT`] bytes): a Rust guest prints its
//! panic message there just before it traps, and the dead letter should say it.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Most guest lines logged per second and instance; the rest are counted, and the count is
/// logged with the next line that gets through.
const LINES_PER_SECOND: u32 = 20;
/// How much of a call's stderr is kept for a trap's reason.
const KEPT: usize = 2048;
/// A line longer than this is logged in pieces.
const LONGEST_LINE: usize = 4096;

/// The two streams of one instance, and what they share.
#[derive(Clone, Default)]
pub struct GuestOutput {
    shared: Arc<Mutex<Shared>>,
}

#[derive(Default)]
struct Shared {
    /// The transform's short digest and the batch's first source position, for the tags.
    version: String,
    position: String,
    /// An unfinished line per stream (stdout, stderr).
    partial: [Vec<u8>; 2],
    /// The current call's stderr, its last [`KEPT`] bytes.
    call_stderr: VecDeque<u8>,
    /// The rate limit's second, lines logged in it, lines dropped since the last logged one.
    second: Option<Instant>,
    logged: u32,
    dropped: u64,
}

impl GuestOutput {
    pub fn new(version: &str) -> Self {
        let output = GuestOutput::default();
        output.lock().version = version.to_string();
        output
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().expect("not poisoned")
    }

    /// A call begins on a batch whose first event is at `position`.
    pub fn begin_call(&self, position: String) {
        let mut shared = self.lock();
        shared.position = position;
        shared.call_stderr.clear();
    }

    /// What the guest wrote to stderr during the current call, as one line: the text of a
    /// panic, without Rust's hint about backtraces. Empty if it wrote nothing.
    pub fn call_stderr(&self) -> String {
        let shared = self.lock();
        let (a, b) = shared.call_stderr.as_slices();
        let text = String::from_utf8_lossy(&[a, b].concat()).into_owned();
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The stream for stdout (`stream` 0) or stderr (1).
    pub fn stream(&self, stream: usize) -> GuestStream {
        GuestStream {
            output: self.clone(),
            stream,
        }
    }

    fn write(&self, stream: usize, bytes: &[u8]) {
        let mut shared = self.lock();
        if stream == 1 {
            shared.call_stderr.extend(bytes);
            let over = shared.call_stderr.len().saturating_sub(KEPT);
            shared.call_stderr.drain(..over);
        }
        shared.partial[stream].extend_from_slice(bytes);
        while let Some(end) = line_end(&shared.partial[stream]) {
            let line: Vec<u8> = shared.partial[stream].drain(..end).collect();
            shared.log(stream, &line);
        }
    }
}

/// Where the first line in `buffer` ends (after its newline), if it is complete or too long.
fn line_end(buffer: &[u8]) -> Option<usize> {
    match buffer.iter().position(|&b| b == b'\n') {
        Some(at) => Some(at + 1),
        None if buffer.len() >= LONGEST_LINE => Some(LONGEST_LINE),
        None => None,
    }
}

impl Shared {
    fn log(&mut self, stream: usize, line: &[u8]) {
        let now = Instant::now();
        if self
            .second
            .is_none_or(|s| now.duration_since(s).as_secs() >= 1)
        {
            self.second = Some(now);
            self.logged = 0;
        }
        if self.logged >= LINES_PER_SECOND {
            self.dropped += 1;
            return;
        }
        self.logged += 1;
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        let stream = ["stdout", "stderr"][stream];
        let dropped = std::mem::take(&mut self.dropped);
        tracing::info!(target: "wrt::guest", version = %self.version,
            position = %self.position, stream, dropped, "{text}");
    }
}

/// One of an instance's output streams, as WASI sees it.
pub struct GuestStream {
    output: GuestOutput,
    stream: usize,
}

impl IsTerminal for GuestStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.output.stream(self.stream))
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.output.stream(self.stream))
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.output.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.output.write(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calls_stderr_is_kept_without_the_backtrace_hint() {
        let output = GuestOutput::new("abc");
        output.begin_call("t/0@1".into());
        output.write(
            1,
            b"thread '<unnamed>' panicked at src/lib.rs:29:13:\nthe row is ",
        );
        output.write(
            1,
            b"marked\nnote: run with `RUST_BACKTRACE=1` environment variable\n",
        );
        assert_eq!(
            output.call_stderr(),
            "thread '<unnamed>' panicked at src/lib.rs:29:13: the row is marked"
        );
        output.begin_call("t/0@2".into());
        assert_eq!(output.call_stderr(), "");
    }

    #[test]
    fn only_the_last_bytes_of_a_calls_stderr_are_kept() {
        let output = GuestOutput::new("abc");
        output.begin_call("t/0@1".into());
        output.write(1, &[b'x'; 3 * KEPT]);
        output.write(1, b"the end");
        let kept = output.call_stderr();
        assert_eq!(kept.len(), KEPT);
        assert!(kept.ends_with("the end"));
    }

    #[test]
    fn lines_beyond_the_rate_are_counted_not_logged() {
        let output = GuestOutput::new("abc");
        for i in 0..(LINES_PER_SECOND + 5) {
            output.write(0, format!("line {i}\n").as_bytes());
        }
        let shared = output.lock();
        assert_eq!(shared.logged, LINES_PER_SECOND);
        assert_eq!(shared.dropped, 5);
        assert!(shared.partial[0].is_empty());
    }
}

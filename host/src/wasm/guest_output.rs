//! A guest's standard output and error: each line lands in the host's tracing
//! (target `weir::guest`, with the operator ID and subtask; stdout at info,
//! stderr at warn), never on the host's own stdout, which may be the job's
//! sink. The lines a guest wrote during the current call are kept so that a
//! trap can quote them (a Rust guest prints its panic message to stderr).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line kept or logged, in bytes; longer lines are cut.
const MAX_LINE: usize = 4096;
/// Lines of the current call kept for error messages.
const KEEP_LINES: usize = 8;

#[derive(Default)]
struct Buffer {
    partial: Vec<u8>,
    recent: VecDeque<String>,
}

/// One of a guest's output streams.
#[derive(Clone)]
pub struct GuestOutput {
    operator_id: Arc<str>,
    subtask: u32,
    stderr: bool,
    buffer: Arc<Mutex<Buffer>>,
}

impl GuestOutput {
    /// The stdout (`stderr = false`) or stderr stream of a subtask.
    pub fn new(operator_id: &str, subtask: u32, stderr: bool) -> Self {
        GuestOutput {
            operator_id: operator_id.into(),
            subtask,
            stderr,
            buffer: Arc::default(),
        }
    }

    fn emit(&self, line: &[u8], buffer: &mut Buffer) {
        let text = String::from_utf8_lossy(&line[..line.len().min(MAX_LINE)]).into_owned();
        if text.trim().is_empty() {
            return;
        }
        let (op, sub) = (&*self.operator_id, self.subtask);
        if self.stderr {
            tracing::warn!(target: "weir::guest", operator_id = op, subtask = sub, "{text}");
        } else {
            tracing::info!(target: "weir::guest", operator_id = op, subtask = sub, "{text}");
        }
        if buffer.recent.len() == KEEP_LINES {
            buffer.recent.pop_front();
        }
        buffer.recent.push_back(text);
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut buffer.partial);
            line.extend_from_slice(&rest[..pos]);
            self.emit(&line, &mut buffer);
            rest = &rest[pos + 1..];
        }
        if buffer.partial.len() < MAX_LINE {
            let room = MAX_LINE - buffer.partial.len();
            buffer
                .partial
                .extend_from_slice(&rest[..rest.len().min(room)]);
        }
    }

    /// Forgets the lines of the previous call.
    pub fn start_call(&self) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.recent.clear();
    }

    /// The lines written during the current call (and any unfinished line),
    /// joined into one line.
    pub fn recent(&self) -> String {
        let buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let partial = String::from_utf8_lossy(&buffer.partial);
        buffer
            .recent
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(partial.as_ref()))
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect::<Vec<_>>()
            .join(" / ")
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_lines_of_the_current_call() {
        let out = GuestOutput::new("op", 0, true);
        out.write_bytes(b"old\n");
        out.start_call();
        out.write_bytes(
            b"panicked at src/lib.rs:1:1:\nboom\nnote: run with `RUST_BACKTRACE=1`\npart",
        );
        assert_eq!(out.recent(), "panicked at src/lib.rs:1:1: / boom / part");
    }
}

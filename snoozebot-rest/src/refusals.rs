//! hyper's own answers to requests it cannot read — `400` for malformed HTTP, `414` for a URI
//! over 64 KiB, `431` for a head over its buffer or with too many headers — rewritten on their
//! way out as problem documents, like every other refusal of the API.
//!
//! hyper sends those before any service sees the request, as a bare head (`content-length: 0`,
//! no `content-type`), then closes the connection. The API's own answers always carry a
//! `content-type`, so a write that is exactly such a head can only be one of hyper's.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::StatusCode;
use snoozebot_core::{Error, ErrorKind};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::problem::{PROBLEM_JSON, Problem};

/// A connection's byte stream, with hyper's bare refusals replaced by problem documents.
pub(crate) struct ProblemRefusals<IO> {
    inner: IO,
    /// A replacement being written, and how much of hyper's buffer it stands for.
    replacing: Option<Replacement>,
}

struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    stands_for: usize,
}

impl<IO> ProblemRefusals<IO> {
    pub(crate) fn new(inner: IO) -> Self {
        ProblemRefusals {
            inner,
            replacing: None,
        }
    }
}

impl<IO: AsyncWrite + Unpin> ProblemRefusals<IO> {
    /// Writes the replacement to its end; then hyper's buffer counts as written.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(replacement) = self.replacing.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        while replacement.written < replacement.bytes.len() {
            let rest = &replacement.bytes[replacement.written..];
            match ready!(Pin::new(&mut self.inner).poll_write(cx, rest)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(written) => replacement.written += written,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
        let stands_for = replacement.stands_for;
        self.replacing = None;
        Poll::Ready(Ok(stands_for))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for ProblemRefusals<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ProblemRefusals<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.replacing.is_none() {
            match problem_for_bare_refusal(buf) {
                Some(bytes) => {
                    self.replacing = Some(Replacement {
                        bytes,
                        written: 0,
                        stands_for: buf.len(),
                    });
                }
                None => return Pin::new(&mut self.inner).poll_write(cx, buf),
            }
        }
        self.poll_replacement(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.replacing.is_none() {
            // A bare head has no body: it is all of what hyper writes, in its first slice.
            let mut filled = bufs.iter().filter(|buf| !buf.is_empty());
            let refusal = match (filled.next(), filled.next()) {
                (Some(head), None) => problem_for_bare_refusal(head),
                _ => None,
            };
            match refusal {
                Some(bytes) => {
                    self.replacing = Some(Replacement {
                        bytes,
                        written: 0,
                        stands_for: bufs.iter().map(|buf| buf.len()).sum(),
                    });
                }
                None => return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
            }
        }
        self.poll_replacement(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// If `written` is exactly one of hyper's bare refusals, the same answer as a problem
/// document (its other headers kept, the connection closed).
fn problem_for_bare_refusal(written: &[u8]) -> Option<Vec<u8>> {
    let head = written.strip_suffix(b"\r\n\r\n")?;
    let mut lines = head
        .split(|&byte| byte == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let status_line = lines.next()?;
    let (status, detail) = match status_line.get(..13)? {
        b"HTTP/1.1 400 " | b"HTTP/1.0 400 " => (
            StatusCode::BAD_REQUEST,
            "the request is not valid HTTP/1.1: its request line or a header cannot be parsed",
        ),
        b"HTTP/1.1 414 " | b"HTTP/1.0 414 " => (
            StatusCode::URI_TOO_LONG,
            "the request's URI is longer than the server reads (64 KiB)",
        ),
        b"HTTP/1.1 431 " | b"HTTP/1.0 431 " => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "the request's head is larger than the server reads, or has more headers than it takes",
        ),
        _ => return None,
    };
    let mut kept = Vec::new();
    let mut bare = false;
    for line in lines {
        let name = line
            .split(|&byte| byte == b':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match name.as_slice() {
            b"content-type" => return None,
            b"content-length" => bare = line.ends_with(b" 0") || line.ends_with(b":0"),
            b"connection" => {}
            _ => kept.push(line),
        }
    }
    if !bare {
        return None;
    }
    let problem = Problem::with_status(&Error::new(ErrorKind::InvalidArgument, detail), status);
    let body = serde_json::to_vec(&problem).ok()?;
    let mut answer = Vec::with_capacity(head.len() + body.len() + 96);
    answer.extend_from_slice(status_line);
    answer.extend_from_slice(b"\r\n");
    for line in kept {
        answer.extend_from_slice(line);
        answer.extend_from_slice(b"\r\n");
    }
    answer.extend_from_slice(format!("content-type: {PROBLEM_JSON}\r\n").as_bytes());
    answer.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    answer.extend_from_slice(b"connection: close\r\n\r\n");
    answer.extend_from_slice(&body);
    Some(answer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_a_bare_head_of_a_refusal_is_rewritten() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 17:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(problem_for_bare_refusal(bare).unwrap()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(head.contains("\r\ndate: Tue, 01 Dec 2026"), "{head}");
        assert!(
            head.contains("\r\ncontent-type: application/problem+json\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
            "{head}"
        );
        assert!(head.ends_with("\r\nconnection: close"), "{head}");
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], 431);
        assert_eq!(problem["kind"], "invalid_argument");

        for untouched in [
            // The API's own refusal, with its document.
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n"[..],
            // A refusal with a body following.
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            // Other statuses.
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            // Part of a head.
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"",
        ] {
            assert!(problem_for_bare_refusal(untouched).is_none(), "{:?}", String::from_utf8_lossy(untouched));
        }
    }
}

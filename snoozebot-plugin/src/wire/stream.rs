//! The socket under a plugin connection, registered with the runtime for readability only, so
//! the peer reading what was written does not wake this side.
//!
//! tokio registers a socket for both directions, edge-triggered: every time the peer consumes
//! a write, the kernel reports the socket writable again and wakes the thread waiting in
//! `epoll_wait` (one pointless wake per call on each side of a request–response connection,
//! measured with strace). Here writes go straight to the socket; only a write that would block
//! registers a duplicate of the descriptor for writability, and only until it is writable.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// A connected stream socket of `std`'s: Unix or TCP.
pub(crate) trait Socket: AsRawFd + AsFd + Unpin + Send + 'static
where
    for<'a> &'a Self: Read + Write,
{
    /// Shuts down one or both directions.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
}

impl Socket for std::os::unix::net::UnixStream {
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        std::os::unix::net::UnixStream::shutdown(self, how)
    }
}

impl Socket for std::net::TcpStream {
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        std::net::TcpStream::shutdown(self, how)
    }
}

/// A tokio Unix stream as a [`ReadableOnly`] one.
pub(crate) fn unix(
    stream: tokio::net::UnixStream,
) -> io::Result<ReadableOnly<std::os::unix::net::UnixStream>> {
    ReadableOnly::new(stream.into_std()?)
}

/// A tokio TCP stream as a [`ReadableOnly`] one, with `TCP_NODELAY` (calls are small and wait
/// for their answers).
pub(crate) fn tcp(stream: tokio::net::TcpStream) -> io::Result<ReadableOnly<std::net::TcpStream>> {
    stream.set_nodelay(true)?;
    ReadableOnly::new(stream.into_std()?)
}

/// A connected, non-blocking socket read through the runtime and written directly.
pub(crate) struct ReadableOnly<S: AsRawFd> {
    socket: AsyncFd<S>,
    /// A duplicate of the socket's descriptor registered for writability while a write would
    /// block; `None` otherwise.
    write_wait: Option<AsyncFd<OwnedFd>>,
}

impl<S: AsRawFd> AsRawFd for ReadableOnly<S> {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.get_ref().as_raw_fd()
    }
}

impl<S> ReadableOnly<S>
where
    S: Socket,
    for<'a> &'a S: Read + Write,
{
    /// Registers `socket` (non-blocking already) with the current runtime.
    pub(crate) fn new(socket: S) -> io::Result<Self> {
        Ok(ReadableOnly {
            socket: register(socket, Interest::READABLE)?,
            write_wait: None,
        })
    }

    /// Runs `write` until it does not block, waiting for writability in between.
    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&S) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            match write(self.socket.get_ref()) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                done => {
                    // Writable again: stop hearing about it.
                    self.write_wait = None;
                    return Poll::Ready(done);
                }
            }
            let wait = match &mut self.write_wait {
                Some(wait) => wait,
                // Registering reports the socket's state at once, so a socket that became
                // writable since the write above is not missed.
                None => self.write_wait.insert(register(
                    self.socket.get_ref().as_fd().try_clone_to_owned()?,
                    Interest::WRITABLE,
                )?),
            };
            ready!(wait.poll_write_ready(cx))?.clear_ready();
        }
    }
}

/// Registers an owned descriptor with the current runtime for `interest`.
#[allow(unsafe_code)]
fn register<T: AsRawFd>(owned: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: tokio needs the descriptor to stay open, and the same, while registered. `owned`
    // is a [`Socket`] or an `OwnedFd`: it owns its descriptor, closes it only when dropped,
    // and the `AsyncFd` holds it until then; neither this module nor its callers take it out
    // (`get_mut`/`into_inner` are not used) or give it away.
    unsafe { AsyncFd::register_with_interest(owned, interest) }
        .map_err(|error| error.into_parts().1)
}

impl<S> AsyncRead for ReadableOnly<S>
where
    S: Socket,
    for<'a> &'a S: Read + Write,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.socket.poll_read_ready(cx))?;
            let room = buf.remaining();
            match guard.try_io(|socket| read_into(socket.get_ref().as_raw_fd(), buf)) {
                Ok(Ok(read)) => {
                    // A short read drained the socket (as tokio assumes for its own streams):
                    // wait for the next readiness instead of reading into EAGAIN first.
                    if read > 0 && read < room {
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(error)) => return Poll::Ready(Err(error)),
                // Not readable after all: the readiness was cleared, wait again.
                Err(_would_block) => {}
            }
        }
    }
}

/// Reads from `fd` into the unfilled part of `buf` and advances it by what was read.
///
/// The kernel writes into the buffer's uninitialised memory directly, as tokio's own sockets
/// do: h2 reads into fresh capacity each time, and zeroing it first (`initialize_unfilled`)
/// cost about 4,000 instructions a read, a twentieth of a plugin call (callgrind).
#[allow(unsafe_code)]
fn read_into(fd: RawFd, buf: &mut ReadBuf<'_>) -> io::Result<usize> {
    // SAFETY: nothing here reads the unfilled memory; only the kernel writes to it.
    let unfilled = unsafe { buf.unfilled_mut() };
    // SAFETY: the pointer and length are those of `unfilled`, which outlives the call; the
    // kernel writes at most that many bytes.
    let read = unsafe { libc::read(fd, unfilled.as_mut_ptr().cast(), unfilled.len()) };
    // A negative count is an error, in `errno` until the next call.
    let read = usize::try_from(read).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: the kernel initialised the first `read` bytes of `unfilled`.
    unsafe { buf.assume_init(read) };
    buf.advance(read);
    Ok(read)
}

impl<S> AsyncWrite for ReadableOnly<S>
where
    S: Socket,
    for<'a> &'a S: Read + Write,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |mut socket| socket.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |mut socket| socket.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(match self.socket.get_ref().shutdown(Shutdown::Write) {
            Err(error) if error.kind() == io::ErrorKind::NotConnected => Ok(()),
            done => done,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pair() -> (
        ReadableOnly<std::os::unix::net::UnixStream>,
        ReadableOnly<std::os::unix::net::UnixStream>,
    ) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (ReadableOnly::new(a).unwrap(), ReadableOnly::new(b).unwrap())
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_and_shutdown_is_end_of_file() {
        let (mut a, mut b) = pair();
        a.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        b.write_all(b"pong").await.unwrap();
        a.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        a.shutdown().await.unwrap();
        assert_eq!(b.read(&mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_write_larger_than_the_socket_buffer_waits_for_the_reader_and_loses_nothing() {
        let (mut a, mut b) = pair();
        let sent: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let expected = sent.clone();
        let writer = tokio::spawn(async move {
            a.write_all(&sent).await.unwrap();
            a.shutdown().await.unwrap();
            a.write_wait.is_none()
        });
        let mut received = Vec::new();
        // A writer that never hears its socket is writable again would hang here.
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            b.read_to_end(&mut received),
        )
        .await
        .expect("the blocked writer was never woken")
        .unwrap();
        assert!(
            received == expected,
            "the bytes arrived changed or incomplete"
        );
        assert!(
            writer.await.unwrap(),
            "the writability registration outlived the blocked write"
        );
    }

    #[tokio::test]
    async fn a_closed_peer_is_end_of_file_and_a_write_to_it_fails() {
        let (mut a, b) = pair();
        drop(b);
        let mut buf = [0u8; 4];
        assert_eq!(a.read(&mut buf).await.unwrap(), 0);
        let error = a.write_all(b"lost").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    }
}

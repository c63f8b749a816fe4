//! Listeners that stay usable under slow or idle clients (slowloris): a cap on open
//! connections, below the process's file-descriptor limit, so that policy files, attribute
//! sources and JWKS fetches always find descriptors; and an idle timeout that closes a
//! connection on which nothing was read or written for a while (a client that connects
//! and says nothing, or stops half-way through its headers).
//!
//! A connection past the cap waits in the kernel's backlog until one closes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Bounds of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    /// Most open connections.
    pub max_connections: usize,
    /// A connection with no byte read or written for this long is closed.
    pub idle_timeout: Duration,
}

/// A quarter of the soft `RLIMIT_NOFILE` per listener (the two listeners together use at
/// most half; the other half stays for files and outbound sockets), and never more than
/// `configured`.
pub(crate) fn effective_max_connections(configured: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !ok || limit.rlim_cur == libc::RLIM_INFINITY {
        return configured;
    }
    let quarter = usize::try_from(limit.rlim_cur / 4).unwrap_or(usize::MAX);
    configured.min(quarter.max(1))
}

/// A TCP listener that hands out at most `max_connections` streams at a time.
pub(crate) struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    idle_timeout: Duration,
}

impl LimitedListener {
    /// Wraps `inner`.
    pub fn new(inner: TcpListener, limits: ConnectionLimits) -> Self {
        LimitedListener {
            inner,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            idle_timeout: limits.idle_timeout,
        }
    }

    /// The next connection, once there is room for it. Accept errors (such as running
    /// out of descriptors) are retried after a short pause.
    pub async fn next(&mut self) -> GuardedStream {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        loop {
            match self.inner.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    return GuardedStream::new(stream, permit, self.idle_timeout);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// The connections as a stream, for `tonic`'s `serve_with_incoming_shutdown`.
    pub fn into_stream(
        mut self,
    ) -> tokio_stream::wrappers::ReceiverStream<Result<GuardedStream, io::Error>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let stream = self.next().await;
                if tx.send(Ok(stream)).await.is_err() {
                    return;
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = GuardedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let stream = self.next().await;
        let addr = stream
            .inner
            .peer_addr()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
        (stream, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Handlers see the client's address as `ConnectInfo<PeerAddr>` (forward-auth's trusted
/// proxies).
impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, LimitedListener>>
    for crate::extauthz::forward_auth::PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, LimitedListener>) -> Self {
        crate::extauthz::forward_auth::PeerAddr(*stream.remote_addr())
    }
}

/// A connection holding its slot, closed after `idle_timeout` without traffic.
pub(crate) struct GuardedStream {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle_timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl GuardedStream {
    fn new(inner: TcpStream, permit: OwnedSemaphorePermit, idle_timeout: Duration) -> Self {
        GuardedStream {
            inner,
            _permit: permit,
            idle_timeout,
            deadline: Box::pin(tokio::time::sleep(idle_timeout)),
        }
    }

    fn touch(&mut self) {
        self.deadline
            .as_mut()
            .reset(Instant::now() + self.idle_timeout);
    }

    fn idle_error() -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, "connection idle for too long")
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(Self::idle_error())),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for GuardedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn issue_12_idle_connections_are_closed_and_the_cap_holds() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut limited = LimitedListener::new(
            listener,
            ConnectionLimits {
                max_connections: 2,
                idle_timeout: Duration::from_millis(300),
            },
        );
        let server = tokio::spawn(async move {
            loop {
                let mut s = limited.next().await;
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    // Echo until the peer leaves or the idle timeout closes the stream.
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let mut idle1 = TcpStream::connect(addr).await.unwrap();
        let mut idle2 = TcpStream::connect(addr).await.unwrap();
        let mut third = TcpStream::connect(addr).await.unwrap();
        third.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        // The third waits while two connections hold the slots ...
        assert!(
            tokio::time::timeout(Duration::from_millis(150), third.read(&mut one))
                .await
                .is_err()
        );
        // ... and is served once the idle ones are closed.
        let echoed = tokio::time::timeout(Duration::from_secs(3), third.read(&mut one)).await;
        assert!(matches!(echoed, Ok(Ok(1))), "{echoed:?}");
        assert_eq!(
            idle1.read(&mut one).await.unwrap_or(0),
            0,
            "idle connection closed"
        );
        assert_eq!(
            idle2.read(&mut one).await.unwrap_or(0),
            0,
            "idle connection closed"
        );
        server.abort();
    }

    #[test]
    fn connection_cap_leaves_descriptors_free() {
        assert!(effective_max_connections(usize::MAX) < usize::MAX);
        assert_eq!(effective_max_connections(3), 3);
    }
}

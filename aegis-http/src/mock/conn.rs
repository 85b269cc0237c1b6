//! Connection plumbing that lets a handler drop its own TCP connection.
//!
//! An axum handler can only return a response, which hyper then writes. To close a socket
//! without sending a single response byte (`MockReply::Disconnect`), the server accepts
//! connections through [`MockListener`], which wraps every socket in a [`ConnectionIo`]. Each
//! connection has its own [`CloseSignal`], and handlers reach it through axum's `ConnectInfo`
//! as a [`Connection`]. Once the signal fires, every read and write on the socket fails, so
//! hyper drops the connection instead of writing the response.
//!
//! The server's shutdown signal closes every connection in the same way. That ends `Hang`
//! replies and idle keep-alive connections, so a graceful shutdown does not wait for them.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A one-way latch that any number of tasks can wait on.
#[derive(Clone, Debug)]
pub(super) struct CloseSignal(Arc<watch::Sender<bool>>);

impl CloseSignal {
    pub(super) fn new() -> CloseSignal {
        CloseSignal(Arc::new(watch::channel(false).0))
    }

    /// Fires the signal. Firing it again has no further effect.
    pub(super) fn close(&self) {
        self.0.send_replace(true);
    }

    /// Returns a future that completes once the signal has fired, including when it fired
    /// before the call.
    pub(super) fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.0.subscribe();
        async move {
            // `wait_for` fails only when every sender is gone. The signal can then never fire,
            // so treating that as closed cannot leave a waiter stuck.
            let _ = receiver.wait_for(|closed| *closed).await;
        }
    }
}

/// The handle of one accepted connection, given to handlers as `ConnectInfo`.
#[derive(Clone, Debug)]
pub(super) struct Connection {
    /// Address of the client.
    pub(super) remote_addr: SocketAddr,
    own: CloseSignal,
    server: CloseSignal,
}

impl Connection {
    /// Closes this connection without writing anything more to it.
    pub(super) fn close(&self) {
        self.own.close();
    }

    /// Returns a future that completes once this connection or the whole server closes.
    pub(super) fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let own = self.own.closed();
        let server = self.server.closed();
        async move {
            tokio::select! {
                () = own => {}
                () = server => {}
            }
        }
    }
}

impl Connected<IncomingStream<'_, MockListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, MockListener>) -> Connection {
        stream.io().connection.clone()
    }
}

/// A TCP listener whose sockets can be closed by their [`Connection`] handle.
#[derive(Debug)]
pub(super) struct MockListener {
    listener: TcpListener,
    server: CloseSignal,
}

impl MockListener {
    /// Wraps `listener`, tying every accepted socket to the server-wide `server` signal.
    pub(super) fn new(listener: TcpListener, server: CloseSignal) -> MockListener {
        MockListener { listener, server }
    }
}

impl Listener for MockListener {
    type Io = ConnectionIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (ConnectionIo, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, remote_addr)) => {
                    let connection = Connection { remote_addr, own: CloseSignal::new(), server: self.server.clone() };
                    return (ConnectionIo::new(stream, connection), remote_addr);
                }
                Err(error) => {
                    // Accept errors such as EMFILE are usually transient under load. Pausing
                    // keeps the loop from spinning while the condition lasts.
                    tracing::warn!(%error, "mock provider failed to accept a connection, retrying in 50 ms");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A TCP socket that fails every read and write once its connection is closed.
pub(super) struct ConnectionIo {
    stream: TcpStream,
    connection: Connection,
    closed: Pin<Box<dyn Future<Output = ()> + Send>>,
    is_closed: bool,
}

impl ConnectionIo {
    fn new(stream: TcpStream, connection: Connection) -> ConnectionIo {
        let closed = Box::pin(connection.closed());
        ConnectionIo { stream, connection, closed, is_closed: false }
    }

    /// Checks the close signal. While it has not fired, this registers the task's waker, so a
    /// connection that sits idle in a read wakes up when it is closed.
    fn poll_is_closed(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.is_closed && self.closed.as_mut().poll(cx).is_ready() {
            self.is_closed = true;
        }
        self.is_closed
    }
}

fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "the mock provider closed the connection")
}

impl AsyncRead for ConnectionIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_is_closed(cx) {
            return Poll::Ready(Err(closed_error()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnectionIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_is_closed(cx) {
            return Poll::Ready(Err(closed_error()));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_is_closed(cx) {
            return Poll::Ready(Err(closed_error()));
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_is_closed(cx) {
            return Poll::Ready(Err(closed_error()));
        }
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Shutting down is what a closed connection wants anyway, so it goes through.
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

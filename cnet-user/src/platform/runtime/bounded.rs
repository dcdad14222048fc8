//! Connections to an Engine API (Docker, Podman) that bound what the runtime
//! sends. bollard speaks the protocol and reads whole answers into memory,
//! and the events stream buffers a line until its newline: a runtime that
//! sends an endless body, or an endless line, would make cnet grow without
//! bound. So cnet opens each connection itself (one connection per request,
//! as bollard does: no connection is reused), counts the bytes read on it,
//! and cuts it past a limit; the events stream is read here, line by line,
//! without keeping the lines.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// Largest answer read for one request (list, inspect, error body). The
/// largest real one is the list of every container, about 1.5 KiB per
/// container: 64 MiB is over 40,000 containers, far more than one host runs,
/// while decoding 64 MiB of JSON stays within a few hundred MiB of memory.
pub const MAX_RESPONSE: u64 = 64 << 20;
/// Largest total read for one listing (the list and one inspect per
/// container): what is kept of each container (name, labels, networks) comes
/// from its inspect, so without a total a runtime could make each of many
/// containers' inspects nearly 64 MiB. An inspect is 5–20 KiB: 256 MiB is
/// over 10,000 containers.
pub const MAX_LISTING: u64 = 256 << 20;
/// Longest line of the events stream. An event is under 2 KiB (a container's
/// labels are its largest part); cnet only needs to know that one arrived,
/// so lines are counted, not kept, and a longer one ends the stream.
pub const MAX_EVENT: u64 = 1 << 20;

/// Where an Engine API listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    /// `HOST:PORT` from `tcp://HOST:PORT` or `http://HOST:PORT`.
    Tcp(String),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix://{}", p.display()),
            Address::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

impl Address {
    /// The Host header, and the authority of the URIs bollard builds.
    fn authority(&self) -> &str {
        match self {
            // What the docker CLI sends over a unix socket.
            Address::Unix(_) => "api.moby.localhost",
            Address::Tcp(a) => a,
        }
    }

    /// The `http://AUTHORITY` that bollard builds request URIs on.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.authority())
    }
}

/// Bytes read for one client's requests, shared by its connections: the
/// running total of the current listing, and what was cut, for the error
/// that the caller (who only sees bollard's "error reading a body") reports.
#[derive(Debug, Default)]
pub struct Meter {
    listing: AtomicU64,
    cut: Mutex<Option<String>>,
}

impl Meter {
    /// A listing starts: its total starts again from zero.
    pub fn start_listing(&self) {
        self.listing.store(0, Ordering::Relaxed);
        *self.cut.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// What was cut since the listing started ("a response larger than …").
    pub fn take_cut(&self) -> Option<String> {
        self.cut.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn record_cut(&self, what: String) {
        let mut slot = self.cut.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(what);
    }
}

/// "64 MiB".
pub fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// A connection that fails its reads once the answer passes the limits.
struct Counted {
    inner: Stream,
    read: u64,
    /// None for the events stream, which is bounded per line instead.
    meter: Option<Arc<Meter>>,
    /// The request, for messages: "GET /v1.41/containers/json".
    request: String,
}

impl Counted {
    fn charge(&mut self, n: u64) -> io::Result<()> {
        let Some(meter) = &self.meter else { return Ok(()) };
        self.read += n;
        let listing = meter.listing.fetch_add(n, Ordering::Relaxed) + n;
        let what = if self.read > MAX_RESPONSE {
            format!("a response larger than {} to {}", mib(MAX_RESPONSE), self.request)
        } else if listing > MAX_LISTING {
            format!("more than {} in all for one listing of its containers (at {})", mib(MAX_LISTING), self.request)
        } else {
            return Ok(());
        };
        meter.record_cut(what.clone());
        Err(io::Error::new(io::ErrorKind::InvalidData, what))
    }
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = match &mut this.inner {
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = r {
            this.charge((buf.filled().len() - before) as u64)?;
        }
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.inner {
            Stream::Unix(s) => Pin::new(s).poll_write(cx, data),
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, data),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The request line's target for messages, cut short: a path can hold a
/// container id the runtime chose, of any length.
fn describe(req: &Request<impl Body>) -> String {
    let target = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut short: String = target.chars().take(100).collect();
    if short.len() < target.len() {
        short.push('…');
    }
    format!("{} {short}", req.method())
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

impl From<SendError> for bollard::errors::Error {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Io(e) => e.into(),
            SendError::Http(e) => e.into(),
        }
    }
}

/// Sends one request on a new connection. With a meter, the answer counts
/// against its limits; without (the events stream), the caller bounds it.
pub async fn send<B>(
    addr: &Address,
    meter: Option<Arc<Meter>>,
    req: Request<B>,
) -> Result<Response<Incoming>, SendError>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let inner = match addr {
        Address::Unix(p) => Stream::Unix(UnixStream::connect(p).await?),
        Address::Tcp(a) => Stream::Tcp(TcpStream::connect(a.as_str()).await?),
    };
    let request = describe(&req);
    let io = TokioIo::new(Counted { inner, read: 0, meter, request });
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    // The connection's errors reach the caller through the response body.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // bollard builds absolute URIs; a connection of our own sends the path
    // and the Host header, as HTTP/1.1 clients do.
    let (mut parts, body) = req.into_parts();
    let target = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    parts.uri = target.parse::<Uri>().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let host = addr.authority().parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    parts.headers.insert(hyper::header::HOST, host);
    Ok(sender.send_request(Request::from_parts(parts, body)).await?)
}

/// Why an events stream ended.
#[derive(Debug)]
pub enum EventsEnd {
    /// Closed, broken or refused (daemon restarting…): worth opening again.
    Closed,
    /// A line passed [`MAX_EVENT`]: the runtime is not sending events.
    LineTooLong,
}

/// An open events stream: yields once per event line, keeping none.
pub struct Events {
    body: Incoming,
    lines: Lines,
}

/// Line counting over the stream's chunks.
#[derive(Debug, Default)]
struct Lines {
    /// Bytes of the current line so far.
    open: u64,
    /// Whole non-empty lines read but not yet reported.
    pending: usize,
}

impl Lines {
    /// Counts the lines that `data` ends, and the length of the open one.
    fn scan(&mut self, data: &[u8]) -> Result<(), EventsEnd> {
        let mut rest = data;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            let len = self.open + i as u64;
            if len > MAX_EVENT {
                return Err(EventsEnd::LineTooLong);
            }
            if len > 0 {
                self.pending += 1;
            }
            self.open = 0;
            rest = &rest[i + 1..];
        }
        self.open += rest.len() as u64;
        if self.open > MAX_EVENT {
            return Err(EventsEnd::LineTooLong);
        }
        Ok(())
    }
}

impl Events {
    /// Sends `GET path_and_query` and checks that the stream is there.
    pub async fn open(addr: &Address, path_and_query: &str) -> Result<Events, EventsEnd> {
        let req = Request::get(path_and_query)
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .map_err(|_| EventsEnd::Closed)?;
        let resp = send(addr, None, req).await.map_err(|_| EventsEnd::Closed)?;
        if !resp.status().is_success() {
            return Err(EventsEnd::Closed);
        }
        Ok(Events { body: resp.into_body(), lines: Lines::default() })
    }

    /// Waits for the next event.
    pub async fn next(&mut self) -> Result<(), EventsEnd> {
        loop {
            if self.lines.pending > 0 {
                self.lines.pending -= 1;
                return Ok(());
            }
            let frame = match self.body.frame().await {
                Some(Ok(f)) => f,
                Some(Err(_)) | None => return Err(EventsEnd::Closed),
            };
            let Ok(data) = frame.into_data() else { continue };
            self.lines.scan(&data)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted_across_chunks_and_empty_lines_skipped() {
        let mut l = Lines::default();
        l.scan(b"{\"a\":1}\n{\"b\"").unwrap();
        assert_eq!(l.pending, 1);
        l.scan(b":2}\n\n\n").unwrap();
        assert_eq!((l.pending, l.open), (2, 0));
    }

    #[test]
    fn a_line_past_the_limit_ends_the_stream_without_its_newline() {
        let mut l = Lines::default();
        let chunk = vec![b'x'; 64 << 10];
        let mut result = Ok(());
        for _ in 0..=(MAX_EVENT / chunk.len() as u64) {
            result = l.scan(&chunk);
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(result, Err(EventsEnd::LineTooLong)), "{result:?}");
        // Exactly the limit, then a newline, is still an event.
        let mut l = Lines::default();
        l.scan(&vec![b'x'; MAX_EVENT as usize]).unwrap();
        l.scan(b"\n").unwrap();
        assert_eq!(l.pending, 1);
    }

    #[test]
    fn addresses_read_as_urls() {
        assert_eq!(Address::Unix("/run/d.sock".into()).to_string(), "unix:///run/d.sock");
        assert_eq!(Address::Tcp("h:2375".into()).to_string(), "tcp://h:2375");
    }
}

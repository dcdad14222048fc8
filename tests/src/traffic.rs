//! Traffic between lab hosts, made with sockets created inside the hosts'
//! namespaces: deterministic exchanges for the tests and the demo
//! (`udp_burst`, `tcp_exchange`), and timed loads for the benchmark
//! (`LoadServers`, `udp_flood`, `req_resp`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::Lab;

/// Payload of the `seq`-th test datagram: recognisable and unique.
pub fn udp_payload(tag: &str, seq: u32) -> Vec<u8> {
    format!("cnet-test {tag} seq={seq:06}").into_bytes()
}

/// Sends `count` UDP datagrams from host `from` to host `to`:`port` and
/// waits until the receiver has them all. Returns the payloads in order.
pub fn udp_burst(lab: &Lab, from: usize, to: usize, port: u16, tag: &str, count: u32) -> Result<Vec<Vec<u8>>> {
    let to_addr = SocketAddr::new(lab.host(to).ip.into(), port);
    let rx = lab.in_ns(to, move || UdpSocket::bind(to_addr)).context("bind UDP receiver")?;
    rx.set_read_timeout(Some(Duration::from_secs(5)))?;
    let tx = lab.in_ns(from, || UdpSocket::bind("0.0.0.0:0")).context("bind UDP sender")?;
    let payloads: Vec<Vec<u8>> = (0..count).map(|i| udp_payload(tag, i)).collect();
    let mut buf = [0u8; 2048];
    for p in &payloads {
        tx.send_to(p, to_addr)?;
        // One at a time: keeps the order on the wire deterministic.
        let n = rx.recv(&mut buf).context("UDP datagram not received")?;
        anyhow::ensure!(&buf[..n] == p.as_slice(), "received a different datagram");
    }
    Ok(payloads)
}

/// Sends `data` over one TCP connection from `from` to `to`:`port`; the
/// server reads until EOF and answers with `reply`. Returns what the server
/// received and what the client received back.
pub fn tcp_exchange(
    lab: &Lab,
    from: usize,
    to: usize,
    port: u16,
    data: Vec<u8>,
    reply: Vec<u8>,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let to_addr = SocketAddr::new(lab.host(to).ip.into(), port);
    let listener = lab.in_ns(to, move || TcpListener::bind(to_addr)).context("bind TCP server")?;
    let server = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut got = Vec::new();
        s.read_to_end(&mut got)?;
        s.write_all(&reply)?;
        Ok(got)
    });
    let mut client =
        lab.in_ns(from, move || TcpStream::connect_timeout(&to_addr, Duration::from_secs(5))).context("TCP connect")?;
    client.set_read_timeout(Some(Duration::from_secs(20)))?;
    client.write_all(&data)?;
    client.shutdown(std::net::Shutdown::Write)?;
    let mut back = Vec::new();
    client.read_to_end(&mut back)?;
    let got = server.join().map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    Ok((got, back))
}

/// Deterministic pseudo-random bytes (xorshift), so payload checks need no
/// extra crate.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Port of the iperf3 server that `LoadServers` runs.
pub const IPERF_PORT: u16 = 5201;
/// Port of the UDP sink that `LoadServers` runs (`udp_flood`'s target).
pub const SINK_PORT: u16 = 9;
/// Port of the TCP echo server that `LoadServers` runs (`req_resp`'s target).
pub const ECHO_PORT: u16 = 7;

/// The servers the timed loads talk to, in one lab host, until dropped: an
/// iperf3 server, a UDP sink and a TCP echo server.
pub struct LoadServers {
    iperf: Child,
    _sink: UdpSocket,
    stop: Arc<AtomicBool>,
    echo: Option<JoinHandle<()>>,
}

impl LoadServers {
    /// Starts the servers in host `host` and waits until they listen.
    pub fn start(lab: &Lab, host: usize) -> Result<LoadServers> {
        let iperf = Command::new("ip")
            .args(["netns", "exec", &lab.host(host).netns, "iperf3", "-s", "-p", &IPERF_PORT.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting iperf3 (install it with `cargo xtask setup --test-deps`)")?;
        let stop = Arc::new(AtomicBool::new(false));
        let addr = SocketAddr::new(lab.host(host).ip.into(), SINK_PORT);
        // A bound UDP socket that is never read: datagrams cross both hooks
        // and are dropped at the socket, the cheapest possible receiver.
        let sink = lab.in_ns(host, move || UdpSocket::bind(addr)).context("bind UDP sink")?;
        let echo_addr = SocketAddr::new(lab.host(host).ip.into(), ECHO_PORT);
        let listener = lab.in_ns(host, move || TcpListener::bind(echo_addr)).context("bind TCP echo server")?;
        listener.set_nonblocking(true)?;
        let st = stop.clone();
        let echo = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_nodelay(true);
                        std::thread::spawn(move || {
                            let mut buf = [0u8; 64];
                            while let Ok(n) = s.read(&mut buf) {
                                if n == 0 || s.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        // iperf3 listens a moment after it starts.
        std::thread::sleep(Duration::from_millis(300));
        Ok(LoadServers { iperf, _sink: sink, stop, echo: Some(echo) })
    }
}

impl Drop for LoadServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.iperf.kill();
        let _ = self.iperf.wait();
        // The accept loop notices `stop` within 10 ms and closes the listener.
        if let Some(echo) = self.echo.take() {
            let _ = echo.join();
        }
    }
}

/// Floods `LoadServers`' UDP sink in host `to` from host `from` for `secs`
/// seconds: 64-byte frames (22 bytes of UDP payload) from two sender threads
/// with sendmmsg. Returns the datagrams sent.
pub fn udp_flood(lab: &Lab, from: usize, to: usize, secs: u64) -> Result<u64> {
    let dst = SocketAddr::new(lab.host(to).ip.into(), SINK_PORT);
    let sent = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut threads = Vec::new();
    for _ in 0..2 {
        let sock = lab.in_ns(from, move || -> std::io::Result<UdpSocket> {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.connect(dst)?;
            Ok(s)
        })?;
        let sent = sent.clone();
        threads.push(std::thread::spawn(move || {
            const BATCH: usize = 64;
            let payload = [0x42u8; 22];
            let mut iov: Vec<libc::iovec> = (0..BATCH)
                .map(|_| libc::iovec { iov_base: payload.as_ptr() as *mut _, iov_len: payload.len() })
                .collect();
            let mut msgs: Vec<libc::mmsghdr> = iov
                .iter_mut()
                .map(|v| {
                    // SAFETY: zeroed mmsghdr is a valid empty header.
                    let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    m.msg_hdr.msg_iov = v;
                    m.msg_hdr.msg_iovlen = 1;
                    m
                })
                .collect();
            let mut n = 0u64;
            while Instant::now() < deadline {
                // SAFETY: msgs points at BATCH valid headers whose iovecs
                // point at `payload`, alive for the whole loop.
                let r = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
                if r > 0 {
                    n += r as u64;
                }
            }
            sent.fetch_add(n, Ordering::Relaxed);
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(sent.load(Ordering::Relaxed))
}

/// 64-byte ping-pong with `LoadServers`' echo server in host `to` from host
/// `from` for `secs` seconds, on 4 connections. Returns the transactions
/// completed.
pub fn req_resp(lab: &Lab, from: usize, to: usize, secs: u64) -> Result<u64> {
    let dst = SocketAddr::new(lab.host(to).ip.into(), ECHO_PORT);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut threads = Vec::new();
    for _ in 0..4 {
        let mut s = lab.in_ns(from, move || TcpStream::connect(dst))?;
        s.set_nodelay(true)?;
        let done = done.clone();
        threads.push(std::thread::spawn(move || {
            let msg = [7u8; 64];
            let mut buf = [0u8; 64];
            let mut n = 0u64;
            while Instant::now() < deadline {
                if s.write_all(&msg).is_err() || s.read_exact(&mut buf).is_err() {
                    break;
                }
                n += 1;
            }
            done.fetch_add(n, Ordering::Relaxed);
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(done.load(Ordering::Relaxed))
}

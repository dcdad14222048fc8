//! Deterministic traffic between lab hosts, made with sockets created inside
//! the hosts' namespaces.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

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

//! A small synchronous rtnetlink client: the link and address dumps that
//! target resolution needs, the tc filter dump/delete that the clsact
//! path needs to clean up after a killed cnet, and the link notifications
//! that tell a capture its interfaces went away.
//!
//! A socket belongs to the network namespace of the thread that opened it,
//! which is how [`crate::platform::netns::run_in`] reads another namespace's links.

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    RouteNetlinkMessage,
    address::{AddressAttribute, AddressMessage},
    link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage},
    tc::{TcAttribute, TcFilterBpfOption, TcHandle, TcMessage, TcOption},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// One network interface as rtnetlink reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `veth`, `bridge`, … (None for physical devices and loopback).
    pub kind: Option<String>,
    /// IFLA_LINK: for a veth, the ifindex of its peer (in the peer's netns).
    pub peer_index: Option<u32>,
    /// IFLA_LINK_NETNSID: set when the peer lives in another namespace.
    pub peer_netnsid: Option<i32>,
    /// ARPHRD_* link-layer type (1 = Ethernet, 772 = loopback, 65534 = none).
    pub link_type: u16,
    pub mac: Option<Vec<u8>>,
    pub up: bool,
}

/// An address on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// A cls_bpf filter found on a clsact hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BpfFilter {
    pub handle: u32,
    /// `tcm_info`: priority in the upper 16 bits, protocol in the lower.
    pub info: u32,
    pub name: String,
}

pub struct Netlink {
    socket: Socket,
    seq: u32,
}

/// `TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)` and the egress twin.
pub const CLSACT_INGRESS: u32 = 0xFFFF_FFF2;
pub const CLSACT_EGRESS: u32 = 0xFFFF_FFF3;

impl Netlink {
    /// Opens a route netlink socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink { socket, seq: 0 })
    }

    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        req.finalize();
        let mut buf = vec![0u8; req.buffer_len()];
        req.serialize(&mut buf);
        self.socket.send(&buf, 0)?;

        let mut out = Vec::new();
        let mut rbuf = vec![0u8; 1 << 16];
        loop {
            let n = self.socket.recv(&mut &mut rbuf[..], 0)?;
            let mut offset = 0;
            while offset < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rbuf[offset..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += len;
                if msg.header.sequence_number != self.seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out), // ACK
                            Some(_) => Err(e.to_io()),
                        };
                    }
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if flags & NLM_F_DUMP != NLM_F_DUMP && flags & NLM_F_ACK == 0 {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let msgs = self.request(RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_REQUEST | NLM_F_DUMP)?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_from(l)),
                _ => None,
            })
            .collect())
    }

    pub fn addresses(&mut self) -> io::Result<Vec<Addr>> {
        let msgs =
            self.request(RouteNetlinkMessage::GetAddress(AddressMessage::default()), NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewAddress(a) = m else { continue };
            let addr = a.attributes.iter().find_map(|attr| match attr {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(addr) = addr {
                out.push(Addr { index: a.header.index, addr, prefix_len: a.header.prefix_len });
            }
        }
        Ok(out)
    }

    /// The cls_bpf filters on one clsact hook (`parent` is [`CLSACT_INGRESS`]
    /// or [`CLSACT_EGRESS`]). An interface without clsact has none.
    pub fn bpf_filters(&mut self, ifindex: u32, parent: u32) -> io::Result<Vec<BpfFilter>> {
        let mut msg = TcMessage::with_index(ifindex as i32);
        msg.header.parent = TcHandle::from(parent);
        let msgs = match self.request(RouteNetlinkMessage::GetTrafficFilter(msg), NLM_F_REQUEST | NLM_F_DUMP) {
            Ok(m) => m,
            // No clsact qdisc: nothing attached there.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewTrafficFilter(f) = m else { continue };
            let mut kind_bpf = false;
            let mut name = None;
            for attr in &f.attributes {
                match attr {
                    TcAttribute::Kind(k) => kind_bpf = k == "bpf",
                    TcAttribute::Options(opts) => {
                        for o in opts {
                            if let TcOption::Bpf(TcFilterBpfOption::ProgName(n)) = o {
                                name = Some(n.clone());
                            }
                        }
                    }
                    _ => {}
                }
            }
            let handle: u32 = f.header.handle.into();
            // The dump also returns one entry per priority with handle 0 (the
            // filter chain head); only real filters have a handle.
            if kind_bpf && handle != 0 {
                out.push(BpfFilter { handle, info: f.header.info, name: name.unwrap_or_default() });
            }
        }
        Ok(out)
    }

    pub fn delete_filter(&mut self, ifindex: u32, parent: u32, filter: &BpfFilter) -> io::Result<()> {
        let mut msg = TcMessage::with_index(ifindex as i32);
        msg.header.parent = TcHandle::from(parent);
        msg.header.handle = TcHandle::from(filter.handle);
        msg.header.info = filter.info;
        msg.attributes.push(TcAttribute::Kind("bpf".into()));
        self.request(RouteNetlinkMessage::DelTrafficFilter(msg), NLM_F_REQUEST | NLM_F_ACK)?;
        Ok(())
    }

    /// Removes the clsact qdisc of an interface (and with it every filter on it).
    pub fn delete_clsact(&mut self, ifindex: u32) -> io::Result<()> {
        let mut msg = TcMessage::with_index(ifindex as i32);
        msg.header.parent = TcHandle::from(0xFFFF_FFF1u32); // TC_H_CLSACT
        msg.header.handle = TcHandle::from(0xFFFF_0000u32);
        msg.attributes.push(TcAttribute::Kind("clsact".into()));
        self.request(RouteNetlinkMessage::DelQueueDiscipline(msg), NLM_F_REQUEST | NLM_F_ACK)?;
        Ok(())
    }

    /// Whether the interface has a clsact qdisc.
    pub fn has_clsact(&mut self, ifindex: u32) -> io::Result<bool> {
        let msgs =
            self.request(RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()), NLM_F_REQUEST | NLM_F_DUMP)?;
        Ok(msgs.iter().any(|m| match m {
            RouteNetlinkMessage::NewQueueDiscipline(q) => {
                q.header.index == ifindex as i32
                    && q.attributes.iter().any(|a| matches!(a, TcAttribute::Kind(k) if k == "clsact"))
            }
            _ => false,
        }))
    }
}

/// A socket subscribed to the link notifications (RTNLGRP_LINK) of the
/// calling thread's network namespace, read without blocking. The kernel
/// sends RTM_DELLINK when an interface is deleted, moved to another
/// namespace, or destroyed with its namespace.
pub struct LinkEvents {
    socket: Socket,
}

/// What [`LinkEvents::read`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LinkNews {
    /// Interfaces deleted (or moved out of the namespace), by ifindex.
    pub removed: Vec<u32>,
    /// Notifications were lost (the socket's buffer overflowed): the caller
    /// must look at its interfaces itself.
    pub lost: bool,
}

impl LinkEvents {
    pub fn open() -> io::Result<LinkEvents> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.add_membership(libc::RTNLGRP_LINK)?;
        socket.set_non_blocking(true)?;
        Ok(LinkEvents { socket })
    }

    /// Reads every notification pending, until the socket would block.
    pub fn read(&mut self) -> io::Result<LinkNews> {
        let mut news = LinkNews::default();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match self.socket.recv(&mut &mut buf[..], 0) {
                Ok(n) => n.min(buf.len()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(news),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    news.lost = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut offset = 0;
            while offset < n {
                let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[offset..n]) else {
                    // A message this crate cannot parse may still have been
                    // a deletion: have the caller look for itself.
                    news.lost = true;
                    break;
                };
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += len;
                if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) = msg.payload {
                    news.removed.push(l.header.index);
                }
            }
        }
    }
}

impl std::os::fd::AsRawFd for LinkEvents {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

/// Whether an interface with this index exists in the calling thread's
/// network namespace. Only the kernel's "no such device" counts as gone: a
/// lookup that failed for another reason (out of descriptors) proves nothing.
pub fn link_exists(ifindex: u32) -> bool {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has the IF_NAMESIZE bytes if_indextoname writes at most.
    if !unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null() {
        return true;
    }
    !matches!(io::Error::last_os_error().raw_os_error(), Some(libc::ENXIO | libc::ENODEV))
}

fn link_from(l: LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        kind: None,
        peer_index: None,
        peer_netnsid: None,
        link_type: u16::from(l.header.link_layer_type),
        mac: None,
        up: l.header.flags.contains(netlink_packet_route::link::LinkFlags::Up),
    };
    for attr in l.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Link(i) => link.peer_index = Some(i),
            LinkAttribute::LinkNetNsId(i) => link.peer_netnsid = Some(i),
            LinkAttribute::Address(a) => link.mac = Some(a),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        link.kind = Some(kind_name(&k));
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn kind_name(k: &InfoKind) -> String {
    match k {
        InfoKind::Veth => "veth".into(),
        InfoKind::Bridge => "bridge".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

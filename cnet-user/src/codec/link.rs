//! Link layers: what the bytes of a captured packet start with, the pcapng
//! link type cnet writes for an interface, and the link types it reads.
//! The one place that maps ARPHRD_* and LINKTYPE_* values.

use pcap_file::DataLink;

/// ARPHRD_NONE: interfaces without a link layer (tun, wireguard).
const ARPHRD_NONE: u16 = 65534;

/// Link layer of a packet's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Ethernet,
    /// Bare IPv4/IPv6 (LINKTYPE_RAW).
    Raw,
    /// Linux cooked capture v1 (`tcpdump -i any`): a 16-byte header
    /// ending in the EtherType.
    LinuxSll,
}

impl Link {
    /// What tc hands cnet's programs on an interface of ARPHRD type
    /// `arphrd`: the bare IP packet where there is no link layer; an
    /// Ethernet header on Ethernet, loopback (a zeroed one) and anything
    /// else Ethernet-like.
    pub fn of_interface(arphrd: u16) -> Link {
        if arphrd == ARPHRD_NONE { Link::Raw } else { Link::Ethernet }
    }

    /// The link of a pcap/pcapng LINKTYPE_* value, if cnet can decode it.
    pub fn from_linktype(linktype: u32) -> Option<Link> {
        match linktype {
            1 => Some(Link::Ethernet),
            // LINKTYPE_RAW, and DLT_RAW's value on some BSDs; IPv4; IPv6.
            101 | 12 | 14 | 228 | 229 => Some(Link::Raw),
            113 => Some(Link::LinuxSll),
            _ => None,
        }
    }

    /// The pcapng link type that describes these bytes.
    pub fn datalink(self) -> DataLink {
        match self {
            Link::Ethernet => DataLink::ETHERNET,
            Link::Raw => DataLink::RAW,
            Link::LinuxSll => DataLink::LINUX_SLL,
        }
    }

    /// The EtherType's offset and the network header's offset in a frame
    /// of this link (before any VLAN tags); None for a bare IP packet.
    pub fn ethertype_offset(self) -> Option<usize> {
        match self {
            Link::Ethernet => Some(12),
            Link::LinuxSll => Some(14),
            Link::Raw => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_link_types_read_back_as_the_same_link() {
        for link in [Link::Ethernet, Link::Raw, Link::LinuxSll] {
            assert_eq!(Link::from_linktype(u32::from(link.datalink())), Some(link));
        }
        assert_eq!(Link::of_interface(1), Link::Ethernet);
        assert_eq!(Link::of_interface(772), Link::Ethernet); // loopback
        assert_eq!(Link::of_interface(ARPHRD_NONE), Link::Raw);
    }
}

//! A small synchronous rtnetlink client: the few link, address and route
//! requests the bridge network needs, each sent on a `NETLINK_ROUTE`
//! socket and answered by the kernel's acknowledgement (or its errno).
//!
//! A socket belongs to the network namespace it was opened in:
//! [`Rtnl::open_in`] opens one in a container's namespace by switching
//! the calling thread there for the `socket(2)` call only.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::sched::{setns, CloneFlags};

/// A `NETLINK_ROUTE` socket of one network namespace.
pub(crate) struct Rtnl {
    socket: Socket,
    seq: u32,
}

impl Rtnl {
    /// A socket in the calling thread's network namespace.
    pub(crate) fn open() -> io::Result<Rtnl> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl { socket, seq: 0 })
    }

    /// A socket in the network namespace `netns` (an nsfs file), opened
    /// by the calling thread from inside it; the thread is back in its
    /// own namespace on return.
    pub(crate) fn open_in(netns: &Path) -> io::Result<Rtnl> {
        let own = File::open("/proc/thread-self/ns/net")?;
        let target = File::open(netns)?;
        setns(&target, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        let opened = Rtnl::open();
        setns(&own, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        opened
    }

    /// Sends `msg` and returns the replies up to the acknowledgement; a
    /// negative acknowledgement is its errno.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let mut replies = Vec::new();
        let mut rx = vec![0u8; 32 * 1024];
        loop {
            let n = self.socket.recv(&mut &mut rx[..], 0)?;
            let mut off = 0;
            while off < n {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[off..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = m.header.length as usize;
                if m.header.sequence_number == self.seq {
                    match m.payload {
                        NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                        NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => return Ok(replies),
                        NetlinkPayload::InnerMessage(r) => replies.push(r),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                off += len;
            }
        }
    }

    /// The index of link `name`, if there is one.
    pub(crate) fn link_index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates bridge `name` with hardware address `mac` (kept, not taken
    /// from its ports as they come and go); `false` if a link of that name
    /// exists.
    pub(crate) fn add_bridge(&mut self, name: &str, mac: [u8; 6]) -> io::Result<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        match self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates the veth pair `name` (here, a port of bridge `master`) and
    /// `peer` (made directly in the network namespace `peer_netns`, with
    /// hardware address `peer_mac`).
    pub(crate) fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_netns: BorrowedFd<'_>,
        master: u32,
        peer_mac: [u8; 6],
    ) -> io::Result<()> {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes.push(LinkAttribute::IfName(peer.into()));
        peer_msg
            .attributes
            .push(LinkAttribute::Address(peer_mac.to_vec()));
        peer_msg
            .attributes
            .push(LinkAttribute::NetNsFd(peer_netns.as_raw_fd()));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        msg.attributes.push(LinkAttribute::Controller(master));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    /// Sets link `index` up.
    pub(crate) fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// Deletes link `name`; `false` if there was none.
    pub(crate) fn delete_link(&mut self, name: &str) -> io::Result<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        match self.request(RouteNetlinkMessage::DelLink(msg), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds `addr/prefix` to link `index`; an address it already has is
    /// not an error.
    pub(crate) fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes
            .push(AddressAttribute::Local(IpAddr::V4(addr)));
        msg.attributes
            .push(AddressAttribute::Address(IpAddr::V4(addr)));
        let broadcast = u32::from(addr) | (u32::MAX >> prefix);
        if prefix < 31 {
            msg.attributes
                .push(AddressAttribute::Broadcast(Ipv4Addr::from(broadcast)));
        }
        match self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The default route via `gateway`.
    pub(crate) fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 0;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` in a new network namespace of its own thread.
    fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return None;
        }
        Some(
            std::thread::spawn(move || {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET).unwrap();
                f()
            })
            .join()
            .unwrap(),
        )
    }

    /// The hardware address of link `name`.
    fn hw_address(nl: &mut Rtnl, name: &str) -> Vec<u8> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        nl.request(RouteNetlinkMessage::GetLink(msg), 0)
            .unwrap()
            .into_iter()
            .find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => l.attributes.into_iter().find_map(|a| match a {
                    LinkAttribute::Address(m) => Some(m),
                    _ => None,
                }),
                _ => None,
            })
            .unwrap()
    }

    const MAC: [u8; 6] = [0x02, 0x70, 10, 9, 0, 1];
    const PEER_MAC: [u8; 6] = [0x02, 0x70, 10, 9, 0, 2];

    #[test]
    fn links_addresses_and_routes_in_a_scratch_namespace() {
        let Some(()) = in_new_netns(|| {
            let mut nl = Rtnl::open().unwrap();
            assert_eq!(nl.link_index("br-test").unwrap(), None);
            assert!(nl.add_bridge("br-test", MAC).unwrap());
            assert!(!nl.add_bridge("br-test", MAC).unwrap());
            let br = nl.link_index("br-test").unwrap().unwrap();
            nl.add_address(br, Ipv4Addr::new(10, 9, 0, 1), 24).unwrap();
            nl.add_address(br, Ipv4Addr::new(10, 9, 0, 1), 24).unwrap();
            nl.set_up(br).unwrap();
            // A veth whose peer goes into this same namespace.
            let own = File::open("/proc/thread-self/ns/net").unwrap();
            use std::os::fd::AsFd;
            nl.add_veth("vt-host", "vt-peer", own.as_fd(), br, PEER_MAC)
                .unwrap();
            let err = nl.add_veth("vt-host", "vt-peer2", own.as_fd(), br, PEER_MAC);
            assert_eq!(err.unwrap_err().raw_os_error(), Some(libc::EEXIST));
            let peer = nl.link_index("vt-peer").unwrap().unwrap();
            // The hardware addresses asked for, as the kernel reports them.
            assert_eq!(hw_address(&mut nl, "br-test"), MAC.to_vec());
            assert_eq!(hw_address(&mut nl, "vt-peer"), PEER_MAC.to_vec());
            nl.add_address(peer, Ipv4Addr::new(10, 9, 0, 2), 24)
                .unwrap();
            nl.set_up(peer).unwrap();
            nl.add_default_route(Ipv4Addr::new(10, 9, 0, 1)).unwrap();
            // The kernel's own table (of this thread's namespace): destination
            // 0, gateway 10.9.0.1 (little-endian hex).
            let routes = std::fs::read_to_string("/proc/thread-self/net/route").unwrap();
            assert!(
                routes
                    .lines()
                    .any(|l| l.split_whitespace().nth(1) == Some("00000000")
                        && l.split_whitespace().nth(2) == Some("0100090A")),
                "{routes}"
            );
            let e = nl
                .add_default_route(Ipv4Addr::new(10, 9, 0, 1))
                .unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
            assert!(nl.delete_link("vt-peer").unwrap());
            // Deleting one end deletes the pair.
            assert_eq!(nl.link_index("vt-host").unwrap(), None);
            assert!(!nl.delete_link("vt-host").unwrap());
        }) else {
            return;
        };
    }
}

//! `--network bridge`: the container's network namespace gets `eth0`, one
//! end of a veth pair whose other end is a port of the host's plinth
//! bridge (`plinth0` by default, made on first use with the gateway
//! address of the subnet, and left in place afterwards), an address
//! leased from the subnet (`ipam.rs`) and a default route via the
//! gateway. Everything is done over rtnetlink (`netlink.rs`).
//!
//! The container's `eth0` and the bridge get hardware addresses made from
//! their IPv4 addresses, so that an address given again (a restart, a
//! freed lease) comes with the same one and no neighbour's ARP cache
//! points at a veth that is gone.
//!
//! The host end is named from the container's directory (`pl` and 12 hex
//! digits of a hash of it), so a stop or an `rm` finds it without a
//! record, and deletes it (deleting one end of a pair deletes both)
//! rather than leave it to the namespace's asynchronous teardown.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::Path;

use crate::ipam::Subnet;
use crate::netlink::Rtnl;
use crate::{io, FleetError};

/// The bridge of `--network bridge` when `PLINTH_BRIDGE` does not name
/// another.
pub const DEFAULT_BRIDGE: &str = "plinth0";
/// Its subnet when `PLINTH_BRIDGE_SUBNET` does not give another (podman
/// uses 10.88.0.0/16).
pub const DEFAULT_SUBNET: &str = "10.77.0.0/16";

/// The interface name of the container's end.
const CONTAINER_IF: &str = "eth0";

/// Which bridge, and which subnet its containers get addresses from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeConfig {
    name: String,
    subnet: Subnet,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            name: DEFAULT_BRIDGE.into(),
            subnet: Subnet::parse(DEFAULT_SUBNET).expect("the default subnet parses"),
        }
    }
}

impl BridgeConfig {
    /// Bridge `name` (an interface name: 1 to 15 characters, no `/`, `:`
    /// or white space) with `subnet`.
    pub fn new(name: &str, subnet: Subnet) -> Result<BridgeConfig, FleetError> {
        let ok = !name.is_empty()
            && name.len() <= 15
            && name != "."
            && name != ".."
            && !name
                .bytes()
                .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || !b.is_ascii());
        if !ok {
            return Err(FleetError::Invalid(format!(
                "bridge {name:?}: an interface name is 1 to 15 characters without `/`, `:` or spaces"
            )));
        }
        Ok(BridgeConfig {
            name: name.into(),
            subnet,
        })
    }

    /// The bridge's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The subnet.
    pub fn subnet(&self) -> &Subnet {
        &self.subnet
    }
}

/// The host end of the veth pair of the container in `dir`.
pub(crate) fn veth_name(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    // FNV-1a, 64 bits, then the splitmix64 finalizer so that every input
    // bit reaches the 48 kept: stable across builds and releases.
    let mut h = dir
        .as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
        });
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    format!("pl{:012x}", h >> 16)
}

/// The hardware address that goes with IPv4 address `ip`: locally
/// administered, `02:70` and the four bytes of the address. An address
/// given again (a restart, a freed lease) comes back with the same one,
/// so the neighbours' ARP caches stay right; the bridge's is its gateway's.
fn hw_address(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x70, a, b, c, d]
}

fn nl_err(what: String) -> impl FnOnce(std::io::Error) -> FleetError {
    io(what)
}

/// The bridge, made and given the gateway address if missing, and up;
/// returns its index.
fn ensure_bridge(nl: &mut Rtnl, cfg: &BridgeConfig) -> Result<u32, FleetError> {
    let name = &cfg.name;
    let index = match nl
        .link_index(name)
        .map_err(nl_err(format!("bridge {name}: look up")))?
    {
        Some(i) => i,
        None => {
            nl.add_bridge(name, hw_address(cfg.subnet.gateway()))
                .map_err(nl_err(format!("bridge {name}: create")))?;
            nl.link_index(name)
                .map_err(nl_err(format!("bridge {name}: look up")))?
                .ok_or_else(|| FleetError::Runtime(format!("bridge {name}: gone after create")))?
        }
    };
    let gw = cfg.subnet.gateway();
    nl.add_address(index, gw, cfg.subnet.prefix())
        .map_err(nl_err(format!(
            "bridge {name}: add {gw}/{}",
            cfg.subnet.prefix()
        )))?;
    nl.set_up(index)
        .map_err(nl_err(format!("bridge {name}: set up")))?;
    Ok(index)
}

/// Connects the network namespace `netns` of the container in `dir` to the
/// bridge with address `addr`.
pub(crate) fn attach(
    cfg: &BridgeConfig,
    dir: &Path,
    netns: &Path,
    addr: Ipv4Addr,
) -> Result<(), FleetError> {
    let mut nl = Rtnl::open().map_err(nl_err("rtnetlink socket".into()))?;
    let bridge = ensure_bridge(&mut nl, cfg)?;
    let host = veth_name(dir);
    // A pair left by a start that was never undone is this container's.
    let _ = nl.delete_link(&host);
    let ns = std::fs::File::open(netns).map_err(io(netns.display().to_string()))?;
    nl.add_veth(&host, CONTAINER_IF, ns.as_fd(), bridge, hw_address(addr))
        .map_err(nl_err(format!(
            "veth {host} (port of {}) with {CONTAINER_IF} in {}",
            cfg.name,
            netns.display()
        )))?;
    let index = nl
        .link_index(&host)
        .map_err(nl_err(format!("veth {host}: look up")))?
        .ok_or_else(|| FleetError::Runtime(format!("veth {host}: gone after create")))?;
    nl.set_up(index)
        .map_err(nl_err(format!("veth {host}: set up")))?;

    let inside = |what: &str| format!("{} in {}: {what}", CONTAINER_IF, netns.display());
    let mut nl = Rtnl::open_in(netns).map_err(nl_err(inside("rtnetlink socket")))?;
    let eth0 = nl
        .link_index(CONTAINER_IF)
        .map_err(nl_err(inside("look up")))?
        .ok_or_else(|| FleetError::Runtime(inside("missing after create")))?;
    let prefix = cfg.subnet.prefix();
    nl.add_address(eth0, addr, prefix)
        .map_err(nl_err(inside(&format!("add {addr}/{prefix}"))))?;
    nl.set_up(eth0).map_err(nl_err(inside("set up")))?;
    let gw = cfg.subnet.gateway();
    nl.add_default_route(gw)
        .map_err(nl_err(inside(&format!("default route via {gw}"))))
}

/// Deletes the host end of the container in `dir`, and with it the pair.
pub(crate) fn detach(dir: &Path) {
    if let Ok(mut nl) = Rtnl::open() {
        let _ = nl.delete_link(&veth_name(dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let a = veth_name(Path::new("/var/lib/plinth/containers/web-1"));
        let b = veth_name(Path::new("/var/lib/plinth/containers/web-2"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("pl"));
        assert_eq!(a, veth_name(Path::new("/var/lib/plinth/containers/web-1")));
        let s = Subnet::parse("10.9.0.0/24").unwrap();
        assert!(BridgeConfig::new("plinth0", s).is_ok());
        for bad in ["", "a/b", "sixteen-chars-xx", "a b", "a:b", ".."] {
            let e = BridgeConfig::new(bad, s).unwrap_err().to_string();
            assert!(e.contains("an interface name is"), "{bad}: {e}");
        }
        assert_eq!(BridgeConfig::default().name(), "plinth0");
        assert_eq!(BridgeConfig::default().subnet().to_string(), "10.77.0.0/16");
        assert_eq!(
            hw_address(Ipv4Addr::new(10, 77, 1, 2)),
            [0x02, 0x70, 10, 77, 1, 2]
        );
    }
}

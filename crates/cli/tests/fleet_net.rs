//! `--network bridge` from the command line: containers on a plinth bridge answer the
//! host and each other at the addresses `plinth ls` reports; a stop removes the veth
//! pair, `rm` frees the lease, the bridge stays; concurrent starts from separate
//! processes never share an address. Each test uses a bridge and subnet of its own
//! (`PLINTH_BRIDGE`, `PLINTH_BRIDGE_SUBNET`), checked through /sys/class/net and
//! /proc/PID/net, and deleted at the end.

mod common;

use std::collections::HashSet;
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::fleet::{entry, http_get, ls, FleetGuard};
use common::{require, require_root, TestCommand, TestDir};

/// `plinth` on the test's fleet with bridge `bridge` on `subnet`.
fn plinth(td: &TestDir, bridge: &str, subnet: &str) -> TestCommand {
    let mut cmd = common::fleet::plinth(td);
    cmd.env("PLINTH_BRIDGE", bridge)
        .env("PLINTH_BRIDGE_SUBNET", subnet);
    cmd
}

/// Deletes the test's bridge at the end (plinth itself leaves it in place).
struct BridgeGuard(&'static str);

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        if Path::new(&format!("/sys/class/net/{}", self.0)).exists() {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", self.0])
                .status();
        }
    }
}

/// The ports of `bridge`, from sysfs.
fn ports(bridge: &str) -> HashSet<String> {
    fs::read_dir(format!("/sys/class/net/{bridge}/brif"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A busybox httpd on 0.0.0.0:8080 serving the container's hostname, after `before` (a
/// shell command list ending in `;` or `&`).
fn server(before: &str) -> Vec<String> {
    vec![
        "/bin/busybox".into(),
        "sh".into(),
        "-c".into(),
        format!(
            "mkdir -p /tmp/www; /bin/busybox hostname > /tmp/www/index.html; {before} \
             exec /bin/busybox httpd -f -p 0.0.0.0:8080 -h /tmp/www"
        ),
    ]
}

fn address(td: &TestDir, name: &str) -> Ipv4Addr {
    entry(td, name)["address"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} has no address"))
        .parse()
        .unwrap()
}

/// The default route of `pid`'s network namespace: (interface, gateway).
fn default_route(pid: i64) -> Option<(String, Ipv4Addr)> {
    let table = fs::read_to_string(format!("/proc/{pid}/net/route")).unwrap();
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f[1] == "00000000").then(|| {
            let gw = u32::from_str_radix(f[2], 16).unwrap();
            (f[0].to_string(), Ipv4Addr::from(gw.swap_bytes()))
        })
    })
}

fn in_subnet(a: Ipv4Addr, net: [u8; 3]) -> bool {
    a.octets()[..3] == net && a.octets()[3] > 1 && a.octets()[3] < 255
}

#[test]
fn bridge_containers_answer_the_host_and_each_other() {
    const BRIDGE: &str = "pltest-net";
    const SUBNET: &str = "10.78.1.0/24";
    if !require_root() || !require(common::host_busybox_is_static(), "a static /bin/busybox") {
        return;
    }
    let td = TestDir::new("fleet-net");
    let _b = BridgeGuard(BRIDGE);
    let _g = FleetGuard(
        &td,
        vec![
            ("PLINTH_BRIDGE", BRIDGE.into()),
            ("PLINTH_BRIDGE_SUBNET", SUBNET.into()),
        ],
    );
    let p = || plinth(&td, BRIDGE, SUBNET);
    p().args(["new", "net-a", "--network", "bridge", "--"])
        .args(server(""))
        .assert_success();
    p().args(["start", "net-a"]).assert_success();
    let a = address(&td, "net-a");
    assert!(in_subnet(a, [10, 78, 1]), "{a}");
    assert!(Path::new("/sys/class/net").join(BRIDGE).is_dir());
    // The second fetches from the first, and runs with the host's user ids: bridge
    // networking does not depend on the user namespace.
    let fetch = format!(
        "(until /bin/busybox wget -q -O /tmp/www/peer.part http://{a}:8080/; do sleep 0.1; done; \
         mv /tmp/www/peer.part /tmp/www/peer) &"
    );
    p().args([
        "new",
        "net-b",
        "--network",
        "bridge",
        "--userns",
        "host",
        "--",
    ])
    .args(server(&fetch))
    .assert_success();
    p().args(["start", "net-b"]).assert_success();
    let b = address(&td, "net-b");
    assert!(in_subnet(b, [10, 78, 1]) && b != a, "{a} {b}");

    // From the host, each answers with its own name at its own address.
    assert_eq!(http_get(&format!("{a}:8080"), "/").1, "net-a");
    assert_eq!(http_get(&format!("{b}:8080"), "/").1, "net-b");
    // net-b reached net-a over the bridge.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http_get(&format!("{b}:8080"), "/peer");
        if status.contains("200") {
            assert_eq!(body, "net-a");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "net-b never fetched from net-a: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Inside: eth0 with the default route via the gateway, the bridge's address.
    let pid_a = entry(&td, "net-a")["pid"].as_i64().unwrap();
    assert_eq!(
        default_route(pid_a),
        Some(("eth0".to_string(), Ipv4Addr::new(10, 78, 1, 1)))
    );
    // Hardware addresses follow the IPv4 addresses, so that an address given again
    // comes with the same one and the neighbours' ARP caches stay right.
    let mac = |ip: Ipv4Addr| {
        let o = ip.octets();
        format!(
            "02:70:{:02x}:{:02x}:{:02x}:{:02x}\n",
            o[0], o[1], o[2], o[3]
        )
    };
    assert_eq!(
        fs::read_to_string(format!("/proc/{pid_a}/root/sys/class/net/eth0/address")).unwrap(),
        mac(a)
    );
    assert_eq!(
        fs::read_to_string(format!("/sys/class/net/{BRIDGE}/address")).unwrap(),
        mac(Ipv4Addr::new(10, 78, 1, 1))
    );
    let both = ports(BRIDGE);
    assert_eq!(both.len(), 2, "{both:?}");

    // A stop takes the pair away at once; the lease stays for the next start (and the
    // host reaches the new pair at once: its ARP cache still holds the right address).
    p().args(["stop", "--timeout", "2", "net-a"])
        .assert_success();
    let after_stop = ports(BRIDGE);
    assert_eq!(after_stop.len(), 1, "{after_stop:?}");
    let gone: Vec<&String> = both.difference(&after_stop).collect();
    assert!(!Path::new("/sys/class/net").join(gone[0]).exists());
    assert_eq!(entry(&td, "net-a")["address"], a.to_string());
    p().args(["start", "net-a"]).assert_success();
    assert_eq!(address(&td, "net-a"), a);
    assert_eq!(http_get(&format!("{a}:8080"), "/").1, "net-a");

    // rm frees the lease (the next container gets it) and leaves no veth.
    let before_rm = ports(BRIDGE);
    p().args(["rm", "--force", "net-a"]).assert_success();
    let left = ports(BRIDGE);
    assert_eq!(left.len(), 1, "{left:?}");
    for port in before_rm.difference(&left) {
        assert!(
            !Path::new("/sys/class/net").join(port).exists(),
            "{port} left"
        );
    }
    p().args(["new", "net-c", "--network", "bridge", "--"])
        .args(server(""))
        .assert_success();
    p().args(["start", "net-c"]).assert_success();
    assert_eq!(address(&td, "net-c"), a, "the freed address is given again");
    assert_eq!(http_get(&format!("{a}:8080"), "/").1, "net-c");

    // `none` and `host` have no address; the bridge outlives its last container.
    p().args(["new", "net-none", "--", "/bin/busybox", "sleep", "100"])
        .assert_success();
    assert!(entry(&td, "net-none")["address"].is_null());
    for n in ["net-b", "net-c", "net-none"] {
        p().args(["rm", "--force", n]).assert_success();
    }
    assert!(ls(&td).is_empty());
    assert!(ports(BRIDGE).is_empty());
    assert!(Path::new("/sys/class/net").join(BRIDGE).is_dir());
}

#[test]
fn twenty_concurrent_starts_get_twenty_addresses() {
    const BRIDGE: &str = "pltest-many";
    const SUBNET: &str = "10.78.2.0/24";
    if !require_root() || !require(common::host_busybox_is_static(), "a static /bin/busybox") {
        return;
    }
    let td = TestDir::new("fleet-net-many");
    let _b = BridgeGuard(BRIDGE);
    let _g = FleetGuard(
        &td,
        vec![
            ("PLINTH_BRIDGE", BRIDGE.into()),
            ("PLINTH_BRIDGE_SUBNET", SUBNET.into()),
        ],
    );
    let names: Vec<String> = (1..=20).map(|i| format!("many-{i}")).collect();
    for n in &names {
        plinth(&td, BRIDGE, SUBNET)
            .args(["new", n, "--network", "bridge", "--"])
            .args(server(""))
            .assert_success();
    }
    // Twenty `plinth start` processes at once, each with its own database connection.
    let starts: Vec<_> = names
        .iter()
        .map(|n| {
            let mut cmd = std::process::Command::new(common::runtime_bin());
            cmd.arg("--root")
                .arg(td.root())
                .args(["start", n])
                .env("PLINTH_STATE_DIR", td.path().join("state"))
                .env("PLINTH_BRIDGE", BRIDGE)
                .env("PLINTH_BRIDGE_SUBNET", SUBNET)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            (n.clone(), cmd.spawn().unwrap())
        })
        .collect();
    for (n, child) in starts {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let addrs: Vec<(String, Ipv4Addr)> = ls(&td)
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_string();
            assert_eq!(c["state"], "running", "{c}");
            let a: Ipv4Addr = c["address"].as_str().unwrap().parse().unwrap();
            assert!(in_subnet(a, [10, 78, 2]), "{name}: {a}");
            (name, a)
        })
        .collect();
    let distinct: HashSet<Ipv4Addr> = addrs.iter().map(|x| x.1).collect();
    assert_eq!(distinct.len(), 20, "{addrs:?}");
    // Each address is really that container's.
    for (name, a) in &addrs {
        assert_eq!(&http_get(&format!("{a}:8080"), "/").1, name);
    }
    assert_eq!(ports(BRIDGE).len(), 20);
    for n in &names {
        plinth(&td, BRIDGE, SUBNET)
            .args(["rm", "--force", n])
            .assert_success();
    }
    assert!(ports(BRIDGE).is_empty());
}

#[test]
fn a_bad_bridge_setting_is_refused_before_anything_is_made() {
    let td = TestDir::new("fleet-net-bad");
    for (bridge, subnet, msg) in [
        (
            "pltest-bad",
            "10.78.3.1/24",
            "PLINTH_BRIDGE_SUBNET: subnet 10.78.3.1/24: host bits are set (the network is 10.78.3.0/24)",
        ),
        ("pltest-bad", "10.78.3.0/31", "the prefix must be 8 to 30"),
        (
            "a/b",
            "10.78.3.0/24",
            "PLINTH_BRIDGE: bridge \"a/b\": an interface name is",
        ),
    ] {
        let out = plinth(&td, bridge, subnet)
            .args(["new", "x", "--network", "bridge", "--", "/bin/true"])
            .assert_failure();
        assert!(out.stderr.contains(msg), "{out}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
    }
    assert!(
        !td.path().join("state").exists(),
        "a refused command made state"
    );
    let out = plinth(&td, "pltest-bad", "10.78.3.0/24")
        .args(["new", "x", "--network", "nat", "--", "/bin/true"])
        .assert_failure();
    assert!(
        out.stderr
            .contains("--network nat: expected none, host or bridge"),
        "{out}"
    );
}

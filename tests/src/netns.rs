//! Network namespaces for partition tests: each node of a test cluster runs
//! in a namespace of its own, wired to a bridge in the root namespace, so
//! the test can cut the network between two nodes while it still reaches
//! every one of them.
//!
//! Layout of one [`Net`] (names unique per test process and per `Net`):
//! - a bridge `tsb<pid hex>-<n>` in the root namespace with the address
//!   `10.A.B.1/24`, the subnet chosen free on this machine;
//! - per node `i`, a namespace `tessera-<pid>-<n>-<i>` holding `lo` (up)
//!   and `eth0` at `10.A.B.(10 + i)/24`, the peer of a veth
//!   `tsv<pid hex>-<n>-<i>` enslaved to the bridge.
//!
//! The test process (root namespace) talks to every node over the bridge;
//! nodes start through [`Net::launcher`] (`ip netns exec NS`). [`Net::cut`]
//! adds blackhole routes on both sides (`ip -n NSX route add blackhole
//! IPY/32` and the reverse), [`Net::heal`] removes them. Dropping the
//! `Net` (also while a test panics) deletes the namespaces, the veths and
//! the bridge; drop the node processes first (declare the `Net` before
//! the nodes, so it is dropped after them). Leftovers of a test process
//! that was killed are removed by the next one that makes a `Net`.
//!
//! Making namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and
//! `ip` (iproute2). Without them [`Net::create_or_skip`] prints a
//! `skipped:` line and gives `None`, unless `TESSERA_REQUIRE_NETNS=1`,
//! when it fails the test.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

static COUNTER: AtomicU32 = AtomicU32::new(0);
/// One `Net` is made at a time in this process (the subnet check and the
/// leftover sweep are not atomic otherwise).
static SETUP: Mutex<()> = Mutex::new(());

const NS_PREFIX: &str = "tessera-";
/// A node's ports in its namespace.
pub const S3_PORT: u16 = 9000;
pub const ADMIN_PORT: u16 = 9001;
pub const CLUSTER_PORT: u16 = 7000;

pub struct Net {
    bridge: String,
    namespaces: Vec<String>,
    veths: Vec<String>,
    subnet: [u8; 3],
    /// Blackhole routes in place: (from node, to node).
    cuts: Mutex<Vec<(usize, usize)>>,
}

/// Runs `ip ARGS`; its stderr on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {} {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn ip_output(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("run ip: {e}"))?;
    if !out.status.success() {
        return Err(format!("ip {}: {} {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the namespaces and links of test processes that no longer run
/// (killed before their `Net` was dropped).
fn sweep_leftovers() {
    let me = std::process::id();
    if let Ok(list) = ip_output(&["netns", "list"]) {
        for line in list.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(rest) = name.strip_prefix(NS_PREFIX) else { continue };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
            if pid != me && !pid_alive(pid) {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
    if let Ok(links) = ip_output(&["-o", "link", "show"]) {
        for line in links.lines() {
            // "7: tsb1a2b-0: <...>" or "8: tsv1a2b-0-1@if2: <...>"
            let Some(name) = line.split(':').nth(1).map(|n| n.trim().split('@').next().unwrap_or("")) else { continue };
            let Some(rest) = name.strip_prefix("tsb").or_else(|| name.strip_prefix("tsv")) else { continue };
            let Some(pid) = rest.split('-').next().and_then(|p| u32::from_str_radix(p, 16).ok()) else { continue };
            if pid != me && !pid_alive(pid) {
                let _ = ip(&["link", "del", name]);
            }
        }
    }
}

impl Net {
    /// A bridge and `nodes` namespaces wired to it, or why not.
    pub fn create(nodes: usize) -> Result<Net, String> {
        assert!((1..=200).contains(&nodes), "{nodes} nodes");
        let _guard = SETUP.lock().unwrap_or_else(|e| e.into_inner());
        sweep_leftovers();
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Interface names are at most 15 bytes: pid in hex (at most 6
        // digits: pid_max is 2^22), the counter and the node index.
        assert!(n < 256 && nodes <= 99, "too many networks in one test process");
        let bridge = format!("tsb{pid:x}-{n}");
        // A /24 no interface of this machine is in: 10.A.B.0 with A in
        // 128..192, from the pid and the counter, then the next free one.
        let used = ip_output(&["-4", "-o", "addr", "show"])?;
        let routes = ip_output(&["-4", "route", "show"])?;
        let start = (pid.wrapping_mul(16) + n) % (64 * 256);
        let subnet = (0..64 * 256)
            .map(|i| (start + i) % (64 * 256))
            .map(|h| [10u8, 128 + (h / 256) as u8, (h % 256) as u8])
            .find(|s| {
                let prefix = format!("{}.{}.{}.", s[0], s[1], s[2]);
                !used.contains(&format!(" {prefix}")) && !routes.contains(&prefix)
            })
            .ok_or("no free 10.x.y.0/24")?;
        let mut net = Net { bridge: String::new(), namespaces: Vec::new(), veths: Vec::new(), subnet, cuts: Mutex::new(Vec::new()) };
        // Everything made so far is removed by `net`'s drop if a step fails.
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        net.bridge = bridge.clone();
        let host = format!("{}/24", net.host_ip());
        ip(&["addr", "add", &host, "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..nodes {
            let ns = format!("{NS_PREFIX}{pid}-{n}-{i}");
            ip(&["netns", "add", &ns])?;
            net.namespaces.push(ns.clone());
            let veth = format!("tsv{pid:x}-{n}-{i}");
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            net.veths.push(veth.clone());
            ip(&["link", "set", &veth, "master", &bridge])?;
            ip(&["link", "set", &veth, "up"])?;
            let addr = format!("{}/24", net.ip(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// [`Net::create`], or `None` after printing why the test is skipped
    /// (not root, no `ip`...). With `TESSERA_REQUIRE_NETNS=1` a failure
    /// fails the test instead.
    pub fn create_or_skip(nodes: usize) -> Option<Net> {
        match Net::create(nodes) {
            Ok(net) => Some(net),
            Err(e) if std::env::var("TESSERA_REQUIRE_NETNS").is_ok_and(|v| v == "1") => {
                panic!("network namespaces are required (TESSERA_REQUIRE_NETNS=1) but cannot be made: {e}")
            }
            Err(e) => {
                eprintln!("skipped: network namespaces cannot be made here (needs root and iproute2; set TESSERA_REQUIRE_NETNS=1 to fail instead): {e}");
                None
            }
        }
    }

    /// Node `i`'s address.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 10 + i as u8)
    }

    /// The bridge's address in the root namespace (the test's side).
    pub fn host_ip(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// Node `i`'s namespace.
    pub fn namespace(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    pub fn nodes(&self) -> usize {
        self.namespaces.len()
    }

    /// The command a node `i` is started through (`ServerOpts::launcher`):
    /// `ip netns exec` execs the binary, so the pid is the node's.
    pub fn launcher(&self, i: usize) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.namespaces[i].clone()]
    }

    /// The options of node `i` of a cluster in this net: S3 on
    /// `IP:9000`, admin on `IP:9001`, cluster on `IP:7000` (each node has
    /// its namespace's ports to itself), joining node `join`'s cluster
    /// address, two reactors.
    pub fn node_opts(&self, i: usize, join: Option<usize>, secret: &str) -> crate::ServerOpts {
        let ip = self.ip(i);
        let mut opts = crate::cluster::node_opts(
            SocketAddr::from((ip, CLUSTER_PORT)),
            join.map(|j| SocketAddr::from((self.ip(j), CLUSTER_PORT))),
            secret,
        );
        opts.args.push(format!("--address={ip}:{S3_PORT}"));
        opts.args.push(format!("--admin-address={ip}:{ADMIN_PORT}"));
        opts.launcher = self.launcher(i);
        opts
    }

    /// Cuts nodes `a` and `b` off from each other (both directions).
    pub fn cut(&self, a: usize, b: usize) {
        let mut cuts = self.cuts.lock().unwrap_or_else(|e| e.into_inner());
        for (x, y) in [(a, b), (b, a)] {
            if cuts.contains(&(x, y)) {
                continue;
            }
            let to = format!("{}/32", self.ip(y));
            ip(&["-n", &self.namespaces[x], "route", "add", "blackhole", &to]).unwrap_or_else(|e| panic!("cut {x} from {y}: {e}"));
            cuts.push((x, y));
        }
    }

    /// Cuts node `a` off from every other node.
    pub fn isolate(&self, a: usize) {
        for b in (0..self.nodes()).filter(|&b| b != a) {
            self.cut(a, b);
        }
    }

    /// Undoes [`Net::cut`] between `a` and `b`.
    pub fn heal(&self, a: usize, b: usize) {
        let mut cuts = self.cuts.lock().unwrap_or_else(|e| e.into_inner());
        for (x, y) in [(a, b), (b, a)] {
            if let Some(p) = cuts.iter().position(|c| *c == (x, y)) {
                let to = format!("{}/32", self.ip(y));
                ip(&["-n", &self.namespaces[x], "route", "del", "blackhole", &to]).unwrap_or_else(|e| panic!("heal {x} and {y}: {e}"));
                cuts.remove(p);
            }
        }
    }

    /// Removes every cut.
    pub fn heal_all(&self) {
        let cuts: Vec<(usize, usize)> = self.cuts.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for (x, y) in cuts {
            self.heal(x, y);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and so the pair.
        for ns in &self.namespaces {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("netns cleanup: {e}");
            }
        }
        for v in &self.veths {
            // Normally gone with its peer's namespace already.
            let _ = ip(&["link", "del", v]);
        }
        if !self.bridge.is_empty() {
            if let Err(e) = ip(&["link", "del", &self.bridge]) {
                eprintln!("netns cleanup: {e}");
            }
        }
    }
}

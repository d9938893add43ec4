//! Several worker hosts on one machine: each "host" is a network namespace joined to this one by a
//! veth pair, and reaches PostgreSQL and the object store only through that link (a TCP relay in
//! the test process listens on the host side of the link and forwards to the loopback servers).
//! Cutting a host's link (`ip link set ... down`) cuts it off mid-job, as a failed network would.
//! Needs root and iproute2 (the test command runs as root; `ip` is in Debian's base system).

use std::{net::SocketAddr, process::Command};

use tokio::net::{TcpListener, TcpStream};

use crate::{
    s3::{pairs, S3Server},
    TestEnv, Worker,
};

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run `ip` (iproute2)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Fails with a clear message when network namespaces cannot be made here.
pub fn assert_prerequisites() {
    // SAFETY: geteuid has no preconditions.
    assert!(unsafe { libc::geteuid() } == 0, "multi-host tests make network namespaces: run them as root");
    let out = Command::new("ip").args(["netns", "list"]).output();
    assert!(out.is_ok_and(|o| o.status.success()), "`ip netns` is unavailable (install iproute2)");
}

/// One simulated host: a namespace, its link, and relays to the servers it may reach.
pub struct Host {
    pub name: String,
    veth: String,
    /// The host side of the link (where the relays listen).
    pub gateway: String,
    relays: Vec<tokio::task::JoinHandle<()>>,
}

impl Host {
    /// Makes namespace `name` with a /30 link `10.<net>.<index>.0/30`.
    pub fn create(tag: &str, index: u8, net: u8) -> Self {
        let name = format!("mq{tag}h{index}");
        let veth = format!("mq{tag}v{index}");
        let peer = format!("mq{tag}p{index}");
        let gateway = format!("10.{net}.{index}.1");
        let address = format!("10.{net}.{index}.2");
        ip(&["netns", "add", &name]);
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &name]);
        ip(&["addr", "add", &format!("{gateway}/30"), "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        ip(&["-n", &name, "addr", "add", &format!("{address}/30"), "dev", &peer]);
        ip(&["-n", &name, "link", "set", &peer, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ip(&["-n", &name, "route", "add", "default", "via", &gateway]);
        Self { name, veth, gateway, relays: Vec::new() }
    }

    /// Relays `gateway:<port>` to `target`; returns the address the host should dial.
    pub async fn relay(&mut self, target: SocketAddr) -> SocketAddr {
        let listener = TcpListener::bind((self.gateway.as_str(), 0)).await.expect("bind on the link");
        let addr = listener.local_addr().unwrap();
        self.relays.push(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
        addr
    }

    /// The command prefix that runs a program inside this host.
    pub fn exec_prefix(&self) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.name.clone()]
    }

    /// Cuts the host's link (its packets go nowhere; open connections stall).
    pub fn cut(&self) {
        ip(&["link", "set", &self.veth, "down"]);
    }

    /// Restores the link.
    pub fn restore(&self) {
        ip(&["link", "set", &self.veth, "up"]);
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for relay in &self.relays {
            relay.abort();
        }
        // Deleting the namespace deletes its end of the veth pair, and so the pair.
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).status();
        let _ = Command::new("ip").args(["link", "delete", &self.veth]).status();
    }
}

/// Worker hosts: one worker per namespace, reaching PostgreSQL and the S3 server only through
/// its link, with its own storage and job directories.
pub struct Cluster {
    pub hosts: Vec<Host>,
    pub workers: Vec<Worker>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    /// Starts `count` hosts, each with a worker given `extra` settings on top of the links' ones.
    pub async fn start(env: &TestEnv, s3: &S3Server, count: u8, extra: &[(&str, &str)]) -> Self {
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..4];
        let net = 200 + (std::process::id() % 50) as u8;
        let (mut hosts, mut workers, mut dirs) = (Vec::new(), Vec::new(), Vec::new());
        for index in 1..=count {
            let mut host = Host::create(tag, index, net);
            let pg = host.relay(target_of(&env.database_url)).await;
            let store = host.relay(target_of(&s3.endpoint)).await;
            let dir = tempfile::Builder::new().prefix("mediaq-host-").tempdir().unwrap();
            let mut vars = s3.env();
            for (k, v) in &mut vars {
                if k == "MEDIAQ_S3_ENDPOINT" {
                    *v = with_addr(v, store);
                }
            }
            vars.extend([
                ("DATABASE_URL".to_owned(), with_addr(&env.database_url, pg)),
                ("MEDIAQ_STORAGE_DIR".to_owned(), dir.path().display().to_string()),
                ("MEDIAQ_WORK_DIR".to_owned(), dir.path().join("work").display().to_string()),
            ]);
            vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            workers.push(env.worker_via(&host.exec_prefix(), &pairs(&vars)).await);
            hosts.push(host);
            dirs.push(dir);
        }
        Self { hosts, workers, _dirs: dirs }
    }

    /// Which host ran an attempt (worker names carry the process id).
    pub fn host_of(&self, worker_name: &str) -> usize {
        let found: Vec<usize> = (0..self.workers.len())
            .filter(|&i| worker_name.contains(&format!("-{}-", self.workers[i].service.pid())))
            .collect();
        assert_eq!(found.len(), 1, "worker {worker_name} maps to one host");
        found[0]
    }
}

/// `scheme://user@host:port/path?q` with `host:port` replaced by `addr`.
pub fn with_addr(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let userinfo = authority.rsplit_once('@').map(|(u, _)| format!("{u}@")).unwrap_or_default();
    format!("{scheme}://{userinfo}{addr}{path}")
}

/// The loopback address a URL points at.
pub fn target_of(url: &str) -> SocketAddr {
    let rest = url.split_once("://").expect("a URL with a scheme").1;
    let authority = rest.split('/').next().unwrap();
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let hostport = hostport.replace("localhost", "127.0.0.1");
    hostport.parse().unwrap_or_else(|e| panic!("{hostport}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_rewritten_to_the_relay() {
        let addr: SocketAddr = "10.1.2.1:5555".parse().unwrap();
        assert_eq!(
            with_addr("postgres://postgres@127.0.0.1:41023/db?x=1", addr),
            "postgres://postgres@10.1.2.1:5555/db?x=1"
        );
        assert_eq!(with_addr("http://127.0.0.1:9000", addr), "http://10.1.2.1:5555");
        assert_eq!(target_of("postgres://postgres@127.0.0.1:41023/db"), "127.0.0.1:41023".parse().unwrap());
        assert_eq!(target_of("http://127.0.0.1:9000"), "127.0.0.1:9000".parse().unwrap());
    }
}

//! Capturing containers by name, against real runtimes (Docker, Podman,
//! containerd) started by scripts/start-runtimes.sh. Run as root:
//! `cargo test -p cnet-tests --test containers -- --test-threads=2`.
//!
//! Traffic only flows between containers and namespaces made here.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use cnet_tests::runtimes::{self, ContainerdLab, DockerNet, EngineContainer, PodmanLab};
use cnet_tests::{Cnet, TempDir, cnet_output, tshark_fields};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::blocks::opt_common::CommonOption;
use pcap_file::pcapng::{Block, PcapNgReader};

/// One IPv4 packet as read back with the project's reader (pcap-file).
#[derive(Debug, Clone)]
struct Pkt {
    ifname: String,
    description: String,
    comment: String,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    /// ICMP type (8 request, 0 reply) or 255 for anything else.
    icmp_type: u8,
}

fn read_ipv4(path: &Path) -> Result<Vec<Pkt>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = PcapNgReader::new(std::io::BufReader::new(file))?;
    let mut ifaces: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    while let Some(block) = reader.next_block() {
        match block?.0 {
            Block::InterfaceDescription(idb) => {
                let mut name = String::new();
                let mut desc = String::new();
                for o in &idb.options {
                    match o {
                        InterfaceDescriptionOption::IfName(n) => name = n.to_string(),
                        InterfaceDescriptionOption::IfDescription(d) => desc = d.to_string(),
                        _ => {}
                    }
                }
                ifaces.push((name, desc));
            }
            Block::EnhancedPacket(epb) => {
                let d = &epb.data;
                // Ethernet + IPv4 only.
                if d.len() < 34 || d[12..14] != [0x08, 0x00] {
                    continue;
                }
                let comment = epb
                    .options
                    .iter()
                    .find_map(|o| match o {
                        EnhancedPacketOption::Common(CommonOption::Comment(c)) => Some(c.to_string()),
                        _ => None,
                    })
                    .unwrap_or_default();
                let ihl = ((d[14] & 0x0f) as usize) * 4;
                let icmp_type = if d[23] == 1 && d.len() > 14 + ihl { d[14 + ihl] } else { 255 };
                let (ifname, description) = ifaces.get(epb.interface_id as usize).cloned().unwrap_or_default();
                out.push(Pkt {
                    ifname,
                    description,
                    comment,
                    src: Ipv4Addr::new(d[26], d[27], d[28], d[29]),
                    dst: Ipv4Addr::new(d[30], d[31], d[32], d[33]),
                    icmp_type,
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("IPv4 address")
}

/// Echo requests (type 8) from `src` to `dst` seen on interfaces labeled
/// `container=NAME` in direction `dir`.
fn count(pkts: &[Pkt], name: &str, dir: &str, src: Ipv4Addr, dst: Ipv4Addr, icmp_type: u8) -> usize {
    pkts.iter()
        .filter(|p| {
            p.comment.contains(&format!("container={name} "))
                && p.comment.ends_with(&format!("dir={dir}"))
                && p.src == src
                && p.dst == dst
                && p.icmp_type == icmp_type
        })
        .count()
}

#[test]
fn docker_two_containers_by_name_into_one_file() -> Result<()> {
    runtimes::ensure()?;
    let net = DockerNet::new("10.214.1.0/24")?;
    let netarg = format!("--network={}", net.name);
    let a =
        EngineContainer::docker("a", &[&netarg, "--ip", "10.214.1.11", "--label", "com.docker.compose.service=web"])?;
    let b = EngineContainer::docker("b", &[&netarg, "--ip", "10.214.1.12"])?;
    let c = EngineContainer::docker("c", &[&netarg, "--ip", "10.214.1.13"])?;
    let (ipa, ipb, ipc) = (ip("10.214.1.11"), ip("10.214.1.12"), ip("10.214.1.13"));
    let dir = TempDir::new("ctr")?;
    let file = dir.path().join("two.pcapng");
    let f = file.to_str().unwrap();
    // One by name, one by qualified name.
    let cnet =
        Cnet::start(&["capture", "--container", &a.name, "--container", &format!("docker:{}", b.name), "-w", f])?;
    a.ping("10.214.1.12", 3)?;
    a.ping("10.214.1.13", 3)?;
    b.ping("10.214.1.13", 3)?;
    // TCP from a to b with busybox nc.
    b.exec(&["sh", "-c", "nc -l -p 5000 > /tmp/got & sleep 0.3"])?;
    a.exec(&["sh", "-c", "echo hello | nc -w 1 10.214.1.12 5000"])?;
    std::thread::sleep(Duration::from_millis(500));
    let r = cnet.stop()?;
    assert!(r.status.success(), "{}", r.stderr);

    let pkts = read_ipv4(&file)?;
    // a ↔ b: on both veths, with each side's direction.
    assert_eq!(count(&pkts, &a.name, "out", ipa, ipb, 8), 3, "{pkts:#?}");
    assert_eq!(count(&pkts, &b.name, "in", ipa, ipb, 8), 3);
    assert_eq!(count(&pkts, &b.name, "out", ipb, ipa, 0), 3);
    assert_eq!(count(&pkts, &a.name, "in", ipb, ipa, 0), 3);
    // Each with the third container, on the captured side only.
    assert_eq!(count(&pkts, &a.name, "out", ipa, ipc, 8), 3);
    assert_eq!(count(&pkts, &a.name, "in", ipc, ipa, 0), 3);
    assert_eq!(count(&pkts, &b.name, "out", ipb, ipc, 8), 3);
    assert_eq!(count(&pkts, &b.name, "in", ipc, ipb, 0), 3);
    assert!(!pkts.iter().any(|p| p.comment.contains(&c.name)), "the third container was not asked for");
    // TCP reached both sides.
    let tcp = pkts.iter().filter(|p| p.icmp_type == 255 && p.src == ipa && p.dst == ipb);
    let on: std::collections::HashSet<&str> = tcp.map(|p| p.ifname.as_str()).collect();
    assert_eq!(on.len(), 2, "TCP a→b on both veths: {on:?}");
    // Every IPv4 packet is labeled with the container it was captured for,
    // its direction follows that container's address, and the interface
    // description names the runtime, container, id, image and netns.
    for p in &pkts {
        let (me, myip) = if p.comment.contains(&format!("container={} ", a.name)) {
            (&a, ipa)
        } else {
            assert!(p.comment.contains(&format!("container={} ", b.name)), "unlabeled packet {p:?}");
            (&b, ipb)
        };
        assert!(p.comment.contains(&format!("runtime=docker id={} netns=", me.short_id())), "{p:?}");
        assert!(p.comment.contains(" iface=eth0 dir="), "{p:?}");
        if p.src == myip {
            assert!(p.comment.ends_with("dir=out"), "{p:?}");
        } else if p.dst == myip {
            assert!(p.comment.ends_with("dir=in"), "{p:?}");
        }
        assert!(p.description.starts_with(&format!("docker:{} eth0 [", me.name)), "{p:?}");
        assert!(
            p.description.contains(&format!("(id {}, image {}, netns inode ", me.short_id(), runtimes::IMAGE)),
            "{p:?}"
        );
    }
    // Wireshark sees the same labels.
    let rows = tshark_fields(
        &file,
        Some("icmp.type == 8"),
        &["frame.interface_description", "frame.comment", "ip.src", "ip.dst"],
    )?;
    let from_a_to_b = rows
        .iter()
        .filter(|r| {
            r[0].starts_with(&format!("docker:{} ", a.name))
                && r[1].ends_with("dir=out")
                && r[2] == "10.214.1.11"
                && r[3] == "10.214.1.12"
        })
        .count();
    assert_eq!(from_a_to_b, 3, "{rows:?}");
    assert_eq!(rows.len(), 12, "{rows:?}");
    Ok(())
}

#[test]
fn docker_restart_is_followed() -> Result<()> {
    runtimes::ensure()?;
    let net = DockerNet::new("10.214.2.0/24")?;
    let netarg = format!("--network={}", net.name);
    let a = EngineContainer::docker("a", &[&netarg, "--ip", "10.214.2.11"])?;
    let b = EngineContainer::docker("b", &[&netarg, "--ip", "10.214.2.12"])?;
    let dir = TempDir::new("ctr")?;
    let file = dir.path().join("restart.pcapng");
    let mut cnet = Cnet::start(&["capture", "--container", &b.name, "-w", file.to_str().unwrap()])?;
    a.ping("10.214.2.12", 2)?;
    let old_pid = b.pid()?;
    b.restart()?;
    assert_ne!(old_pid, b.pid()?);
    cnet.wait_for_stderr("cnet: detached", Duration::from_secs(5))?;
    cnet.wait_for_stderr("cnet: attached", Duration::from_secs(5))?;
    a.ping("10.214.2.12", 3)?;
    let r = cnet.stop()?;
    assert!(r.status.success(), "{}", r.stderr);
    let pkts = read_ipv4(&file)?;
    let (ipa, ipb) = (ip("10.214.2.11"), ip("10.214.2.12"));
    let mut by_iface: HashMap<&str, usize> = HashMap::new();
    for p in pkts.iter().filter(|p| p.icmp_type == 8 && p.src == ipa && p.dst == ipb) {
        assert!(
            p.comment.contains(&format!("container={} runtime=docker", b.name)) && p.comment.ends_with("dir=in"),
            "{p:?}"
        );
        *by_iface.entry(p.ifname.as_str()).or_default() += 1;
    }
    let mut counts: Vec<usize> = by_iface.values().copied().collect();
    counts.sort();
    assert_eq!(counts, vec![2, 3], "requests before and after the restart, on the old and new veth: {by_iface:?}");
    Ok(())
}

#[test]
fn all_attaches_containers_started_later() -> Result<()> {
    runtimes::ensure()?;
    let net = DockerNet::new("10.214.3.0/24")?;
    let netarg = format!("--network={}", net.name);
    let dir = TempDir::new("ctr")?;
    let file = dir.path().join("all.pcapng");
    let mut cnet = Cnet::start(&["capture", "--all", "-w", file.to_str().unwrap()])?;
    let x = EngineContainer::docker("x", &[&netarg, "--ip", "10.214.3.11"])?;
    let y = EngineContainer::docker("y", &[&netarg, "--ip", "10.214.3.12"])?;
    let started = std::time::Instant::now();
    cnet.wait_for_stderr(&format!("docker:{} eth0", y.name), Duration::from_secs(5))?;
    cnet.wait_for_stderr(&format!("docker:{} eth0", x.name), Duration::from_secs(5))?;
    assert!(started.elapsed() < Duration::from_secs(2), "attached after {:?}", started.elapsed());
    x.ping("10.214.3.12", 3)?;
    let r = cnet.stop()?;
    assert!(r.status.success(), "{}", r.stderr);
    let pkts = read_ipv4(&file)?;
    assert_eq!(count(&pkts, &y.name, "in", ip("10.214.3.11"), ip("10.214.3.12"), 8), 3);
    assert_eq!(count(&pkts, &x.name, "out", ip("10.214.3.11"), ip("10.214.3.12"), 8), 3);
    Ok(())
}

#[test]
fn list_json_matches_docker() -> Result<()> {
    runtimes::ensure()?;
    let net = DockerNet::new("10.214.4.0/24")?;
    let a = EngineContainer::docker(
        "a",
        &[&format!("--network={}", net.name), "--ip", "10.214.4.11", "--label", "com.docker.compose.project=cnrt"],
    )?;
    let host = EngineContainer::docker("host", &["--network=host"])?;
    let none = EngineContainer::docker("none", &["--network=none"])?;
    let r = cnet_output(&["list", "--json"])?;
    assert!(r.status.success(), "{}", r.stderr);
    let rows: serde_json::Value = serde_json::from_str(&r.stdout)?;
    let find = |name: &str| -> serde_json::Value {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not listed: {rows}"))
    };
    let ra = find(&a.name);
    assert_eq!(ra["runtime"], "docker");
    assert_eq!(ra["id"], a.id);
    assert_eq!(ra["short_id"], a.short_id());
    assert_eq!(ra["pid"], a.pid()?);
    assert_eq!(ra["image"], runtimes::IMAGE);
    assert_eq!(ra["labels"]["com.docker.compose.project"], "cnrt");
    assert_eq!(ra["networks"][0]["name"], net.name.as_str());
    assert_eq!(ra["networks"][0]["ips"][0], "10.214.4.11");
    let inode =
        std::fs::metadata(format!("/proc/{}/ns/net", a.pid()?)).map(|m| std::os::unix::fs::MetadataExt::ino(&m))?;
    assert_eq!(ra["netns_inode"], inode);
    let iface = &ra["interfaces"][0];
    assert_eq!(iface["name"], "eth0");
    assert!(iface["addrs"].as_array().unwrap().iter().any(|x| x == "10.214.4.11/24"), "{iface}");
    let veth = iface["host_veth"].as_str().unwrap();
    let ifindex: u64 = std::fs::read_to_string(format!("/sys/class/net/{veth}/ifindex"))?.trim().parse()?;
    assert_eq!(iface["host_ifindex"], ifindex);
    // The container's eth0 is eth0@ifN with N the host veth's ifindex.
    let iflink = a.exec(&["cat", "/sys/class/net/eth0/iflink"])?;
    assert_eq!(iflink, ifindex.to_string());
    assert!(ra["not_capturable"].is_null());

    let rh = find(&host.name);
    assert!(rh["not_capturable"].as_str().unwrap().contains("host network"), "{rh}");
    let rn = find(&none.name);
    assert!(rn["not_capturable"].as_str().unwrap().contains("--network none"), "{rn}");
    // The table has the same rows.
    let t = cnet_output(&["list"])?;
    let line = t.stdout.lines().find(|l| l.contains(&a.name)).context("table row")?;
    assert!(line.contains(a.short_id()) && line.contains(&format!("eth0 = {veth}@{ifindex}")), "{line}");
    Ok(())
}

#[test]
fn errors_name_what_to_do() -> Result<()> {
    runtimes::ensure()?;
    let net = DockerNet::new("10.214.5.0/24")?;
    let web = EngineContainer::docker("web", &[&format!("--network={}", net.name)])?;
    let host = EngineContainer::docker("host", &["--network=host"])?;

    // Unknown: closest names and the runtimes searched.
    let typo = format!("{}x", web.name);
    let r = cnet_output(&["capture", "--container", &typo, "-c", "1"])?;
    assert!(!r.status.success());
    assert!(r.stderr.contains(&format!("no container matches \"{typo}\"")), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("closest: docker:{}", web.name)), "{}", r.stderr);
    assert!(r.stderr.contains("docker (/var/run/docker.sock)"), "{}", r.stderr);

    // Ambiguous id prefix: make containers until two of ours share a first hex digit.
    let mut made: Vec<EngineContainer> = Vec::new();
    let prefix = loop {
        made.push(EngineContainer::docker_created("amb")?);
        let last = made.last().unwrap().id.clone();
        if made[..made.len() - 1].iter().any(|c| c.id[..1] == last[..1]) {
            break last[..1].to_string();
        }
        assert!(made.len() <= 17);
    };
    let r = cnet_output(&["capture", "--container", &format!("docker:{prefix}"), "-c", "1"])?;
    assert!(!r.status.success());
    assert!(r.stderr.contains("matches") && r.stderr.contains("give more of the id"), "{}", r.stderr);
    for c in made.iter().filter(|c| c.id.starts_with(&prefix)) {
        assert!(r.stderr.contains(&format!("docker:{} (id {})", c.name, c.short_id())), "{}", r.stderr);
    }

    // Host network: cannot be captured by veth, and says what to do.
    let r = cnet_output(&["capture", "--container", &host.name, "-c", "1"])?;
    assert!(!r.status.success());
    assert!(r.stderr.contains("uses the host network") && r.stderr.contains("-i IFACE"), "{}", r.stderr);

    // A socket cnet may not use is named.
    let r = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(cnet_tests::cnet_bin())
        .arg("list")
        .env_remove("DOCKER_HOST")
        .output()?;
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(stderr.contains("permission denied on /var/run/docker.sock"), "{stderr}");

    // A runtime asked for by name whose socket is absent is named.
    let r = std::process::Command::new(cnet_tests::cnet_bin())
        .args(["capture", "--container", "docker:web", "-c", "1"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()?;
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(stderr.contains("docker is not running here: /nonexistent/docker.sock"), "{stderr}");

    // --wait: a container that does not exist yet is attached when it starts.
    let later = runtimes::unique("later");
    let mut cnet = Cnet::start(&["capture", "--container", &later, "--wait", "-w", "/dev/null"])?;
    let _later = RemoveOnDrop(later.clone());
    cnet_tests::run(&[
        "docker",
        "run",
        "-d",
        "--name",
        &later,
        &format!("--network={}", net.name),
        runtimes::IMAGE,
        "sleep",
        "600",
    ])?;
    cnet.wait_for_stderr("cnet: attached", Duration::from_secs(5))?;
    Ok(())
}

/// Removes a Docker container by name on drop.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

#[test]
fn podman_container_by_name() -> Result<()> {
    runtimes::ensure()?;
    // Real netavark bridge networking, in a namespace of its own (see
    // PodmanLab); cnet runs in that namespace and finds the containers
    // through Podman's API socket.
    let lab = PodmanLab::new(1, 2)?;
    let (name, id, ip0) = lab.containers[0].clone();
    let ip1 = lab.containers[1].2.clone();
    let dir = TempDir::new("ctr")?;
    let file = dir.path().join("podman.pcapng");
    let cnet = Cnet::start_in_netns(
        &lab.netns,
        &["capture", "--container", &format!("podman:{name}"), "-w", file.to_str().unwrap()],
    )?;
    lab.ping(1, 0, 3)?;
    let r = cnet.stop()?;
    assert!(r.status.success(), "{}", r.stderr);
    let pkts = read_ipv4(&file)?;
    assert_eq!(count(&pkts, &name, "in", ip(&ip1), ip(&ip0), 8), 3, "{pkts:#?}");
    assert_eq!(count(&pkts, &name, "out", ip(&ip0), ip(&ip1), 0), 3);
    assert!(pkts.iter().all(|x| x.comment.contains(&format!("runtime=podman id={} ", &id[..12]))), "{pkts:#?}");
    assert!(pkts[0].description.starts_with(&format!("podman:{name} eth0 [{ip0}/24")), "{:?}", pkts[0]);
    // The same container seen from the host namespace: its veth's other end
    // is not there, and cnet says so.
    let r = cnet_output(&["capture", "--container", &format!("podman:{name}"), "-c", "1"])?;
    assert!(r.stderr.contains("their other ends are in another network namespace, not cnet's"), "{}", r.stderr);
    Ok(())
}

#[test]
fn containerd_container_by_name_and_pod() -> Result<()> {
    runtimes::ensure()?;
    let lab = ContainerdLab::new(1, 2)?;
    let (id0, _, ip0) = lab.tasks[0].clone();
    let (_, _, ip1) = lab.tasks[1].clone();
    let dir = TempDir::new("ctr")?;
    let file = dir.path().join("containerd.pcapng");
    let spec = format!("containerd:{}/{id0}", lab.namespace);
    let cnet = Cnet::start(&["capture", "--container", &spec, "-w", file.to_str().unwrap()])?;
    lab.exec_ns(1, &["busybox", "ping", "-c", "3", "-i", "0.2", "-W", "2", &ip0])?;
    let r = cnet.stop()?;
    assert!(r.status.success(), "{}", r.stderr);
    let pkts = read_ipv4(&file)?;
    assert_eq!(count(&pkts, &id0, "in", ip(&ip1), ip(&ip0), 8), 3, "{pkts:#?}");
    assert_eq!(count(&pkts, &id0, "out", ip(&ip0), ip(&ip1), 0), 3);
    let p = &pkts[0];
    assert!(
        p.comment.contains(&format!("runtime=containerd id={id0} pod=cnrtpod namespace={} netns=", lab.namespace)),
        "{p:?}"
    );
    assert!(p.description.starts_with(&format!("containerd:{}/{id0} eth0", lab.namespace)), "{p:?}");

    // --pod picks both tasks (CRI labels).
    let r = cnet_output(&["list", "--json"])?;
    let rows: serde_json::Value = serde_json::from_str(&r.stdout)?;
    let mine: Vec<&serde_json::Value> =
        rows.as_array().unwrap().iter().filter(|r| r["namespace"] == lab.namespace.as_str()).collect();
    assert_eq!(mine.len(), 2, "{rows}");
    assert!(mine.iter().all(|r| r["runtime"] == "containerd" && r["pid"].as_u64().unwrap() > 0));
    let cnet = Cnet::start(&["capture", "--pod", &format!("{}/cnrtpod", lab.namespace), "-w", "/dev/null"])?;
    let r = cnet.stop()?;
    for (id, _, _) in &lab.tasks {
        assert!(r.stderr.contains(&format!("(containerd:{}/{id} eth0)", lab.namespace)), "{}", r.stderr);
    }
    Ok(())
}

#[test]
fn iface_picks_one_network_of_a_container() -> Result<()> {
    runtimes::ensure()?;
    let net0 = DockerNet::new("10.214.6.0/24")?;
    let net1 = DockerNet::new("10.214.7.0/24")?;
    let a = EngineContainer::docker("a", &[&format!("--network={}", net0.name), "--ip", "10.214.6.11"])?;
    cnet_tests::run(&["docker", "network", "connect", "--ip", "10.214.7.11", &net1.name, &a.name])?;
    let b = EngineContainer::docker("b", &[&format!("--network={}", net1.name), "--ip", "10.214.7.12"])?;
    let r = cnet_output(&["list", "--json"])?;
    let rows: serde_json::Value = serde_json::from_str(&r.stdout)?;
    let ra = rows.as_array().unwrap().iter().find(|r| r["name"] == a.name.as_str()).context("listed")?;
    let mut names: Vec<&str> =
        ra["interfaces"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["eth0", "eth1"], "{ra}");

    let r = cnet_output(&["capture", "--container", &a.name, "--iface", "eth7", "-c", "1"])?;
    assert!(
        !r.status.success() && r.stderr.contains("no selected container has an interface named eth7: they have eth"),
        "{}",
        r.stderr
    );

    let dir = TempDir::new("ctr")?;
    let file = dir.path().join("iface.pcapng");
    let mut cnet = Cnet::start(&["capture", "--container", &a.name, "--iface", "eth1", "-w", file.to_str().unwrap()])?;
    let line = cnet.wait_for_stderr("cnet: capturing on", Duration::from_secs(1))?;
    assert!(line.contains(&format!("docker:{} eth1", a.name)) && !line.contains("eth0"), "{line}");
    b.ping("10.214.7.11", 2)?;
    let r = cnet.stop()?;
    assert!(r.status.success(), "{}", r.stderr);
    let pkts = read_ipv4(&file)?;
    assert_eq!(count(&pkts, &a.name, "in", ip("10.214.7.12"), ip("10.214.7.11"), 8), 2);
    assert!(pkts.iter().all(|p| p.comment.contains(" iface=eth1 ")), "{pkts:#?}");
    Ok(())
}

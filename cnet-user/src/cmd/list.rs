//! `cnet list`: every container of every runtime found, with the
//! interfaces cnet would hook for it (or why it cannot).

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use crate::model::Target;
use crate::pipeline::resolve::HostLinks;
use crate::pipeline::resolve::any;
use crate::pipeline::resolve::containers::resolve_container;
use crate::platform::runtime::{self, Container, RuntimeError, RuntimeKind};
use crate::text;

/// One interface of a container, both ends.
#[derive(Debug, Serialize)]
pub struct InterfaceRow {
    /// Name inside the container (`eth0`).
    pub name: String,
    /// Host end of the veth.
    pub host_veth: String,
    pub host_ifindex: u32,
    /// Addresses inside the container, `ADDR/PREFIX`.
    pub addrs: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ContainerRow {
    #[serde(flatten)]
    pub container: Container,
    pub short_id: String,
    pub netns_inode: Option<u64>,
    pub interfaces: Vec<InterfaceRow>,
    /// Why the container cannot be captured by veth (None when it can).
    pub not_capturable: Option<String>,
}

/// Lists the containers of every runtime whose socket answers. A runtime
/// that is configured (`DOCKER_HOST`, `CNET_PODMAN_SOCKET`,
/// `CNET_CONTAINERD_SOCKET`) or whose socket is there but does not answer
/// is a warning naming it and its address; the others are still listed.
pub async fn rows() -> Result<Vec<ContainerRow>> {
    let mut containers = Vec::new();
    for kind in RuntimeKind::ALL {
        let rt = match runtime::connect(kind).await {
            Ok(rt) => rt,
            // A default socket that is not there: that runtime is not installed.
            Err(RuntimeError::Absent { .. }) if !any::configured(kind) => continue,
            Err(e) => {
                log::warn!("{}", unreachable_warning(kind, &e));
                continue;
            }
        };
        match rt.list().await {
            Ok(list) => containers.extend(list),
            // A runtime that answers with more than any runtime sends is
            // not "unreachable": that is an error of its own (hostile_runtime.rs).
            Err(e @ RuntimeError::TooLarge { .. }) => {
                return Err(anyhow::Error::new(e).context(format!("listing {kind} containers")));
            }
            Err(e) => log::warn!("{}", unreachable_warning(kind, &e)),
        }
    }
    tokio::task::spawn_blocking(move || -> Result<Vec<ContainerRow>> {
        let host = HostLinks::read()?;
        Ok(containers.into_iter().map(|c| row(c, &host)).collect())
    })
    .await?
}

/// "docker at tcp://127.0.0.1:1 cannot be reached: …; its containers are
/// not listed". The reason is cnet's own sentence; a client library's
/// wording (bollard's "hyper legacy client") says nothing to a user.
fn unreachable_warning(kind: RuntimeKind, e: &RuntimeError) -> String {
    let reason = match e {
        RuntimeError::Api { socket, reason, .. } => {
            let reason = if reason.contains("hyper") || reason.contains("legacy client") {
                "the connection failed"
            } else {
                reason.as_str()
            };
            format!("{kind} at {socket} cannot be reached: {reason}")
        }
        other => other.to_string(),
    };
    format!("{reason}; its containers are not listed")
}

fn row(c: Container, host: &HostLinks) -> ContainerRow {
    let netns_inode = c.netns_path().and_then(|p| crate::platform::netns::inode(&p).ok());
    let (interfaces, not_capturable) = match resolve_container(&c, host) {
        Ok(eps) => (
            eps.into_iter()
                .map(|e| InterfaceRow {
                    name: e.label.iface,
                    host_veth: e.ifname,
                    host_ifindex: e.ifindex,
                    addrs: e.label.addrs,
                })
                .collect(),
            None,
        ),
        Err(reason) => (Vec::new(), Some(reason)),
    };
    ContainerRow { short_id: c.short_id().to_string(), container: c, netns_inode, interfaces, not_capturable }
}

pub async fn run(json: bool) -> Result<()> {
    let rows = rows().await?;
    match print(&rows, json) {
        // The reader went away (`cnet list | head`): not an error.
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) => {
            Ok(())
        }
        r => r,
    }
}

fn print(rows: &[ContainerRow], json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        text::write_json_pretty(&mut out, rows).map_err(std::io::Error::from)?;
        writeln!(out)?;
        return Ok(());
    }
    // Names, ids, images and reasons come from the runtimes: escaped, so
    // that none can drive the terminal or forge a row.
    let esc = |s: &str| text::escape(s).into_owned();
    let name_of = |c: &Container| match &c.namespace {
        Some(ns) => format!("{ns}/{}", c.name),
        None => c.name.clone(),
    };
    // Columns as wide as their widest cell (at least the header's), so a
    // long image or name shifts the columns after it instead of the row.
    let width = |min: usize, f: &dyn Fn(&ContainerRow) -> String| {
        rows.iter().map(|r| f(r).chars().count()).max().unwrap_or(0).max(min)
    };
    let wn = width(24, &|r| esc(&name_of(&r.container)));
    let wi = width(12, &|r| esc(r.container.short_id()));
    let wm = width(20, &|r| esc(&r.container.image));
    writeln!(
        out,
        "{:<10} {:<wn$} {:<wi$} {:<wm$} {:>7} {:>10}  INTERFACES",
        "RUNTIME", "NAME", "ID", "IMAGE", "PID", "NETNS"
    )?;
    for r in rows {
        let c = &r.container;
        let name = name_of(c);
        let ifaces = if let Some(reason) = &r.not_capturable {
            format!("- (not capturable: {reason})")
        } else {
            r.interfaces
                .iter()
                .map(|i| format!("{} = {}@{} [{}]", i.name, i.host_veth, i.host_ifindex, i.addrs.join(" ")))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let ifaces = esc(&ifaces);
        writeln!(
            out,
            "{:<10} {:<wn$} {:<wi$} {:<wm$} {:>7} {:>10}  {ifaces}",
            c.runtime.name(),
            esc(&name),
            esc(c.short_id()),
            esc(&c.image),
            c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            r.netns_inode.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
        )?;
    }
    Ok(())
}

/// `cnet capture -D`: the interfaces cnet can capture, numbered as tcpdump
/// numbers them, each with its owner: first the veths of other namespaces
/// (what `-i any` captures), then `any`, then the host's own interfaces.
pub async fn interfaces() -> Result<()> {
    let owners = any::owners().await?;
    let host = tokio::task::spawn_blocking(HostLinks::read).await??;
    let flags = |name: &str, up: bool| {
        // operstate "up" is the carrier (IFF_RUNNING) that tcpdump shows.
        let running = std::fs::read_to_string(format!("/sys/class/net/{name}/operstate"))
            .is_ok_and(|s| s.trim() == "up" || s.trim() == "unknown" && up);
        match (up, running) {
            (true, true) => "[Up, Running]",
            (true, false) => "[Up]",
            _ => "[none]",
        }
    };
    let mut lines = Vec::new();
    let mut listed = Vec::new();
    for o in &owners {
        for e in &o.endpoints {
            let up = host.by_index(e.ifindex).is_some_and(|l| l.up);
            let owner = match &o.target {
                Target::Interface(_) => "veth, other end in a namespace cnet cannot name".to_string(),
                _ => text::owner_label(&e.label.owner, &e.label.iface),
            };
            lines.push(format!("{} {} ({owner})", e.ifname, flags(&e.ifname, up)));
            listed.push(e.ifindex);
        }
    }
    lines.push("any (every interface above, labeled with its owner)".to_string());
    for l in host.links().iter().filter(|l| !listed.contains(&l.index)) {
        lines.push(format!("{} {} (host)", l.name, flags(&l.name, l.up)));
    }
    let mut out = std::io::stdout().lock();
    let written = lines.iter().enumerate().try_for_each(|(i, l)| writeln!(out, "{}.{}", i + 1, text::escape(l)));
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

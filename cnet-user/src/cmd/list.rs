//! `cnet list`: every container of every runtime found, with the
//! interfaces cnet would hook for it (or why it cannot).

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::pipeline::resolve::HostLinks;
use crate::pipeline::resolve::containers::resolve_container;
use crate::platform::runtime::{Container, connect_many};
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

/// Lists the containers of every runtime whose socket answers.
pub async fn rows() -> Result<Vec<ContainerRow>> {
    let runtimes = connect_many(&[]).await?;
    let mut containers = Vec::new();
    for r in &runtimes {
        containers.extend(r.list().await.with_context(|| format!("listing {} containers", r.kind()))?);
    }
    tokio::task::spawn_blocking(move || -> Result<Vec<ContainerRow>> {
        let host = HostLinks::read()?;
        Ok(containers.into_iter().map(|c| row(c, &host)).collect())
    })
    .await?
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
    writeln!(
        out,
        "{:<10} {:<24} {:<12} {:<20} {:>7} {:>10}  INTERFACES",
        "RUNTIME", "NAME", "ID", "IMAGE", "PID", "NETNS"
    )?;
    // Names, ids, images and reasons come from the runtimes: escaped, so
    // that none can drive the terminal or forge a row.
    let esc = |s: &str| text::escape(s).into_owned();
    for r in rows {
        let c = &r.container;
        let name = match &c.namespace {
            Some(ns) => format!("{ns}/{}", c.name),
            None => c.name.clone(),
        };
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
            "{:<10} {:<24} {:<12} {:<20} {:>7} {:>10}  {ifaces}",
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

//! Follows selected containers while a capture runs: containers that start,
//! restart (new veth) or stop become endpoint add/remove events for the
//! capture loop. Docker's event stream wakes the watcher at once; every
//! runtime is also polled, so a missed event costs at most one poll period.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::future::select_all;
use tokio::sync::mpsc;

use super::containers::{filter_ifaces, resolve_container};
use super::select::Selection;
use crate::model::{Endpoint, EndpointEvent};
use crate::pipeline::resolve::HostLinks;
use crate::platform::runtime::{Container, NetworkInfo, Runtime, RuntimeKind, connect_many};

/// Fallback poll period: keeps "attached within a second" without events.
const POLL: Duration = Duration::from_millis(500);

pub struct Watcher {
    runtimes: Vec<Box<dyn Runtime>>,
    selection: Selection,
    /// What is attached now, by host ifindex.
    current: BTreeMap<u32, Endpoint>,
    /// Endpoints of running containers by (runtime, id), with the PID and
    /// networks they were resolved for: unchanged containers are not
    /// looked at again (entering a namespace is not free).
    cache: HashMap<(RuntimeKind, String), Resolved>,
}

/// A container's endpoints and what they were resolved for.
struct Resolved {
    pid: u32,
    networks: Vec<NetworkInfo>,
    endpoints: Vec<Endpoint>,
}

/// "docker (/var/run/docker.sock), podman (…)": for messages.
fn searched(runtimes: &[Box<dyn Runtime>]) -> String {
    runtimes.iter().map(|r| format!("{} ({})", r.kind(), r.socket())).collect::<Vec<_>>().join(", ")
}

impl Watcher {
    /// Connects to the runtimes, selects containers and resolves them.
    /// Without `wait`, a name that matches no container is an error.
    pub async fn start(selection: Selection, wait: bool) -> Result<(Watcher, Vec<Endpoint>)> {
        let only = selection.runtimes();
        let runtimes = connect_many(&only).await?;
        if runtimes.is_empty() {
            bail!(
                "no container runtime found: looked for docker at {} (or $DOCKER_HOST), podman at {} and containerd at {}; start one, or capture a namespace with --netns",
                crate::platform::runtime::docker::DEFAULT_SOCKET,
                crate::platform::runtime::podman::DEFAULT_SOCKET,
                crate::platform::runtime::containerd::DEFAULT_SOCKET
            );
        }
        let mut w = Watcher { runtimes, selection, current: BTreeMap::new(), cache: HashMap::new() };
        let all = w.list_all().await?;
        let where_ = searched(&w.runtimes);
        let chosen = w.selection.select(&all, &where_, !wait)?;
        let mut endpoints = Vec::new();
        for c in chosen {
            match w.resolve(c).await {
                Ok(eps) => endpoints.extend(eps),
                Err(reason) if c.pid.is_none() => {
                    let line = format!("container {} {reason}; attaching it when it starts", c.qualified_name());
                    eprintln!("cnet: {}", crate::text::escape(&line));
                }
                Err(reason) if w.selection.names_explicitly(c, &all) => {
                    bail!("container {} {reason}", c.qualified_name())
                }
                Err(reason) => {
                    let line = format!("skipping container {}: it {reason}", c.qualified_name());
                    eprintln!("cnet: {}", crate::text::escape(&line));
                }
            }
        }
        let unfiltered: Vec<String> = endpoints.iter().map(|e| e.label.iface.clone()).collect();
        endpoints = filter_ifaces(endpoints, &w.selection.ifaces);
        if endpoints.is_empty() && !unfiltered.is_empty() && !wait {
            bail!(
                "no selected container has an interface named {}: they have {}",
                w.selection.ifaces.join(" or "),
                unfiltered.join(", ")
            );
        }
        endpoints.dedup_by_key(|e| e.ifindex);
        for ep in &endpoints {
            w.current.insert(ep.ifindex, ep.clone());
        }
        Ok((w, endpoints))
    }

    async fn list_all(&self) -> Result<Vec<Container>> {
        let mut all = Vec::new();
        for r in &self.runtimes {
            all.extend(r.list().await.with_context(|| format!("listing {} containers", r.kind()))?);
        }
        Ok(all)
    }

    /// Resolves a container off the async thread (it enters namespaces and
    /// talks netlink), reusing the last result while it is unchanged.
    async fn resolve(&mut self, c: &Container) -> Result<Vec<Endpoint>, String> {
        let key = (c.runtime, c.id.clone());
        if let (Some(pid), Some(r)) = (c.pid, self.cache.get(&key))
            && r.pid == pid
            && r.networks == c.networks
        {
            return Ok(r.endpoints.clone());
        }
        let owned = c.clone();
        let result = tokio::task::spawn_blocking(move || {
            let host = HostLinks::read().map_err(|e| e.to_string())?;
            resolve_container(&owned, &host)
        })
        .await
        .map_err(|e| format!("could not be resolved: {e}"))?;
        match (&result, c.pid) {
            (Ok(eps), Some(pid)) => {
                self.cache.insert(key, Resolved { pid, networks: c.networks.clone(), endpoints: eps.clone() });
            }
            _ => {
                self.cache.remove(&key);
            }
        }
        result
    }

    /// One look at the runtimes: what should be attached now.
    async fn scan(&mut self) -> Result<BTreeMap<u32, Endpoint>> {
        let all = self.list_all().await?;
        let chosen: Vec<Container> = self.selection.select(&all, "", false)?.into_iter().cloned().collect();
        self.cache.retain(|(rt, id), _| chosen.iter().any(|c| c.runtime == *rt && c.id == *id));
        let mut want = BTreeMap::new();
        for c in &chosen {
            if let Ok(eps) = self.resolve(c).await {
                for ep in filter_ifaces(eps, &self.selection.ifaces) {
                    want.entry(ep.ifindex).or_insert(ep);
                }
            }
        }
        Ok(want)
    }

    /// Runs until the receiver goes away, sending what changed.
    pub async fn run(mut self, tx: mpsc::Sender<EndpointEvent>) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            {
                let changes = self.runtimes.iter_mut().map(|r| r.changed());
                let events = select_all(changes);
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = events => {}
                    _ = tx.closed() => return,
                }
            }
            let want = match self.scan().await {
                Ok(w) => {
                    if failing {
                        log::warn!("the container runtimes answer again; following containers again");
                    }
                    failing = false;
                    w
                }
                Err(e) => {
                    // A runtime restarting is no reason to detach anything.
                    if !failing {
                        log::warn!("{e:#}; keeping the attached interfaces and retrying every {} ms", POLL.as_millis());
                    }
                    failing = true;
                    continue;
                }
            };
            let gone: Vec<u32> = self.current.keys().filter(|i| !want.contains_key(i)).copied().collect();
            for ifindex in gone {
                let Some(ep) = self.current.remove(&ifindex) else { continue };
                if tx.send(EndpointEvent::Remove(ep)).await.is_err() {
                    return;
                }
            }
            for (ifindex, ep) in want {
                if self.current.contains_key(&ifindex) {
                    continue;
                }
                self.current.insert(ifindex, ep.clone());
                if tx.send(EndpointEvent::Add(ep)).await.is_err() {
                    return;
                }
            }
        }
    }
}

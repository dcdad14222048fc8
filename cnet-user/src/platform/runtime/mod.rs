//! Container runtimes: who is running which container, and where its network
//! namespace is. One module per runtime, each talking to the runtime's own
//! API socket (never scraping CLI output), all behind [`Runtime`].
//!
//! [`select`] turns what the user typed (`web`, `docker:web`, `web-*`, an id
//! prefix, a pod) into containers; [`endpoints`] turns containers into the
//! host-side veths to hook; [`watch`] keeps doing both while a capture runs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;
use serde::Serialize;

mod bounded;
pub mod containerd;
pub mod docker;
pub mod podman;

/// The runtimes cnet knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    Docker,
    Podman,
    Containerd,
}

impl RuntimeKind {
    pub const ALL: [RuntimeKind; 3] = [RuntimeKind::Docker, RuntimeKind::Podman, RuntimeKind::Containerd];

    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Docker => "docker",
            RuntimeKind::Podman => "podman",
            RuntimeKind::Containerd => "containerd",
        }
    }

    pub fn from_name(s: &str) -> Option<RuntimeKind> {
        RuntimeKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One network a container is attached to, as its runtime reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetworkInfo {
    pub name: String,
    pub ips: Vec<String>,
}

/// A container as its runtime reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Container {
    pub runtime: RuntimeKind,
    /// Full id.
    pub id: String,
    /// Name without Docker's leading `/`; the id for containerd.
    pub name: String,
    /// containerd namespace (`default`, `k8s.io`); None for Docker and Podman.
    pub namespace: Option<String>,
    pub image: String,
    /// Runtime's own word: running, exited, created, paused…
    pub state: String,
    /// PID of the container's init process while it runs.
    pub pid: Option<u32>,
    /// Docker's HostConfig.NetworkMode (`host`, `none`, `container:…`, a network name).
    pub network_mode: Option<String>,
    pub networks: Vec<NetworkInfo>,
    pub labels: BTreeMap<String, String>,
}

impl Container {
    /// First 12 characters of a hex id, as `docker ps` shows it; ids that a
    /// user chose (containerd's) are kept whole.
    pub fn short_id(&self) -> &str {
        if self.id.len() > 12 && self.id.bytes().all(|b| b.is_ascii_hexdigit()) { &self.id[..12] } else { &self.id }
    }

    /// `docker:web`, `containerd:default/web`: unambiguous across runtimes.
    pub fn qualified_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}:{ns}/{}", self.runtime, self.name),
            None => format!("{}:{}", self.runtime, self.name),
        }
    }

    /// Kubernetes pod (namespace, name) from the CRI / kubelet labels.
    pub fn pod(&self) -> Option<(&str, &str)> {
        let ns = self.labels.get("io.kubernetes.pod.namespace")?;
        let name = self.labels.get("io.kubernetes.pod.name")?;
        Some((ns, name))
    }

    /// Path of the network namespace of a running container.
    pub fn netns_path(&self) -> Option<PathBuf> {
        self.pid.filter(|p| *p > 0).map(|p| PathBuf::from(format!("/proc/{p}/ns/net")))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "{runtime} is not running here: {socket} does not exist or nothing listens on it (start {runtime}, or set {hint})"
    )]
    Absent { runtime: RuntimeKind, socket: String, hint: &'static str },
    #[error("permission denied on {socket}: {}", crate::platform::privileges::socket_access(.socket))]
    Permission { socket: String },
    #[error("talking to {runtime} at {socket} failed: {reason}")]
    Api { runtime: RuntimeKind, socket: String, reason: String },
    #[error(
        "{runtime} at {address} sent {what}; no {runtime} sends that much, so cnet stopped reading: check what listens there ({hint} chooses the address)"
    )]
    TooLarge { runtime: RuntimeKind, address: String, what: String, hint: &'static str },
}

/// A container runtime reached through its API socket.
pub trait Runtime: Send + Sync {
    fn kind(&self) -> RuntimeKind;
    /// Where cnet talks to it (for messages).
    fn socket(&self) -> &str;
    /// Every container it knows, running or not.
    fn list(&self) -> BoxFuture<'_, Result<Vec<Container>, RuntimeError>>;
    /// Waits until the runtime reports a container event (start, die…), so
    /// a watcher can look again at once; runtimes without an event stream
    /// here never resolve, and the watcher falls back to polling.
    fn changed(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::pending())
    }
}

/// Connects to one runtime. `Absent` when its socket is not there.
pub async fn connect(kind: RuntimeKind) -> Result<Box<dyn Runtime>, RuntimeError> {
    match kind {
        RuntimeKind::Docker => docker::connect().map(|r| Box::new(r) as Box<dyn Runtime>),
        RuntimeKind::Podman => podman::connect().map(|r| Box::new(r) as Box<dyn Runtime>),
        RuntimeKind::Containerd => containerd::connect().await.map(|r| Box::new(r) as Box<dyn Runtime>),
    }
}

/// Connects to the runtimes asked for. With `only` empty, every runtime whose
/// socket answers (absent ones are skipped); otherwise exactly those, and an
/// absent one is an error.
pub async fn connect_many(only: &[RuntimeKind]) -> Result<Vec<Box<dyn Runtime>>, RuntimeError> {
    let mut out = Vec::new();
    if only.is_empty() {
        for kind in RuntimeKind::ALL {
            match connect(kind).await {
                Ok(r) => out.push(r),
                Err(RuntimeError::Absent { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    } else {
        for kind in only {
            out.push(connect(*kind).await?);
        }
    }
    Ok(out)
}

/// Checks that something listens on a unix socket, telling "not there"
/// from "not allowed" before any client library hides the difference.
pub(crate) fn probe_socket(kind: RuntimeKind, path: &Path, hint: &'static str) -> Result<(), RuntimeError> {
    let socket = path.display().to_string();
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(RuntimeError::Permission { socket }),
        Err(_) => Err(RuntimeError::Absent { runtime: kind, socket, hint }),
    }
}

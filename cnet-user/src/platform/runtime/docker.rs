//! Docker through its Engine API (bollard). Podman's Docker-compatible API
//! is the same protocol, so [`EngineApi`] serves both.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bollard::Docker;
use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use super::{Container, NetworkInfo, Runtime, RuntimeError, RuntimeKind, probe_socket};

pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Oldest API version that has every field cnet reads (Docker 20.10 and
/// Podman 4 speak it); newer daemons accept older clients.
const API_VERSION: bollard::ClientVersion = bollard::ClientVersion { major_version: 1, minor_version: 41 };

/// A Docker Engine API endpoint (Docker itself, or Podman's compat API).
pub struct EngineApi {
    kind: RuntimeKind,
    socket: String,
    client: Docker,
    /// Docker's event stream, opened on first use. In a Mutex only to make
    /// the struct Sync; it is reached through `&mut self` (`get_mut`).
    events: std::sync::Mutex<Option<EventStream>>,
}

type EventStream = BoxStream<'static, Result<bollard::models::EventMessage, bollard::errors::Error>>;

/// Connects to Docker at `$DOCKER_HOST` (unix:// or tcp://), else the default socket.
pub fn connect() -> Result<EngineApi, RuntimeError> {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() && !host.starts_with("unix://") => {
            let client = Docker::connect_with_http(&host, 120, &API_VERSION).map_err(|e| RuntimeError::Api {
                runtime: RuntimeKind::Docker,
                socket: host.clone(),
                reason: e.to_string(),
            })?;
            Ok(EngineApi::new(RuntimeKind::Docker, host, client))
        }
        Ok(host) if !host.is_empty() => {
            EngineApi::connect_unix(RuntimeKind::Docker, host.trim_start_matches("unix://"), "DOCKER_HOST")
        }
        _ => EngineApi::connect_unix(RuntimeKind::Docker, DEFAULT_SOCKET, "DOCKER_HOST"),
    }
}

impl EngineApi {
    fn new(kind: RuntimeKind, socket: String, client: Docker) -> EngineApi {
        EngineApi { kind, socket, client, events: std::sync::Mutex::new(None) }
    }

    pub fn connect_unix(kind: RuntimeKind, path: &str, hint: &'static str) -> Result<EngineApi, RuntimeError> {
        probe_socket(kind, Path::new(path), hint)?;
        let client = Docker::connect_with_unix(path, 120, &API_VERSION).map_err(|e| RuntimeError::Api {
            runtime: kind,
            socket: path.to_string(),
            reason: e.to_string(),
        })?;
        Ok(EngineApi::new(kind, path.to_string(), client))
    }

    fn api_err(&self, e: bollard::errors::Error) -> RuntimeError {
        RuntimeError::Api { runtime: self.kind, socket: self.socket.clone(), reason: e.to_string() }
    }

    async fn list_containers(&self) -> Result<Vec<Container>, RuntimeError> {
        let opts = ListContainersOptionsBuilder::default().all(true).build();
        let summaries = self.client.list_containers(Some(opts)).await.map_err(|e| self.api_err(e))?;
        let mut out = Vec::with_capacity(summaries.len());
        for s in summaries {
            let Some(id) = s.id else { continue };
            // The list has no PID: inspect running containers for it. A
            // container that vanished in between is simply left out.
            let inspect = match self.client.inspect_container(&id, None).await {
                Ok(i) => i,
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => continue,
                Err(e) => return Err(self.api_err(e)),
            };
            let state = inspect.state.as_ref();
            let running = state.and_then(|s| s.running).unwrap_or(false);
            let pid = state.and_then(|s| s.pid).filter(|p| running && *p > 0).map(|p| p as u32);
            let state_name = state
                .and_then(|s| s.status.map(|st| st.to_string()))
                .or(s.state.map(|st| st.to_string()))
                .unwrap_or_default();
            let name = inspect
                .name
                .clone()
                .or_else(|| s.names.as_ref().and_then(|n| n.first().cloned()))
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string();
            let config = inspect.config.as_ref();
            let image = config.and_then(|c| c.image.clone()).or(s.image).unwrap_or_default();
            let labels: BTreeMap<String, String> =
                config.and_then(|c| c.labels.clone()).unwrap_or_default().into_iter().collect();
            let network_mode = inspect.host_config.as_ref().and_then(|h| h.network_mode.clone());
            let networks = inspect
                .network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref())
                .map(networks_of)
                .unwrap_or_default();
            out.push(Container {
                runtime: self.kind,
                id,
                name,
                namespace: None,
                image,
                state: state_name,
                pid,
                network_mode,
                networks,
                labels,
            });
        }
        Ok(out)
    }
}

fn networks_of(map: &HashMap<String, bollard::models::EndpointSettings>) -> Vec<NetworkInfo> {
    let mut nets: Vec<NetworkInfo> = map
        .iter()
        .map(|(name, ep)| {
            let ips = [ep.ip_address.as_deref(), ep.global_ipv6_address.as_deref()]
                .into_iter()
                .flatten()
                .filter(|ip| !ip.is_empty())
                .map(str::to_string)
                .collect();
            NetworkInfo { name: name.clone(), ips }
        })
        .collect();
    nets.sort_by(|a, b| a.name.cmp(&b.name));
    nets
}

impl Runtime for EngineApi {
    fn kind(&self) -> RuntimeKind {
        self.kind
    }

    fn socket(&self) -> &str {
        &self.socket
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Container>, RuntimeError>> {
        Box::pin(self.list_containers())
    }

    fn changed(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let client = self.client.clone();
            let slot = self.events.get_mut().unwrap_or_else(|p| p.into_inner());
            let stream = slot.get_or_insert_with(|| {
                let mut filters = HashMap::new();
                filters.insert("type", vec!["container", "network"]);
                let opts = EventsOptionsBuilder::default().filters(&filters).build();
                client.events(Some(opts)).boxed()
            });
            match stream.next().await {
                Some(Ok(_)) => {}
                // The stream broke (daemon restarted…): drop it, and let the
                // poll tick take over until the next call opens a new one.
                Some(Err(_)) | None => {
                    *slot = None;
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

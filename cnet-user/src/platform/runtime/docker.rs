//! Docker through its Engine API (bollard). Podman's Docker-compatible API
//! is the same protocol, so [`EngineApi`] serves both. bollard runs over
//! connections of cnet's own ([`bounded`]) that bound what the runtime sends.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::{BollardRequest, Docker};
use futures_util::future::BoxFuture;

use super::bounded::{self, Address, Events, EventsEnd, Meter};
use super::{Container, NetworkInfo, Runtime, RuntimeError, RuntimeKind, probe_socket};

pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Oldest API version that has every field cnet reads (Docker 20.10 and
/// Podman 4 speak it); newer daemons accept older clients.
const API_VERSION: bollard::ClientVersion = bollard::ClientVersion { major_version: 1, minor_version: 41 };

/// The events cnet follows: containers starting and stopping, and network
/// changes (a container connected to another network gets a new veth).
/// `filters={"type":["container","network"]}`, URL-encoded.
const EVENTS_QUERY: &str = "filters=%7B%22type%22%3A%5B%22container%22%2C%22network%22%5D%7D";

/// A Docker Engine API endpoint (Docker itself, or Podman's compat API).
pub struct EngineApi {
    kind: RuntimeKind,
    socket: String,
    address: Address,
    /// The variable that chooses the address, for messages.
    hint: &'static str,
    client: Docker,
    /// What this client's connections have read (see [`bounded`]).
    meter: Arc<Meter>,
    /// Docker's event stream, opened on first use. In a Mutex only to make
    /// the struct Sync; it is reached through `&mut self` (`get_mut`).
    events: std::sync::Mutex<EventsState>,
}

enum EventsState {
    /// Not open: the next wait opens it.
    Closed,
    /// Being opened. Kept here, not in the wait: the watcher drops a wait
    /// at each poll tick, and an open must survive that.
    Opening(BoxFuture<'static, Result<Events, EventsEnd>>),
    Open(Events),
    /// The runtime sent something that is not events: polling only.
    Off,
}

/// Connects to Docker at `$DOCKER_HOST` (unix:// or tcp://), else the default socket.
pub fn connect() -> Result<EngineApi, RuntimeError> {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() && !host.starts_with("unix://") => {
            let Some(hostport) = host.strip_prefix("tcp://").or_else(|| host.strip_prefix("http://")) else {
                return Err(RuntimeError::Api {
                    runtime: RuntimeKind::Docker,
                    socket: host.clone(),
                    reason: "DOCKER_HOST must be unix://PATH or tcp://HOST:PORT (cnet speaks neither TLS nor ssh)"
                        .into(),
                });
            };
            let address = Address::Tcp(hostport.trim_end_matches('/').to_string());
            EngineApi::with_address(RuntimeKind::Docker, host.clone(), address, "DOCKER_HOST")
        }
        Ok(host) if !host.is_empty() => {
            EngineApi::connect_unix(RuntimeKind::Docker, host.trim_start_matches("unix://"), "DOCKER_HOST")
        }
        _ => EngineApi::connect_unix(RuntimeKind::Docker, DEFAULT_SOCKET, "DOCKER_HOST"),
    }
}

impl EngineApi {
    /// A client whose every request goes over a new connection of
    /// [`bounded::send`], counted against one [`Meter`].
    fn with_address(
        kind: RuntimeKind,
        socket: String,
        address: Address,
        hint: &'static str,
    ) -> Result<EngineApi, RuntimeError> {
        let meter = Arc::new(Meter::default());
        let (addr, m) = (address.clone(), meter.clone());
        let transport = move |req: BollardRequest| {
            let (addr, m) = (addr.clone(), m.clone());
            async move { bounded::send(&addr, Some(m), req).await.map_err(bollard::errors::Error::from) }
        };
        let client = Docker::connect_with_custom_transport(transport, Some(address.base_url()), 120, &API_VERSION)
            .map_err(|e| RuntimeError::Api { runtime: kind, socket: socket.clone(), reason: e.to_string() })?;
        Ok(EngineApi { kind, socket, address, hint, client, meter, events: std::sync::Mutex::new(EventsState::Closed) })
    }

    pub fn connect_unix(kind: RuntimeKind, path: &str, hint: &'static str) -> Result<EngineApi, RuntimeError> {
        probe_socket(kind, Path::new(path), hint)?;
        EngineApi::with_address(kind, path.to_string(), Address::Unix(path.into()), hint)
    }

    fn api_err(&self, e: bollard::errors::Error) -> RuntimeError {
        // A cut connection reaches bollard as "error reading a body": the
        // meter knows what was cut.
        if let Some(what) = self.meter.take_cut() {
            return RuntimeError::TooLarge {
                runtime: self.kind,
                address: self.address.to_string(),
                what,
                hint: self.hint,
            };
        }
        RuntimeError::Api { runtime: self.kind, socket: self.socket.clone(), reason: e.to_string() }
    }

    async fn list_containers(&self) -> Result<Vec<Container>, RuntimeError> {
        self.meter.start_listing();
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
            let EngineApi { kind, address, hint, events, .. } = self;
            let slot = events.get_mut().unwrap_or_else(|p| p.into_inner());
            if matches!(slot, EventsState::Closed) {
                let address = address.clone();
                // Unversioned, as bollard sends its requests: the daemon's
                // own version answers.
                let path = format!("/events?{EVENTS_QUERY}");
                *slot = EventsState::Opening(Box::pin(async move { Events::open(&address, &path).await }));
            }
            if let EventsState::Opening(opening) = slot {
                match opening.await {
                    Ok(ev) => *slot = EventsState::Open(ev),
                    // Not there (daemon restarting…): the poll tick takes
                    // over until the next call tries again.
                    Err(_) => {
                        *slot = EventsState::Closed;
                        std::future::pending::<()>().await
                    }
                }
            }
            let EventsState::Open(stream) = slot else { return std::future::pending::<()>().await };
            match stream.next().await {
                Ok(()) => {}
                // The stream broke (daemon restarted…): drop it, and let the
                // poll tick take over until the next call opens a new one.
                Err(EventsEnd::Closed) => {
                    *slot = EventsState::Closed;
                    std::future::pending::<()>().await;
                }
                Err(EventsEnd::LineTooLong) => {
                    log::warn!(
                        "{kind} at {address} sent an event line longer than {} on its event stream; no {kind} event is that long, so cnet cut the stream and follows {kind}'s containers by polling only: check what listens there ({hint} chooses the address)",
                        bounded::mib(bounded::MAX_EVENT)
                    );
                    *slot = EventsState::Off;
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

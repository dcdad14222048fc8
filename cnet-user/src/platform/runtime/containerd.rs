//! containerd through its gRPC API: every namespace's containers, with the
//! PID of their task. containerd knows nothing of networks (CNI does that),
//! so interfaces come from the task's network namespace only.

use std::collections::BTreeMap;
use std::path::Path;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::namespaces_client::NamespacesClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{ListContainersRequest, ListNamespacesRequest, ListTasksRequest};
use containerd_client::types::v1::Status;
use futures_util::future::BoxFuture;
use tonic::Request;
use tonic::transport::Channel;

use super::{Container, Runtime, RuntimeError, RuntimeKind, probe_socket};

/// `$CNET_CONTAINERD_SOCKET` overrides it.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";

/// Namespaces that belong to Docker: its containers are listed through
/// Docker's API, with their names.
const DOCKER_NAMESPACES: [&str; 2] = ["moby", "plugins.moby"];

pub struct Containerd {
    socket: String,
    channel: Channel,
}

pub async fn connect() -> Result<Containerd, RuntimeError> {
    let socket = std::env::var("CNET_CONTAINERD_SOCKET").unwrap_or_else(|_| DEFAULT_SOCKET.to_string());
    let socket = socket.trim_start_matches("unix://").to_string();
    probe_socket(RuntimeKind::Containerd, Path::new(&socket), "CNET_CONTAINERD_SOCKET")?;
    let channel = containerd_client::connect(&socket).await.map_err(|e| RuntimeError::Api {
        runtime: RuntimeKind::Containerd,
        socket: socket.clone(),
        reason: e.to_string(),
    })?;
    Ok(Containerd { socket, channel })
}

/// A request carrying the namespace header every containerd call needs.
fn in_namespace<T>(msg: T, ns: &str) -> Result<Request<T>, tonic::Status> {
    let mut req = Request::new(msg);
    let value = ns.parse().map_err(|_| tonic::Status::invalid_argument(format!("bad namespace {ns:?}")))?;
    req.metadata_mut().insert("containerd-namespace", value);
    Ok(req)
}

impl Containerd {
    fn api_err(&self, e: tonic::Status) -> RuntimeError {
        RuntimeError::Api {
            runtime: RuntimeKind::Containerd,
            socket: self.socket.clone(),
            reason: e.message().to_string(),
        }
    }

    async fn list_all(&self) -> Result<Vec<Container>, RuntimeError> {
        let namespaces = NamespacesClient::new(self.channel.clone())
            .list(ListNamespacesRequest::default())
            .await
            .map_err(|e| self.api_err(e))?
            .into_inner()
            .namespaces;
        let mut out = Vec::new();
        for ns in namespaces.iter().map(|n| n.name.as_str()) {
            if DOCKER_NAMESPACES.contains(&ns) {
                continue;
            }
            let req = in_namespace(ListContainersRequest::default(), ns).map_err(|e| self.api_err(e))?;
            let containers =
                ContainersClient::new(self.channel.clone()).list(req).await.map_err(|e| self.api_err(e))?.into_inner();
            let req = in_namespace(ListTasksRequest::default(), ns).map_err(|e| self.api_err(e))?;
            let tasks =
                TasksClient::new(self.channel.clone()).list(req).await.map_err(|e| self.api_err(e))?.into_inner();
            for c in containers.containers {
                // containerd 1.6 leaves container_id empty; the init task has the container id.
                let task = tasks.tasks.iter().find(|t| t.container_id == c.id || t.id == c.id);
                let status = task.and_then(|t| Status::try_from(t.status).ok());
                let state = match status {
                    None => "created".to_string(),
                    Some(s) => s.as_str_name().trim_start_matches("STATUS_").to_lowercase(),
                };
                let pid = task.filter(|t| status == Some(Status::Running) && t.pid > 0).map(|t| t.pid);
                let labels: BTreeMap<String, String> = c.labels.into_iter().collect();
                out.push(Container {
                    runtime: RuntimeKind::Containerd,
                    name: c.id.clone(),
                    id: c.id,
                    namespace: Some(ns.to_string()),
                    image: c.image,
                    state,
                    pid,
                    network_mode: None,
                    networks: Vec::new(),
                    labels,
                });
            }
        }
        Ok(out)
    }
}

impl Runtime for Containerd {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Containerd
    }

    fn socket(&self) -> &str {
        &self.socket
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Container>, RuntimeError>> {
        Box::pin(self.list_all())
    }
}

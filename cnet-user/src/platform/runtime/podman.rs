//! Podman through its Docker-compatible API socket (`podman system service`).

use super::docker::EngineApi;
use super::{RuntimeError, RuntimeKind};

/// Rootful Podman's API socket; `$CNET_PODMAN_SOCKET` overrides it.
pub const DEFAULT_SOCKET: &str = "/run/podman/podman.sock";

pub fn connect() -> Result<EngineApi, RuntimeError> {
    let path = std::env::var("CNET_PODMAN_SOCKET").unwrap_or_else(|_| DEFAULT_SOCKET.to_string());
    EngineApi::connect_unix(RuntimeKind::Podman, path.trim_start_matches("unix://"), "CNET_PODMAN_SOCKET")
}

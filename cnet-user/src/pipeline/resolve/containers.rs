//! From a container to the host-side veths to hook, labeled with who the
//! container is.

use crate::model::Endpoint;
use crate::pipeline::resolve::{self, HostLinks, ResolveError};
use crate::platform::runtime::Container;

/// Host ends of the container's veths, or why there are none (the reason
/// completes "container X …").
pub fn resolve_container(c: &Container, host: &HostLinks) -> Result<Vec<Endpoint>, String> {
    let Some(path) = c.netns_path() else {
        return Err(format!("is not running (state {})", if c.state.is_empty() { "unknown" } else { &c.state }));
    };
    let mut fields = vec![
        ("container".to_string(), c.name.clone()),
        ("runtime".to_string(), c.runtime.to_string()),
        ("id".to_string(), c.short_id().to_string()),
    ];
    if let Some((ns, name)) = c.pod() {
        fields.push(("pod".into(), name.into()));
        fields.push(("namespace".into(), ns.into()));
    }
    let owner = c.qualified_name();
    match resolve::resolve_netns(&path, &owner, fields, host) {
        Ok(mut eps) => {
            for ep in &mut eps {
                let image = if c.image.is_empty() { "none" } else { &c.image };
                ep.label.details = format!("id {}, image {image}", c.short_id());
            }
            Ok(eps)
        }
        Err(ResolveError::HostNetns { .. }) => {
            Err("uses the host network (no veth of its own): capture the host interface with -i IFACE".into())
        }
        Err(ResolveError::NoVeth { detail, .. }) if !detail.is_empty() => {
            // Its veths exist, but their other ends are in a namespace of
            // their own (rootful netavark's, rootless Podman's, a nested
            // one): cnet hooks the other end, so it must run there.
            Err(format!(
                "has veths, but their other ends are in another network namespace, not cnet's (Podman with netavark or rootless, or a nested namespace): cnet hooks the other end of a veth, so it can capture this container only when run in the namespace that holds them{detail}"
            ))
        }
        Err(ResolveError::NoVeth { .. }) => {
            let mode = c.network_mode.as_deref().map(|m| format!(" (network mode {m})")).unwrap_or_default();
            Err(format!(
                "has no veth{mode}: `--network none`, macvlan, ipvlan and user-mode (pasta, slirp4netns) networks cannot be captured by veth"
            ))
        }
        // The process went away between listing and looking: it stopped.
        Err(ResolveError::Io { .. }) if !path.exists() => Err("stopped while cnet looked at it".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Keeps the endpoints whose container-side interface is in `ifaces` (all
/// when `ifaces` is empty).
pub fn filter_ifaces(eps: Vec<Endpoint>, ifaces: &[String]) -> Vec<Endpoint> {
    if ifaces.is_empty() {
        return eps;
    }
    eps.into_iter().filter(|e| ifaces.contains(&e.label.iface)).collect()
}

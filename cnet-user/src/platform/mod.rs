//! Adapters to the operating system and the container runtimes: rtnetlink
//! ([`netlink`]), network namespaces ([`netns`]), capabilities and users
//! ([`privileges`]), files in folders other users can write ([`safefs`]),
//! and Docker, Podman and containerd ([`runtime`]).

pub mod netlink;
pub mod netns;
pub mod privileges;
pub mod runtime;
pub mod safefs;

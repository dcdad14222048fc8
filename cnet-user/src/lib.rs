//! cnet: capture container network traffic by name.
//!
//! Data flow, one module per stage: [`resolve`] (what to hook) →
//! [`attach`] (load and attach the eBPF programs) → [`collect`] (ring buffer
//! records to labeled packets) → [`sinks`] (pcapng, printer).
//! [`capture`] runs the pipeline for the `capture` command; [`latency`] is a
//! sink on the same pipeline for the `latency` command.

pub mod attach;
pub mod capture;
pub mod cli;
pub mod collect;
pub mod decode;
pub mod extcap;
pub mod filter;
pub mod latency;
pub mod list;
pub mod netlink;
pub mod netns;
pub mod privileges;
pub mod readback;
pub mod reader;
pub mod resolve;
pub mod runtime;
pub mod safefs;
pub mod sinks;

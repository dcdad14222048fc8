//! The capture pipeline, one module per stage:
//! [`resolve`] (targets → host interfaces with labels) → [`attach`] (load
//! the eBPF object, hook each interface) → [`collect`] (ring-buffer records
//! → labelled packets) → [`sinks`] (pcapng, printer, rotation, and the
//! outputs they write to).

pub mod attach;
pub mod collect;
pub mod resolve;
pub mod sinks;

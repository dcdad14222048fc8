//! cnet: capture container network traffic by name.
//!
//! The crate is laid out by role (see ARCHITECTURE.md at the repository
//! root): [`cmd`] holds one module per command, [`pipeline`] the capture
//! stages (resolve → attach → collect → sinks), [`codec`] decoding and
//! capture files, [`platform`] the kernel and runtime adapters, and
//! [`latency`] the latency engine, a sink on the same pipeline. [`cli`] is
//! the command line. [`model`] (the shared vocabulary) and [`text`] (foreign
//! text made safe to print, and the label grammar) import nothing from the
//! crate.

pub mod cli;
pub mod cmd;
pub mod codec;
pub mod latency;
pub mod model;
pub mod pipeline;
pub mod platform;
pub mod text;
pub mod version;

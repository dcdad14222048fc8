// This file exists so that cnet-user can have a build-dependency on this
// crate: cargo then rebuilds cnet-user when the eBPF sources change. The
// programs themselves are the `cnet` binary target (src/main.rs), built for
// bpfel-unknown-none by cnet-user's build script.
#![no_std]

//! The build's identity: the version, the commit it was built from, and the
//! eBPF object embedded in the binary with the hash the build recorded for
//! it. `cnet --version` prints it and capture files carry it (`shb_userappl`).

use std::sync::OnceLock;

#[path = "ebpf_hash.rs"]
mod ebpf_hash;

/// The eBPF object built from `cnet-ebpf` by the build script.
pub(crate) static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/cnet"));

/// `git rev-parse --short HEAD` at build time, or "unknown".
pub const COMMIT: &str = env!("CNET_GIT_COMMIT");
/// The hash the build script computed over the object it built.
const EBPF_HASH_BUILT: &str = env!("CNET_EBPF_HASH");

/// "0.1.0 (commit abc1234, ebpf object 0123456789abcdef (built with this
/// binary))": what follows "cnet " in `cnet --version`.
pub fn string() -> &'static str {
    static S: OnceLock<String> = OnceLock::new();
    S.get_or_init(|| {
        let embedded = format!("{:016x}", ebpf_hash::fnv1a64(EBPF_OBJECT));
        let provenance = if embedded == EBPF_HASH_BUILT {
            "built with this binary".to_string()
        } else {
            format!("NOT the object this build made, which was {EBPF_HASH_BUILT}")
        };
        format!("{} (commit {COMMIT}, ebpf object {embedded} ({provenance}))", env!("CARGO_PKG_VERSION"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_object_is_the_one_the_build_hashed() {
        assert!(string().contains("(built with this binary)"), "{}", string());
        assert!(string().starts_with(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn fnv1a64_matches_the_reference_values() {
        // From the FNV reference test vectors.
        assert_eq!(ebpf_hash::fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(ebpf_hash::fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}

//! The hash that names an eBPF object in `cnet --version`: FNV-1a, 64 bits.
//! The build script hashes the object it builds and the binary hashes the
//! object it embeds, with this one definition (the build script includes
//! this file), so the two agree exactly when the binary carries the object
//! its build made. It tells builds apart; it is not a security check.

pub const fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

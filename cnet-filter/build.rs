//! Links libpcap. `CNET_LIBPCAP_STATIC_DIR=DIR` links `DIR/libpcap.a`
//! statically (the release build makes one from libpcap's source, with only
//! what filter compilation needs); otherwise the system's shared libpcap.

fn main() {
    println!("cargo:rerun-if-env-changed=CNET_LIBPCAP_STATIC_DIR");
    match std::env::var("CNET_LIBPCAP_STATIC_DIR") {
        Ok(dir) if !dir.is_empty() => {
            println!("cargo:rustc-link-search=native={dir}");
            println!("cargo:rustc-link-lib=static=pcap");
        }
        _ => println!("cargo:rustc-link-lib=pcap"),
    }
}

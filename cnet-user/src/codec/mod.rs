//! Bytes to meaning, with no I/O of their own beyond the reader they are
//! given: packet decoding ([`decode`], [`dns`]) and reading capture files
//! ([`capture_file`]).

pub mod capture_file;
pub mod decode;
pub mod dns;

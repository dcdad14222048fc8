//! Bytes to meaning, with no I/O of their own beyond the reader they are
//! given: packet decoding ([`decode`], [`dns`]), link types ([`link`]) and
//! reading capture files ([`capture_file`]).

pub mod capture_file;
pub mod decode;
pub mod dns;
pub mod hexdump;
pub mod link;

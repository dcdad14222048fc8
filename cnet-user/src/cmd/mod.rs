//! The commands, one file each: they turn a command's options into a run of
//! the pipeline (or of a file reader) and own everything the user sees on
//! the terminal: "capturing on" lines, status, summaries, tables.

pub mod capture;
pub mod extcap;
pub mod latency;
pub mod list;
pub mod read;

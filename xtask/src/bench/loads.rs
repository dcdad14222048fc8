//! The bench's loads: their names and units, and one timed run of a load
//! from host 0 to the `LoadServers` in host 1 (iperf3 for TCP bulk, the
//! shared `cnet_tests::traffic` generators for the rest).

use anyhow::{Context, Result};
use cnet_tests::Lab;
use cnet_tests::traffic::{self, IPERF_PORT};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Load {
    Tcp1,
    Tcp2,
    Udp64,
    ReqResp,
}

impl Load {
    /// Every load, in the order they run.
    pub(super) const ALL: [Load; 4] = [Load::Tcp1, Load::Tcp2, Load::Udp64, Load::ReqResp];

    pub(super) fn name(self) -> &'static str {
        match self {
            Load::Tcp1 => "tcp-bulk-1",
            Load::Tcp2 => "tcp-bulk-2",
            Load::Udp64 => "udp-64B",
            Load::ReqResp => "tcp-req-resp",
        }
    }
    pub(super) fn unit(self) -> &'static str {
        match self {
            Load::Tcp1 | Load::Tcp2 => "Gbit/s",
            Load::Udp64 => "kpps",
            Load::ReqResp => "ktrans/s",
        }
    }
}

/// Runs one load for `secs` seconds; returns its throughput in the load's unit.
pub(super) fn generate(lab: &Lab, load: Load, secs: u64) -> Result<f64> {
    match load {
        Load::Tcp1 | Load::Tcp2 => {
            let streams = if load == Load::Tcp1 { "1" } else { "2" };
            let out = lab.exec(
                0,
                &[
                    "iperf3",
                    "-c",
                    &lab.host(1).ip.to_string(),
                    "-p",
                    &IPERF_PORT.to_string(),
                    "-t",
                    &secs.to_string(),
                    "-P",
                    streams,
                    "-J",
                ],
            )?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 JSON")?;
            let bps = v["end"]["sum_received"]["bits_per_second"].as_f64().context("iperf3 result")?;
            Ok(bps / 1e9)
        }
        // kpps counted at the sender.
        Load::Udp64 => Ok(traffic::udp_flood(lab, 0, 1, secs)? as f64 / secs as f64 / 1e3),
        // Thousands of transactions/s.
        Load::ReqResp => Ok(traffic::req_resp(lab, 0, 1, secs)? as f64 / secs as f64 / 1e3),
    }
}

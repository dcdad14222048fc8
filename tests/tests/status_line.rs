//! The live status line: on a terminal while a file is written, one line
//! rewritten in place about once a second and cleared at the end; never when
//! stderr is not a terminal.

use std::process::Command;

use cnet_tests::{Lab, TempDir, cnet_bin, cnet_output};

#[test]
fn a_terminal_gets_one_status_line_and_a_pipe_gets_none() {
    let lab = Lab::new(2).unwrap();
    let dir = TempDir::new("status").unwrap();
    let file = dir.path().join("out.pcapng");
    let (a, b) = (lab.host(0).netns.clone(), lab.host(1).netns.clone());
    // script(1) gives cnet a terminal and keeps what it showed; traffic
    // flows meanwhile.
    let cmd = format!("{} capture --netns {a} --netns {b} --duration 3 -w {}", cnet_bin().display(), file.display());
    let typescript = dir.path().join("typescript");
    let mut term = Command::new("script").args(["-qec", &cmd, typescript.to_str().unwrap()]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    lab.ping(0, 1, 3).unwrap();
    assert!(term.wait().unwrap().success());
    let shown = std::fs::read_to_string(&typescript).unwrap();
    assert!(shown.contains("\r\x1b[Kcnet: "), "no status line: {shown:?}");
    assert!(shown.contains(" dropped, "), "{shown:?}");
    // Two targets: the line counts per target.
    assert!(shown.contains(&format!("netns:{a} eth0 ")), "{shown:?}");
    // Cleared before the summary, which reads as always.
    let summary_at = shown.find("packets captured").unwrap();
    let last_clear = shown[..summary_at].rfind("\r\x1b[K").unwrap();
    assert!(!shown[last_clear..summary_at].contains(" dropped, "), "status left before the summary: {shown:?}");

    // Without a terminal: no status line at all.
    let r = cnet_output(&[
        "capture",
        "--netns",
        &a,
        "--duration",
        "2",
        "-w",
        dir.path().join("out3.pcapng").to_str().unwrap(),
    ])
    .unwrap();
    assert!(r.status.success(), "{}", r.stderr);
    assert!(!r.stderr.contains('\r') && !r.stderr.contains("\x1b[K"), "{:?}", r.stderr);
}

//! The documentation stays true: every `cnet` command shown in README.md
//! and docs/*.md parses with cnet's own command line (a renamed option or
//! command fails here), every relative link and anchor resolves, and the
//! README stays a front door (at most 12 KB).
//!
//! Nothing here runs cnet: commands are parsed with `cnet::cli::Cli` and
//! checked with the same translation into options that `main` performs,
//! which reads nothing but a `-F` file and looks up nothing but a `-Z` user.

use std::path::{Path, PathBuf};

use clap::Parser;
use cnet::cli::{Cli, Command};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// README.md, ARCHITECTURE.md and every page of docs/.
fn doc_files() -> Vec<PathBuf> {
    let root = repo_root();
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    assert!(!pages.is_empty(), "docs/ has no pages");
    files.extend(pages);
    files
}

fn rel(p: &Path) -> String {
    p.strip_prefix(repo_root()).unwrap_or(p).display().to_string()
}

/// Lines of fenced blocks tagged sh, shell, bash or console, with their
/// 1-based line numbers; a line ending in `\` is joined with the next.
fn shell_lines(text: &str) -> Vec<(usize, String)> {
    block_lines(text, &["sh", "shell", "bash", "console"])
}

/// Lines of fenced blocks whose tag is one of `langs`.
fn block_lines(text: &str, langs: &[&str]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_shell = false;
    let mut in_other = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            if in_shell || in_other {
                in_shell = false;
                in_other = false;
            } else {
                let lang = info.trim();
                in_shell = langs.contains(&lang);
                in_other = !in_shell;
            }
            continue;
        }
        if !in_shell {
            continue;
        }
        let (n, mut joined) = match pending.take() {
            Some((n, s)) => (n, s + " " + trimmed),
            None => (i + 1, trimmed.to_string()),
        };
        if joined.ends_with('\\') {
            joined.pop();
            pending = Some((n, joined));
            continue;
        }
        out.push((n, joined));
    }
    out
}

/// The words of a shell command line as the shell would pass them: quotes
/// and backslashes removed, stopping at an unquoted `|`, `;`, `&`, `>`, `<`
/// or `#` that starts a comment.
fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some('$') => return Err("a shell expansion ($) in a documented command".into()),
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            '$' | '`' => return Err("a shell expansion in a documented command: write the value".into()),
            '#' if !in_word => break,
            '|' | ';' | '&' | '<' => break,
            '>' => {
                // `2>` or `2>&1`: the 2 belongs to the redirection.
                if in_word && word == "2" {
                    word.clear();
                    in_word = false;
                }
                break;
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// The cnet command of a documented line: `cnet …`, `$ cnet …`, `# cnet …`,
/// or any of them through `sudo`.
fn cnet_command(line: &str) -> Option<&str> {
    let mut l = line.trim();
    for prompt in ["$ ", "# "] {
        if let Some(rest) = l.strip_prefix(prompt) {
            l = rest.trim_start();
        }
    }
    if let Some(rest) = l.strip_prefix("sudo ") {
        l = rest.trim_start();
    }
    l.starts_with("cnet ").then_some(l)
}

/// Parses a documented command and runs the translation `main` runs before
/// doing anything, so that flags clap accepts but cnet refuses together
/// (`-C` without `-w`, `--print` with `-w -`) fail here too.
fn check_command(argv: &[String]) -> Result<(), String> {
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            return Ok(());
        }
        Err(e) => return Err(e.to_string()),
    };
    // -F names a file of the example, -Z a user of the reader's machine:
    // neither is part of what the command line means.
    let outside = |e: &anyhow::Error| {
        let m = format!("{e:#}");
        m.contains("cannot read filter file") || m.starts_with("-Z:")
    };
    let checked = match cli.command {
        Command::Capture(mut args) => {
            if args.list_interfaces {
                Ok(())
            } else if let Some(file) = args.read.take() {
                args.read_options(file).map(drop)
            } else {
                args.into_options().map(drop)
            }
        }
        Command::Read(args) => args.into_options().map(drop),
        Command::Latency(args) => args.into_options().map(drop),
        Command::Extcap(args) => check_extcap(&args.args),
        Command::List(_) | Command::Completions(_) | Command::Man(_) => Ok(()),
    };
    match checked {
        Err(e) if !outside(&e) => Err(format!("{e:#}")),
        _ => Ok(()),
    }
}

/// `cnet extcap` takes its words raw (Wireshark passes options clap would
/// reject); what people type is install or uninstall with --user or
/// --system, or Wireshark's own --extcap-… calls.
fn check_extcap(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("install" | "uninstall") => {
            for a in &args[1..] {
                anyhow::ensure!(a == "--user" || a == "--system", "cnet extcap {} has no option {a}", args[0]);
            }
            Ok(())
        }
        Some(a) if a.starts_with("--extcap-") => Ok(()),
        other => anyhow::bail!("cnet extcap {other:?}: not install, uninstall or an --extcap-… call"),
    }
}

#[test]
fn every_documented_command_parses() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line_no, line) in shell_lines(&text) {
            let Some(cmd) = cnet_command(&line) else { continue };
            let result = shell_words(cmd).and_then(|argv| check_command(&argv));
            checked += 1;
            if let Err(e) = result {
                failures.push(format!("{}:{line_no}: `{cmd}`: {}", rel(&file), e.trim()));
            }
        }
    }
    assert!(checked >= 30, "only {checked} documented cnet commands found: is the extraction broken?");
    assert!(failures.is_empty(), "documented commands that cnet does not accept:\n{}", failures.join("\n"));
}

/// Commands the guide shows being refused (in `text` blocks, followed by
/// cnet's error) are still refused, so the guide never shows an error cnet
/// no longer gives.
#[test]
fn every_documented_refusal_is_refused() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines = block_lines(&text, &["text"]);
        for (i, (line_no, line)) in lines.iter().enumerate() {
            let Some(cmd) = cnet_command(line) else { continue };
            let shows_error = lines.get(i + 1).is_some_and(|(_, next)| next.starts_with("cnet: error:"));
            if !shows_error {
                continue;
            }
            checked += 1;
            if shell_words(cmd).and_then(|argv| check_command(&argv)).is_ok() {
                failures.push(format!("{}:{line_no}: `{cmd}` is accepted now", rel(&file)));
            }
        }
    }
    assert!(checked >= 3, "only {checked} documented refusals found: is the extraction broken?");
    assert!(failures.is_empty(), "documented refusals that cnet accepts:\n{}", failures.join("\n"));
}

/// The extraction itself: pipes, redirections, comments, quotes and
/// prompts are handled as a shell would, and a renamed option is caught.
#[test]
fn command_extraction_works_like_a_shell() {
    let words = |l: &str| shell_words(cnet_command(l).unwrap()).unwrap();
    assert_eq!(
        words("$ cnet capture --netns blue -w - | wireshark -k -i -"),
        ["cnet", "capture", "--netns", "blue", "-w", "-"]
    );
    assert_eq!(words("cnet list 2>&1 # why not"), ["cnet", "list"]);
    assert_eq!(words("cnet list --json > list.json"), ["cnet", "list", "--json"]);
    assert_eq!(
        words(r#"sudo cnet read x.pcapng 'icmp or udp port 53' "a b\"c""#),
        ["cnet", "read", "x.pcapng", "icmp or udp port 53", "a b\"c"]
    );
    assert!(cnet_command("# cnet's labels").is_none());
    assert!(shell_words("cnet capture --pid $(pgrep nginx)").is_err());
    assert!(check_command(&words("cnet capture --netns blue -s 96 -w x.pcapng")).is_ok());
    assert!(check_command(&words("cnet capture --netns blue --snaplen 96")).is_err());
    assert!(check_command(&words("cnet catpure --netns blue")).is_err());
    assert!(check_command(&words("cnet capture --netns blue -C 100")).is_err());
    assert!(check_command(&words("cnet capture --netns blue -F missing.filter")).is_ok());
    assert!(check_command(&words("cnet extcap install --system")).is_ok());
    assert!(check_command(&words("cnet extcap install --global")).is_err());
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// as hyphens; repeated headings get -1, -2, ….
fn anchors(text: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                '-' | '_' => Some(c),
                c if c.is_alphanumeric() => Some(c.to_lowercase().next().unwrap_or(c)),
                _ => None,
            })
            .collect();
        let n = seen.iter().filter(|s| **s == slug).count();
        out.push(if n == 0 { slug.clone() } else { format!("{slug}-{n}") });
        seen.push(slug);
    }
    out
}

/// Targets of inline links `[text](target)` outside code blocks and code
/// spans, with their line numbers.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_code = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Code spans are not links: drop everything between backticks.
        let plain: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("").to_string();
            out.push((i + 1, target));
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_resolves() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let dir = file.parent().unwrap();
        for (line_no, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() { file.clone() } else { dir.join(path) };
            if !dest.exists() {
                failures.push(format!("{}:{line_no}: {target}: no file {}", rel(&file), rel(&dest)));
                continue;
            }
            if let Some(anchor) = anchor {
                if dest.extension().is_none_or(|e| e != "md") {
                    continue;
                }
                let dest_text = std::fs::read_to_string(&dest).unwrap();
                if !anchors(&dest_text).iter().any(|a| a == anchor) {
                    failures.push(format!(
                        "{}:{line_no}: {target}: no heading #{anchor} in {}",
                        rel(&file),
                        rel(&dest)
                    ));
                }
            }
        }
    }
    assert!(checked >= 10, "only {checked} relative links found: is the extraction broken?");
    assert!(failures.is_empty(), "links that lead nowhere:\n{}", failures.join("\n"));
}

#[test]
fn anchors_follow_github() {
    let a = anchors("# cnet\n## Reading files back\n### `cnet latency`: per hop\n## Reading files back\n");
    assert_eq!(a, ["cnet", "reading-files-back", "cnet-latency-per-hop", "reading-files-back-1"]);
}

#[test]
fn the_readme_stays_a_front_door() {
    let size = std::fs::metadata(repo_root().join("README.md")).unwrap().len();
    assert!(size <= 12 * 1024, "README.md has {size} bytes: keep it under 12 KB and move details into docs/");
}

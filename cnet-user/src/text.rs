//! Text that cnet did not write itself: names and images from container
//! runtimes, namespace and interface names, strings from capture files and
//! packets. cnet runs as root and prints such text to terminals, to
//! Wireshark's line-based extcap protocol and into packet labels; this
//! module is the one place that makes it safe for each.
//!
//! - [`escape`]: for display. Control characters (C0, DEL, C1) and the
//!   invisible formatting characters that reorder or hide text (bidi
//!   overrides and isolates, zero-width characters, the BOM) become `\xNN`
//!   (code points below 0x100) or `\u{NNNN}`; everything else is shown as is.
//! - [`quote_value`] / [`parse_labels`]: the grammar of cnet's packet
//!   comments and of the owner in interface descriptions (README, "What the
//!   pcapng file holds"): `key=value` pairs separated by spaces, a value
//!   plain when it is made only of shown characters other than whitespace,
//!   `"`, `\` and `=`, else double-quoted with `\"`, `\\` and the escapes
//!   above. Parsing gives back exactly what was quoted.
//! - [`truncate`]: bounds text at a character boundary, with a marker.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Appended to text that was cut to fit a bound.
pub const TRUNCATED: &str = "…[truncated]";

/// Longest label value (a container, pod or namespace name, an interface
/// name) written into a packet comment or an interface description, in
/// bytes before quoting: real names are far shorter (Linux interface names
/// 15 bytes, Kubernetes names 253), and with every value bounded a comment
/// always fits in one pcapng option.
pub const MAX_LABEL_VALUE: usize = 1024;

/// Whether `c` is printed as is. Everything else is escaped.
pub fn is_shown(c: char) -> bool {
    !c.is_control()
        && !matches!(
            c,
            // Soft hyphen, Arabic letter mark, Mongolian vowel separator.
            '\u{ad}' | '\u{61c}' | '\u{180e}'
            // Zero-width space, (non-)joiner, LRM, RLM.
            | '\u{200b}'..='\u{200f}'
            // Line and paragraph separators.
            | '\u{2028}' | '\u{2029}'
            // Bidi embeddings and overrides (RLO …), isolates.
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            // Byte order mark / zero-width no-break space, annotations.
            | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
        )
}

/// Appends the escape of `c`: `\xNN` below 0x100, else `\u{NNNN}`.
fn push_escape(out: &mut String, c: char) {
    let n = u32::from(c);
    if n < 0x100 {
        let _ = write!(out, "\\x{n:02x}");
    } else {
        let _ = write!(out, "\\u{{{n:04x}}}");
    }
}

/// `s` with every character that is not [`is_shown`] escaped (`\x1b`,
/// `\x0a`, `\u{202e}`); borrowed when there is nothing to escape.
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_if(s, |c| !is_shown(c))
}

/// `s` for one field of a Wireshark extcap sentence (`{display=…}`):
/// [`escape`], and `{` and `}` as `\x7b` and `\x7d`, since the protocol has
/// no quoting and a brace would end the field or start a forged one.
pub fn escape_extcap(s: &str) -> Cow<'_, str> {
    escape_if(s, |c| !is_shown(c) || c == '{' || c == '}')
}

fn escape_if(s: &str, needs: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(&needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs(c) { push_escape(&mut out, c) } else { out.push(c) }
    }
    Cow::Owned(out)
}

/// `s` cut to at most `max` bytes, at a character boundary and ending with
/// [`TRUNCATED`], when it is longer; borrowed otherwise.
pub fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max.saturating_sub(TRUNCATED.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{TRUNCATED}", &s[..end]))
}

/// Whether a value can be written without quotes.
fn is_plain(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| is_shown(c) && !c.is_whitespace() && !matches!(c, '"' | '\\' | '='))
}

/// A label value as written in comments and descriptions: as is when plain
/// (`blue`, `3ee75010573b`), else double-quoted with `\"`, `\\` and the
/// escapes of [`escape`] (`"evil dir=in"`, `"a\x1b[2Jb"`, `""`).
pub fn quote_value(s: &str) -> Cow<'_, str> {
    if is_plain(s) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if !is_shown(c) => push_escape(&mut out, c),
            c => out.push(c),
        }
    }
    out.push('"');
    Cow::Owned(out)
}

/// [`quote_value`] of `s` bounded to [`MAX_LABEL_VALUE`] bytes.
pub fn label_value(s: &str) -> String {
    quote_value(&truncate(s, MAX_LABEL_VALUE)).into_owned()
}

/// An owner (`netns:blue`, `docker:web`, `pid:42`) with its name part as a
/// label value: `netns:blue`, `netns:"evil dir=in"`.
pub fn owner_value(owner: &str) -> String {
    match owner.split_once(':') {
        Some((kind, name)) if is_plain(kind) => format!("{kind}:{}", label_value(name)),
        _ => label_value(owner),
    }
}

/// The short label of a captured interface, `OWNER IFACE` with both as label
/// values (`netns:blue eth0`), as packet lines print it.
pub fn owner_label(owner: &str, iface: &str) -> String {
    format!("{} {}", owner_value(owner), label_value(iface))
}

/// Reads one value (plain or quoted) at the start of `s`: the value and the
/// rest of `s` after it. A plain value ends at whitespace; a quoted one at
/// its closing quote (an unterminated one, as in a damaged file, takes the
/// rest of `s`). Unknown escapes are kept as written.
pub fn parse_value(s: &str) -> (String, &str) {
    let Some(quoted) = s.strip_prefix('"') else {
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        return (s[..end].to_string(), &s[end..]);
    };
    let mut out = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (out, &quoted[i + 1..]),
            '\\' => {
                let rest = &quoted[i + 1..];
                if let Some((c, len)) = unescape(rest) {
                    out.push(c);
                    // Skip the escape's characters (all ASCII).
                    for _ in 0..len {
                        chars.next();
                    }
                } else {
                    out.push('\\');
                }
            }
            c => out.push(c),
        }
    }
    (out, "")
}

/// The character an escape (after its backslash) stands for, and the
/// escape's length: `"`, `\`, `xNN`, `u{N…}`.
fn unescape(s: &str) -> Option<(char, usize)> {
    let b = s.as_bytes();
    match *b.first()? {
        b'"' => Some(('"', 1)),
        b'\\' => Some(('\\', 1)),
        b'x' => {
            let hex = s.get(1..3)?;
            let n = u32::from_str_radix(hex, 16).ok().filter(|_| hex.bytes().all(|b| b.is_ascii_hexdigit()))?;
            Some((char::from_u32(n)?, 3))
        }
        b'u' => {
            let body = s.strip_prefix("u{")?;
            let end = body.find('}')?;
            let hex = &body[..end];
            if hex.is_empty() || hex.len() > 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            Some((char::from_u32(u32::from_str_radix(hex, 16).ok()?)?, 2 + end + 1))
        }
        _ => None,
    }
}

/// Parses a packet comment's `key=value` pairs (values plain or quoted, see
/// [`quote_value`]). Words without `=` (comments written by people or other
/// tools) are skipped; a key given twice keeps its last value.
pub fn parse_labels(comment: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = comment;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return labels;
        }
        let end = rest.find(|c: char| c == '=' || c.is_whitespace()).unwrap_or(rest.len());
        let key = &rest[..end];
        rest = &rest[end..];
        let Some(after) = rest.strip_prefix('=') else { continue };
        let (value, after) = parse_value(after);
        if !key.is_empty() {
            labels.insert(key.to_string(), value);
        }
        rest = after;
    }
}

/// Writes `key=value` pairs with [`label_value`] values, separated by
/// spaces: the packet comment grammar that [`parse_labels`] reads.
pub fn format_labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut s = String::new();
    for (k, v) in pairs {
        if !s.is_empty() {
            s.push(' ');
        }
        // Keys are cnet's own words; anything else in one is replaced so
        // that it cannot end the key early.
        s.extend(k.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' }));
        s.push('=');
        s.push_str(&label_value(v));
    }
    s
}

/// A serde_json formatter (around `F`, compact or pretty) that also writes
/// the characters that [`escape`] escapes as `\uXXXX`: serde_json escapes
/// only C0 controls, and JSON printed to a terminal must not carry a C1
/// control or a bidi override either. Any JSON parser reads the same value.
pub struct JsonFormatter<F>(pub F);

macro_rules! delegate {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $name<W: ?Sized + std::io::Write>(&mut self, w: &mut W $(, $arg: $ty)*) -> std::io::Result<()> {
            self.0.$name(w $(, $arg)*)
        }
    )*};
}

impl<F: serde_json::ser::Formatter> serde_json::ser::Formatter for JsonFormatter<F> {
    delegate! {
        begin_array(); end_array(); begin_array_value(first: bool); end_array_value();
        begin_object(); end_object(); begin_object_key(first: bool); end_object_key();
        begin_object_value(); end_object_value();
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(&mut self, w: &mut W, fragment: &str) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if !is_shown(c) {
                w.write_all(&fragment.as_bytes()[start..i])?;
                // Every character that is not shown is in the BMP: one \u.
                write!(w, "\\u{:04x}", u32::from(c))?;
                start = i + c.len_utf8();
            }
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

/// Writes `value` as one line of compact JSON through [`JsonFormatter`].
pub fn write_json<W: std::io::Write, T: serde::Serialize + ?Sized>(w: W, value: &T) -> serde_json::Result<()> {
    value.serialize(&mut serde_json::Serializer::with_formatter(w, JsonFormatter(serde_json::ser::CompactFormatter)))
}

/// Writes `value` as indented JSON through [`JsonFormatter`].
pub fn write_json_pretty<W: std::io::Write, T: serde::Serialize + ?Sized>(w: W, value: &T) -> serde_json::Result<()> {
    let f = JsonFormatter(serde_json::ser::PrettyFormatter::new());
    value.serialize(&mut serde_json::Serializer::with_formatter(w, f))
}

/// Whether `e` is a write to a pipe whose reader went away (EPIPE).
pub fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// Writes `s` to standard output and flushes it. A reader that went away
/// (`cnet … | head -3`) is not an error: as ripgrep does, cnet then stops
/// printing and exits 0 (`println!` would panic on the closed pipe).
pub fn print_stdout(s: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_controls_and_invisible_formatting() {
        assert_eq!(escape("web-1.db_2 ä ✓"), "web-1.db_2 ä ✓");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape("a\x1b[2Jb\x07\r\n\t\x7f"), r"a\x1b[2Jb\x07\x0d\x0a\x09\x7f");
        assert_eq!(escape("\u{9b}31m \u{202e}cod.exe \u{200b}"), r"\x9b31m \u{202e}cod.exe \u{200b}");
        assert_eq!(escape_extcap("a}{display=x}\n"), r"a\x7d\x7bdisplay=x\x7d\x0a");
    }

    #[test]
    fn truncates_at_a_char_boundary() {
        assert_eq!(truncate("short", 10), "short");
        let t = truncate(&"é".repeat(100), 50).into_owned();
        assert!(t.len() <= 50 && t.ends_with(TRUNCATED), "{t}");
        assert!(t.trim_end_matches(TRUNCATED).chars().all(|c| c == 'é'));
        let t = truncate(&"x".repeat(70_000), 65535).into_owned();
        assert_eq!(t.len(), 65535);
    }

    #[test]
    fn plain_values_stay_unquoted() {
        for v in ["blue", "web", "3ee75010573b", "eth0", "4026532178", "default/web", "netns:x", "ä"] {
            assert_eq!(quote_value(v), v);
        }
        assert_eq!(quote_value(""), r#""""#);
        assert_eq!(quote_value("evil dir=in ns=blue"), r#""evil dir=in ns=blue""#);
        assert_eq!(quote_value("a\"b\\c\x1b"), r#""a\"b\\c\x1b""#);
        assert_eq!(owner_value("netns:evil ns=blue"), r#"netns:"evil ns=blue""#);
        assert_eq!(owner_label("docker:web", "eth0"), "docker:web eth0");
    }

    #[test]
    fn forged_pairs_stay_inside_their_value() {
        let c = format_labels([("container", "evil dir=in ns=blue"), ("iface", "eth0"), ("dir", "out")]);
        assert_eq!(c, r#"container="evil dir=in ns=blue" iface=eth0 dir=out"#);
        let l = parse_labels(&c);
        assert_eq!(l.len(), 3, "{l:?}");
        assert_eq!(l["container"], "evil dir=in ns=blue");
        assert_eq!(l["dir"], "out");
        assert!(!l.contains_key("ns"));
    }

    #[test]
    fn parses_old_and_foreign_comments() {
        let l = parse_labels("ns=blue netns=4026532000 iface=eth0 dir=out");
        assert_eq!(l["ns"], "blue");
        assert_eq!(l.len(), 4);
        let l = parse_labels("hello world a=b=c =x");
        assert_eq!(l.len(), 1);
        assert_eq!(l["a"], "b=c");
        // Damaged: an unterminated quote and unknown escapes.
        let l = parse_labels(r#"a="x\qy b=c"#);
        assert_eq!(l["a"], r"x\qy b=c");
        assert_eq!(parse_labels(r#"a="\x4" b="\u{110000}""#)["a"], r"\x4");
    }

    #[test]
    fn json_escapes_what_the_terminal_would_act_on() {
        let v = serde_json::json!({"k\u{9b}": ["a\u{1b}[2J\u{9b}0m\u{202e}\n\"ü✓\u{1f600}"]});
        let mut compact = Vec::new();
        write_json(&mut compact, &v).unwrap();
        let compact = String::from_utf8(compact).unwrap();
        assert_eq!(compact, r#"{"k\u009b":["a\u001b[2J\u009b0m\u202e\n\"ü✓😀"]}"#);
        let mut pretty = Vec::new();
        write_json_pretty(&mut pretty, &v).unwrap();
        let pretty = String::from_utf8(pretty).unwrap();
        assert!(pretty.contains("\n  \"k\\u009b\": [\n"), "{pretty}");
        for s in [compact, pretty] {
            assert!(s.chars().all(|c| c == '\n' || is_shown(c)), "{s}");
            assert_eq!(serde_json::from_str::<serde_json::Value>(&s).unwrap(), v);
        }
    }

    proptest! {
        #[test]
        fn any_values_round_trip(
            values in proptest::collection::vec(any::<String>(), 1..5),
            ascii in "[ -~\\x00-\\x1f\\x7f]{0,40}",
        ) {
            let mut values = values;
            values.push(ascii);
            let keys: Vec<String> = (0..values.len()).map(|i| format!("k{i}")).collect();
            let comment = format_labels(keys.iter().map(String::as_str).zip(values.iter().map(String::as_str)));
            prop_assert!(comment.chars().all(is_shown), "{comment:?}");
            let labels = parse_labels(&comment);
            prop_assert_eq!(labels.len(), values.len());
            for (k, v) in keys.iter().zip(&values) {
                prop_assert_eq!(&labels[k], &truncate(v, MAX_LABEL_VALUE).into_owned());
            }
        }

        #[test]
        fn quoted_values_parse_back_exactly(v in any::<String>(), tail in "[ a-z=]{0,8}") {
            let q = quote_value(&v);
            let s = format!("{q}{}", if tail.is_empty() { String::new() } else { format!(" {tail}") });
            let (back, rest) = parse_value(&s);
            prop_assert_eq!(back, v);
            prop_assert_eq!(rest.trim_start(), tail.trim_start());
        }

        #[test]
        fn parser_never_panics(s in any::<String>()) {
            let _ = parse_labels(&s);
        }
    }
}

//! Packet bytes as tcpdump's `-x`, `-X` and `-A` show them, byte for byte
//! the same layout (tcpdump's print-ascii.c): lines of 16 bytes,
//! `\n\t0x0010:  4500 0054 …  E..T…`. The caller picks the bytes (with or
//! without the link-layer header, `-xx`/`-XX`/`-AA`).

use std::fmt::Write as _;

const BYTES_PER_LINE: usize = 16;
/// Width of the hex column: 8 groups of ` xxxx`.
const HEX_WIDTH: usize = 40;

/// Whether tcpdump shows the byte as itself in the ASCII column: printable
/// ASCII without the space (`ND_ASCII_ISGRAPH`).
fn is_graph(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

/// `-x`: hex only, each line `\n\t0xOOOO: ` then ` xxxx` per two bytes.
pub fn hex(data: &[u8], out: &mut String) {
    for (n, line) in data.chunks(BYTES_PER_LINE).enumerate() {
        let _ = write!(out, "\n\t0x{:04x}: ", n * BYTES_PER_LINE);
        for pair in line.chunks(2) {
            match pair {
                [a, b] => {
                    let _ = write!(out, " {a:02x}{b:02x}");
                }
                [a] => {
                    let _ = write!(out, " {a:02x}");
                }
                _ => {}
            }
        }
    }
}

/// `-X`: hex padded to its column, two spaces, then the bytes as ASCII
/// with `.` for anything not graphic.
pub fn hex_ascii(data: &[u8], out: &mut String) {
    for (n, line) in data.chunks(BYTES_PER_LINE).enumerate() {
        let mut hex = String::with_capacity(HEX_WIDTH);
        for pair in line.chunks(2) {
            for (i, b) in pair.iter().enumerate() {
                let _ = write!(hex, "{}{b:02x}", if i == 0 { " " } else { "" });
            }
        }
        let ascii: String = line.iter().map(|&b| if is_graph(b) { b as char } else { '.' }).collect();
        let _ = write!(out, "\n\t0x{:04x}: {hex:<HEX_WIDTH$}  {ascii}", n * BYTES_PER_LINE);
    }
}

/// `-A`: a line break, then the bytes as text; tabs, spaces and line breaks
/// stay, a carriage return is dropped before a line break or at the end and
/// is `.` elsewhere, as is every other byte that is not graphic ASCII. No
/// byte reaches the terminal as a control character other than `\t`/`\n`.
pub fn ascii(data: &[u8], out: &mut String) {
    out.push('\n');
    for (i, &b) in data.iter().enumerate() {
        let left = data.len() - i - 1;
        if b == b'\r' {
            if left > 1 && data[i + 1] != b'\n' {
                out.push('.');
            }
        } else if is_graph(b) || matches!(b, b'\t' | b' ' | b'\n') {
            out.push(b as char);
        } else {
            out.push('.');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_of_tcpdump() {
        let data: Vec<u8> = b"E\x00\x00\x54abcdefghijklmnopq".to_vec();
        let mut s = String::new();
        hex(&data, &mut s);
        assert_eq!(s, "\n\t0x0000:  4500 0054 6162 6364 6566 6768 696a 6b6c\n\t0x0010:  6d6e 6f70 71");
        let mut s = String::new();
        hex_ascii(&data, &mut s);
        assert_eq!(
            s,
            "\n\t0x0000:  4500 0054 6162 6364 6566 6768 696a 6b6c  E..Tabcdefghijkl\n\t0x0010:  6d6e 6f70 71                             mnopq"
        );
        let mut s = String::new();
        ascii(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x1b[2J", &mut s);
        assert_eq!(s, "\nGET / HTTP/1.1\nHost: x\n\n.[2J");
    }
}

//! Input files read whole (`--prompts`, `--prompt -`, `--chat-json`): bounded in size, `-`
//! for standard input, UTF-8 checked, errors naming the input.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Most bytes an input read whole into memory may hold: far past any real prompt set, and it
/// stops a stream such as /dev/zero from filling memory.
pub const MAX_INPUT_BYTES: u64 = 256 << 20;

/// The text of `path`, given as `flag`, read whole, and how messages name it; `-` reads
/// standard input (`./-` names a file called `-`). A byte-order mark (as Windows editors save
/// UTF-8) is not part of the text.
///
/// # Errors
/// A file that cannot be read, an input past [`MAX_INPUT_BYTES`] (or a stream that does not
/// end), or one that is not UTF-8 (naming the line and byte).
pub fn read_text(path: &Path, flag: &str) -> Result<(String, String)> {
    use std::io::Read;
    let name = input_name(path);
    let source: Box<dyn Read> = if path.as_os_str() == "-" {
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            eprintln!("reading {flag} from standard input (end it with Ctrl-D)");
        }
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(path).with_context(|| format!("reading {name}"))?)
    };
    let mut bytes = Vec::new();
    source
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {name}"))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        bail!(
            "{flag} {name}: more than {} MiB; it is read whole into memory (give a smaller input)",
            MAX_INPUT_BYTES >> 20
        );
    }
    let mut text = String::from_utf8(bytes).map_err(|e| {
        let bad = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..bad].iter().filter(|&&b| b == b'\n').count();
        anyhow::anyhow!("{name}:{line}: not UTF-8 text (byte {bad} of the input)")
    })?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    Ok((text, name))
}

/// How messages name an input given as `path`: "standard input" for `-`.
fn input_name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "standard input".into()
    } else {
        path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::read_text;

    #[test]
    fn a_byte_order_mark_is_not_text() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.jsonl");
        std::fs::write(&f, "\u{feff}{\"prompt\": \"a\"}\n").unwrap();
        let (text, name) = read_text(&f, "--prompts").unwrap();
        assert_eq!(text, "{\"prompt\": \"a\"}\n");
        assert_eq!(name, f.display().to_string());
    }
}

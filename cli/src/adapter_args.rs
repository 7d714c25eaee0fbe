//! The adapters given on the command line: `--adapter NAME=PATH` pairs, the rules an adapter's
//! name follows (the server's `/v1/load_lora_adapter` too), and llama.cpp's `--lora` /
//! `--lora-scaled`, answered with their forms here.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// `NAME=PATH` pairs from `--adapter` (`adapters`).
///
/// # Errors
/// A malformed pair or name ([`adapter_name_fault`]); llama.cpp's `--lora` (`lora`) or
/// `--lora-scaled` (`lora_scaled`, FILE W pairs), with their forms here.
pub fn specs(
    adapters: &[String],
    lora: &[String],
    lora_scaled: &[String],
) -> Result<Vec<(String, PathBuf)>> {
    let scaled = lora_scaled.chunks(2).map(|p| (&p[0], p.get(1)));
    let given: Vec<(&String, Option<&String>)> =
        lora.iter().map(|f| (f, None)).chain(scaled).collect();
    if !given.is_empty() {
        bail!("{}", llama_cpp_lora_hint(&given));
    }
    adapters
        .iter()
        .map(|s| {
            let (n, d) = s
                .split_once('=')
                .with_context(|| format!("--adapter `{s}`: expected NAME=PATH"))?;
            if n.is_empty() || d.is_empty() {
                bail!("--adapter `{s}`: expected NAME=PATH with a non-empty name and path");
            }
            if let Err(why) = adapter_name_fault(n) {
                bail!("--adapter `{s}`: the name `{n}` {why}");
            }
            Ok((n.to_string(), PathBuf::from(d)))
        })
        .collect()
}

/// Why `name` cannot name an adapter, the same rules for `--adapter` and a server's
/// `/v1/load_lora_adapter`: 1 to 128 characters, no whitespace or control characters (it is a
/// request's `model` and a metrics label), no `,` or `=` (`--mix a=0.5,b=0.5` could not name it,
/// as train-router refuses such labels).
pub fn adapter_name_fault(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() || name.chars().count() > 128 {
        return Err("must have 1 to 128 characters");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters");
    }
    if name.contains([',', '=']) {
        return Err("must not contain `,` or `=` (--mix could not name it)");
    }
    Ok(())
}

/// What to write here for llama.cpp's `--lora FILE` / `--lora-scaled FILE W` (`(FILE, W)`): each
/// file loaded under a name (`a`, `b`, ...) with `--adapter`, then mixed by those names.
fn llama_cpp_lora_hint(given: &[(&String, Option<&String>)]) -> String {
    // A path the shell would split or expand, quoted so that the line can be pasted.
    let quoted = |f: &str| match f
        .chars()
        .any(|c| c.is_whitespace() || "'\"$`\\!*?;&|<>()".contains(c))
    {
        true => format!("'{}'", f.replace('\'', "'\\''")),
        false => f.to_string(),
    };
    let name = |i: usize| match i < 26 {
        true => ((b'a' + i as u8) as char).to_string(),
        false => format!("a{i}"),
    };
    let flags: Vec<String> = given
        .iter()
        .map(|(f, w)| match w {
            None => format!("--lora {}", quoted(f)),
            Some(w) => format!("--lora-scaled {} {w}", quoted(f)),
        })
        .collect();
    let adapters: Vec<String> = (given.iter().enumerate())
        .map(|(i, (f, _))| format!("--adapter {}={}", name(i), quoted(f)))
        .collect();
    let mix: Vec<String> = (given.iter().enumerate())
        .map(|(i, (_, w))| format!("{}={}", name(i), w.map_or("1", |w| w.as_str())))
        .collect();
    format!(
        "{}: llama.cpp's flag{}; here each adapter is loaded under a name and mixed by that name: {}; \
         then `--mix {}` in generate and score, or a request's `model` (one adapter's name) or \
         `lora_mixture` ({{\"a\": 0.5, ...}}) in serve",
        flags.join(" "),
        if given.len() > 1 { "s" } else { "" },
        adapters.join(" "),
        mix.join(",")
    )
}

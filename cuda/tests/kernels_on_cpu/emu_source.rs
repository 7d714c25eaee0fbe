//! The translation unit of a kernel module for the CPU: `__shared__` declarations rewritten
//! into per-block storage, the kernel entries found, and the table and `emu_run` that
//! launch them (the epilogue).

/// Every `__shared__` declaration of `src` as per-block storage: `__shared__ T a[N], b;`
/// becomes `static char emu_k0; auto& a = emu::shared_var<T[N]>(&emu_k0, "a"); ...` (the key is
/// one per function, template instance included), `extern __shared__ T s[];` becomes
/// `T* s = reinterpret_cast<T*>(emu::dynamic_shared());`. Errors on a declaration outside
/// any function (namespace scope), which per-block storage cannot serve.
pub fn rewrite_shared(src: &str) -> Result<String, String> {
    const KW: &str = "__shared__";
    let mut out = String::with_capacity(src.len() + 1024);
    let mut rest = src;
    let (mut key, mut depth) = (0usize, 0i64);
    while let Some(at) = rest.find(KW) {
        let (before, after) = rest.split_at(at);
        let after = &after[KW.len()..];
        depth += before.matches('{').count() as i64 - before.matches('}').count() as i64;
        // In a line comment: kept as it is.
        let line = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
        if line.contains("//") {
            out.push_str(before);
            out.push_str(KW);
            rest = after;
            continue;
        }
        let end = after
            .find(';')
            .ok_or("a __shared__ declaration without `;`")?;
        let decl = after[..end].trim();
        if depth <= 0 {
            return Err(format!("`__shared__ {decl}` outside a function"));
        }
        let trimmed = before.trim_end();
        if let Some(head) = trimmed.strip_suffix("extern") {
            out.push_str(head);
            let decl = strip_align(decl);
            let decl = decl
                .strip_suffix("[]")
                .ok_or_else(|| format!("extern __shared__ `{decl}` is not `T name[]`"))?;
            let (ty, name) = split_last_ident(decl)?;
            out.push_str(&format!(
                "{ty}* {name} = reinterpret_cast<{ty}*>(emu::dynamic_shared())"
            ));
        } else {
            out.push_str(before);
            let decl = strip_align(decl);
            let mut parts = split_top_commas(&decl).into_iter();
            let first = parts.next().ok_or("empty __shared__ declaration")?;
            let head_end = first.find('[').unwrap_or(first.len());
            let (ty, name) = split_last_ident(&first[..head_end])?;
            let mut decls = vec![(name, first[head_end..].to_string())];
            for p in parts {
                let p = p.trim();
                let e = p.find('[').unwrap_or(p.len());
                decls.push((p[..e].trim().to_string(), p[e..].to_string()));
            }
            let mut stmts = Vec::new();
            for (name, dims) in decls {
                stmts.push(format!(
                    "static char emu_k{key}; auto& {name} = emu::shared_var<{ty}{dims}>(&emu_k{key}, \"{name}\")"
                ));
                key += 1;
            }
            out.push_str(&stmts.join("; "));
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `decl` without `__align__(n)`.
fn strip_align(decl: &str) -> String {
    match decl.find("__align__(") {
        Some(a) => {
            let close = decl[a..].find(')').map_or(decl.len(), |c| a + c + 1);
            format!("{} {}", &decl[..a], &decl[close..])
        }
        None => decl.to_string(),
    }
}

/// (type, name) of `T name`.
fn split_last_ident(s: &str) -> Result<(String, String), String> {
    let s = s.trim();
    let start = s
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    let (ty, name) = (s[..start].trim(), &s[start..]);
    if ty.is_empty() || name.is_empty() {
        return Err(format!("cannot read a type and a name from `{s}`"));
    }
    Ok((ty.to_string(), name.to_string()))
}

/// `s` split at commas outside brackets and parentheses.
fn split_top_commas(s: &str) -> Vec<String> {
    let (mut depth, mut parts, mut cur) = (0i32, Vec::new(), String::new());
    for c in s.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    parts
}

/// The kernel entries' names in a preprocessed translation unit (`__global__` as a marker).
pub fn entry_names(preprocessed: &str) -> Vec<String> {
    const MARK: &str = "EMU_KERNEL_MARK";
    let mut names = Vec::new();
    for (i, _) in preprocessed.match_indices(MARK) {
        let rest = preprocessed[i + MARK.len()..].trim_start();
        let Some(rest) = rest.strip_prefix("void") else {
            continue;
        };
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The entry table and `emu_run` (a stream of launches), after the kernels.
pub fn epilogue(names: &[String]) -> String {
    let mut s = String::from("\nstatic const emu::Entry emu_entries[] = {\n");
    for n in names {
        s.push_str(&format!(
            "    {{\"{n}\", [](void** p) {{ emu::call_with({n}, p); }}, emu::param_sizes({n})}},\n"
        ));
    }
    s.push_str(
        r#"};
struct EmuLaunch {
    const char* name;
    unsigned grid[3], block[3], shared;
    void** args;
    const unsigned* sizes;
    unsigned n_args, dependent;
};
extern "C" int emu_run(const EmuLaunch* d, unsigned n, const emu::Options* o, char* err,
                       unsigned err_len) {
    std::string e;
    std::vector<emu::Launch> ls;
    for (unsigned k = 0; e.empty() && k < n; k++) {
        const emu::Entry* entry = nullptr;
        for (const emu::Entry& x : emu_entries)
            if (std::strcmp(x.name, d[k].name) == 0) entry = &x;
        if (!entry) {
            e = std::string(d[k].name) + ": no kernel entry of this name in the module";
            break;
        }
        unsigned np = 0;
        while (entry->sizes[np]) np++;
        if (np != d[k].n_args)
            e = std::string(d[k].name) + ": takes " + std::to_string(np) + " parameters, got " +
                std::to_string(d[k].n_args);
        for (unsigned i = 0; e.empty() && i < np; i++)
            if (entry->sizes[i] != d[k].sizes[i])
                e = std::string(d[k].name) + ": parameter " + std::to_string(i) + " is " +
                    std::to_string(entry->sizes[i]) + " bytes, the argument " +
                    std::to_string(d[k].sizes[i]);
        ls.push_back(emu::Launch{entry, {d[k].grid[0], d[k].grid[1], d[k].grid[2]},
                                 {d[k].block[0], d[k].block[1], d[k].block[2]}, d[k].shared,
                                 d[k].args, d[k].dependent != 0});
    }
    if (e.empty()) e = emu::run(ls, *o);
    std::snprintf(err, err_len, "%s", e.c_str());
    return e.empty() ? 0 : 1;
}
"#,
    );
    s
}

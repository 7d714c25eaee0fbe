//! llama.cpp's GBNF grammars in llguidance's Lark syntax, so that grammars written for
//! llama.cpp (or vLLM's xgrammar backend) work as given. GBNF as llama.cpp's
//! grammars/README.md and `llama-grammar.cpp` define it: `name ::= alternatives` rules ended by
//! a newline (newlines are free inside parentheses and after `::=` or `|`), `"literals"`,
//! `[a-z]` / `[^...]` character classes, `.` (any character), `( )`, `|`, `*` `+` `?`,
//! `{m}` `{m,}` `{m,n}`, `# comments`, `<token>` references; `root` is the start rule.
//! Each becomes its Lark form: `start:` for `root`, rule names lowercased (Lark rules are
//! lowercase), literals as JSON strings, classes as one-character regular expressions,
//! `!<[ID]>` as `<[^ID]>`.
//!
//! Stricter than llama.cpp (an error here): a rule defined twice (llama.cpp keeps the last),
//! a reversed range `[z-a]` or an empty class `[]` (which match nothing there), a newline
//! inside a literal or class, a lone CR as the line end, and a negated token by name
//! (`!<|im_end|>`: write `!<[ID]>`). More lenient: `_` in names, a `|` that starts the next
//! line.

use std::collections::{HashMap, HashSet};

/// A GBNF grammar's Lark text.
///
/// # Errors
/// Malformed GBNF (with the line, and what was expected there), an undefined rule, or no
/// `root` rule.
pub fn to_lark(src: &str) -> Result<String, String> {
    let mut p = Parser {
        // A byte-order mark, as files saved on Windows may start with, is not the grammar's.
        s: src.trim_start_matches('\u{feff}').chars().collect(),
        pos: 0,
    };
    let mut rules: Vec<(String, String)> = Vec::new();
    let mut defined: HashSet<String> = HashSet::new();
    p.space(true);
    while !p.done() {
        let start = p.pos;
        let name = p
            .name()
            .ok_or_else(|| p.error("a rule name (`name ::= ...`)"))?;
        p.space(false);
        if !p.eat_str("::=") {
            return Err(p.error("`::=` after the rule name"));
        }
        p.space(true);
        let body = p.alternates(0)?;
        if !p.done() && !p.eat_newline() {
            return Err(p.error("a newline or `|` after the rule"));
        }
        if !defined.insert(name.clone()) {
            return Err(format!(
                "GBNF line {}: the rule `{name}` is defined twice",
                p.line_at(start)
            ));
        }
        rules.push((name, body));
        p.space(true);
    }
    if !defined.contains("root") {
        return Err("the GBNF grammar has no `root` rule (its start)".into());
    }
    // Lark rule names: lowercase, starting with a letter; `root` is `start`; distinct.
    let mut names: HashMap<String, String> = HashMap::new();
    names.insert("root".into(), "start".into());
    let mut used: HashSet<String> = HashSet::from(["start".to_string()]);
    for (n, _) in &rules {
        if n == "root" {
            continue;
        }
        let mut base = n.to_ascii_lowercase();
        if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
            base.insert_str(0, "r-");
        }
        let mut lark = base.clone();
        let mut k = 2;
        while used.contains(&lark) {
            lark = format!("{base}-{k}");
            k += 1;
        }
        used.insert(lark.clone());
        names.insert(n.clone(), lark);
    }
    let mut out = String::new();
    for (n, body) in &rules {
        let body = rename(body, &names)?;
        out.push_str(&format!("{}: {body}\n", names[n]));
    }
    Ok(out)
}

/// The deepest nesting of groups (parentheses, and the groups operators applied in turn
/// write) that llguidance's Lark parser takes: 30 levels, a rule's body and `%json` counted.
const MAX_GROUPS: usize = 28;

/// Marks a rule reference in a body until every name is known.
const REF: char = '\u{1}';

/// `body` with each marked reference replaced by its Lark name.
fn rename(body: &str, names: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(body.len());
    let mut parts = body.split(REF);
    out.push_str(parts.next().unwrap_or(""));
    // Marked names alternate with the text between them.
    while let (Some(name), Some(text)) = (parts.next(), parts.next()) {
        let lark = names.get(name).ok_or_else(|| {
            format!("the GBNF grammar uses the rule `{name}`, which it does not define")
        })?;
        out.push_str(lark);
        out.push_str(text);
    }
    Ok(out)
}

struct Parser {
    s: Vec<char>,
    pos: usize,
}

/// A repetition operator in Lark form, or one that allows nothing (`{0}`, `{0,0}`).
enum Repeat {
    Op(String),
    Nothing,
}

impl Parser {
    fn done(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<char> {
        self.s.get(self.pos).copied()
    }

    /// The line at the current position (counted from the start: call it for errors only).
    fn line(&self) -> usize {
        self.line_at(self.pos)
    }

    fn line_at(&self, pos: usize) -> usize {
        1 + self.s[..pos.min(self.s.len())]
            .iter()
            .filter(|&&c| c == '\n')
            .count()
    }

    fn error(&self, expected: &str) -> String {
        let found = match self.peek() {
            Some(c) => format!("`{}`", c.escape_default()),
            None => "the end".into(),
        };
        format!(
            "GBNF line {}: expected {expected}, found {found}",
            self.line()
        )
    }

    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(c);
        self.pos += usize::from(hit);
        hit
    }

    fn eat_str(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        let hit = self.s.len() >= self.pos + n
            && self.s[self.pos..self.pos + n].iter().copied().eq(s.chars());
        if hit {
            self.pos += n;
        }
        hit
    }

    fn eat_newline(&mut self) -> bool {
        self.eat('\r');
        self.eat('\n')
    }

    /// Spaces, tabs and `#` comments; newlines too when `newlines`.
    fn space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' => self.pos += 1,
                '\r' | '\n' if newlines => self.pos += 1,
                '#' => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    /// After a sequence at the top level: a newline ends the rule, unless the next line goes
    /// on with `|` (llama.cpp wants the `|` on the same line; accepting both costs nothing).
    fn continues_with_bar(&mut self) -> bool {
        let save = self.pos;
        self.space(true);
        if self.peek() == Some('|') {
            return true;
        }
        self.pos = save;
        false
    }

    fn name(&mut self) -> Option<String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            self.pos += 1;
        }
        (self.pos > start).then(|| self.s[start..self.pos].iter().collect())
    }

    /// `seq | seq | ...` at parenthesis depth `depth`.
    fn alternates(&mut self, depth: usize) -> Result<String, String> {
        let mut alts = vec![self.sequence(depth)?];
        while self.eat('|') || (depth == 0 && self.continues_with_bar() && self.eat('|')) {
            self.space(true);
            alts.push(self.sequence(depth)?);
        }
        Ok(alts.join(" | "))
    }

    /// Items up to `|`, `)` or (at the top level) the end of the line.
    fn sequence(&mut self, depth: usize) -> Result<String, String> {
        let mut items = Vec::new();
        loop {
            self.space(depth > 0);
            match self.peek() {
                None | Some('|') | Some('\r') | Some('\n') => break,
                Some(')') if depth > 0 => break,
                _ => {}
            }
            let mut item = self.atom(depth)?;
            // Operators may follow after spaces and apply in turn (`"a"{2}?`), as in
            // llama.cpp; a repeat of at most 0 leaves nothing.
            let mut ops = 0;
            loop {
                self.space(depth > 0);
                match self.repeat()? {
                    Some(Repeat::Nothing) => item = "\"\"".into(),
                    Some(Repeat::Op(op)) if ops == 0 => item.push_str(&op),
                    Some(Repeat::Op(_)) if depth + ops >= MAX_GROUPS => {
                        return Err(format!(
                            "GBNF line {}: operators in a row nest groups, and groups nest at most {MAX_GROUPS} deep (llguidance's limit)",
                            self.line()
                        ))
                    }
                    Some(Repeat::Op(op)) => item = format!("({item}){op}"),
                    None => break,
                }
                ops += 1;
            }
            items.push(item);
        }
        Ok(match items.is_empty() {
            true => "\"\"".into(),
            false => items.join(" "),
        })
    }

    fn atom(&mut self, depth: usize) -> Result<String, String> {
        match self.peek() {
            Some('"') => {
                self.pos += 1;
                let mut lit = String::new();
                loop {
                    match self.peek() {
                        None | Some('\n') => return Err(self.error("`\"` closing the literal")),
                        Some('"') => break,
                        Some(_) => lit.push(self.char_in_literal()?),
                    }
                }
                self.pos += 1;
                // JSON leaves DEL as it is; llguidance's Lark lexer refuses it raw.
                let json = serde_json::to_string(&lit).expect("a string");
                Ok(json.replace('\u{7f}', "\\u007f"))
            }
            Some('[') => self.class(),
            Some('.') => {
                self.pos += 1;
                Ok(r"/[\x{0}-\x{10FFFF}]/".into())
            }
            Some('(') if depth >= MAX_GROUPS => Err(format!(
                "GBNF line {}: groups nest at most {MAX_GROUPS} deep (llguidance's limit)",
                self.line()
            )),
            Some('(') => {
                self.pos += 1;
                self.space(true);
                let inner = self.alternates(depth + 1)?;
                self.space(true);
                if !self.eat(')') {
                    return Err(self.error("`)`"));
                }
                Ok(format!("({inner})"))
            }
            Some('!') if self.s.get(self.pos + 1) == Some(&'<') => {
                // Any token but one: llama.cpp's `!<[ID]>` is llguidance's `<[^ID]>`.
                self.pos += 1;
                let at = self.pos;
                let token = self.atom(depth)?;
                match token.strip_prefix("<[") {
                    Some(id) => Ok(format!("<[^{id}")),
                    None => Err(format!("GBNF line {}: `!{token}`: a negated token is read by id only (`!<[ID]>`; `dlp-run tokenize --show-tokens` shows ids)", self.line_at(at))),
                }
            }
            Some('<') => {
                // A token reference (`<|im_end|>`, `<[1234]>`): llguidance reads the same.
                let start = self.pos;
                while self.peek().is_some_and(|c| c != '>' && c != '\n') {
                    self.pos += 1;
                }
                if !self.eat('>') {
                    return Err(self.error("`>` closing the token reference"));
                }
                Ok(self.s[start..self.pos].iter().collect())
            }
            _ => {
                match self.name() {
                    Some(n) => Ok(format!("{REF}{n}{REF}")),
                    None => Err(self
                        .error("a literal, a character class, `.`, `(`, a token or a rule name")),
                }
            }
        }
    }

    /// One character of a literal or class, with llama.cpp's escapes.
    fn char_in_literal(&mut self) -> Result<char, String> {
        let c = self.peek().ok_or_else(|| self.error("a character"))?;
        self.pos += 1;
        if c != '\\' {
            return Ok(c);
        }
        let e = self.peek().ok_or_else(|| self.error("an escape"))?;
        self.pos += 1;
        let hex = |p: &mut Parser, n: usize| -> Result<char, String> {
            let digits: String =
                p.s.get(p.pos..p.pos + n)
                    .unwrap_or_default()
                    .iter()
                    .collect();
            let code = u32::from_str_radix(&digits, 16)
                .ok()
                .filter(|_| digits.len() == n && digits.chars().all(|c| c.is_ascii_hexdigit()))
                .ok_or_else(|| p.error(&format!("{n} hex digits of a character")))?;
            let c = char::from_u32(code).ok_or_else(|| {
                format!(
                    "GBNF line {}: \\{e}{digits} is not a Unicode character",
                    p.line()
                )
            })?;
            p.pos += n;
            Ok(c)
        };
        match e {
            'x' => hex(self, 2),
            'u' => hex(self, 4),
            'U' => hex(self, 8),
            't' => Ok('\t'),
            'r' => Ok('\r'),
            'n' => Ok('\n'),
            '\\' | '"' | '[' | ']' | '-' | '^' => Ok(e),
            _ => {
                self.pos -= 1;
                Err(self.error("an escape (\\x, \\u, \\U, \\t, \\r, \\n, \\\\, \\\", \\[, \\])"))
            }
        }
    }

    /// `[...]` or `[^...]` as a one-character regular expression.
    fn class(&mut self) -> Result<String, String> {
        self.pos += 1;
        let negated = self.eat('^');
        let mut out = String::from(if negated { "/[^" } else { "/[" });
        let mut empty = true;
        loop {
            match self.peek() {
                None | Some('\n') => return Err(self.error("`]` closing the character class")),
                Some(']') if !empty => break,
                Some(']') => return Err(self.error("a character inside `[]`")),
                _ => {}
            }
            let lo = self.char_in_literal()?;
            out.push_str(&class_char(lo));
            if self.peek() == Some('-') && self.s.get(self.pos + 1).is_some_and(|&c| c != ']') {
                self.pos += 1;
                if self.peek() == Some('\n') {
                    return Err(self.error("`]` closing the character class"));
                }
                let hi = self.char_in_literal()?;
                if hi < lo {
                    return Err(format!(
                        "GBNF line {}: the range {}-{} is reversed",
                        self.line(),
                        lo.escape_default(),
                        hi.escape_default()
                    ));
                }
                out.push('-');
                out.push_str(&class_char(hi));
            }
            empty = false;
        }
        self.pos += 1;
        out.push_str("]/");
        Ok(out)
    }

    /// `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}` after an atom, or None.
    fn repeat(&mut self) -> Result<Option<Repeat>, String> {
        match self.peek() {
            Some(c @ ('*' | '+' | '?')) => {
                self.pos += 1;
                Ok(Some(Repeat::Op(c.to_string())))
            }
            Some('{') => {
                self.pos += 1;
                // A count, or none; Lark reads counts as i32.
                let num = |p: &mut Parser| -> Result<Option<i32>, String> {
                    p.space(false);
                    let start = p.pos;
                    while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                        p.pos += 1;
                    }
                    let digits: String = p.s[start..p.pos].iter().collect();
                    let n = match digits.is_empty() {
                        true => None,
                        false => Some(digits.parse().map_err(|_| {
                            format!(
                                "GBNF line {}: the count {digits} is over 2147483647",
                                p.line()
                            )
                        })?),
                    };
                    p.space(false);
                    Ok(n)
                };
                let m = num(self)?.ok_or_else(|| self.error("a count after `{`"))?;
                let out = if self.eat(',') {
                    match num(self)? {
                        Some(n) if n < m => {
                            return Err(format!(
                                "GBNF line {}: the repetition {{{m},{n}}} is reversed",
                                self.line()
                            ))
                        }
                        Some(0) => Repeat::Nothing,
                        Some(n) => Repeat::Op(format!("{{{m},{n}}}")),
                        None => Repeat::Op(format!("{{{m},}}")),
                    }
                } else if m == 0 {
                    Repeat::Nothing
                } else {
                    Repeat::Op(format!("{{{m}}}"))
                };
                if !self.eat('}') {
                    return Err(self.error("`}` closing the repetition"));
                }
                Ok(Some(out))
            }
            _ => Ok(None),
        }
    }
}

/// A character inside a regular expression's class: letters and digits as they are, the rest
/// as `\x{HEX}`, which no class syntax can misread.
fn class_char(c: char) -> String {
    match c.is_ascii_alphanumeric() || c == ' ' {
        true => c.to_string(),
        false => format!(r"\x{{{:X}}}", c as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::{to_lark, MAX_GROUPS};

    #[test]
    fn rules_literals_classes_and_repeats() {
        let g = r#"
# llama.cpp's list grammar, shortened
root ::= item+ ("end" | "." )?   # trailing comment
item ::= "- " [^\n]{1,20} "\n"
Num-Rule ::= [0-9a-fA-F]* "\x41\u00e9" .
"#;
        assert_eq!(
            to_lark(g).unwrap(),
            "start: item+ (\"end\" | \".\")?\n\
             item: \"- \" /[^\\x{A}]/{1,20} \"\\n\"\n\
             num-rule: /[0-9a-fA-F]/* \"Aé\" /[\\x{0}-\\x{10FFFF}]/\n"
        );
    }

    #[test]
    fn newlines_inside_parentheses_and_after_bars() {
        let g =
            "root ::=\n  \"{\" (\n    x\n    | \"y\"\n  ) \"}\"\n  | \"z\"\nx ::= \"x\" |\n \"\"";
        assert_eq!(
            to_lark(g).unwrap(),
            "start: \"{\" (x | \"y\") \"}\" | \"z\"\nx: \"x\" | \"\"\n"
        );
    }

    #[test]
    fn names_are_made_lark_rule_names() {
        let g = "root ::= A a 9b start\nA ::= \"1\"\na ::= \"2\"\n9b ::= \"3\"\nstart ::= \"4\"";
        assert_eq!(
            to_lark(g).unwrap(),
            "start: a a-2 r-9b start-2\na: \"1\"\na-2: \"2\"\nr-9b: \"3\"\nstart-2: \"4\"\n"
        );
    }

    /// llama.cpp's readings: spaces before an operator, operators in turn, `{0}` as nothing,
    /// `!<[ID]>`, DEL escaped, a byte-order mark skipped.
    #[test]
    fn operators_negated_tokens_and_odd_characters() {
        let g = "\u{feff}root ::= \"a\" * (\"b\" \"c\"){2}? \"d\"{0} \"e\"{0,0} \"\\x7F\" !<[2]>";
        assert_eq!(
            to_lark(g).unwrap(),
            "start: \"a\"* ((\"b\" \"c\"){2})? \"\" \"\" \"\\u007f\" <[^2]>\n"
        );
        assert!(to_lark("root ::= !<|im_end|>")
            .unwrap_err()
            .contains("by id only"));
        assert!(to_lark("root ::= \"\\uD800\"")
            .unwrap_err()
            .contains("\\uD800 is not a Unicode character"));
    }

    #[test]
    fn errors_name_the_line_and_what_was_expected() {
        let e = |g: &str| to_lark(g).unwrap_err();
        assert!(e("a ::= \"x\"").contains("no `root` rule"));
        assert!(e("root ::= b").contains("`b`, which it does not define"));
        assert!(e("root ::= \"x\"\nroot ::= \"y\"")
            .contains("line 2: the rule `root` is defined twice"));
        assert!(e("root ::= \"x").contains("line 1: expected `\"` closing the literal"));
        assert!(e("root ::= [b-a]").contains("reversed"));
        assert!(e("root ::= \"a\"{3,1}").contains("reversed"));
        assert!(e("root ::= (\"a\"").contains("expected `)`"));
        assert!(e("root = \"a\"").contains("expected `::=`"));
        assert!(e("root ::= \"\\q\"").contains("expected an escape"));
        assert!(e("root ::= []").contains("a character inside `[]`"));
        assert!(e("root ::= \"a\" [b-\nx ::= \"y\"").contains("line 1: expected `]` closing"));
        assert!(e("root ::= \"\\u+041\"").contains("4 hex digits"));
        assert!(e("root ::= \"a\"{4294967295}").contains("line 1: the count 4294967295 is over"));
        assert!(e("root ::= \"a\"{1,99999999999}").contains("count 99999999999 is over"));
        assert!(e("x ::= \"a\"\nroot ::= \"b\"\ny ::= !<z>").contains("line 3: `!<z>`"));
    }

    /// Deep nesting is refused at llguidance's limit, not by overflowing the stack; long
    /// grammars convert in linear time (a quadratic scan took minutes at this size).
    #[test]
    fn nesting_is_limited_and_size_is_linear() {
        let nested = |n: usize| format!("root ::= {}\"x\"{}", "(".repeat(n), ")".repeat(n));
        assert!(to_lark(&nested(MAX_GROUPS)).is_ok());
        assert!(to_lark(&nested(MAX_GROUPS + 1))
            .unwrap_err()
            .contains("groups nest at most 28 deep"));
        assert!(to_lark(&nested(100_000)).is_err());
        let ops = format!("root ::= \"a\"{}", "?".repeat(1_000_000));
        assert!(to_lark(&ops).unwrap_err().contains("operators in a row"));
        let rules: String = (0..100_000)
            .map(|i| format!("r{i} ::= \"x\" r{}\n", i + 1))
            .collect();
        let lark = to_lark(&format!("root ::= r0\n{rules}r100000 ::= \"y\"\n")).unwrap();
        assert_eq!(lark.lines().count(), 100_002);
    }
}

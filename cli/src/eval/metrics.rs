//! Scoring generated answers: answer extraction exactly as `../shared/adapters/README.md`
//! states it, and BLEU / ROUGE as the Python packages compute them — sacrebleu's
//! `corpus_bleu` (13a tokenizer, exponential smoothing, case-sensitive, 0–100) and rouge-score's
//! `RougeScorer(["rouge1", "rougeL"], use_stemmer=False)` F-measures (here 0–100).
//! `cli/tests/data/bleu_rouge.json` holds values those packages produced; the tests below
//! must reproduce them.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

/// What kind of answer a task expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An option label or true/false.
    Mcq,
    /// A free-form solution ending in a number.
    Qa,
}

impl Kind {
    /// As the data files spell it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Mcq => "mcq",
            Kind::Qa => "qa",
        }
    }
}

static MCQ: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(true|false|answer[1-5]|solution[12]|option[12]|\b[a-e]\b)")
        .expect("valid regex")
});
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-?\d[\d,]*\.?\d*").expect("valid regex"));

/// The answer in a completion: `mcq` — the last match of the option pattern in the
/// lower-cased text; `qa` — the last number, commas removed and a trailing `.` stripped.
pub fn extract(kind: Kind, completion: &str) -> Option<String> {
    match kind {
        Kind::Mcq => {
            let lower = completion.to_lowercase();
            MCQ.find_iter(&lower).last().map(|m| m.as_str().to_string())
        }
        Kind::Qa => NUMBER.find_iter(completion).last().map(|m| {
            let s = m.as_str().replace(',', "");
            s.strip_suffix('.').unwrap_or(&s).to_string()
        }),
    }
}

/// Whether `completion` answers `answer`: `mcq` by exact match of the extracted label with the
/// lower-cased, stripped answer; `qa` by the extracted number lying within 1e-4 of it.
pub fn correct(kind: Kind, completion: &str, answer: &str) -> bool {
    let Some(got) = extract(kind, completion) else {
        return false;
    };
    match kind {
        Kind::Mcq => got == answer.trim().to_lowercase(),
        Kind::Qa => match (
            got.parse::<f64>(),
            answer.trim().replace(',', "").parse::<f64>(),
        ) {
            (Ok(a), Ok(b)) => (a - b).abs() < 1e-4,
            _ => false,
        },
    }
}

static RE_13A: LazyLock<[(Regex, &'static str); 4]> = LazyLock::new(|| {
    let r = |p: &str| Regex::new(p).expect("valid regex");
    [
        (r(r"([\{-\~\[-\` -\&\(-\+\:-@/])"), " $1 "),
        (r(r"([^0-9])([\.,])"), "$1 $2 "),
        (r(r"([\.,])([^0-9])"), " $1 $2"),
        (r(r"([0-9])(-)"), "$1 $2 "),
    ]
});

/// sacrebleu's `13a` tokenizer (mteval-v13a): the text as space-separated tokens.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut s = format!(" {line} ");
    for (re, rep) in RE_13A.iter() {
        s = re.replace_all(&s, *rep).into_owned();
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// n-gram counts (n = 1..=4) of whitespace-separated tokens, and the token count.
fn ngrams(tokens: &[&str]) -> (HashMap<Vec<String>, usize>, usize) {
    let mut m = HashMap::new();
    for n in 1..=4 {
        for w in tokens.windows(n) {
            *m.entry(w.iter().map(|s| s.to_string()).collect())
                .or_insert(0) += 1;
        }
    }
    (m, tokens.len())
}

/// sacrebleu's `corpus_bleu(hyps, [refs])` (one reference per hypothesis), 0–100.
pub fn corpus_bleu(hyps: &[&str], refs: &[&str]) -> f64 {
    let (mut correct, mut total) = ([0usize; 4], [0usize; 4]);
    let (mut sys_len, mut ref_len) = (0usize, 0usize);
    for (h, r) in hyps.iter().zip(refs) {
        let (h, r) = (tokenize_13a(h.trim_end()), tokenize_13a(r.trim_end()));
        let ht: Vec<&str> = h.split_whitespace().collect();
        let rt: Vec<&str> = r.split_whitespace().collect();
        let (hg, hl) = ngrams(&ht);
        let (rg, rl) = ngrams(&rt);
        sys_len += hl;
        ref_len += rl;
        for (g, &c) in &hg {
            let n = g.len() - 1;
            total[n] += c;
            correct[n] += c.min(*rg.get(g).unwrap_or(&0));
        }
    }
    let bp = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    if correct.iter().all(|&c| c == 0) {
        return 0.0;
    }
    let mut precisions = [0f64; 4];
    let mut smooth = 1f64;
    for n in 0..4 {
        if total[n] == 0 {
            break;
        }
        precisions[n] = if correct[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total[n] as f64)
        } else {
            100.0 * correct[n] as f64 / total[n] as f64
        };
    }
    let log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
    bp * (precisions.iter().map(|&p| log(p)).sum::<f64>() / 4.0).exp()
}

/// rouge-score's tokenizer (no stemmer): lower-cased runs of `[a-z0-9]`.
fn rouge_tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn f_measure(p: f64, r: f64) -> f64 {
    if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    }
}

/// ROUGE-1 F-measure of `prediction` against `target`, 0–100.
pub fn rouge1(target: &str, prediction: &str) -> f64 {
    let (t, p) = (rouge_tokens(target), rouge_tokens(prediction));
    fn count(v: &[String]) -> HashMap<&str, usize> {
        let mut m: HashMap<&str, usize> = HashMap::new();
        v.iter()
            .for_each(|w| *m.entry(w.as_str()).or_insert(0) += 1);
        m
    }
    let (tc, pc) = (count(&t), count(&p));
    let overlap: usize = tc
        .iter()
        .map(|(w, &c)| c.min(*pc.get(w).unwrap_or(&0)))
        .sum();
    let prec = overlap as f64 / p.len().max(1) as f64;
    let rec = overlap as f64 / t.len().max(1) as f64;
    100.0 * f_measure(prec, rec)
}

/// ROUGE-L (longest common subsequence) F-measure, 0–100.
pub fn rouge_l(target: &str, prediction: &str) -> f64 {
    let (t, p) = (rouge_tokens(target), rouge_tokens(prediction));
    if t.is_empty() || p.is_empty() {
        return 0.0;
    }
    let mut row = vec![0usize; p.len() + 1];
    for a in &t {
        let mut diag = 0;
        for (j, b) in p.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if a == b { diag + 1 } else { up.max(row[j]) };
            diag = up;
        }
    }
    let lcs = row[p.len()] as f64;
    100.0 * f_measure(lcs / p.len() as f64, lcs / t.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extraction_follows_the_stated_rule() {
        assert_eq!(
            extract(Kind::Mcq, "The correct answer is TRUE").as_deref(),
            Some("true")
        );
        // The last match wins; option letters only as whole words.
        assert_eq!(
            extract(Kind::Mcq, "answer1 or maybe Answer3").as_deref(),
            Some("answer3")
        );
        assert_eq!(
            extract(Kind::Mcq, "I think (B) is right, not d").as_deref(),
            Some("d")
        );
        assert_eq!(extract(Kind::Mcq, "bad cafe").as_deref(), None);
        assert!(correct(
            Kind::Mcq,
            "the correct answer is option2",
            " Option2 "
        ));
        assert!(!correct(Kind::Mcq, "no idea", "true"));
        assert_eq!(
            extract(Kind::Qa, "48 + 24 = 72. So 1,234.").as_deref(),
            Some("1234")
        );
        assert!(correct(Kind::Qa, "The answer is 72.", "72"));
        assert!(correct(Kind::Qa, "It is -3.50", "-3.5"));
        assert!(!correct(Kind::Qa, "It is 7", "8"));
        assert!(!correct(Kind::Qa, "no number", "8"));
    }

    #[test]
    fn bleu_and_rouge_equal_the_python_packages() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/bleu_rouge.json")).unwrap();
        for c in v["cases"].as_array().unwrap() {
            let strs = |k: &str| -> Vec<String> {
                c[k].as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect()
            };
            let (h, r) = (strs("hyps"), strs("refs"));
            let hr: Vec<&str> = h.iter().map(String::as_str).collect();
            let rr: Vec<&str> = r.iter().map(String::as_str).collect();
            let want = c["corpus_bleu"].as_f64().unwrap();
            let got = corpus_bleu(&hr, &rr);
            assert!(
                (got - want).abs() < 1e-9,
                "BLEU {got} vs sacrebleu {want} for {h:?}"
            );
            for (i, (hh, rr)) in h.iter().zip(&r).enumerate() {
                let w1 = 100.0 * c["rouge1_f"][i].as_f64().unwrap();
                let wl = 100.0 * c["rougeL_f"][i].as_f64().unwrap();
                assert!(
                    (rouge1(rr, hh) - w1).abs() < 1e-9,
                    "ROUGE-1 {hh:?}: {} vs {w1}",
                    rouge1(rr, hh)
                );
                assert!(
                    (rouge_l(rr, hh) - wl).abs() < 1e-9,
                    "ROUGE-L {hh:?}: {} vs {wl}",
                    rouge_l(rr, hh)
                );
            }
        }
    }

    #[test]
    fn tokenizer_13a_examples() {
        assert_eq!(
            tokenize_13a("It costs $3.50, ok."),
            "It costs $ 3.50 , ok ."
        );
        assert_eq!(tokenize_13a("4-5 and a-b"), "4 - 5 and a-b");
    }
}

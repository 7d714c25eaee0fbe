//! `--compose K`: prompts of K questions from different tasks, and how their one completion is
//! scored per question.

use std::sync::LazyLock;
use std::time::Instant;

use anyhow::Result;
use dlp_engine::Backend;
use regex::Regex;
use serde_json::{json, Value};

use super::data::{Composed, Example};
use super::metrics;
use super::modes::{Chooser, Mode};
use super::report::ComposeRun;
use super::run::{bar, default_max_tokens, generate_items, prepare, Ctx, Item};
use super::EvalArgs;
use crate::routing::Routing;
use dlp_router::segment::split_sentences;

/// How a composed completion was divided among its questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// By its `Question 1`, `Question 2`, ... headings (the prompt's own numbering).
    Numbered,
    /// No such headings: by sentences in order, the last question taking the last sentence
    /// that holds an answer of its kind, each question before it the last such sentence before
    /// the next question's (the last answer counts, as for single examples).
    InOrder,
}

/// One question of a composed prompt: the answer read for it and whether it is right (the
/// default: none read, wrong).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answered {
    pub extracted: Option<String>,
    pub correct: bool,
}

/// A `Question N` heading: at the start of a line, after markdown marks (`**Question 1:**`,
/// `### Question 2`), any case.
static HEADING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?im)^[\s#*>_-]*question\s*(\d+)").expect("valid regex"));
/// `Question N` anywhere: its number is no answer ("as in Question 1").
static MENTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\bquestion\s*\d+").expect("valid regex"));

/// Where each question's part of `completion` starts and ends, by its `Question N` headings
/// (1, then 2 after it, ..., k): None unless all k are there. The text before `Question 1` is
/// no question's; the last part ends at any later heading (a question the model made up).
fn numbered_parts(completion: &str, k: usize) -> Option<Vec<std::ops::Range<usize>>> {
    let mut starts: Vec<(usize, usize)> = Vec::new();
    let mut end = completion.len();
    for c in HEADING.captures_iter(completion) {
        let (Some(whole), Some(n)) = (c.get(0), c.get(1)) else {
            continue;
        };
        if starts.len() < k && n.as_str().parse::<usize>() == Ok(starts.len() + 1) {
            starts.push((whole.start(), whole.end()));
        } else if starts.len() == k {
            end = whole.start();
            break;
        }
    }
    if starts.len() < k {
        return None;
    }
    let ends = starts.iter().skip(1).map(|s| s.0).chain([end]);
    Some(starts.iter().zip(ends).map(|(s, e)| s.1..e).collect())
}

/// `text` with every `Question N`'s digits turned to `#` (same length, so the ranges of
/// [`numbered_parts`] still apply).
fn without_question_numbers(text: &str) -> String {
    let mut out = text.to_string();
    for m in MENTION.find_iter(text) {
        let digits = m
            .as_str()
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .len();
        let range = m.start() + digits..m.end();
        out.replace_range(range.clone(), &"#".repeat(range.len()));
    }
    out
}

/// Scores each question of a composed prompt in `completion`. Where the completion heads its
/// lines `Question 1`, `Question 2`, ... up to the last question, as the prompt does, a
/// question's answer is the last match of its kind in its own part (the rule of single
/// examples, per part: an answer to question 2 cannot be read for question 1, nor the numbers
/// of question 1 restated before its answer). Otherwise the parts are unknown: questions take
/// sentences in order, from the end ([`Split::InOrder`]); the first sentences of a completion
/// that works its way to its answers are more often the question restated than an answer. A
/// heuristic either way: the JSON keeps how each completion was split. `Question N`'s own
/// number is never read as an answer.
pub fn score_composed(parts: &[Example], completion: &str) -> (Vec<Answered>, Split) {
    let numbered = numbered_parts(completion, parts.len());
    let masked = without_question_numbers(completion);
    let completion = masked.as_str();
    let answered = |p: &Example, text: &str| Answered {
        extracted: metrics::extract(p.kind, text),
        correct: metrics::correct(p.kind, text, &p.answer),
    };
    if let Some(ranges) = numbered {
        let scored = parts
            .iter()
            .enumerate()
            .map(|(i, p)| match ranges.get(i) {
                Some(r) => answered(p, &completion[r.clone()]),
                None => Answered::default(),
            })
            .collect();
        return (scored, Split::Numbered);
    }
    let sentences: Vec<&str> = split_sentences(completion)
        .into_iter()
        .map(|r| &completion[r])
        .collect();
    let mut end = sentences.len();
    let mut scored: Vec<Answered> = parts
        .iter()
        .rev()
        .map(|p| {
            let found = (0..end)
                .rev()
                .find(|&i| metrics::extract(p.kind, sentences[i]).is_some());
            match found {
                Some(i) => {
                    end = i;
                    answered(p, sentences[i])
                }
                None => Answered::default(),
            }
        })
        .collect();
    scored.reverse();
    (scored, Split::InOrder)
}

/// The modes composed prompts run under: base, uniform (with adapters) and the routed ones
/// (with a router), as `--modes` limits them.
pub(super) fn compose_modes(args: &EvalArgs, n_adapters: usize, routed: bool) -> Vec<Mode> {
    let mut modes = vec![Mode::Base];
    if n_adapters > 0 {
        modes.push(Mode::Uniform);
    }
    if routed {
        modes.extend([Mode::Routed, Mode::RoutedSentence, Mode::TokenLevel]);
    }
    modes.retain(|m| args.modes.is_empty() || args.modes.contains(m));
    modes
}

/// Composed prompts under [`compose_modes`] (the first top-p), scored per question.
pub(super) fn compose_runs<B: Backend>(
    args: &EvalArgs,
    cx: &Ctx<B>,
    prompts: &[Composed],
    routers: &[(f32, Option<Routing>)],
    n_adapters: usize,
) -> Result<Vec<ComposeRun>> {
    let items: Vec<Item> = prompts
        .iter()
        .map(|c| {
            let max: usize = c
                .parts
                .iter()
                .map(|p| args.max_tokens.unwrap_or(default_max_tokens(p.kind)))
                .sum();
            prepare(cx.tok, &c.instruction, max, None)
        })
        .collect::<Result<_>>()?;
    let refs: Vec<&Item> = items.iter().collect();
    let chooser = Chooser {
        routing: routers[0].1.as_ref(),
        n_adapters,
    };
    let modes = compose_modes(args, n_adapters, chooser.routing.is_some());
    let mut out = Vec::new();
    for mode in modes {
        let k = prompts.first().map_or(0, |c| c.parts.len());
        let b = bar(refs.len(), format!("compose {k}: {}", mode.name()));
        let t0 = Instant::now();
        let outs = generate_items(cx, &refs, mode, &chooser, &b)?;
        b.finish_and_clear();
        let secs = t0.elapsed().as_secs_f64();
        let (mut right, mut total, mut numbered) = (0usize, 0usize, 0usize);
        let mut adapters = 0f32;
        let mut examples = Vec::with_capacity(prompts.len());
        for (g, c) in outs.iter().zip(prompts) {
            let (scored, split) = score_composed(&c.parts, &g.text);
            right += scored.iter().filter(|a| a.correct && !g.non_finite).count();
            total += scored.len();
            numbered += usize::from(split == Split::Numbered);
            adapters += g.adapters;
            let questions: Vec<Value> = (c.parts.iter().zip(&scored))
                .map(|(p, a)| {
                    json!({"task": p.task, "answer": p.answer, "extracted": a.extracted,
                           "correct": a.correct && !g.non_finite})
                })
                .collect();
            let split = match split {
                Split::Numbered => "numbered",
                Split::InOrder => "in order",
            };
            examples.push(
                json!({"completion": g.text, "split": split, "questions": questions,
                                 "non_finite": g.non_finite}),
            );
        }
        out.push(ComposeRun {
            mode,
            accuracy: right as f64 / total.max(1) as f64,
            questions: total,
            prompts: prompts.len(),
            numbered,
            mean_adapters: adapters as f64 / prompts.len().max(1) as f64,
            time_per_example_s: secs / prompts.len().max(1) as f64,
            non_finite: outs.iter().filter(|g| g.non_finite).count(),
            examples,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::metrics::Kind;
    use super::*;

    fn ex(kind: Kind, answer: &str) -> Example {
        Example {
            task: "t".into(),
            instruction: "q".into(),
            output: String::new(),
            answer: answer.into(),
            kind,
        }
    }

    fn correct(parts: &[Example], text: &str) -> (Vec<bool>, Split) {
        let (a, s) = score_composed(parts, text);
        (a.iter().map(|a| a.correct).collect(), s)
    }

    #[test]
    fn numbered_parts_take_their_own_last_answer() {
        let mike = [ex(Kind::Qa, "4"), ex(Kind::Qa, "4")];
        // The question restated under its heading: its numbers are not the answer (they had
        // been: the first sentence with a number counted, 50% for two wrong answers).
        let text = "Question 1: Mike has 8 orange marbles, he gave Sam 4 of the marbles.\n\n\
                    Mike now has 8 - 4 = 2 orange marbles.\n\nQuestion 2: Mike has 8 orange \
                    marbles, he gave Sam 4.\n\nMike now has 2 - 4 = 2 orange marbles.";
        assert_eq!(correct(&mike, text), (vec![false, false], Split::Numbered));
        let right = text.replace("= 2 orange", "= 4 orange");
        assert_eq!(correct(&mike, &right), (vec![true, true], Split::Numbered));
        // Mixed kinds; a preamble (its own mention of the questions too) is no question's;
        // headings in any case and under markdown marks; the last part ends at a question the
        // model made up.
        let mixed = [ex(Kind::Mcq, "true"), ex(Kind::Qa, "12"), ex(Kind::Qa, "3")];
        let text = "Sure, 7 answers: Question 1 and then Question 2.\n**QUESTION 1:** false... \
                    no, true.\nquestion2: 5 + 7 = 12.\n### Question 3: 1 + 2 = 3.\nQuestion 4: \
                    a made-up one, 99.";
        assert_eq!(
            correct(&mixed, text),
            (vec![true, true, true], Split::Numbered)
        );
        // A repeated heading does not restart a part; a question's own number, mentioned in
        // another's part, is not read as its answer.
        let text = "Question 1: true.\nQuestion 1 again: false.\nQuestion 2: 5 + 7 = 12, \
                    the same steps as in Question 1.";
        let (a, split) = score_composed(&mixed[..2], text);
        assert_eq!(split, Split::Numbered);
        assert_eq!(a[0].extracted.as_deref(), Some("false"));
        assert_eq!(a[1].extracted.as_deref(), Some("12"));
        // Headings for some questions only: no numbering (the third answer, after the second
        // heading, had been the second question's, and the third had none).
        let sums = [ex(Kind::Qa, "4"), ex(Kind::Qa, "6"), ex(Kind::Qa, "9")];
        let text = "Question 1: 2 + 2 = 4.\nQuestion 2: 3 + 3 = 6.\nThe third: 3 * 3 = 9.";
        assert_eq!(
            correct(&sums, text),
            (vec![true, true, true], Split::InOrder)
        );
    }

    #[test]
    fn without_headings_questions_take_sentences_in_order() {
        let parts = [ex(Kind::Mcq, "true"), ex(Kind::Qa, "12")];
        assert_eq!(
            correct(&parts, "It is true. The total is 12."),
            (vec![true, true], Split::InOrder)
        );
        // One heading alone is no numbering.
        assert_eq!(
            correct(&parts, "Question 1 is hard. It is true. So 12."),
            (vec![true, true], Split::InOrder)
        );
        assert_eq!(
            correct(&parts, "No answer here"),
            (vec![false, false], Split::InOrder)
        );
        // Working before the answers: the last answers count, the restated numbers do not (the
        // first number-holding sentence had been question 1's).
        let sums = [ex(Kind::Qa, "4"), ex(Kind::Qa, "6")];
        let text = "Sam has 8 and gives 2. So he has 8 - 2 - 2 = 4. Then 4 + 2 = 6.";
        assert_eq!(correct(&sums, text), (vec![true, true], Split::InOrder));
        // A question whose kind no sentence before the next one's answer holds gets nothing.
        assert_eq!(
            correct(&sums, "The total is 6."),
            (vec![false, true], Split::InOrder)
        );
    }
}

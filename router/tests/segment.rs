//! Sentence segmentation.

use dlp_router::segment::{sentences, split_sentences};

/// Ranges must tile the text exactly.
fn check_cover(text: &str) {
    let r = split_sentences(text);
    let mut at = 0;
    for x in &r {
        assert_eq!(x.start, at, "gap or overlap in {r:?} for {text:?}");
        assert!(x.end > x.start);
        at = x.end;
    }
    assert_eq!(at, text.len(), "{r:?} does not cover {text:?}");
}

#[test]
fn splits_on_terminators_followed_by_whitespace() {
    let t = "Is the sky blue? Yes! It is. Next";
    assert_eq!(
        sentences(t),
        vec!["Is the sky blue?", " Yes!", " It is.", " Next"]
    );
    check_cover(t);
}

#[test]
fn whitespace_goes_to_the_following_sentence() {
    let t = "  First one.   Second one.  ";
    assert_eq!(sentences(t), vec!["  First one.", "   Second one.  "]);
    check_cover(t);
}

#[test]
fn keeps_decimals_and_abbreviations() {
    assert_eq!(
        sentences("Pi is 3.14 roughly. Done."),
        vec!["Pi is 3.14 roughly.", " Done."]
    );
    assert_eq!(
        sentences("Use herbs, e.g. basil or thyme. Then stir."),
        vec!["Use herbs, e.g. basil or thyme.", " Then stir."]
    );
    assert_eq!(
        sentences("Mr. Smith met Dr. Jones. They talked."),
        vec!["Mr. Smith met Dr. Jones.", " They talked."]
    );
    assert_eq!(
        sentences("He moved to the U.S. in May. Good."),
        vec!["He moved to the U.S. in May.", " Good."]
    );
    assert_eq!(
        sentences("J. K. Rowling wrote it. Yes."),
        vec!["J. K. Rowling wrote it.", " Yes."]
    );
    // A list number opening its line stays with its item.
    assert_eq!(
        sentences("Tips:\n1. Knead well.\n2. Rest it. Bake."),
        vec!["Tips:", "\n1. Knead well.", "\n2. Rest it.", " Bake."]
    );
    assert_eq!(sentences("I have 3. You 4."), vec!["I have 3.", " You 4."]);
    // A number at the end of a sentence still ends it.
    assert_eq!(
        sentences("The answer is 3.5. Check it."),
        vec!["The answer is 3.5.", " Check it."]
    );
}

#[test]
fn line_breaks_end_sentences() {
    let t = "Question: why\n\nAnswer1: a Answer2: b\r\nAnswer format: x";
    assert_eq!(
        sentences(t),
        vec![
            "Question: why",
            "\n\nAnswer1: a Answer2: b",
            "\r\nAnswer format: x"
        ]
    );
    check_cover(t);
    assert_eq!(sentences("Done.\nNext."), vec!["Done.", "\nNext."]);
}

#[test]
fn closing_quotes_and_runs_stay_with_their_sentence() {
    assert_eq!(
        sentences("He said \"stop.\" Then left?! Ok"),
        vec!["He said \"stop.\"", " Then left?!", " Ok"]
    );
}

#[test]
fn edge_cases() {
    assert!(split_sentences("").is_empty());
    assert_eq!(split_sentences("   "), vec![0..3]);
    assert_eq!(split_sentences("no terminator"), vec![0..13]);
    assert_eq!(sentences("Trailing dot."), vec!["Trailing dot."]);
    for t in [
        "a. b. c.",
        "...",
        "Wait... what? Ok.",
        "\n\n\n",
        "x\n",
        "é. ü! 漢字。 ok",
        "1.2.3. 4",
    ] {
        check_cover(t);
    }
}

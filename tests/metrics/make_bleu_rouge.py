#!/usr/bin/env python3
"""Reference values for dlp-run eval's BLEU and ROUGE (cli/tests/data/bleu_rouge.json).

Computed by the packages the DLP-LoRA evaluation names, as their defaults compute them:
sacrebleu.corpus_bleu(hyps, [refs]) (13a tokenizer, exp smoothing, case-sensitive) and
rouge_score.rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False), F-measure.

    python3 -m venv .venv-metrics && .venv-metrics/bin/pip install sacrebleu==2.6.0 rouge-score==0.1.2
    .venv-metrics/bin/python tests/metrics/make_bleu_rouge.py > cli/tests/data/bleu_rouge.json
"""
import json

import sacrebleu
from rouge_score import rouge_scorer

CORPORA = [
    # gsm8k-style solutions against a model's attempts.
    (["Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = 72 clips altogether in April and May. The answer is 72.",
      "The correct answer is 15",
      "She has 3 apples, buys 4 more: 3 + 4 = 7. The answer is 7."],
     ["Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
      "the correct answer is 18",
      "3 + 4 = 7 apples. the answer is 7"]),
    # Exact match, case, punctuation, thousands and decimals, dashes after digits.
    (["The answer is 1,234.5 dollars.", "THE ANSWER IS TRUE", "It costs $3.50 - not 4-5 dollars & more."],
     ["The answer is 1,234.5 dollars.", "the answer is true", "It costs $3.50-not 4-5 dollars &amp; more."]),
    # Short and empty hypotheses (smoothing, brevity penalty), repeated words (clipping).
    (["", "the the the the", "answer"],
     ["the answer is 42", "the cat is on the mat", "the answer"]),
    # Non-ASCII text, line breaks, quotes.
    (["Café prices rose 5% — \"a lot\", they said.\nNext line-\nbreak."],
     ["Cafe prices rose 5 % - 'a lot', they said. Next linebreak."]),
    # One pair with no n-gram in common at all.
    (["xyz"], ["abc def"]),
]


def main():
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)
    out = []
    for hyps, refs in CORPORA:
        bleu = sacrebleu.corpus_bleu(hyps, [refs])
        scores = [scorer.score(r, h) for h, r in zip(hyps, refs)]
        out.append({
            "hyps": hyps, "refs": refs,
            "corpus_bleu": bleu.score,
            "rouge1_f": [s["rouge1"].fmeasure for s in scores],
            "rougeL_f": [s["rougeL"].fmeasure for s in scores],
        })
    print(json.dumps({"made_by": f"sacrebleu {sacrebleu.__version__}, rouge-score 0.1.2 (tests/metrics/make_bleu_rouge.py)",
                      "cases": out}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()

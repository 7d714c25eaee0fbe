//! `dlp-run eval-router`: a trained router measured on labelled data.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use dlp_router::data::{find_split_files, read_all, Example, Fields};
use dlp_router::metrics::{default_families, evaluate, truth_indices, Family};
use dlp_router::segment::split_sentences;
use dlp_router::{Router, SelectConfig};

use crate::output::{out, outln, OutFormat};

/// Measure a router on labelled data: top-1, family top-1, whether the true label is inside the
/// top-p set, mean adapters per mixture, and the confusion matrix.
///
/// Example: dlp-run eval-router --router routers/tasks --data ../shared/data/tasks --png confusion.png
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct EvalRouterArgs {
    /// Router directory (router.json + router.safetensors).
    #[arg(long)]
    pub router: PathBuf,
    /// Evaluation data: jsonl files, or directories searched for `<split>.jsonl` (directly or in
    /// per-task folders).
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Which file to look for in data directories (`dev` → dev.jsonl, `test` → test.jsonl).
    #[arg(long, default_value = "dev")]
    pub split: String,
    /// jsonl field holding the true label.
    #[arg(long, default_value = "task")]
    pub label_field: String,
    /// jsonl field holding the text.
    #[arg(long, default_value = "instruction")]
    pub text_field: String,
    /// Top-p threshold: the selected set is the smallest prefix of labels (by probability)
    /// whose cumulative probability reaches it.
    #[arg(long, default_value_t = 0.9)]
    pub p: f32,
    /// Also cap the selected set at the k most probable labels.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Hard cap on adapters per mixture (0: no cap, as generate's --max-adapters).
    #[arg(long)]
    pub max_adapters: Option<usize>,
    /// `whole`: each record's text is one routing input (per-request routing). `sentence`: each
    /// sentence of it is one, labelled with the record's label (per-sentence routing).
    #[arg(long, value_enum, default_value_t = Granularity::Whole)]
    pub granularity: Granularity,
    /// Families of labels whose confusion is benign, as NAME=a,b,c (repeatable); given any,
    /// they replace the built-in ones (the 14 benchmark tasks' families: science_qa =
    /// arc_challenge, arc_easy, openbookqa; math_word = gsm8k, addsub, multiarith, singleeq,
    /// svamp, mawps; aqua, multiple-choice algebra, and the other tasks each their own).
    /// Unlisted labels are their own family.
    #[arg(long = "family")]
    pub families: Vec<String>,
    /// Write the metrics as JSON (keys include top1, family_top1, topp_containment,
    /// mean_adapters, per_task_top1, confusion).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the confusion matrix as a PNG heatmap.
    #[arg(long)]
    pub png: Option<PathBuf>,
}

/// What one routing input is, in `eval-router`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Granularity {
    /// The whole text of a record.
    Whole,
    /// Each sentence of a record's text.
    Sentence,
}

fn parse_families(specs: &[String]) -> Result<Vec<Family>> {
    if specs.is_empty() {
        return Ok(default_families());
    }
    let mut families: Vec<Family> = Vec::new();
    for s in specs {
        let (name, members) = s
            .split_once('=')
            .with_context(|| format!("--family {s:?}: expected NAME=a,b,c"))?;
        let members: Vec<String> = members.split(',').map(|m| m.trim().to_string()).collect();
        if name.is_empty() || members.iter().any(String::is_empty) {
            bail!("--family {s:?}: expected NAME=a,b,c with a name and no empty label");
        }
        // Families are told apart by name: two of one name would be one family.
        if families.iter().any(|(other, _)| other == name) {
            bail!(
                "--family {s:?}: a family named `{name}` is already given; name each family once"
            );
        }
        // A label in two families would count in the first only.
        for (other, theirs) in &families {
            if let Some(m) = members.iter().find(|m| theirs.contains(m)) {
                bail!("--family {s:?}: label `{m}` is already in family `{other}`");
            }
        }
        families.push((name.to_string(), members));
    }
    Ok(families)
}

/// Runs `eval-router`.
pub fn eval_router(args: &EvalRouterArgs) -> Result<()> {
    if !(args.p > 0.0 && args.p <= 1.0) {
        bail!("--p {}: the top-p threshold must lie in (0, 1]", args.p);
    }
    if args.top_k == Some(0) {
        bail!("--top-k 0: keep at least one label (leave --top-k out for no cap)");
    }
    let families = parse_families(&args.families)?;
    let mut inputs = crate::output::Inputs::default();
    inputs.router(Some(&args.router));
    crate::eval::data::check_split_applies(&args.data, &args.split)?;
    crate::eval::data::check_split_gaps(
        &args.data,
        &args.split,
        "--split picks which file of a folder is read",
    )?;
    // The data too: `--json` naming a data file replaced it with the metrics.
    let files = find_split_files(&args.data, &args.split)?;
    for f in &files {
        inputs.file(f);
    }
    let outputs = [
        ("--json", args.json.as_deref(), OutFormat::Text),
        ("--png", args.png.as_deref(), OutFormat::Png),
    ];
    crate::output::check_outputs(&outputs, &inputs)?;
    let router = Router::load(&args.router)
        .with_context(|| format!("loading router {}", args.router.display()))?;
    // A family member the router does not know would count nothing, silently (the default
    // families name the 14 tasks, which a router may hold only some of).
    if !args.families.is_empty() {
        let labels = router.labels();
        for (fam, members) in &families {
            // A label no family lists is a family of its own name: a family named after a
            // label it leaves out would take that label's texts in (`gsm8k=addsub,...`
            // without gsm8k scored gsm8k's picks as family hits).
            let listed = families.iter().any(|(_, m)| m.contains(fam));
            if labels.contains(fam) && !listed {
                bail!(
                    "--family {fam}: `{fam}` is a router label no family lists (such a label counts as a family of its own name, this one); list it, or give the family another name"
                );
            }
            if let Some(m) = members.iter().find(|m| !labels.contains(m)) {
                bail!(
                    "--family {fam}: `{m}` is not one of the router's labels ({})",
                    labels.join(", ")
                );
            }
        }
    }
    let fields = Fields {
        text: args.text_field.clone(),
        label: args.label_field.clone(),
    };
    let records = read_all(&files, &fields)?;
    if records.is_empty() {
        let shown: Vec<String> = args.data.iter().map(|p| p.display().to_string()).collect();
        // --split picks a folder's file; a file given by name is read whatever it is called.
        if args.data.iter().all(|p| p.is_file()) {
            bail!("--data {}: no records (empty files)", shown.join(" "));
        }
        bail!(
            "--data {}: no {}.jsonl records found (choose another file of the folders with --split)",
            shown.join(" "),
            args.split
        );
    }
    let inputs: Vec<Example> = match args.granularity {
        Granularity::Whole => records,
        Granularity::Sentence => records
            .iter()
            .flat_map(|r| {
                split_sentences(&r.text).into_iter().map(|s| Example {
                    text: r.text[s].trim().to_string(),
                    label: r.label.clone(),
                })
            })
            .filter(|e| !e.text.is_empty())
            .collect(),
    };
    let truth = truth_indices(router.labels(), &inputs)?;
    let texts: Vec<&str> = inputs.iter().map(|e| e.text.as_str()).collect();
    // Timed in two parts: the tokenizer, and the router proper (pool + MLP + softmax).
    let t0 = Instant::now();
    let ids = router.encode(&texts)?;
    let t1 = Instant::now();
    let probs: Vec<Vec<f32>> = ids
        .chunks(256)
        .flat_map(|c| router.weights().logits(c))
        .map(|l| dlp_router::select::softmax(&l))
        .collect();
    let per = |d: std::time::Duration| 1e6 * d.as_secs_f64() / inputs.len() as f64;
    let (tok_us, mlp_us) = (per(t1 - t0), per(t1.elapsed()));
    let cfg = SelectConfig {
        top_p: Some(args.p),
        top_k: args.top_k,
        max_adapters: args.max_adapters,
        ..Default::default()
    };
    let report = evaluate(router.labels(), &probs, &truth, &cfg, &families);
    // The files below are written even where the report could not be printed (a full disk
    // under stdout).
    let printed = (|| -> Result<()> {
        outln!(
            "router {} ({} parameters, {} labels); {} {} input(s) from {} file(s); \
             per input: tokenizer {:.1} µs + router {:.1} µs",
            args.router.display(),
            router.num_params(),
            router.labels().len(),
            inputs.len(),
            match args.granularity {
                Granularity::Whole => "whole-text",
                Granularity::Sentence => "sentence",
            },
            files.len(),
            tok_us,
            mlp_us
        );
        out!("{}", report.summary());
        for (fam, acc) in &report.per_family_top1 {
            outln!("family {fam:<12} top-1 {:.1}%", 100.0 * acc);
        }
        out!("{}", report.confusion_table());
        Ok(())
    })();
    if let Some(path) = &args.json {
        let mut v = serde_json::to_value(&report)?;
        v["granularity"] = serde_json::json!(format!("{:?}", args.granularity).to_lowercase());
        v["router"] = serde_json::json!(args.router.display().to_string());
        crate::output::write_json(path, v)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.png {
        crate::output::write_atomic_with(path, |tmp| {
            Ok(dlp_router::heatmap::render_confusion_png(&report, tmp)?)
        })?;
        eprintln!("wrote {}", path.display());
    }
    printed
}

//! eval.png: accuracy per task and mode as grouped bars, and the top-p sweep.

use std::path::Path;

use anyhow::{anyhow, Result};

use super::modes::Mode;
use super::report::{Report, SweepPoint};

/// Accuracy per task and mode (grouped bars), and the top-p sweep (accuracy and adapters per
/// mixture against p) when there is one, as a PNG.
pub fn plot(rep: &Report, path: &Path) -> Result<()> {
    use dlp_router::heatmap::draw_text;
    use plotters::prelude::*;
    let e = |x: String| anyhow!("drawing {}: {x}", path.display());
    let has_sweep = rep
        .sweep
        .iter()
        .map(|x| x.0.to_bits())
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        > 1;
    let w = 1000i32;
    let (l, t, bh) = (60i32, 50i32, 340i32);
    let n_tasks = rep.tasks.len().max(1) as i32;
    let group = (w - l - 20) / n_tasks;
    // Task names that do not fit under their group (8-pixel glyphs) stand upright, whole.
    let longest = rep
        .tasks
        .iter()
        .map(|(t, _)| t.chars().count() as i32)
        .max();
    let longest = longest.unwrap_or(0);
    let upright = longest * 8 + 8 > group;
    let below = if upright { longest * 8 + 8 } else { 0 };
    let h = below + if has_sweep { 820 } else { 480 };
    let root = BitMapBackend::new(path, (w as u32, h as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    let bw = (group - 6) / rep.main.len().max(1) as i32;
    draw_text(
        &root,
        l,
        14,
        "accuracy per task and mode (%)",
        &BLACK,
        false,
    )
    .map_err(e)?;
    root.draw(&PathElement::new(
        vec![(l, t), (l, t + bh), (w - 20, t + bh)],
        BLACK,
    ))
    .map_err(|x| e(x.to_string()))?;
    for frac in [0.25, 0.5, 0.75, 1.0] {
        let y = t + bh - (frac * bh as f64) as i32;
        draw_text(
            &root,
            20,
            y - 4,
            &format!("{:.0}", frac * 100.0),
            &BLACK,
            false,
        )
        .map_err(e)?;
    }
    for (ti, (task, _)) in rep.tasks.iter().enumerate() {
        let x0 = l + 3 + ti as i32 * group;
        for (mi, r) in rep.main.iter().enumerate() {
            let v = r.per[task].accuracy;
            let x = x0 + mi as i32 * bw;
            let y = t + bh - (v * bh as f64) as i32;
            root.draw(&Rectangle::new(
                [(x, y), (x + bw - 1, t + bh)],
                palette[mi % 8].filled(),
            ))
            .map_err(|x| e(x.to_string()))?;
        }
        // Upright text runs up from its first character, so it starts at the bottom.
        let (x, y) = match upright {
            true => (
                x0 + group / 2 - 8,
                t + bh + 6 + task.chars().count() as i32 * 8,
            ),
            false => (x0, t + bh + 6),
        };
        draw_text(&root, x, y, task, &BLACK, upright).map_err(e)?;
    }
    for (mi, r) in rep.main.iter().enumerate() {
        let m = r.mode;
        let x = l + (mi as i32 % 4) * 220;
        let y = t + bh + below + 24 + (mi as i32 / 4) * 14;
        root.draw(&Rectangle::new(
            [(x, y), (x + 10, y + 8)],
            palette[mi % 8].filled(),
        ))
        .map_err(|x| e(x.to_string()))?;
        draw_text(&root, x + 14, y, m.name(), &BLACK, false).map_err(e)?;
    }
    if has_sweep {
        let (t2, h2) = (t + bh + below + 90, 260i32);
        draw_text(
            &root,
            l,
            t2 - 24,
            "top-p sweep: accuracy % (solid) and adapters per mixture x10 (dashed) against p",
            &BLACK,
            false,
        )
        .map_err(e)?;
        root.draw(&PathElement::new(
            vec![(l, t2), (l, t2 + h2), (w - 20, t2 + h2)],
            BLACK,
        ))
        .map_err(|x| e(x.to_string()))?;
        let ps: Vec<f32> = rep.sweep.iter().map(|x| x.0).collect();
        let (pmin, pmax) = ps
            .iter()
            .fold((f32::MAX, f32::MIN), |a, &p| (a.0.min(p), a.1.max(p)));
        let px =
            |p: f32| l + 10 + ((p - pmin) / (pmax - pmin).max(1e-6) * (w - l - 60) as f32) as i32;
        let py = |v: f64| t2 + h2 - (v.clamp(0.0, 100.0) / 100.0 * h2 as f64) as i32;
        let modes: std::collections::BTreeSet<Mode> = rep.sweep.iter().map(|x| x.1).collect();
        for (mi, m) in modes.iter().enumerate() {
            let pts: Vec<&SweepPoint> = rep.sweep.iter().filter(|x| x.1 == *m).collect();
            let acc: Vec<(i32, i32)> = pts.iter().map(|x| (px(x.0), py(100.0 * x.2))).collect();
            let ad: Vec<(i32, i32)> = pts.iter().map(|x| (px(x.0), py(10.0 * x.3))).collect();
            let c = palette[mi % 8];
            root.draw(&PathElement::new(acc.clone(), c.stroke_width(2)))
                .map_err(|x| e(x.to_string()))?;
            for (a, b) in ad.iter().zip(ad.iter().skip(1)).step_by(1) {
                let mid = ((a.0 + b.0) / 2, (a.1 + b.1) / 2);
                root.draw(&PathElement::new(vec![*a, mid], c))
                    .map_err(|x| e(x.to_string()))?;
            }
            for &(x, y) in &acc {
                root.draw(&Circle::new((x, y), 3, c.filled()))
                    .map_err(|x| e(x.to_string()))?;
            }
            draw_text(
                &root,
                w - 200,
                t2 + 10 + mi as i32 * 14,
                m.name(),
                &c,
                false,
            )
            .map_err(e)?;
        }
        for p in &ps {
            draw_text(
                &root,
                px(*p) - 8,
                t2 + h2 + 6,
                &format!("{p:.2}"),
                &BLACK,
                false,
            )
            .map_err(e)?;
        }
    }
    root.present().map_err(|x| e(x.to_string()))?;
    Ok(())
}

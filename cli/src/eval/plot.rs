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
    // A vertical scale's labels at `x`: `frac` of `max` at `frac` of `height` above `bottom`.
    let scale = |x: i32, bottom: i32, height: i32, max: f64, digits: usize, fracs: &[f64]| {
        fracs.iter().try_for_each(|frac| {
            let y = bottom - (frac * height as f64) as i32;
            let text = format!("{:.digits$}", frac * max);
            draw_text(&root, x, y - 4, &text, &BLACK, false).map_err(e)
        })
    };
    scale(20, t + bh, bh, 100.0, 0, &[0.25, 0.5, 0.75, 1.0])?;
    for (ti, (task, _)) in rep.tasks.iter().enumerate() {
        let x0 = l + 3 + ti as i32 * group;
        for (mi, r) in rep.main.iter().enumerate() {
            // A cell without a score (teacher-forced without gold outputs) has no bar.
            let Some(v) = r.per[task].accuracy else {
                continue;
            };
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
            "top-p sweep against p: accuracy % (solid, left axis), adapters per mixture (dashed, right)",
            &BLACK,
            false,
        )
        .map_err(e)?;
        root.draw(&PathElement::new(
            vec![(l, t2), (l, t2 + h2), (w - 20, t2 + h2)],
            BLACK,
        ))
        .map_err(|x| e(x.to_string()))?;
        // Accuracy % on the left axis; adapters per mixture on the right, up to the most any
        // point has (a uniform-like p = 1 can pass 10), rounded up to a multiple of 4 so that
        // the quarter marks are whole numbers.
        let most = rep.sweep.iter().map(|x| x.3).fold(1.0f64, f64::max);
        let most = (most / 4.0).ceil() * 4.0;
        scale(20, t2 + h2, h2, 100.0, 0, &[0.0, 0.25, 0.5, 0.75, 1.0])?;
        // (No 0 on the right: it would touch the last p's label.)
        scale(w - 46, t2 + h2, h2, most, 0, &[0.25, 0.5, 0.75, 1.0])?;
        let mut ps: Vec<f32> = rep.sweep.iter().map(|x| x.0).collect();
        ps.sort_by(f32::total_cmp);
        ps.dedup();
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
            let ad: Vec<(i32, i32)> = pts
                .iter()
                .map(|x| (px(x.0), py(100.0 * x.3 / most)))
                .collect();
            // A mode keeps its colour from the bars above.
            let at = rep.main.iter().position(|r| r.mode == *m).unwrap_or(mi);
            let c = palette[at % 8];
            root.draw(&PathElement::new(acc.clone(), c.stroke_width(2)))
                .map_err(|x| e(x.to_string()))?;
            for (a, b) in ad.iter().zip(ad.iter().skip(1)) {
                for dash in dashes(*a, *b) {
                    root.draw(&PathElement::new(dash.to_vec(), c.stroke_width(2)))
                        .map_err(|x| e(x.to_string()))?;
                }
            }
            for &(x, y) in &acc {
                root.draw(&Circle::new((x, y), 3, c.filled()))
                    .map_err(|x| e(x.to_string()))?;
            }
            // The legend under the p axis, where no line can run through it.
            let (x, y) = (
                l + (mi as i32 % 4) * 220,
                t2 + h2 + 26 + (mi as i32 / 4) * 14,
            );
            root.draw(&Rectangle::new([(x, y), (x + 10, y + 8)], c.filled()))
                .map_err(|x| e(x.to_string()))?;
            draw_text(&root, x + 14, y, m.name(), &BLACK, false).map_err(e)?;
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

/// The dashes of a dashed line from `a` to `b`: 6 pixels drawn, 4 left out, along its length.
fn dashes(a: (i32, i32), b: (i32, i32)) -> Vec<[(i32, i32); 2]> {
    let (dx, dy) = (f64::from(b.0 - a.0), f64::from(b.1 - a.1));
    let len = dx.hypot(dy);
    let at = |d: f64| {
        let f = (d / len.max(1e-9)).min(1.0);
        (a.0 + (f * dx).round() as i32, a.1 + (f * dy).round() as i32)
    };
    let mut out = Vec::new();
    let mut d = 0.0;
    while d < len {
        out.push([at(d), at(d + 6.0)]);
        d += 10.0;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn dashes_cover_the_line_with_gaps() {
        let d = super::dashes((0, 0), (30, 0));
        assert_eq!(
            d,
            vec![[(0, 0), (6, 0)], [(10, 0), (16, 0)], [(20, 0), (26, 0)]]
        );
        // The last dash stops at the end; a zero-length line has none.
        assert_eq!(super::dashes((0, 0), (0, 8)), vec![[(0, 0), (0, 6)]]);
        assert_eq!(
            super::dashes((0, 0), (0, 12)),
            vec![[(0, 0), (0, 6)], [(0, 10), (0, 12)]]
        );
        assert!(super::dashes((5, 5), (5, 5)).is_empty());
    }
}

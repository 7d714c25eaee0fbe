//! The confusion matrix as a PNG heatmap (feature `plot`).
//!
//! Cells are shaded by the row-normalised share (white = 0, dark blue = 1) and carry their
//! count. Text is drawn pixel by pixel from the public-domain font8x8 glyphs, so rendering needs
//! no system font and looks the same on every machine.

use std::path::Path;

use font8x8::legacy::BASIC_LEGACY;
use plotters::prelude::*;

use crate::metrics::EvalReport;
use crate::RouterError;

const CELL: i32 = 40;
const GLYPH: i32 = 8;

/// A PNG drawing area.
pub type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// Draws `report`'s confusion matrix to a PNG file at `path`.
pub fn render_confusion_png(report: &EvalReport, path: &Path) -> Result<(), RouterError> {
    let n = report.labels.len() as i32;
    let name_px = report
        .labels
        .iter()
        .map(|l| l.len() as i32 + 4)
        .max()
        .unwrap_or(8)
        * GLYPH;
    let (left, top) = (name_px + 12, name_px + 48);
    let (w, h) = (left + n * CELL + 20, top + n * CELL + 40);
    let root = BitMapBackend::new(path, (w as u32, h as u32)).into_drawing_area();
    let err =
        |e: String| RouterError::Plot(format!("{}: cannot draw the heatmap: {e}", path.display()));
    draw(&root, report, left, top).map_err(err)?;
    root.present().map_err(|e| err(e.to_string()))
}

fn draw(root: &Area, report: &EvalReport, left: i32, top: i32) -> Result<(), String> {
    let e = |x: DrawingAreaErrorKind<_>| x.to_string();
    root.fill(&WHITE).map_err(e)?;
    let title = format!(
        "router confusion: rows true, columns predicted   top-1 {:.1}%   family {:.1}%",
        100.0 * report.top1,
        100.0 * report.family_top1
    );
    draw_text(root, 8, 8, &title, &BLACK, false)?;
    for (i, label) in report.labels.iter().enumerate() {
        let i = i as i32;
        let name = format!("{label} {i:>2}");
        // Row names right-aligned against the grid; column names read bottom-up above it.
        draw_text(
            root,
            left - 6 - name.len() as i32 * GLYPH,
            top + i * CELL + (CELL - GLYPH) / 2,
            &name,
            &BLACK,
            false,
        )?;
        let col = format!("{i:>2} {label}");
        draw_text(
            root,
            left + i * CELL + (CELL - GLYPH) / 2,
            top - 6,
            &col,
            &BLACK,
            true,
        )?;
    }
    for (i, row) in report.confusion.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f64;
        for (j, &c) in row.iter().enumerate() {
            let share = c as f64 / total;
            let (x, y) = (left + j as i32 * CELL, top + i as i32 * CELL);
            let shade = |lo: f64, hi: f64| (lo + (hi - lo) * share).round() as u8;
            let fill = RGBColor(shade(255.0, 8.0), shade(255.0, 48.0), shade(255.0, 107.0));
            root.draw(&Rectangle::new(
                [(x, y), (x + CELL, y + CELL)],
                fill.filled(),
            ))
            .map_err(e)?;
            let border = if i == j {
                RGBColor(200, 80, 0)
            } else {
                RGBColor(200, 200, 200)
            };
            root.draw(&Rectangle::new([(x, y), (x + CELL, y + CELL)], border))
                .map_err(e)?;
            if c > 0 {
                let s = c.to_string();
                let ink = if share > 0.5 { WHITE } else { BLACK };
                let tx = x + (CELL - s.len() as i32 * GLYPH) / 2;
                draw_text(root, tx, y + (CELL - GLYPH) / 2, &s, &ink, false)?;
            }
        }
    }
    Ok(())
}

/// Draws ASCII `s` (8x8 pixel glyphs, no system font needed) with its top-left corner at
/// (x, y); `vertical` rotates it a quarter turn counter-clockwise, the baseline then running
/// upward from (x, y). Errors are plotters' messages.
pub fn draw_text(
    root: &Area,
    x: i32,
    y: i32,
    s: &str,
    color: &RGBColor,
    vertical: bool,
) -> Result<(), String> {
    for (k, ch) in s.chars().enumerate() {
        let glyph = BASIC_LEGACY[if ch.is_ascii() {
            ch as usize
        } else {
            b'?' as usize
        }];
        for (gy, bits) in glyph.iter().enumerate() {
            for gx in 0..8 {
                if bits >> gx & 1 == 1 {
                    let (gy, k) = (gy as i32, k as i32);
                    let p = if vertical {
                        (x + gy, y - k * GLYPH - gx)
                    } else {
                        (x + k * GLYPH + gx, y + gy)
                    };
                    root.draw_pixel(p, color).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    Ok(())
}

//! Training metrics: one JSON line per optimizer step with TRL's names, a summary line, and a PNG
//! plot of loss and reward margin.
//!
//! Lines are flushed as they are written, so a killed run leaves every finished step on disk; a
//! resumed run appends after truncating anything past its checkpoint.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Map, Value};

/// Appends metric lines to `metrics.jsonl`.
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Opens `path` for appending. With `keep_steps = Some(n)`, lines of steps after `n` (left by a
    /// run that was killed after its last checkpoint) and any summary line are dropped first, so a
    /// resumed run continues the log exactly; with `None` the log starts empty.
    pub fn open(path: &Path, keep_steps: Option<u64>) -> Result<MetricsLog> {
        let kept: Vec<String> = match keep_steps {
            Some(n) if path.exists() => {
                let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
                std::io::BufReader::new(f)
                    .lines()
                    .map_while(|l| l.ok())
                    .filter(|l| {
                        serde_json::from_str::<Value>(l)
                            .ok()
                            .and_then(|v| v.get("step").and_then(Value::as_u64))
                            .is_some_and(|s| s <= n)
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        let mut file = keel_trajectory::private::create(path).with_context(|| format!("creating {}", path.display()))?;
        for l in kept {
            writeln!(file, "{l}")?;
        }
        Ok(MetricsLog { path: path.to_path_buf(), file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one line and flushes it.
    pub fn write(&mut self, line: &Map<String, Value>) -> Result<()> {
        let s = serde_json::to_string(line)?;
        writeln!(self.file, "{s}").and_then(|_| self.file.flush()).with_context(|| format!("writing {}", self.path.display()))
    }
}

/// Reads the per-step lines of a metrics file (those with a `step`).
pub fn read_steps(path: &Path) -> Result<Vec<Map<String, Value>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| match v {
            Value::Object(m) if m.contains_key("step") => Some(m),
            _ => None,
        })
        .collect())
}

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

pub(crate) fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The font is compiled in, so the plot needs no system fonts; it cannot be invalid.
        let _ = plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, FONT);
    });
}

/// Plots `loss` and `rewards/margins` (when present) against the step, as a PNG.
pub fn plot(metrics: &Path, out: &Path, title: &str) -> Result<()> {
    use plotters::prelude::*;
    register_font();
    let steps = read_steps(metrics)?;
    let series = |key: &str| -> Vec<(f64, f64)> {
        steps
            .iter()
            .filter_map(|m| Some((m.get("step")?.as_f64()?, m.get(key)?.as_f64()?)))
            .filter(|(_, y)| y.is_finite())
            .collect()
    };
    let loss = series("loss");
    let margin = series("rewards/margins");
    let all: Vec<f64> = loss.iter().chain(margin.iter()).map(|p| p.1).collect();
    let (mut lo, mut hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| (a.min(y), b.max(y)));
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    let pad = (hi - lo) * 0.05;
    let max_step = steps.iter().filter_map(|m| m.get("step")?.as_f64()).fold(1.0, f64::max);

    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("plotting {}: {e}", out.display());
    let root = BitMapBackend::new(out, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_step, (lo - pad)..(hi + pad))
        .map_err(|e| err(&e))?;
    chart.configure_mesh().x_desc("step").y_desc("value").draw().map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(loss, &BLUE))
        .map_err(|e| err(&e))?
        .label("loss")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    if !margin.is_empty() {
        chart
            .draw_series(LineSeries::new(margin, &RED))
            .map_err(|e| err(&e))?
            .label("rewards/margins")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    // The plot backend creates the file with the process umask.
    keel_trajectory::private::restrict(out).with_context(|| format!("narrowing {}", out.display()))?;
    Ok(())
}

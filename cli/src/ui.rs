//! Progress bars on stderr (drawn only on a terminal, never with `--json`) and plain lines.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Ui {
    pub json: bool,
    bars: MultiProgress,
}

impl Ui {
    pub fn new(json: bool) -> Self {
        let target = if json { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
        Self { json, bars: MultiProgress::with_draw_target(target) }
    }

    /// A bar for one file's bytes: size, speed, ETA.
    pub fn bytes_bar(&self, label: &str) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new(0));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:20!} {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
            )
            .expect("a valid template"),
        );
        bar.set_prefix(label.to_owned());
        bar
    }

    /// Turns a bar into the job's conversion progress (0 to 1000).
    pub fn to_conversion(bar: &ProgressBar) {
        bar.set_style(
            ProgressStyle::with_template("{prefix:20!} {wide_bar} {percent:>3}% converting {msg}")
                .expect("a valid template"),
        );
        bar.set_length(1000);
        bar.set_position(0);
    }

    /// A line for people on stderr, above the bars (nothing with `--json`).
    pub fn note(&self, line: &str) {
        if !self.json {
            let _ = self.bars.println(line);
        }
    }
}

//! `keyflip status`'s text: a summary line, a banner when keyflip is paused, one aligned row per
//! managed secret (those with problems first, as the report orders them) and then every
//! problem with its fix, so the last lines a terminal shows are what to do. Pure: it renders a
//! [`StatusReport`] and reads nothing. Every value that came from a tag is already echoed by
//! the collector (control characters escaped), so no tag can move the cursor or forge a line.

use super::{StatusReport, short_duration, short_time};
use crate::domain::untrusted::echo;

const HEADERS: [&str; 11] = [
    "STATE", "VAULT", "SECRET", "PROVIDER", "RESOURCE", "SLOT", "AGE", "EXPIRES", "DUE", "PENDING",
    "PROBLEMS",
];

/// The whole text, ending with a newline.
pub fn render(report: &StatusReport) -> String {
    let mut out = String::new();
    let summary = &report.summary;
    let vaults = report.vaults.len();
    out.push_str(&format!(
        "keyflip status at {}: {} managed secrets in {vaults} vault{}, {} with problems, {} due, {} pending, {} opted out, {} disabled\n",
        short_time(Some(report.generated_at)),
        summary.secrets,
        if vaults == 1 { "" } else { "s" },
        summary.with_problems,
        summary.due,
        summary.pending,
        summary.opted_out,
        summary.disabled,
    ));
    if report.paused {
        out.push_str(
            "PAUSED: KEYFLIP_PAUSED is set, so no trigger rotates anything (every one answers skipped:paused); unset it to resume\n",
        );
    }
    if let Some(cap) = report.max_rotations_per_sweep {
        out.push_str(&format!(
            "at most {cap} rotations per sweep (KEYFLIP_MAX_ROTATIONS_PER_SWEEP)\n"
        ));
    }
    out.push('\n');
    let rows: Vec<[String; 11]> = report
        .secrets
        .iter()
        .map(|s| {
            let kinds: Vec<&str> = s.problems.iter().map(|p| p.kind.label()).collect();
            let pending = match (&s.pending, &s.revoke_pending) {
                (Some(p), _) => format!("{} {} since {}", p.slot, p.state, short_time(Some(p.since))),
                (None, Some(slot)) => format!("revoke {slot}"),
                (None, None) => "-".into(),
            };
            let due = match (s.due_now, s.due) {
                (true, _) => "now".to_string(),
                (false, due) => short_time(due),
            };
            [
                s.state.label().to_string(),
                s.vault.clone(),
                s.secret.clone(),
                s.provider.clone().unwrap_or_else(|| "-".into()),
                cut(s
                    .resource
                    .as_deref()
                    .map(|r| r.rsplit('/').next().unwrap_or(r))
                    .unwrap_or("-")),
                cut(s.active_slot.as_deref().unwrap_or("-")),
                short_duration(s.version_age_seconds),
                short_time(s.expires),
                due,
                pending,
                if kinds.is_empty() {
                    "-".into()
                } else {
                    kinds.join(",")
                },
            ]
        })
        .collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.push_str(&" ".repeat(width - cell.chars().count() + 2));
            }
        }
        text.trim_end().to_string()
    };
    out.push_str(&line(&HEADERS.map(str::to_string)));
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(no managed secret)\n");
    }
    let secret_problems = report.secrets.iter().filter(|s| !s.problems.is_empty());
    if !report.problems.is_empty() || report.secrets.iter().any(|s| !s.problems.is_empty()) {
        out.push_str("\nProblems:\n");
        for problem in &report.problems {
            let scope = problem.vault.as_deref().unwrap_or("status");
            out.push_str(&format!(
                "  {scope}: {}: {}\n",
                problem.kind.label(),
                echo_long(&problem.message)
            ));
        }
        for secret in secret_problems {
            for problem in &secret.problems {
                out.push_str(&format!(
                    "  {}/{}: {}: {}\n",
                    secret.vault,
                    secret.secret,
                    problem.kind.label(),
                    echo_long(&problem.message)
                ));
            }
        }
    }
    out
}

/// The most characters a cell taken from a tag shows (the problems below quote it whole).
const MAX_CELL: usize = 24;

/// `cell` cut to [`MAX_CELL`] characters (then `…`), so a long tag cannot widen the table.
fn cut(cell: &str) -> String {
    match cell.chars().count() > MAX_CELL {
        true => format!("{}…", cell.chars().take(MAX_CELL - 1).collect::<String>()),
        false => cell.to_string(),
    }
}

/// A message on one line: control characters escaped (messages are long, so not cut).
fn echo_long(message: &str) -> String {
    message.lines().map(echo_line).collect::<Vec<_>>().join(" ")
}

fn echo_line(line: &str) -> String {
    line.chars()
        .collect::<Vec<_>>()
        .chunks(crate::domain::untrusted::MAX_ECHO_CHARS)
        .map(|chunk| echo(&chunk.iter().collect::<String>()))
        .collect()
}

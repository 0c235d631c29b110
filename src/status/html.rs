//! `GET /api/status?format=html`: the status as one self-contained page a person reads at a
//! glance — the counts, a banner when keyflip is paused, every problem with its fix first, then
//! one row per managed secret with a timeline drawn in inline SVG (created, due, expiry, now).
//! No script, no external asset, no style attribute: one `<style>` block, allowed by its hash
//! in the page's policy ([`content_security_policy`]), which forbids scripts, so the page works
//! with scripts off and a value that slipped through escaping could not run anyway.
//! Every text taken from a vault (names, tag values, messages quoting them) goes through
//! [`escape`]: tags are written by people keyflip does not trust. Pure: it renders a
//! [`StatusReport`] and reads nothing.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{SecretStatus, State, StatusReport, short_duration, short_time};

/// The page's one style sheet.
const STYLE: &str = "
body{font:13px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1b1f24;background:#f6f8fa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#57606a;margin-bottom:16px}
.tiles{display:flex;gap:12px;flex-wrap:wrap}
.tile{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:10px 16px;min-width:110px}
.tile b{display:block;font-size:24px}
.tile.bad b{color:#cf222e}.tile.warn b{color:#9a6700}.tile.good b{color:#1a7f37}
.paused{background:#fff8c5;border:2px solid #d4a72c;border-radius:8px;padding:12px 16px;margin:16px 0;font-weight:600}
table{border-collapse:collapse;background:#fff;border:1px solid #d0d7de;width:100%}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #eaeef2;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.name{font-weight:600;white-space:nowrap}
td.res b{font-weight:600}td.res small{display:block;color:#57606a;font-size:11px}
td.slot{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all;max-width:130px}
td.when{white-space:nowrap;font-size:13px}
.kind{font-family:ui-monospace,monospace;color:#cf222e;white-space:nowrap}
.none{color:#1a7f37;font-weight:600}
.state{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;white-space:nowrap}
.s-ok{background:#dafbe1;color:#116329}.s-due{background:#fff8c5;color:#7d4e00}
.s-pending{background:#ddf4ff;color:#0550ae}.s-opted-out{background:#eaeef2;color:#424a53}
.s-disabled{background:#eaeef2;color:#424a53}.s-misconfigured,.s-tags-lost{background:#ffebe9;color:#a40e26}
tr.problem td.name{color:#a40e26}
svg text{font:10px system-ui,sans-serif;fill:#57606a}svg text.now{fill:#0969da;font-weight:600}
.legend{color:#57606a;font-size:12px;margin:6px 0}
";

/// The hash of [`STYLE`] as a CSP source.
fn style_hash() -> String {
    format!(
        "'sha256-{}'",
        azure_core::base64::encode(Sha256::digest(STYLE.as_bytes()))
    )
}

/// The policy the page is served with: nothing but its own style block; no script, no
/// frame, no form, no base.
pub fn content_security_policy() -> String {
    format!(
        "default-src 'none'; style-src {}; img-src 'none'; script-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        style_hash()
    )
}

/// `text` safe in HTML text and in a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// The whole page.
pub fn render(report: &StatusReport) -> String {
    let summary = &report.summary;
    let mut page = String::new();
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    page.push_str(&format!(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"{}\">",
        escape(&content_security_policy().replace("; frame-ancestors 'none'", ""))
    ));
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    page.push_str("<title>keyflip status</title>");
    page.push_str(&format!("<style>{STYLE}</style></head><body>\n"));
    page.push_str("<h1>keyflip status</h1>");
    let vaults: Vec<String> = report.vaults.iter().map(|v| escape(&v.vault)).collect();
    page.push_str(&format!(
        "<div class=\"meta\">at {} · vaults {} · lead {} days · dwell {} h</div>\n",
        escape(&short_time(Some(report.generated_at))),
        if vaults.is_empty() {
            "none".to_string()
        } else {
            vaults.join(", ")
        },
        report.lead_days,
        report.dwell_hours
    ));
    if report.paused {
        page.push_str("<div class=\"paused\" id=\"paused\">Paused: KEYFLIP_PAUSED is set, so no trigger rotates anything (each answers skipped:paused). Unset it to resume.</div>\n");
    }
    let problems = summary.with_problems + report.problems.len();
    page.push_str("<div class=\"tiles\">");
    for (label, count, class) in [
        ("managed secrets", summary.secrets, ""),
        (
            "with problems",
            problems,
            if problems > 0 { "bad" } else { "good" },
        ),
        ("due now", summary.due, if summary.due > 0 { "warn" } else { "" }),
        ("pending", summary.pending, ""),
        ("opted out", summary.opted_out, ""),
        ("disabled", summary.disabled, ""),
    ] {
        page.push_str(&format!(
            "<div class=\"tile {class}\"><b>{count}</b>{label}</div>"
        ));
    }
    page.push_str("</div>\n");

    page.push_str("<h2 id=\"problems\">Problems</h2>\n");
    if problems == 0 {
        page.push_str("<p class=\"none\">No problems.</p>\n");
    } else {
        page.push_str(
            "<table><thead><tr><th>secret</th><th>problem</th><th>what to do</th></tr></thead><tbody>\n",
        );
        for problem in &report.problems {
            page.push_str(&format!(
                "<tr><td class=\"name\">{}</td><td class=\"kind\">{}</td><td>{}</td></tr>\n",
                escape(problem.vault.as_deref().unwrap_or("(status)")),
                problem.kind.label(),
                escape(&problem.message)
            ));
        }
        for secret in report.secrets.iter().filter(|s| !s.problems.is_empty()) {
            for problem in &secret.problems {
                page.push_str(&format!(
                    "<tr><td class=\"name\">{}/{}</td><td class=\"kind\">{}</td><td>{}</td></tr>\n",
                    escape(&secret.vault),
                    escape(&secret.secret),
                    problem.kind.label(),
                    escape(&problem.message)
                ));
            }
        }
        page.push_str("</tbody></table>\n");
    }

    page.push_str("<h2 id=\"secrets\">Managed secrets</h2>\n");
    page.push_str("<div class=\"legend\">Timeline: ● created (the latest version) · green until due · amber from due (expiry minus the lead) · red past expiry · blue line: now</div>\n");
    page.push_str("<table><thead><tr><th>state</th><th>secret</th><th>resource</th><th>slot</th><th>age</th><th>expires</th><th>due</th><th>pending</th><th>timeline</th></tr></thead><tbody>\n");
    for secret in &report.secrets {
        page.push_str(&row(secret, report.generated_at));
    }
    if report.secrets.is_empty() {
        page.push_str("<tr><td colspan=\"9\">No managed secret.</td></tr>\n");
    }
    page.push_str("</tbody></table>\n</body></html>\n");
    page
}

fn row(secret: &SecretStatus, now: OffsetDateTime) -> String {
    let class = match secret.problems.is_empty() {
        true => "",
        false => " class=\"problem\"",
    };
    let pending = match (&secret.pending, &secret.revoke_pending) {
        (Some(p), _) => format!(
            "{} {} since {}",
            escape(&p.slot),
            p.state,
            escape(&short_time(Some(p.since)))
        ),
        (None, Some(slot)) => format!("revoke {}", escape(slot)),
        (None, None) => "–".into(),
    };
    let due = match secret.due_now {
        true => "now".to_string(),
        false => escape(&short_time(secret.due)),
    };
    // The resource's name, with its provider and resource group under it (the whole id is in
    // the JSON).
    let resource = match secret.resource.as_deref() {
        None => "–".to_string(),
        Some(id) => {
            let segments: Vec<&str> = id.split('/').collect();
            let group = segments
                .iter()
                .position(|s| s.eq_ignore_ascii_case("resourceGroups"))
                .and_then(|i| segments.get(i + 1));
            format!(
                "<b>{}</b><small>{}{}</small>",
                escape(segments.last().copied().unwrap_or(id)),
                escape(secret.provider.as_deref().unwrap_or("unsupported type")),
                group.map(|g| format!(" · {}", escape(g))).unwrap_or_default()
            )
        }
    };
    format!(
        "<tr{class} id=\"secret-{}-{}\"><td><span class=\"state s-{state}\">{state}</span></td><td class=\"name\">{}/{}</td><td class=\"res\">{resource}</td><td class=\"slot\">{}</td><td class=\"when\">{}</td><td class=\"when\">{}</td><td class=\"when\">{due}</td><td>{pending}</td><td>{}</td></tr>\n",
        escape(&secret.vault),
        escape(&secret.secret),
        escape(&secret.vault),
        escape(&secret.secret),
        escape(secret.active_slot.as_deref().unwrap_or("–")),
        escape(&short_duration(secret.version_age_seconds)),
        escape(&short_time(secret.expires)),
        timeline(secret, now),
        state = secret.state.label(),
    )
}

const WIDTH: f64 = 260.0;
const LEFT: f64 = 6.0;
const RIGHT: f64 = 6.0;

/// The secret's life as one bar: created → due (green), due → expiry (amber), past expiry
/// (red), with a blue line at now; the span runs from the earliest to the latest of these.
fn timeline(secret: &SecretStatus, now: OffsetDateTime) -> String {
    let created = secret.created.or(secret.updated);
    let points: Vec<OffsetDateTime> = [created, secret.due, secret.expires, Some(now)]
        .into_iter()
        .flatten()
        .collect();
    let (Some(start), Some(end)) = (points.iter().min().copied(), points.iter().max().copied()) else {
        return String::new();
    };
    let span = (end - start).as_seconds_f64().max(1.0);
    let x = |at: OffsetDateTime| LEFT + (at - start).as_seconds_f64() / span * (WIDTH - LEFT - RIGHT);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"40\" viewBox=\"0 0 {WIDTH} 40\" role=\"img\" aria-label=\"timeline of {}\">",
        escape(&secret.secret)
    );
    svg.push_str(&format!(
        "<rect x=\"{LEFT}\" y=\"16\" width=\"{:.1}\" height=\"8\" rx=\"4\" fill=\"#eaeef2\"/>",
        WIDTH - LEFT - RIGHT
    ));
    let bar = |from: f64, to: f64, color: &str| match to > from {
        true => format!(
            "<rect x=\"{from:.1}\" y=\"16\" width=\"{:.1}\" height=\"8\" fill=\"{color}\"/>",
            to - from
        ),
        false => String::new(),
    };
    let written = created.map(x).unwrap_or(LEFT);
    let end_x = WIDTH - RIGHT;
    let inactive = matches!(
        secret.state,
        State::Disabled | State::OptedOut | State::Misconfigured | State::TagsLost
    );
    match (secret.due, secret.expires) {
        (Some(due), Some(exp)) => {
            let green = if inactive { "#8c959f" } else { "#2da44e" };
            svg.push_str(&bar(written, x(due), green));
            svg.push_str(&bar(x(due).max(written), x(exp), "#d4a72c"));
            svg.push_str(&bar(x(exp), end_x, "#cf222e"));
        }
        (None, Some(exp)) => {
            svg.push_str(&bar(written, x(exp), "#8c959f"));
            svg.push_str(&bar(x(exp), end_x, "#cf222e"));
        }
        _ => {
            // No expiry: a hatched-looking grey bar to the end.
            svg.push_str(&bar(written, end_x, "#afb8c1"));
        }
    }
    // Labels under the bar (now's is above it), kept inside the drawing at both ends.
    let mark = |at: f64, label: &str| {
        let anchor = match at {
            a if a < 24.0 => "start",
            a if a > WIDTH - 24.0 => "end",
            _ => "middle",
        };
        format!(
            "<line x1=\"{at:.1}\" y1=\"14\" x2=\"{at:.1}\" y2=\"26\" stroke=\"#24292f\" stroke-width=\"1.5\"/><text x=\"{at:.1}\" y=\"36\" text-anchor=\"{anchor}\">{label}</text>"
        )
    };
    if let Some(created) = created {
        svg.push_str(&format!(
            "<circle cx=\"{:.1}\" cy=\"20\" r=\"4\" fill=\"#24292f\"><title>created {}</title></circle>",
            x(created),
            escape(&short_time(Some(created)))
        ));
        let crowded = secret.due.is_some_and(|due| x(due) - x(created) < 60.0);
        if !crowded {
            svg.push_str(&format!(
                "<text x=\"{:.1}\" y=\"36\" text-anchor=\"start\">created</text>",
                x(created).min(WIDTH - 40.0)
            ));
        }
    }
    if let Some(due) = secret.due {
        svg.push_str(&mark(x(due), "due"));
    }
    if let Some(exp) = secret.expires {
        svg.push_str(&mark(x(exp), "expiry"));
    }
    let n = x(now);
    svg.push_str(&format!(
        "<line x1=\"{n:.1}\" y1=\"2\" x2=\"{n:.1}\" y2=\"38\" stroke=\"#0969da\" stroke-width=\"2\"/><text x=\"{:.1}\" y=\"11\" text-anchor=\"end\" class=\"now\">now</text>",
        (n - 3.0).max(22.0)
    ));
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }

    #[test]
    fn the_policy_forbids_scripts_and_allows_only_the_page_s_style() {
        let policy = content_security_policy();
        assert!(policy.contains("script-src 'none'"), "{policy}");
        assert!(policy.starts_with("default-src 'none'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert!(policy.contains(&style_hash()));
    }
}

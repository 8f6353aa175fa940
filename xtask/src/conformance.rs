//! `cargo xtask conformance URL`: the conformance suite against whatever store a URL names.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cache_core::conformance::{CaseReport, run_conformance};

use crate::services::redact;

/// How many cases run at once unless told otherwise: every case has its own key prefix, and
/// the suite's TTL cases spend most of their time waiting.
pub const DEFAULT_PARALLELISM: usize = 16;

/// Opens the store, runs every case, prints a line per case and a total; fails when any case
/// fails.
pub fn run(url: &str, parallelism: usize) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    let started = Instant::now();
    let reports = runtime.block_on(async {
        let backend = cachette::open(url)
            .await
            .with_context(|| format!("opening {}", redact(url)))?;
        say!(
            "xtask: running the conformance suite against {} ({parallelism} cases at a time)",
            redact(url)
        );
        let reports = run_conformance(backend.clone(), parallelism).await;
        backend
            .close()
            .await
            .with_context(|| format!("closing {}", redact(url)))?;
        anyhow::Ok(reports)
    })?;
    let failed = write_reports(&mut std::io::stdout().lock(), &reports, started.elapsed());
    say!(
        "xtask: not run here: the outage case, which must stop and restart the store's server; \
         the Redis and PostgreSQL stores run it against throwaway servers in their own tests"
    );
    if failed > 0 {
        bail!(
            "{failed} conformance case(s) failed against {}",
            redact(url)
        );
    }
    Ok(())
}

/// Prints `PASS`/`FAIL`, the case and its time per case, then `N passed, M failed`; returns
/// how many failed.
fn write_reports(out: &mut impl Write, reports: &[CaseReport], total: Duration) -> usize {
    let width = reports
        .iter()
        .map(|report| report.case.len())
        .max()
        .unwrap_or(0);
    for report in reports {
        let verdict = if report.failure.is_some() {
            "FAIL"
        } else {
            "PASS"
        };
        let _ = writeln!(
            out,
            "{verdict}  {:<width$}  {:>9.1} ms",
            report.case,
            report.elapsed.as_secs_f64() * 1e3
        );
        if let Some(failure) = &report.failure {
            for line in failure.lines() {
                let _ = writeln!(out, "      {line}");
            }
        }
    }
    let failed = reports
        .iter()
        .filter(|report| report.failure.is_some())
        .count();
    let _ = writeln!(
        out,
        "conformance suite finished in {:.1} s",
        total.as_secs_f64()
    );
    let _ = writeln!(out, "{} passed, {failed} failed", reports.len() - failed);
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_a_line_per_case_failures_indented_and_the_total() {
        let report = |case: &str, failure: Option<&str>| CaseReport {
            case: case.into(),
            failure: failure.map(Into::into),
            elapsed: Duration::from_millis(12),
        };
        let mut out = Vec::new();
        let failed = write_reports(
            &mut out,
            &[
                report("roundtrip::empty_value", None),
                report("ttl::zero_deletes", Some("expected None\ngot Some")),
            ],
            Duration::from_secs(1),
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(failed, 1);
        assert!(
            text.contains("PASS  roundtrip::empty_value       12.0 ms\n"),
            "{text}"
        );
        assert!(text.contains("FAIL  ttl::zero_deletes"), "{text}");
        assert!(
            text.contains("      expected None\n      got Some\n"),
            "{text}"
        );
        assert!(text.ends_with("\n1 passed, 1 failed\n"), "{text}");
    }

    #[test]
    fn an_unknown_scheme_is_an_error_not_a_pass() {
        let error = run("nope://x", 1).unwrap_err();
        assert!(format!("{error:#}").contains("nope"), "{error:#}");
    }
}

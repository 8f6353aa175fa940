//! `cargo xtask conformance URL`: the conformance suite against whatever store a URL names.

use std::io::Write;
use std::time::{Duration, Instant};

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use cache_core::conformance::{CaseReport, RunOptions, Verdict, run_conformance};
use cache_core::{Backend, Bytes, Condition};

use crate::services::redact;

/// How many cases run at once unless told otherwise: every case has its own key prefix, and
/// the suite's TTL cases spend most of their time waiting.
pub const DEFAULT_PARALLELISM: usize = 16;

/// Opens the store (twice, when a second handle sees the first one's writes), runs every case,
/// prints a line per case and a total; fails when any case fails. The exclusive cases run only
/// when `exclusive` says the store is this run's alone.
pub fn run(url: &str, parallelism: usize, exclusive: bool) -> Result<()> {
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
        let mut options = RunOptions::new(backend.clone())
            .parallelism(parallelism)
            .exclusive(exclusive);
        let peer = second_handle(url, &backend).await?;
        if let Some(peer) = &peer {
            options = options.peer(Arc::clone(peer));
        }
        let reports = run_conformance(options).await;
        for handle in std::iter::once(&backend).chain(&peer) {
            handle
                .close()
                .await
                .with_context(|| format!("closing {}", redact(url)))?;
        }
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

/// Opens `url` again and keeps the handle if it reads what `backend` wrote: a server or a file
/// (an in-process store opened twice is two stores, so its cases read on the one handle).
async fn second_handle(url: &str, backend: &Arc<dyn Backend>) -> Result<Option<Arc<dyn Backend>>> {
    let other = cachette::open(url)
        .await
        .with_context(|| format!("opening {} a second time", redact(url)))?;
    let probe: String = format!(
        "cachette-conformance-probe:{}",
        std::iter::repeat_with(fastrand::alphanumeric)
            .take(12)
            .collect::<String>()
    );
    backend
        .set(
            &probe,
            Bytes::from_static(b"probe"),
            Some(Duration::from_secs(60)),
            Condition::Always,
        )
        .await
        .context("writing the probe key")?;
    let shared = other
        .get(&probe)
        .await
        .context("reading the probe key")?
        .is_some();
    backend
        .delete(&probe)
        .await
        .context("removing the probe key")?;
    if shared {
        Ok(Some(other))
    } else {
        other.close().await.context("closing the second handle")?;
        Ok(None)
    }
}

/// Prints `PASS`/`FAIL`/`SKIP`/`N/A`, the case and its time per case, then `N passed, M failed,
/// K skipped, L not applicable`; returns how many failed.
fn write_reports(out: &mut impl Write, reports: &[CaseReport], total: Duration) -> usize {
    let width = reports
        .iter()
        .map(|report| report.case.len())
        .max()
        .unwrap_or(0);
    for report in reports {
        let verdict = match report.verdict {
            Verdict::Passed => "PASS",
            Verdict::Failed(_) => "FAIL",
            Verdict::NotRun(_) => "SKIP",
            Verdict::NotApplicable(_) => "N/A ",
        };
        let _ = writeln!(
            out,
            "{verdict}  {:<width$}  {:>9.1} ms",
            report.case,
            report.elapsed.as_secs_f64() * 1e3
        );
        let why = match &report.verdict {
            Verdict::Passed => "",
            Verdict::Failed(why) => why.as_str(),
            Verdict::NotRun(why) => why,
            Verdict::NotApplicable(why) => why.as_str(),
        };
        for line in why.lines() {
            let _ = writeln!(out, "      {line}");
        }
    }
    let count = |wanted: fn(&Verdict) -> bool| {
        reports
            .iter()
            .filter(|report| wanted(&report.verdict))
            .count()
    };
    let failed = count(|verdict| matches!(verdict, Verdict::Failed(_)));
    let skipped = count(|verdict| matches!(verdict, Verdict::NotRun(_)));
    let lacking = count(|verdict| matches!(verdict, Verdict::NotApplicable(_)));
    let _ = writeln!(
        out,
        "conformance suite finished in {:.1} s",
        total.as_secs_f64()
    );
    let passed = reports.len() - failed - skipped - lacking;
    let _ = writeln!(
        out,
        "{passed} passed, {failed} failed, {skipped} skipped, {lacking} not applicable"
    );
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_a_line_per_case_failures_indented_and_the_total() {
        let report = |case: &str, failure: Option<&str>| CaseReport {
            case: case.into(),
            verdict: failure.map_or(Verdict::Passed, |why| Verdict::Failed(why.into())),
            elapsed: Duration::from_millis(12),
        };
        let mut out = Vec::new();
        let failed = write_reports(
            &mut out,
            &[
                report("roundtrip::empty_value", None),
                report("ttl::zero_deletes", Some("expected None\ngot Some")),
                CaseReport {
                    case: "whole_store::clear".into(),
                    verdict: Verdict::NotRun("needs a store of its own"),
                    elapsed: Duration::ZERO,
                },
                CaseReport {
                    case: "take::take_race".into(),
                    verdict: Verdict::NotApplicable(
                        "the custom store does not support take".into(),
                    ),
                    elapsed: Duration::ZERO,
                },
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
        assert!(text.contains("SKIP  whole_store::clear"), "{text}");
        assert!(text.contains("N/A   take::take_race"), "{text}");
        assert!(
            text.contains("      the custom store does not support take\n"),
            "{text}"
        );
        assert!(
            text.ends_with("\n1 passed, 1 failed, 1 skipped, 1 not applicable\n"),
            "{text}"
        );
    }

    #[test]
    fn an_unknown_scheme_is_an_error_not_a_pass() {
        let error = run("nope://x", 1, false).unwrap_err();
        assert!(format!("{error:#}").contains("nope"), "{error:#}");
    }
}

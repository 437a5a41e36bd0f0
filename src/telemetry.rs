//! Logs (tracing) and metrics (Prometheus): set up once per process.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::LogFormat;

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (first call wins) and
/// returns its handle, or `None` when another recorder was installed first.
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            const LATENCY: &[f64] = &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY)
                .ok()?
                .install_recorder()
                .ok()?;
            spawn_upkeep(handle.clone(), UPKEEP_EVERY);
            Some(handle)
        })
        .as_ref()
}

/// How often recorded histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// A recorder installed with `install_recorder` keeps every histogram
/// sample in memory until a scrape or an upkeep folds it into buckets.
/// Unscraped, that was about 290 bytes an issuance, for ever (seen in a
/// 540 s soak: 39 -> 109 MB). A thread of its own does the upkeep, so it
/// runs whatever runtime (or none) the process has.
fn spawn_upkeep(handle: PrometheusHandle, every: Duration) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms are folded only when /metrics is scraped");
    }
}

/// Starts logging to stderr; `RUST_LOG` overrides the default `info` level.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a terminal, never into log files or collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

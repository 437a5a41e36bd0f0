//! Every background loop of a running hub, in one place: the technical
//! zone's records, managed certificates and notifications, work whose
//! process died, relayed orders, and periodic cleanup. Each loop calls a
//! domain function; none holds state of its own, and none runs inside a
//! request. The loops stop when the server's stop signal changes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::hub::Hub;

/// How often due managed-certificate steps are looked for.
const MANAGED_SWEEP_SECS: u64 = 2;
/// How often validations and signings left by a dead process are looked for.
const STALE_SWEEP_SECS: u64 = 10;
/// How often relayed orders whose worker died are looked for.
const RELAY_SWEEP_SECS: u64 = 30;
/// How often each process tries to take a periodic job.
const PERIODIC_TRY_SECS: u64 = 60;

/// The background loops: the technical zone's records, managed
/// certificates and notifications, work whose process died, relayed
/// orders, and periodic cleanup (used nonces that have expired anyway,
/// rate-limit windows that have ended).
pub fn spawn_all(hub: Arc<Hub>, stopped: watch::Receiver<bool>) {
    if hub.technical_zone.is_some() {
        spawn_periodic(
            &hub,
            &stopped,
            "delegations-recheck",
            86400,
            |hub| async move {
                match crate::dns::delegations::recheck_all(&hub).await {
                    Ok(n) => tracing::info!(delegations = n, "delegations re-checked"),
                    Err(e) => tracing::warn!(error = %e, "re-checking delegations failed"),
                }
            },
        );
        // Other replicas write the technical zone's records too: pick their
        // changes up within a second.
        spawn_every(
            &hub,
            &stopped,
            Duration::from_secs(1),
            true,
            |hub| async move { hub.refresh_technical_zone().await },
        );
    }
    // Managed certificates: due steps (DNS waits, orders in flight,
    // renewals, retries after failures); then due notifications.
    spawn_every(
        &hub,
        &stopped,
        Duration::from_secs(MANAGED_SWEEP_SECS),
        true,
        |hub| async move {
            if let Err(e) = crate::managed::sweep(&hub).await {
                tracing::warn!(error = %e.detail, "the managed certificate sweep failed");
            }
            // Deliveries wait on other servers: never in this loop.
            tokio::spawn(async move {
                if let Err(e) = crate::notify::sweep(&hub).await {
                    tracing::warn!(error = %e.detail, "delivering notifications failed");
                }
            });
        },
    );
    // Validations and signings whose process died are taken over here.
    spawn_every(
        &hub,
        &stopped,
        Duration::from_secs(STALE_SWEEP_SECS),
        false,
        |hub| async move {
            if let Err(e) = crate::orders::take_over_stale(&hub, false).await {
                tracing::warn!(error = %e.detail, "taking over stale work failed");
            }
        },
    );
    // Relayed orders whose worker died (lease lapsed) are taken over here.
    spawn_every(
        &hub,
        &stopped,
        Duration::from_secs(RELAY_SWEEP_SECS),
        false,
        |hub| async move {
            match hub.store.active_upstream_orders().await {
                Ok(ids) => {
                    for id in ids {
                        crate::issuance::relay::spawn(hub.clone(), id);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "listing relayed orders failed"),
            }
        },
    );
    spawn_periodic(&hub, &stopped, "prune", 600, |hub| async move {
        let now = crate::util::now();
        match hub.store.prune_nonces(now).await {
            Ok(n) if n > 0 => tracing::debug!(pruned = n, "used nonces pruned"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning nonces failed"),
        }
        if let Err(e) = hub.store.prune_ui_sessions(now).await {
            tracing::warn!(error = %e, "pruning console sessions failed");
        }
        if let Err(e) = hub.store.prune_zone_records(now).await {
            tracing::warn!(error = %e, "pruning technical-zone records failed");
        }
        // Rate-limit windows are an hour or a second long.
        let short = crate::policy::Limit::Requests;
        if let Err(e) = hub
            .store
            .prune_counters(now - 7200, short.tag(), now - 60)
            .await
        {
            tracing::warn!(error = %e, "pruning rate-limit counters failed");
        }
    });
}

/// Runs `work` every `every` until the hub stops: the first time at once,
/// or after one period when `at_once` is false. A run that is under way
/// when the hub stops finishes first.
fn spawn_every<F, Fut>(
    hub: &Arc<Hub>,
    stopped: &watch::Receiver<bool>,
    every: Duration,
    at_once: bool,
    work: F,
) where
    F: Fn(Arc<Hub>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (hub, mut stopped) = (hub.clone(), stopped.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        if !at_once {
            tick.tick().await;
        }
        loop {
            tokio::select! {
                _ = tick.tick() => work(hub.clone()).await,
                _ = stopped.changed() => break,
            }
        }
    });
}

/// Periodic work that one process does at a time, whichever replica it
/// is: every minute, each process tries to take `job` (a lease in the
/// database, for at most an hour); the one that gets it, when the last run
/// finished `period` seconds ago or more, runs `work` and records the run.
fn spawn_periodic<F, Fut>(
    hub: &Arc<Hub>,
    stopped: &watch::Receiver<bool>,
    job: &'static str,
    period: i64,
    work: F,
) where
    F: Fn(Arc<Hub>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let owner = Arc::new(crate::util::random_id());
    let work = Arc::new(work);
    let every = Duration::from_secs(PERIODIC_TRY_SECS);
    spawn_every(hub, stopped, every, true, move |hub| {
        let (owner, work) = (owner.clone(), work.clone());
        async move {
            let now = crate::util::now();
            match hub
                .store
                .take_job(job, &owner, now, now + period.min(3600), now - period)
                .await
            {
                Ok(true) => {
                    work(hub.clone()).await;
                    if let Err(e) = hub.store.finish_job(job, &owner, crate::util::now()).await {
                        tracing::warn!(job, error = %e, "recording a periodic run failed");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(job, error = %e, "taking a periodic job failed"),
            }
        }
    });
}

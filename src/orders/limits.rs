//! Applying an instance's rate limits (`policy::RateLimits`): counts kept in
//! the store, so every replica sees the same totals.

use std::net::IpAddr;

use crate::error::Error;
use crate::hub::Hub;
use crate::policy::Limit;
use crate::store::Instance;
use crate::util::now;

/// Who a limit is counted for.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Account(&'a str),
    Ip(IpAddr),
}

impl Subject<'_> {
    fn counter(&self, instance: &Instance, limit: Limit) -> String {
        match self {
            Self::Account(id) => format!("{}:{}:account:{id}", instance.id, limit.tag()),
            Self::Ip(ip) => format!("{}:{}:ip:{ip}", instance.id, limit.tag()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Account(_) => "this account".into(),
            Self::Ip(ip) => format!("client address {ip}"),
        }
    }
}

fn refused(instance: &Instance, limit: Limit, subject: &Subject<'_>, max: u32, now: i64) -> Error {
    let wait = limit.retry_after(now);
    Error::rate_limited(
        format!(
            "rate limit exceeded: instance {:?} allows {max} {} for {}; retry after {wait} s",
            instance.name,
            limit.name(),
            subject.describe()
        ),
        wait,
    )
}

/// Counts one unit of `limit` for each subject; `rateLimited` when one is over.
pub async fn charge(
    hub: &Hub,
    instance: &Instance,
    limit: Limit,
    subjects: &[Subject<'_>],
) -> Result<(), Error> {
    let Some(max) = limit.max(&instance.rate_limits) else {
        return Ok(());
    };
    let now = now();
    let window = limit.window_start(now);
    for subject in subjects {
        let hits = hub
            .store
            .hit_counter(&subject.counter(instance, limit), window)
            .await?;
        if hits > i64::from(max) {
            metrics::counter!("acmehub_rate_limited_total", "limit" => limit.tag()).increment(1);
            return Err(refused(instance, limit, subject, max, now));
        }
    }
    Ok(())
}

/// `rateLimited` when a subject has used up `limit` already, without counting.
pub async fn check(
    hub: &Hub,
    instance: &Instance,
    limit: Limit,
    subjects: &[Subject<'_>],
) -> Result<(), Error> {
    let Some(max) = limit.max(&instance.rate_limits) else {
        return Ok(());
    };
    let now = now();
    let window = limit.window_start(now);
    for subject in subjects {
        let hits = hub
            .store
            .counter(&subject.counter(instance, limit), window)
            .await?;
        if hits >= i64::from(max) {
            metrics::counter!("acmehub_rate_limited_total", "limit" => limit.tag()).increment(1);
            return Err(refused(instance, limit, subject, max, now));
        }
    }
    Ok(())
}

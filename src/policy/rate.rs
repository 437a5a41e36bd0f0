//! Rate limits (fixed windows): what is limited, over which window, and how
//! long a refused client waits. The counting itself lives in the store so
//! that the limits hold across replicas.

use serde::{Deserialize, Serialize};

/// An instance's limits; 0 means no limit. Each applies per account and per
/// client IP address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// New orders per hour.
    pub orders_per_hour: u32,
    /// Failed challenge validations per hour; past it, new orders and
    /// challenge responses are refused until the window ends.
    pub failed_validations_per_hour: u32,
    /// Signed ACME requests per second.
    pub requests_per_second: u32,
}

/// One kind of limited work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Orders,
    FailedValidations,
    Requests,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Self::Orders => "new orders per hour",
            Self::FailedValidations => "failed validations per hour",
            Self::Requests => "requests per second",
        }
    }

    /// Counter-name tag.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Orders => "orders",
            Self::FailedValidations => "failed",
            Self::Requests => "requests",
        }
    }

    pub fn window_secs(self) -> i64 {
        match self {
            Self::Orders | Self::FailedValidations => 3600,
            Self::Requests => 1,
        }
    }

    /// The configured maximum, `None` when unlimited.
    pub fn max(self, limits: &RateLimits) -> Option<u32> {
        let max = match self {
            Self::Orders => limits.orders_per_hour,
            Self::FailedValidations => limits.failed_validations_per_hour,
            Self::Requests => limits.requests_per_second,
        };
        (max > 0).then_some(max)
    }

    /// Start of the window `now` falls in.
    pub fn window_start(self, now: i64) -> i64 {
        now - now.rem_euclid(self.window_secs())
    }

    /// Seconds until the window that holds `now` ends (at least 1).
    pub fn retry_after(self, now: i64) -> u64 {
        (self.window_start(now) + self.window_secs() - now).max(1) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_waits() {
        assert_eq!(Limit::Orders.window_start(7300), 7200);
        assert_eq!(Limit::Orders.retry_after(7300), 3500);
        assert_eq!(Limit::Requests.retry_after(7300), 1);
        let limits = RateLimits {
            orders_per_hour: 5,
            ..Default::default()
        };
        assert_eq!(Limit::Orders.max(&limits), Some(5));
        assert_eq!(Limit::Requests.max(&limits), None);
    }
}

//! Where an instance may make the hub connect (DNS providers, upstream CA
//! directories, notification endpoints): the validator's target policy
//! with the instance's private-target setting.

use crate::error::Error;
use crate::hub::Hub;
use crate::store::Instance;

/// Whether `instance` may reach private and loopback targets: its own
/// setting, else the hub's `[validation] allow_private_targets`.
pub fn private_targets_allowed(hub: &Hub, instance: &Instance) -> bool {
    instance
        .allow_private_targets
        .unwrap_or(hub.config.validation.allow_private_targets)
}

/// The addresses `host:port` reaches, each allowed by the instance's
/// target policy (the validator's, with the instance's private-target
/// setting); otherwise the first refusal ("... refused by policy"). Names
/// go through the hub's resolvers; a name that does not resolve gives no
/// address and no refusal.
pub async fn policed_addresses(
    hub: &Hub,
    instance: &Instance,
    host: &str,
    port: u16,
) -> Result<Vec<std::net::SocketAddr>, String> {
    let policy =
        hub.validator
            .policy()
            .with_private(crate::tenancy::outbound::private_targets_allowed(
                hub, instance,
            ));
    let ips = match host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => hub
            .validator
            .resolver()
            .lookup_ips(host)
            .await
            .unwrap_or_default(),
    };
    let addresses: Vec<_> = ips
        .into_iter()
        .map(|ip| std::net::SocketAddr::new(ip, port))
        .collect();
    for address in &addresses {
        policy.check(*address)?;
    }
    Ok(addresses)
}

/// An outbound target (a notification channel's host, a CA directory, a
/// DNS server) set by an instance-scoped token: 400 on `field` when the
/// instance's policy refuses where it leads; `what` names the target in the
/// error. Hub-wide tokens may set any target (an operator's own choice).
pub async fn check_outbound_target(
    hub: &Hub,
    instance: &Instance,
    host: &str,
    port: u16,
    field: &'static str,
    what: &str,
) -> Result<(), Error> {
    policed_addresses(hub, instance, host, port)
        .await
        .map(|_| ())
        .map_err(|why| {
            let named = match host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
                Ok(_) => why,
                Err(_) => format!("{host}: {why}"),
            };
            Error::invalid(
                field,
                format!("{named}; only a hub-wide token may set such a {what}"),
            )
        })
}

/// [`check_outbound_target`] for a URL (http or https, default ports).
pub async fn check_outbound_url(
    hub: &Hub,
    instance: &Instance,
    url: &str,
    field: &'static str,
    what: &str,
) -> Result<(), Error> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::invalid(field, format!("{field} is not a URL: {e}")))?;
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        return Err(Error::invalid(field, format!("{field} names no host")));
    };
    check_outbound_target(hub, instance, host, port, field, what).await
}

/// The outbound targets in a DNS credential's config: a `server`
/// (`host:port`, port 53 when left out) and any http(s) URL, each checked as
/// [`check_outbound_target`] does.
pub async fn check_credential_targets(
    hub: &Hub,
    instance: &Instance,
    config: &serde_json::Value,
) -> Result<(), Error> {
    let Some(fields) = config.as_object() else {
        return Ok(());
    };
    for (key, value) in fields {
        let Some(text) = value.as_str() else {
            continue;
        };
        if text.starts_with("http://") || text.starts_with("https://") {
            check_outbound_url(hub, instance, text, "config", "DNS provider endpoint").await?;
        } else if key == "server" {
            let (host, port) = match text.parse::<std::net::SocketAddr>() {
                Ok(a) => (a.ip().to_string(), a.port()),
                Err(_) => match text.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>())) {
                    Some((h, Ok(p))) => (h.to_string(), p),
                    _ => (text.to_string(), 53),
                },
            };
            check_outbound_target(hub, instance, &host, port, "config", "DNS server").await?;
        }
    }
    Ok(())
}

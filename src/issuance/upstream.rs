//! Upstream ACME CAs for the relay: the CAs the hub knows by name, the HTTP
//! transport instant-acme uses (the account's trusted roots, its API
//! timeout), fetching a directory and registering an account (RFC 8555
//! §7.3, with EAB when given), and which accounts can serve an order
//! (`candidates`: environment, wildcards, profiles; `serving_accounts`: then
//! CAA). No error carries a key.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use instant_acme::{BodyWrapper, BytesResponse, ExternalAccountKey, HttpClient, NewAccount};
use serde_json::Value;

use crate::store::{CaAccountStatus, Environment};

/// A CA the hub knows by name.
#[derive(Debug, Clone, Copy)]
pub struct KnownCa {
    pub name: &'static str,
    /// What operators call it (the console's CA list).
    pub title: &'static str,
    pub directory_url: &'static str,
    pub environment: Environment,
    /// Issuer domain names in CAA records (RFC 8659 §4.2) that allow this CA.
    pub caa_identities: &'static [&'static str],
    /// The CA refuses accounts without External Account Binding.
    pub eab_required: bool,
}

pub static KNOWN_CAS: &[KnownCa] = &[
    KnownCa {
        name: "letsencrypt",
        title: "Let's Encrypt",
        directory_url: "https://acme-v02.api.letsencrypt.org/directory",
        environment: Environment::Production,
        caa_identities: &["letsencrypt.org"],
        eab_required: false,
    },
    KnownCa {
        name: "letsencrypt-staging",
        title: "Let's Encrypt (staging)",
        directory_url: "https://acme-staging-v02.api.letsencrypt.org/directory",
        environment: Environment::Staging,
        caa_identities: &["letsencrypt.org"],
        eab_required: false,
    },
    KnownCa {
        name: "zerossl",
        title: "ZeroSSL",
        directory_url: "https://acme.zerossl.com/v2/DV90",
        environment: Environment::Production,
        caa_identities: &["sectigo.com", "zerossl.com"],
        eab_required: true,
    },
    KnownCa {
        name: "google",
        title: "Google Trust Services",
        directory_url: "https://dv.acme-v02.api.pki.goog/directory",
        environment: Environment::Production,
        caa_identities: &["pki.goog"],
        eab_required: true,
    },
    KnownCa {
        name: "google-staging",
        title: "Google Trust Services (staging)",
        directory_url: "https://dv.acme-v02.test-api.pki.goog/directory",
        environment: Environment::Staging,
        caa_identities: &["pki.goog"],
        eab_required: true,
    },
    KnownCa {
        name: "buypass",
        title: "Buypass",
        directory_url: "https://api.buypass.com/acme/directory",
        environment: Environment::Production,
        caa_identities: &["buypass.com"],
        eab_required: false,
    },
    KnownCa {
        name: "sslcom",
        title: "SSL.com",
        directory_url: "https://acme.ssl.com/sslcom-dv-ecc",
        environment: Environment::Production,
        caa_identities: &["ssl.com"],
        eab_required: true,
    },
];

pub fn known_ca(name: &str) -> Option<&'static KnownCa> {
    KNOWN_CAS.iter().find(|c| c.name == name)
}

/// instant-acme's transport: one HTTPS client with the account's roots, and
/// a deadline on every request (instant-acme has none of its own).
#[derive(Clone)]
pub struct UpstreamHttp {
    client: reqwest::Client,
    timeout: Duration,
}

impl UpstreamHttp {
    /// Trusts `trusted_roots_pem` only when given (a private or test CA),
    /// else the public Web PKI roots.
    pub fn new(trusted_roots_pem: Option<&str>, timeout: Duration) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("acmehub/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = trusted_roots_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| format!("trusted_roots_pem is not a PEM bundle: {e}"))?;
            if roots.is_empty() {
                return Err("trusted_roots_pem holds no certificate".into());
            }
            builder = builder.tls_built_in_root_certs(false);
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the HTTPS client: {e}"))?;
        Ok(Self { client, timeout })
    }

    /// GETs a directory (RFC 8555 §7.1.1); returns it and the time it took.
    pub async fn directory(&self, url: &str) -> Result<(Value, u64), String> {
        let started = Instant::now();
        let response = self.client.get(url).send().await.map_err(describe)?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the directory answered HTTP {}", status.as_u16()));
        }
        let value: Value = response
            .json()
            .await
            .map_err(|e| format!("the directory is not JSON: {}", describe(e)))?;
        if !value.get("newNonce").is_some_and(Value::is_string)
            || !value.get("newAccount").is_some_and(Value::is_string)
            || !value.get("newOrder").is_some_and(Value::is_string)
        {
            return Err(
                "the document is not an ACME directory (newNonce, newAccount, newOrder missing)"
                    .into(),
            );
        }
        Ok((value, started.elapsed().as_millis() as u64))
    }

    /// Registers (or finds, for a key already registered) an account.
    /// Returns the account URL and instant-acme's credentials as JSON.
    pub async fn register(
        &self,
        directory_url: &str,
        email: &str,
        eab: Option<(&str, &[u8])>,
    ) -> Result<(String, String), String> {
        let contact = format!("mailto:{email}");
        let contacts = [contact.as_str()];
        let new = NewAccount {
            contact: if email.is_empty() { &[] } else { &contacts },
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let eab = eab.map(|(kid, key)| ExternalAccountKey::new(kid.to_string(), key));
        let (account, credentials) =
            instant_acme::Account::builder_with_http(Box::new(self.clone()))
                .create(&new, directory_url.to_string(), eab.as_ref())
                .await
                .map_err(acme_error)?;
        let json = serde_json::to_string(&credentials)
            .map_err(|e| format!("cannot keep the account credentials: {e}"))?;
        Ok((account.id().to_string(), json))
    }
}

/// How many alternate chains are fetched for one certificate, at most.
const MAX_ALTERNATE_CHAINS: usize = 4;
/// The largest certificate chain accepted from a CA.
const MAX_CHAIN_BYTES: usize = 64 * 1024;

impl UpstreamHttp {
    /// RFC 8555 §7.4.2: the alternate chains the CA links from a
    /// certificate URL (`Link: rel="alternate"`), each fetched with a
    /// POST-as-GET signed by the account (instant-acme fetches only the
    /// default chain). `credentials` is instant-acme's JSON of the account.
    /// Only links on the certificate URL's own origin are followed, and a
    /// chain is kept only if it is PEM and starts with `leaf` (DER).
    pub async fn alternate_chains(
        &self,
        credentials: &str,
        cert_url: &str,
        leaf: &[u8],
    ) -> Result<Vec<String>, String> {
        let base = reqwest::Url::parse(cert_url).map_err(|e| format!("{cert_url}: {e}"))?;
        let signer = AccountSigner::from_credentials(credentials)?;
        let (directory, _) = self.directory(&signer.directory).await?;
        let new_nonce = directory["newNonce"].as_str().unwrap_or_default();
        let mut nonce = self.nonce(new_nonce).await?;
        let (links, _) = self
            .post_as_get(&signer, &mut nonce, new_nonce, cert_url)
            .await?;
        let mut chains = Vec::new();
        for link in links.iter().take(MAX_ALTERNATE_CHAINS) {
            let url = match base.join(link) {
                Ok(u) if u.scheme() == "https" && u.origin() == base.origin() => u,
                _ => {
                    tracing::warn!(link = %link, "an alternate chain link off the CA's origin was ignored");
                    continue;
                }
            };
            let (_, body) = self
                .post_as_get(&signer, &mut nonce, new_nonce, url.as_str())
                .await?;
            if starts_with_leaf(&body, leaf) {
                chains.push(body);
            } else {
                tracing::warn!(link = %url, "an alternate chain that is not for this certificate was ignored");
            }
        }
        Ok(chains)
    }

    async fn nonce(&self, new_nonce: &str) -> Result<String, String> {
        let response = self.client.head(new_nonce).send().await.map_err(describe)?;
        replay_nonce(response.headers()).ok_or_else(|| "newNonce gave no Replay-Nonce".into())
    }

    /// One signed POST-as-GET (retried once on badNonce); the response's
    /// alternate links and body.
    async fn post_as_get(
        &self,
        signer: &AccountSigner,
        nonce: &mut String,
        new_nonce: &str,
        url: &str,
    ) -> Result<(Vec<String>, String), String> {
        for attempt in 0..2 {
            let body = signer.sign(nonce, url)?;
            let response = self
                .client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/jose+json")
                .header(reqwest::header::ACCEPT, "application/pem-certificate-chain")
                .body(body)
                .send()
                .await
                .map_err(describe)?;
            let status = response.status();
            let fresh = replay_nonce(response.headers());
            let links = alternate_links(response.headers());
            if response
                .content_length()
                .is_some_and(|n| n > MAX_CHAIN_BYTES as u64)
            {
                return Err(format!("{url}: the answer is too large"));
            }
            let bytes = response.bytes().await.map_err(describe)?;
            if bytes.len() > MAX_CHAIN_BYTES {
                return Err(format!("{url}: the answer is too large"));
            }
            let text = String::from_utf8_lossy(&bytes).into_owned();
            match fresh {
                Some(n) => *nonce = n,
                None => *nonce = self.nonce(new_nonce).await?,
            }
            if status.is_success() {
                return Ok((links, text));
            }
            if attempt == 0 && text.contains("urn:ietf:params:acme:error:badNonce") {
                continue;
            }
            return Err(format!("{url} answered HTTP {}: {text}", status.as_u16()));
        }
        Err(format!("{url}: the CA kept refusing the nonce"))
    }
}

/// Whether `pem` is a PEM chain whose first certificate is `leaf`.
fn starts_with_leaf(pem: &str, leaf: &[u8]) -> bool {
    use rustls_pki_types::pem::PemObject;
    let mut certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes());
    matches!(certs.next(), Some(Ok(first)) if first.as_ref() == leaf) && certs.all(|c| c.is_ok())
}

fn replay_nonce(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get("replay-nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The targets of `Link: <url>;rel="alternate"` headers.
fn alternate_links(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            let rel = params
                .split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("rel"))?
                .1
                .trim()
                .trim_matches('"');
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            (rel == "alternate").then(|| target.to_string())
        })
        .collect()
}

/// Signs requests as an upstream account: ES256 with the P-256 key
/// instant-acme generated, `kid` the account URL (RFC 8555 §6.2).
struct AccountSigner {
    kid: String,
    directory: String,
    key: ring::signature::EcdsaKeyPair,
}

impl AccountSigner {
    fn from_credentials(credentials: &str) -> Result<Self, String> {
        use base64::Engine;
        let creds: Value = serde_json::from_str(credentials)
            .map_err(|e| format!("the account credentials do not parse: {e}"))?;
        let field = |name: &str| {
            creds[name]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("the account credentials lack {name}"))
        };
        let der = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(field("key_pkcs8")?)
            .map_err(|e| format!("the account key is not base64url: {e}"))?;
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &der,
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|e| format!("the account key is not a P-256 key: {e}"))?;
        Ok(Self {
            kid: field("id")?,
            directory: field("directory")?,
            key,
        })
    }

    /// A flattened JWS with an empty payload (POST-as-GET, RFC 8555 §6.3).
    fn sign(&self, nonce: &str, url: &str) -> Result<String, String> {
        let protected = crate::util::b64(
            serde_json::json!({"alg": "ES256", "kid": self.kid, "nonce": nonce, "url": url})
                .to_string()
                .as_bytes(),
        );
        let signature = self
            .key
            .sign(
                &ring::rand::SystemRandom::new(),
                format!("{protected}.").as_bytes(),
            )
            .map_err(|_| "signing failed".to_string())?;
        Ok(serde_json::json!({
            "protected": protected,
            "payload": "",
            "signature": crate::util::b64(signature.as_ref()),
        })
        .to_string())
    }
}

impl HttpClient for UpstreamHttp {
    fn request(
        &self,
        req: axum::http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.client.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| instant_acme::Error::Other(describe(e).into()))?;
            let response: axum::http::Response<reqwest::Body> = response.into();
            Ok(BytesResponse::from(response))
        })
    }
}

/// A transport error in words an operator acts on (TLS, timeout, refused).
fn describe(e: reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_timeout() {
        format!("timed out: {text}")
    } else {
        text
    }
}

/// An instant-acme error, with the CA's problem document when there is one.
pub fn acme_error(e: instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(p) => format!(
            "the CA refused: {} {}",
            p.r#type.unwrap_or_default(),
            p.detail.unwrap_or_default()
        ),
        other => other.to_string(),
    }
}

/// Why a CA account cannot serve an order, if it cannot (DESIGN: failover
/// skips accounts that cannot serve the order).
pub fn unfit(
    account: &crate::store::CaAccount,
    instance_environment: Environment,
    identifiers: &[crate::policy::Identifier],
    profile: Option<&str>,
) -> Option<String> {
    if account.environment != instance_environment {
        return Some(format!(
            "{}: a {} account cannot serve a {} instance",
            account.name, account.environment, instance_environment
        ));
    }
    // Upstream challenges are answered with dns-01 (RFC 8738 §7: not for IP
    // addresses), so no CA account can serve an IP identifier.
    if let Some(ip) = identifiers
        .iter()
        .find(|i| i.kind == crate::policy::IdentifierKind::Ip)
    {
        return Some(format!(
            "{}: the hub answers upstream challenges with dns-01, which cannot prove the IP address {}",
            account.name, ip.value
        ));
    }
    if !account.allow_wildcard {
        if let Some(w) = identifiers.iter().find(|i| i.is_wildcard()) {
            return Some(format!(
                "{}: wildcards are not allowed on this account ({})",
                account.name, w.value
            ));
        }
    }
    if let Some(p) = profile {
        if !account.profiles.contains_key(p) {
            return Some(format!(
                "{}: the CA does not offer the profile {p:?} (it offers: {})",
                account.name,
                if account.profiles.is_empty() {
                    "none".to_string()
                } else {
                    account
                        .profiles
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
    }
    if account.status == CaAccountStatus::Error {
        return Some(format!(
            "{}: the account could not be registered: {}",
            account.name, account.status_detail
        ));
    }
    None
}

/// The accounts that may serve an order, in the order to try them
/// (preferred first, then by priority), and why each other one was passed over.
pub fn candidates<'a>(
    accounts: &'a [crate::store::CaAccount],
    instance_environment: Environment,
    identifiers: &[crate::policy::Identifier],
    profile: Option<&str>,
) -> (Vec<&'a crate::store::CaAccount>, Vec<String>) {
    let mut sorted: Vec<&crate::store::CaAccount> = accounts.iter().collect();
    sorted.sort_by_key(|a| (!a.preferred, a.priority, a.name.clone()));
    let mut fit = Vec::new();
    let mut reasons = Vec::new();
    for account in sorted {
        match unfit(account, instance_environment, identifiers, profile) {
            Some(why) => reasons.push(why),
            None => fit.push(account),
        }
    }
    (fit, reasons)
}

/// The accounts that can serve an order, and why the others cannot.
#[derive(Debug, Default)]
pub struct Serving<'a> {
    pub accounts: Vec<&'a crate::store::CaAccount>,
    /// One line per account that cannot serve (`name: why`).
    pub reasons: Vec<String>,
    /// How many accounts fit the order before CAA was asked.
    pub considered: usize,
    /// Accounts that fit but that CAA forbids: (account name, why).
    pub caa_skipped: Vec<(String, String)>,
    /// Per identifier CAA forbids to some account: why, one line per
    /// account it forbids.
    pub caa_refusals: Vec<(crate::policy::Identifier, Vec<String>)>,
}

/// The accounts that can serve an order: those that fit
/// (`candidates`), then CAA (RFC 8659, with RFC 8657's `accounturi` and
/// `validationmethods`: the account's URL, and dns-01, which the hub
/// answers upstream challenges with). An account whose CA identities CAA
/// does not authorize for every name is skipped, with the reason; a CAA
/// lookup that fails is left to the upstream CA, which checks CAA itself.
pub async fn serving_accounts<'a>(
    hub: &crate::hub::Hub,
    accounts: &'a [crate::store::CaAccount],
    instance_environment: Environment,
    identifiers: &[crate::policy::Identifier],
    profile: Option<&str>,
) -> Serving<'a> {
    let (fit, reasons) = candidates(accounts, instance_environment, identifiers, profile);
    let mut serving = Serving {
        reasons,
        considered: fit.len(),
        ..Serving::default()
    };
    for account in fit {
        let requester = crate::validation::Requester {
            account_url: account.account_url.as_deref(),
            method: Some(crate::policy::ChallengeType::Dns01.as_str()),
        };
        let mut refused = Vec::new();
        for identifier in identifiers {
            match hub
                .validator
                .caa_for(identifier, &account.caa_identities, requester)
                .await
            {
                Err(e) if e.kind == crate::error::ErrorKind::Caa => {
                    refused.push(e.detail.clone());
                    let why = format!("{}: {}", account.name, e.detail);
                    match serving
                        .caa_refusals
                        .iter_mut()
                        .find(|(i, _)| i == identifier)
                    {
                        Some((_, all)) => all.push(why),
                        None => serving.caa_refusals.push((identifier.clone(), vec![why])),
                    }
                }
                Err(e) => {
                    tracing::info!(account = %account.name, error = %e.detail, "CAA left to the upstream CA")
                }
                Ok(()) => {}
            }
        }
        if refused.is_empty() {
            serving.accounts.push(account);
        } else {
            let why = refused.join("; ");
            serving.reasons.push(format!("{}: {why}", account.name));
            serving.caa_skipped.push((account.name.clone(), why));
        }
    }
    serving
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Identifier;
    use crate::store::CaAccount;

    fn account(name: &str, env: &str, wildcard: bool, priority: i64, preferred: bool) -> CaAccount {
        CaAccount {
            id: name.into(),
            instance_id: "i".into(),
            name: name.into(),
            description: String::new(),
            ca: "custom".into(),
            directory_url: "https://ca.test/dir".into(),
            environment: Environment::from_text(env).unwrap(),
            email: String::new(),
            eab_kid: None,
            sealed_eab_hmac: None,
            allow_wildcard: wildcard,
            dns_ttl: 60,
            api_timeout_s: 30,
            priority,
            preferred,
            trusted_roots_pem: None,
            caa_identities: Vec::new(),
            profiles: Default::default(),
            account_url: None,
            sealed_credentials: None,
            status: CaAccountStatus::Valid,
            status_detail: String::new(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn alternate_links_are_read_from_every_link_header() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.append(
            reqwest::header::LINK,
            "<https://ca.test/dir>;rel=\"index\"".parse().unwrap(),
        );
        headers.append(
            reqwest::header::LINK,
            "<https://ca.test/cert/1/1>; rel=\"alternate\", <https://ca.test/cert/1/2>;rel=alternate"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            alternate_links(&headers),
            ["https://ca.test/cert/1/1", "https://ca.test/cert/1/2"]
        );
    }

    #[test]
    fn accounts_are_tried_preferred_first_then_by_priority_and_unfit_ones_say_why() {
        let accounts = vec![
            account("b", "production", true, 20, false),
            account("staging", "staging", true, 1, false),
            account("no-wild", "production", false, 5, false),
            account("a", "production", true, 30, true),
            account("c", "production", true, 10, false),
        ];
        let plain = [Identifier::dns("a.example.com").unwrap()];
        let (fit, reasons) = candidates(&accounts, Environment::Production, &plain, None);
        let names: Vec<&str> = fit.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["a", "no-wild", "c", "b"]);
        assert_eq!(reasons.len(), 1);
        assert!(reasons[0].contains("staging account cannot serve a production instance"));

        let wild = [Identifier::dns("*.example.com").unwrap()];
        let (fit, reasons) = candidates(&accounts, Environment::Production, &wild, None);
        assert!(fit.iter().all(|a| a.name != "no-wild"));
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("wildcards are not allowed"))
        );

        let (fit, reasons) = candidates(&accounts[1..2], Environment::Production, &plain, None);
        assert!(fit.is_empty());
        assert_eq!(reasons.len(), 1);
    }
}

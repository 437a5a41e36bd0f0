//! acmehub-loadgen: drives complete ACME issuances (RFC 8555) against any
//! directory URL with N concurrent clients, and reports issuances per
//! second, errors by ACME problem type, and latency per step.
//!
//! Each client has one account (or a new one per order), one connection
//! pool, and a key made up front; it answers http-01 from an in-process
//! server, dns-01, dns-account-01 and dns-persist-01 through
//! pebble-challtestsrv's management API, or nothing (`--challenge none`,
//! for pre-authorized access keys). Its dns-account-01 label and
//! dns-persist-01 record are its own reading of the drafts, not the
//! server's code. Bounded by
//! `--duration` or `--orders`; meant for loopback only. With `--retries`,
//! a request that found no server (refused, reset, 502, 503, 504) is sent
//! again, as a client behind a load balancer would.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acmehub::issuance::upstream::UpstreamHttp;
use bytes::Bytes;
use clap::Parser;
use http_body_util::BodyExt as _;
use instant_acme::{
    Account, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType, ExternalAccountKey,
    HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use serde_json::{Value, json};

/// mimalloc: glibc's malloc took about a tenth of the hub's CPU under load
/// (many small allocations freed on other threads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Drives complete ACME issuances against a directory and reports their speed"
)]
struct Args {
    /// The ACME directory URL.
    #[arg(long)]
    directory: String,
    /// PEM roots to trust for the server's TLS certificate.
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Run this many seconds (default 10 unless --orders is given).
    #[arg(long)]
    duration: Option<u64>,
    /// Stop after this many orders in all.
    #[arg(long)]
    orders: Option<u64>,
    /// dns-01, http-01, dns-account-01, dns-persist-01 or none (the
    /// account is pre-authorized).
    #[arg(long, default_value = "dns-01")]
    challenge: String,
    /// The issuer domain name dns-persist-01 records name (the server's
    /// CAA identity).
    #[arg(long, default_value = "acmehub.local")]
    persist_issuer: String,
    /// Names are <client>-<n>.<domain>.
    #[arg(long, default_value = "load.test")]
    domain: String,
    /// pebble-challtestsrv's management API, for dns-01.
    #[arg(long, default_value = "http://127.0.0.1:8055")]
    challtestsrv: String,
    /// Where to answer http-01 (the server's http01 port points here).
    #[arg(long, default_value = "127.0.0.1:5002")]
    http01_listen: std::net::SocketAddr,
    /// A new account for every order.
    #[arg(long)]
    new_account_per_order: bool,
    /// External Account Binding, KID:HMAC (base64url).
    #[arg(long)]
    eab: Option<String>,
    /// Stop each flow at newOrder, leaving the order pending (to measure
    /// what pending orders cost the server); counted as completed flows.
    #[arg(long)]
    pending_only: bool,
    /// The server's PID: its CPU seconds per issuance and its resident
    /// memory before and after are reported.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Send a request again, up to this many times, when no server answered
    /// it (connection refused or reset, 502, 503, 504). A signed request
    /// that did arrive is refused as badNonce, and signed again.
    #[arg(long, default_value_t = 0)]
    retries: u32,
}

/// The HTTP client of every loadgen account: [`UpstreamHttp`], with
/// `--retries`.
struct Retrying {
    inner: UpstreamHttp,
    retries: u32,
}

impl HttpClient for Retrying {
    fn request(
        &self,
        req: axum::http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        if self.retries == 0 {
            return self.inner.request(req);
        }
        let (parts, body) = req.into_parts();
        let attempt = move |inner: &UpstreamHttp, body: Bytes| {
            let mut req = axum::http::Request::new(BodyWrapper::from(body.to_vec()));
            *req.method_mut() = parts.method.clone();
            *req.uri_mut() = parts.uri.clone();
            *req.headers_mut() = parts.headers.clone();
            inner.request(req)
        };
        let inner = self.inner.clone();
        let retries = self.retries;
        Box::pin(async move {
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            let mut tries = 0;
            loop {
                let outcome = attempt(&inner, body.clone()).await;
                let unanswered = match &outcome {
                    Ok(r) => matches!(r.parts.status.as_u16(), 502..=504),
                    Err(_) => true,
                };
                if !unanswered || tries >= retries {
                    return outcome;
                }
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200 * u64::from(tries))).await;
            }
        })
    }
}

/// What every client records.
#[derive(Default)]
struct Stats {
    /// Milliseconds per step name.
    steps: Mutex<BTreeMap<&'static str, Vec<f64>>>,
    errors: Mutex<BTreeMap<String, u64>>,
    completed: AtomicU64,
    started: AtomicU64,
}

impl Stats {
    fn time(&self, step: &'static str, since: Instant) {
        let ms = since.elapsed().as_secs_f64() * 1000.0;
        self.steps.lock().unwrap().entry(step).or_default().push(ms);
    }

    fn error(&self, e: &instant_acme::Error) {
        let kind = match e {
            instant_acme::Error::Api(p) => p
                .r#type
                .clone()
                .unwrap_or_else(|| "problem without a type".into()),
            instant_acme::Error::Timeout(_) => "timeout".into(),
            other => format!("transport: {}", first_words(&other.to_string())),
        };
        *self.errors.lock().unwrap().entry(kind).or_default() += 1;
    }
}

fn first_words(text: &str) -> String {
    text.split_whitespace()
        .take(6)
        .collect::<Vec<_>>()
        .join(" ")
}

type Tokens = Arc<Mutex<std::collections::HashMap<String, String>>>;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("acmehub-loadgen: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    if !matches!(
        args.challenge.as_str(),
        "dns-01" | "http-01" | "dns-account-01" | "dns-persist-01" | "none"
    ) {
        return Err(
            "--challenge must be dns-01, http-01, dns-account-01, dns-persist-01 or none".into(),
        );
    }
    if args.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    let roots = match &args.ca_file {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => None,
    };
    let eab = match &args.eab {
        Some(text) => {
            use base64::Engine;
            let (kid, key) = text.split_once(':').ok_or("--eab is KID:HMAC")?;
            let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(key)
                .map_err(|e| format!("--eab HMAC: {e}"))?;
            Some((kid.to_string(), key))
        }
        None => None,
    };
    let tokens: Tokens = Default::default();
    if args.challenge == "http-01" {
        serve_http01(args.http01_listen, tokens.clone()).await?;
    }
    let duration =
        Duration::from_secs(
            args.duration
                .unwrap_or(if args.orders.is_some() { 3600 } else { 10 }),
        );
    let args = Arc::new(args);
    let stats = Arc::new(Stats::default());
    let cpu_before = args.server_pid.and_then(cpu_seconds);
    let rss_before = args.server_pid.and_then(rss_kib);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for client in 0..args.clients {
        let (args, stats, tokens, roots, eab) = (
            args.clone(),
            stats.clone(),
            tokens.clone(),
            roots.clone(),
            eab.clone(),
        );
        tasks.push(tokio::spawn(async move {
            client_loop(
                client,
                &args,
                &stats,
                &tokens,
                roots.as_deref(),
                eab,
                deadline,
            )
            .await
        }));
    }
    for task in tasks {
        if let Ok(Err(e)) = task.await {
            return Err(e);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = match (cpu_before, args.server_pid.and_then(cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let rss = (rss_before, args.server_pid.and_then(rss_kib));
    report(&args, &stats, elapsed, cpu, rss);
    Ok(())
}

fn http_for(roots: Option<&str>, retries: u32) -> Result<Retrying, String> {
    Ok(Retrying {
        inner: UpstreamHttp::new(roots, Duration::from_secs(30))?,
        retries,
    })
}

async fn new_account(
    args: &Args,
    roots: Option<&str>,
    eab: &Option<(String, Vec<u8>)>,
) -> Result<Account, instant_acme::Error> {
    let key = eab
        .as_ref()
        .map(|(kid, hmac)| ExternalAccountKey::new(kid.clone(), hmac));
    let http = http_for(roots, args.retries).map_err(|e| instant_acme::Error::Other(e.into()))?;
    let (account, _) = Account::builder_with_http(Box::new(http))
        .create(
            &NewAccount {
                contact: &[],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            args.directory.clone(),
            key.as_ref(),
        )
        .await?;
    Ok(account)
}

async fn client_loop(
    client: usize,
    args: &Args,
    stats: &Stats,
    tokens: &Tokens,
    roots: Option<&str>,
    eab: Option<(String, Vec<u8>)>,
    deadline: Instant,
) -> Result<(), String> {
    // One certificate key per client, made before the clock matters.
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut account = None;
    let mut n = 0u64;
    while Instant::now() < deadline {
        if let Some(limit) = args.orders {
            if stats.started.fetch_add(1, Ordering::Relaxed) >= limit {
                break;
            }
        }
        n += 1;
        if account.is_none() || args.new_account_per_order {
            let t = Instant::now();
            match new_account(args, roots, &eab).await {
                Ok(a) => {
                    stats.time("newAccount", t);
                    account = Some(a);
                }
                Err(e) => {
                    stats.error(&e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let name = format!("c{client}-{n}.{}", args.domain);
        let t = Instant::now();
        match issue(
            account.as_ref().expect("made above"),
            args,
            stats,
            tokens,
            &key,
            &name,
        )
        .await
        {
            Ok(()) => {
                stats.time("end-to-end", t);
                stats.completed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => stats.error(&e),
        }
    }
    Ok(())
}

fn polling() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(10))
        .backoff(1.5)
        .timeout(Duration::from_secs(60))
}

async fn issue(
    account: &Account,
    args: &Args,
    stats: &Stats,
    tokens: &Tokens,
    key: &rcgen::KeyPair,
    name: &str,
) -> Result<(), instant_acme::Error> {
    let t = Instant::now();
    let ids = [Identifier::Dns(name.to_string())];
    let mut order = account.new_order(&NewOrder::new(&ids)).await?;
    stats.time("newOrder", t);
    if args.pending_only {
        return Ok(());
    }
    if order.state().status == OrderStatus::Pending {
        let t = Instant::now();
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            let kind = match args.challenge.as_str() {
                "http-01" => ChallengeType::Http01,
                "dns-01" => ChallengeType::Dns01,
                other => ChallengeType::Unknown(other.to_string()),
            };
            let mut challenge = authz
                .challenge(kind.clone())
                .ok_or_else(|| instant_acme::Error::Str("the server offered no such challenge"))?;
            let key_authorization = challenge.key_authorization();
            let (host, value) = match args.challenge.as_str() {
                "http-01" => {
                    tokens.lock().unwrap().insert(
                        challenge.token.clone(),
                        key_authorization.as_str().to_string(),
                    );
                    (None, String::new())
                }
                "dns-account-01" => (
                    Some(format!(
                        "_{}._acme-challenge.{name}.",
                        account_label(account.id())
                    )),
                    key_authorization.dns_value(),
                ),
                "dns-persist-01" => (
                    Some(format!("_validation-persist.{name}.")),
                    format!("{}; accounturi={}", args.persist_issuer, account.id()),
                ),
                _ => (
                    Some(format!("_acme-challenge.{name}.")),
                    key_authorization.dns_value(),
                ),
            };
            if let Some(host) = &host {
                set_txt(&args.challtestsrv, host, &value).await?;
            }
            challenge.set_ready().await?;
        }
        stats.time("authz", t);
        let t = Instant::now();
        let status = order.poll_ready(&polling()).await?;
        stats.time("challenge-to-valid", t);
        if status != OrderStatus::Ready {
            return Err(instant_acme::Error::Str("the order did not become ready"));
        }
    }
    let t = Instant::now();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])
        .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(key)
        .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
    if let Err(e) = order.finalize_csr(csr.der()).await {
        // A finalize that arrived but whose answer was lost: the order has
        // moved on, and its certificate comes as usual.
        let state = order.refresh().await?;
        if !matches!(state.status, OrderStatus::Processing | OrderStatus::Valid) {
            return Err(e);
        }
    }
    let chain = order.poll_certificate(&polling()).await?;
    stats.time("finalize-to-valid", t);
    if !chain.contains("BEGIN CERTIFICATE") {
        return Err(instant_acme::Error::Str(
            "the certificate download is not PEM",
        ));
    }
    if args.challenge == "dns-01" {
        let _ = clear_txt(&args.challtestsrv, &format!("_acme-challenge.{name}.")).await;
    }
    Ok(())
}

/// dns-account-01's label (draft-ietf-acme-dns-account-label §3.2):
/// lowercase RFC 4648 base32 of the first 10 bytes of SHA-256 of the
/// account URL, 16 characters.
fn account_label(account_url: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let digest = ring::digest::digest(&ring::digest::SHA256, account_url.as_bytes());
    let bits: u128 = digest.as_ref()[..10]
        .iter()
        .fold(0, |acc, b| (acc << 8) | u128::from(*b));
    (0..16)
        .map(|i| ALPHABET[((bits >> (75 - 5 * i)) & 31) as usize] as char)
        .collect()
}

async fn set_txt(mgmt: &str, host: &str, value: &str) -> Result<(), instant_acme::Error> {
    challtestsrv(mgmt, "set-txt", json!({"host": host, "value": value})).await
}

async fn clear_txt(mgmt: &str, host: &str) -> Result<(), instant_acme::Error> {
    challtestsrv(mgmt, "clear-txt", json!({"host": host})).await
}

async fn challtestsrv(mgmt: &str, path: &str, body: Value) -> Result<(), instant_acme::Error> {
    static CLIENT: std::sync::LazyLock<reqwest::Client> =
        std::sync::LazyLock::new(reqwest::Client::new);
    let r = CLIENT
        .post(format!("{mgmt}/{path}"))
        .json(&body)
        .send()
        .await
        .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(instant_acme::Error::Str(
            "pebble-challtestsrv refused the record",
        ))
    }
}

async fn serve_http01(listen: std::net::SocketAddr, tokens: Tokens) -> Result<(), String> {
    use axum::extract::{Path, State};
    let app = axum::Router::new()
        .route(
            "/.well-known/acme-challenge/{token}",
            axum::routing::get(
                |State(t): State<Tokens>, Path(token): Path<String>| async move {
                    match t.lock().unwrap().get(&token) {
                        Some(v) => (axum::http::StatusCode::OK, v.clone()),
                        None => (axum::http::StatusCode::NOT_FOUND, String::new()),
                    }
                },
            ),
        )
        .with_state(tokens);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot answer http-01 on {listen}: {e}"))?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(())
}

/// Resident memory of a process, in KiB (Linux /proc).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of a process, in seconds (Linux /proc).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(
    args: &Args,
    stats: &Stats,
    elapsed: f64,
    cpu: Option<f64>,
    rss: (Option<u64>, Option<u64>),
) {
    let completed = stats.completed.load(Ordering::Relaxed);
    let mut steps = serde_json::Map::new();
    for (step, values) in stats.steps.lock().unwrap().iter_mut() {
        values.sort_by(|a, b| a.total_cmp(b));
        steps.insert(
            step.to_string(),
            json!({"count": values.len(), "p50_ms": percentile(values, 0.50),
                   "p95_ms": percentile(values, 0.95), "p99_ms": percentile(values, 0.99),
                   "max_ms": values.last().copied().unwrap_or(0.0)}),
        );
    }
    let errors: BTreeMap<String, u64> = stats.errors.lock().unwrap().clone();
    let value = json!({
        "directory": args.directory, "challenge": args.challenge, "clients": args.clients,
        "seconds": elapsed, "issued": completed,
        "issuances_per_second": completed as f64 / elapsed.max(1e-9),
        "errors": errors, "steps": steps,
        "server_cpu_ms_per_issuance": cpu.filter(|_| completed > 0).map(|c| c * 1000.0 / completed as f64),
        "pending_only": args.pending_only,
        "server_rss_kib_before": rss.0, "server_rss_kib_after": rss.1,
    });
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return;
    }
    println!(
        "{} {} in {:.1} s: {:.1}/s ({} clients, {})",
        completed,
        if args.pending_only {
            "pending orders"
        } else {
            "issuances"
        },
        elapsed,
        value["issuances_per_second"].as_f64().unwrap_or(0.0),
        args.clients,
        args.challenge
    );
    println!(
        "{:<20} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "step", "count", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for (step, s) in &steps {
        println!(
            "{:<20} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            step,
            s["count"],
            s["p50_ms"].as_f64().unwrap_or(0.0),
            s["p95_ms"].as_f64().unwrap_or(0.0),
            s["p99_ms"].as_f64().unwrap_or(0.0),
            s["max_ms"].as_f64().unwrap_or(0.0)
        );
    }
    for (kind, n) in &errors {
        println!("error {kind}: {n}");
    }
    if let Some(ms) = value["server_cpu_ms_per_issuance"].as_f64() {
        println!("server CPU per issuance: {ms:.2} ms");
    }
    if let (Some(before), Some(after)) = rss {
        println!("server resident memory: {before} KiB before, {after} KiB after");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_account_label_is_the_drafts() {
        // draft-ietf-acme-dns-account-label's example.
        assert_eq!(
            super::account_label("https://example.com/acme/acct/ExampleAccount"),
            "ujmmovf2vn55tgye"
        );
    }
}

//! `acmehub admin ...`: a command-line client of the admin API. It only
//! speaks HTTP to a running hub; everything it can do, the API can.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where the hub is and how to authenticate.
#[derive(Debug, Args)]
pub struct Connection {
    /// Base URL of the hub [default: the configured public URL].
    #[arg(long, env = "ACMEHUB_ADMIN_URL")]
    pub url: Option<String>,
    /// Bearer token [default: the contents of --token-file].
    #[arg(long, env = "ACMEHUB_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the token [default: <data-dir>/admin-token].
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// PEM root to trust for the hub's TLS certificate [default: <data-dir>/ca/root.pem].
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Instances (tenants), each with its own ACME directory.
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// Access keys: EAB credentials bound to an identifier policy.
    #[command(subcommand, name = "access-key")]
    AccessKey(AccessKeyCommand),
    /// The certificate inventory.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Admin API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Web console users (name and password).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    List,
    Show {
        instance: String,
    },
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Refuse newAccount without an External Account Binding.
        #[arg(long)]
        eab_required: bool,
        /// `local` or `upstream`.
        #[arg(long)]
        issuer: Option<String>,
        /// Certificate lifetime in days.
        #[arg(long)]
        validity_days: Option<i64>,
        /// Allowed challenge types, comma-separated (http-01,dns-01,tls-alpn-01).
        #[arg(long, value_delimiter = ',')]
        challenges: Option<Vec<String>>,
        /// Whether validation may reach private and loopback addresses
        /// (`default`: the hub's `[validation] allow_private_targets`).
        #[arg(long, value_enum)]
        private_targets: Option<PrivateTargets>,
    },
    /// Changes an instance's settings; only the flags given change.
    Update {
        instance: String,
        #[arg(long)]
        description: Option<String>,
        /// Whether validation may reach private and loopback addresses;
        /// `allow` and `default` need a hub-wide token (unless already set).
        #[arg(long, value_enum)]
        private_targets: Option<PrivateTargets>,
    },
}

/// `--private-targets`: an instance's `allow_private_targets`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PrivateTargets {
    Allow,
    Refuse,
    Default,
}

impl PrivateTargets {
    fn json(self) -> Value {
        match self {
            Self::Allow => json!(true),
            Self::Refuse => json!(false),
            Self::Default => Value::Null,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AccessKeyCommand {
    List {
        instance: String,
    },
    Create {
        instance: String,
        name: String,
        /// Allowed identifier pattern (repeat): `a.example.com`, `*.example.com`, `10.0.0.0/8`.
        #[arg(long = "allow", required = true)]
        allow: Vec<String>,
        /// Allow wildcard names.
        #[arg(long)]
        wildcard: bool,
        /// Authorizations are valid at once (no challenge).
        #[arg(long)]
        pre_authorized: bool,
        /// RFC 3339 expiry.
        #[arg(long)]
        expires: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    Revoke {
        instance: String,
        key: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    List {
        instance: String,
        /// `active`, `expired` or `revoked`.
        #[arg(long)]
        status: Option<String>,
        /// This name or names under it.
        #[arg(long)]
        identifier: Option<String>,
        #[arg(long)]
        expiring_within_days: Option<i64>,
    },
    Revoke {
        instance: String,
        /// Certificate id or serial (hex).
        cert: String,
        /// RFC 5280 reason code (0, 1, 3, 4, 5).
        #[arg(long)]
        reason: Option<i64>,
    },
    /// A certificate the hub manages itself (key, issuance, renewal).
    Create {
        instance: String,
        /// Its name, unique in the instance.
        name: String,
        /// DNS names (wildcards allowed), each covered by a zone binding or delegation.
        #[arg(required = true)]
        identifiers: Vec<String>,
        /// ec-p256 (default), ec-p384, rsa-2048, rsa-3072 or rsa-4096.
        #[arg(long)]
        key_type: Option<String>,
        #[arg(long)]
        profile: Option<String>,
        /// Do not renew on its own.
        #[arg(long)]
        no_auto_renew: bool,
        #[arg(long)]
        renew_before_days: Option<i64>,
    },
    /// A managed certificate: status, the step it waits on, next renewal.
    Show { instance: String, name: String },
    /// Renews a managed certificate now.
    Renew { instance: String, name: String },
    /// Writes a certificate (or a managed certificate's key) to a file.
    Download {
        instance: String,
        /// Managed certificate name or id, or an issued certificate's id or serial.
        cert: String,
        /// pem, fullchain (default), key or pkcs12.
        #[arg(long, default_value = "fullchain")]
        format: String,
        /// Where to write it (standard output when absent; pkcs12 needs a file).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// For pkcs12: a file holding the password (its first line).
        #[arg(long)]
        password_file: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    List,
    Create {
        name: String,
        /// `admin` or `instance:NAME`.
        #[arg(long)]
        scope: String,
        /// `read` or `write`.
        #[arg(long)]
        role: String,
    },
    Revoke {
        token: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    List,
    Create {
        name: String,
        /// `admin` or `instance:NAME`.
        #[arg(long)]
        scope: String,
        /// `read` or `write`.
        #[arg(long)]
        role: String,
        /// File whose first line is the password (12 characters at least);
        /// `-` reads it from standard input.
        #[arg(long)]
        password_file: PathBuf,
    },
    Delete {
        user: String,
    },
}

/// An admin API client.
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(c: &Connection, config: &crate::config::Config) -> Result<Self, String> {
        let base = c
            .url
            .clone()
            .unwrap_or_else(|| config.public_url.clone())
            .trim_end_matches('/')
            .to_string();
        let token = match &c.token {
            Some(t) => t.clone(),
            None => {
                let path = c
                    .token_file
                    .clone()
                    .unwrap_or_else(|| config.data_dir.join("admin-token"));
                std::fs::read_to_string(&path)
                    .map_err(|e| {
                        format!(
                            "no token: pass --token or --token-file ({} : {e})",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_string()
            }
        };
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
        let ca = c
            .ca_file
            .clone()
            .unwrap_or_else(|| config.data_dir.join("ca").join("root.pem"));
        match std::fs::read(&ca) {
            Ok(pem) => {
                let cert = reqwest::Certificate::from_pem(&pem)
                    .map_err(|e| format!("{} is not a PEM certificate: {e}", ca.display()))?;
                builder = builder.add_root_certificate(cert);
            }
            Err(e) if c.ca_file.is_some() => {
                return Err(format!("cannot read {}: {e}", ca.display()));
            }
            Err(_) => {}
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { http, base, token })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("cannot reach {url}: {e}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(value);
        }
        let error = value["error"].as_str().unwrap_or("request failed");
        Err(match value["field"].as_str() {
            Some(field) => format!("{error} (field {field}; HTTP {})", status.as_u16()),
            None => format!("{error} (HTTP {})", status.as_u16()),
        })
    }

    /// A GET whose answer is not JSON (a download), with extra headers.
    async fn get_bytes(&self, path: &str, headers: &[(&str, String)]) -> Result<Vec<u8>, String> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.get(&url).bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("cannot reach {url}: {e}"))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| e.to_string())?.to_vec();
        if status.is_success() {
            return Ok(bytes);
        }
        let value: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Err(format!(
            "{} (HTTP {})",
            value["error"].as_str().unwrap_or("request failed"),
            status.as_u16()
        ))
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> Result<Value, String> {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> Result<Value, String> {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

/// Path-segment escaping for names and ids.
fn seg(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Prints rows under headers, columns aligned.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_uppercase()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// A JSON field as table text.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(o) if o.contains_key("value") => cell(&o["value"]),
        other => other.to_string(),
    }
}

fn rows(items: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    items
        .as_array()
        .map(|a| {
            a.iter()
                .map(|item| fields.iter().map(|f| cell(&item[*f])).collect())
                .collect()
        })
        .unwrap_or_default()
}

const INSTANCE_FIELDS: [&str; 5] = [
    "name",
    "issuer",
    "external_account_required",
    "effective_cert_validity_days",
    "directory_url",
];
const KEY_FIELDS: [&str; 7] = [
    "name",
    "kid",
    "status",
    "validation",
    "allow_wildcard",
    "allowed_identifiers",
    "accounts",
];
const CERT_FIELDS: [&str; 6] = [
    "serial",
    "status",
    "days_remaining",
    "not_after",
    "issuer",
    "identifiers",
];
const TOKEN_FIELDS: [&str; 5] = ["name", "scope", "role", "created_at", "revoked_at"];

/// Runs one admin command and returns what to print.
pub async fn run(
    connection: &Connection,
    command: &AdminCommand,
    config: &crate::config::Config,
) -> Result<String, String> {
    let client = Client::new(connection, config)?;
    let (value, rendered) = match command {
        AdminCommand::Instance(c) => instance(&client, c).await?,
        AdminCommand::AccessKey(c) => access_key(&client, c).await?,
        AdminCommand::Cert(c) => cert(&client, c).await?,
        AdminCommand::Token(c) => token(&client, c).await?,
        AdminCommand::User(c) => user(&client, c).await?,
    };
    Ok(if connection.json {
        serde_json::to_string_pretty(&value).unwrap_or_default()
    } else {
        rendered
    })
}

type Output = (Value, String);

async fn instance(client: &Client, command: &InstanceCommand) -> Result<Output, String> {
    match command {
        InstanceCommand::List => {
            let v = client.get("/api/v1/instances").await?;
            let t = table(&INSTANCE_FIELDS, &rows(&v, &INSTANCE_FIELDS));
            Ok((v, t))
        }
        InstanceCommand::Show { instance } => {
            let v = client
                .get(&format!("/api/v1/instances/{}", seg(instance)))
                .await?;
            let t = serde_json::to_string_pretty(&v).unwrap_or_default();
            Ok((v, t))
        }
        InstanceCommand::Create {
            name,
            description,
            eab_required,
            issuer,
            validity_days,
            challenges,
            private_targets,
        } => {
            let mut body = json!({"name": name, "external_account_required": eab_required});
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            if let Some(i) = issuer {
                body["issuer"] = json!(i);
            }
            if let Some(days) = validity_days {
                body["cert_validity_days"] = json!(days);
            }
            if let Some(c) = challenges {
                body["allowed_challenges"] = json!(c);
            }
            if let Some(p) = private_targets {
                body["allow_private_targets"] = p.json();
            }
            let v = client.post("/api/v1/instances", body).await?;
            let t = format!(
                "instance {} created\ndirectory: {}",
                cell(&v["name"]),
                cell(&v["directory_url"])
            );
            Ok((v, t))
        }
        InstanceCommand::Update {
            instance,
            description,
            private_targets,
        } => {
            let mut body = json!({});
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            if let Some(p) = private_targets {
                body["allow_private_targets"] = p.json();
            }
            let v = client
                .patch(&format!("/api/v1/instances/{}", seg(instance)), body)
                .await?;
            let t = format!(
                "instance {} updated\nprivate targets: {}",
                cell(&v["name"]),
                if v["effective_allow_private_targets"] == json!(true) {
                    "allowed"
                } else {
                    "refused"
                }
            );
            Ok((v, t))
        }
    }
}

async fn access_key(client: &Client, command: &AccessKeyCommand) -> Result<Output, String> {
    match command {
        AccessKeyCommand::List { instance } => {
            let v = client
                .get(&format!("/api/v1/instances/{}/access-keys", seg(instance)))
                .await?;
            let t = table(&KEY_FIELDS, &rows(&v, &KEY_FIELDS));
            Ok((v, t))
        }
        AccessKeyCommand::Create {
            instance,
            name,
            allow,
            wildcard,
            pre_authorized,
            expires,
            description,
        } => {
            let mut body = json!({
                "name": name,
                "allowed_identifiers": allow,
                "allow_wildcard": wildcard,
                "validation": if *pre_authorized { "pre-authorized" } else { "challenge" },
            });
            if let Some(e) = expires {
                body["expires_at"] = json!(e);
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            let v = client
                .post(
                    &format!("/api/v1/instances/{}/access-keys", seg(instance)),
                    body,
                )
                .await?;
            let (kid, hmac, dir) = (
                cell(&v["kid"]),
                cell(&v["hmac_key"]),
                cell(&v["directory_url"]),
            );
            let t = format!(
                "access key {name} created; the HMAC key is shown only now.\n\
                 kid:       {kid}\n\
                 hmac_key:  {hmac}\n\
                 directory: {dir}\n\n\
                 certbot certonly --server {dir} --eab-kid {kid} --eab-hmac-key={hmac} -d NAME\n\
                 lego --server {dir} --eab --kid {kid} --hmac={hmac} --email you@example.com --domains NAME run\n\
                 acme.sh --register-account --server {dir} --eab-kid {kid} --eab-hmac-key={hmac}"
            );
            Ok((v, t))
        }
        AccessKeyCommand::Revoke { instance, key } => {
            let v = client
                .delete(&format!(
                    "/api/v1/instances/{}/access-keys/{}",
                    seg(instance),
                    seg(key)
                ))
                .await?;
            let t = format!(
                "access key {} revoked; its {} accounts can no longer order",
                cell(&v["name"]),
                cell(&v["accounts"])
            );
            Ok((v, t))
        }
    }
}

async fn cert(client: &Client, command: &CertCommand) -> Result<Output, String> {
    match command {
        CertCommand::List {
            instance,
            status,
            identifier,
            expiring_within_days,
        } => {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("limit", "1000");
            if let Some(s) = status {
                query.append_pair("status", s);
            }
            if let Some(i) = identifier {
                query.append_pair("identifier", i);
            }
            if let Some(d) = expiring_within_days {
                query.append_pair("expiring_within_days", &d.to_string());
            }
            let v = client
                .get(&format!(
                    "/api/v1/instances/{}/certificates?{}",
                    seg(instance),
                    query.finish()
                ))
                .await?;
            let t = table(&CERT_FIELDS, &rows(&v["items"], &CERT_FIELDS));
            Ok((v, t))
        }
        CertCommand::Revoke {
            instance,
            cert,
            reason,
        } => {
            let body = match reason {
                Some(r) => json!({"reason": r}),
                None => json!({}),
            };
            let v = client
                .post(
                    &format!(
                        "/api/v1/instances/{}/certificates/{}/revoke",
                        seg(instance),
                        seg(cert)
                    ),
                    body,
                )
                .await?;
            let t = format!("certificate {} revoked", cell(&v["serial"]));
            Ok((v, t))
        }
        CertCommand::Create {
            instance,
            name,
            identifiers,
            key_type,
            profile,
            no_auto_renew,
            renew_before_days,
        } => {
            let mut body =
                json!({"name": name, "identifiers": identifiers, "auto_renew": !no_auto_renew});
            if let Some(k) = key_type {
                body["key_type"] = json!(k);
            }
            if let Some(p) = profile {
                body["profile"] = json!(p);
            }
            if let Some(d) = renew_before_days {
                body["renew_before_days"] = json!(d);
            }
            let v = client
                .post(
                    &format!("/api/v1/instances/{}/certificates", seg(instance)),
                    body,
                )
                .await?;
            let t = format!(
                "managed certificate {} created: {}",
                cell(&v["name"]),
                cell(&v["status"])
            );
            Ok((v, t))
        }
        CertCommand::Show { instance, name } => {
            let v = client
                .get(&format!(
                    "/api/v1/instances/{}/managed-certificates/{}",
                    seg(instance),
                    seg(name)
                ))
                .await?;
            Ok((v.clone(), managed_summary(&v)))
        }
        CertCommand::Renew { instance, name } => {
            let v = client
                .post(
                    &format!(
                        "/api/v1/instances/{}/managed-certificates/{}/renew",
                        seg(instance),
                        seg(name)
                    ),
                    json!({}),
                )
                .await?;
            Ok((v, format!("renewal of {name} started")))
        }
        CertCommand::Download {
            instance,
            cert,
            format,
            out,
            password_file,
        } => {
            let mut headers = Vec::new();
            if format == "pkcs12" {
                let file = password_file
                    .as_ref()
                    .ok_or("pkcs12 needs --password-file")?;
                let text = std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                headers.push((
                    "x-password",
                    text.lines().next().unwrap_or_default().to_string(),
                ));
                if out.is_none() {
                    return Err("pkcs12 is binary: pass --out FILE".into());
                }
            }
            let bytes = client
                .get_bytes(
                    &format!(
                        "/api/v1/instances/{}/certificates/{}/download?format={}",
                        seg(instance),
                        seg(cert),
                        seg(format)
                    ),
                    &headers,
                )
                .await?;
            match out {
                Some(path) => {
                    write_private(path, &bytes, matches!(format.as_str(), "key" | "pkcs12"))?;
                    let t = format!("wrote {} ({} bytes)", path.display(), bytes.len());
                    Ok((json!({"file": path, "bytes": bytes.len()}), t))
                }
                None => {
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    Ok((json!({"pem": text}), text.trim_end().to_string()))
                }
            }
        }
    }
}

/// Writes a file; one holding a key is readable by its owner only.
fn write_private(path: &std::path::Path, bytes: &[u8], secret: bool) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let _ = secret;
    options
        .open(path)
        .and_then(|mut f| {
            // An existing file keeps its mode on open: tighten it first.
            #[cfg(unix)]
            if secret {
                use std::os::unix::fs::PermissionsExt;
                f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            f.write_all(bytes)
        })
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn managed_summary(v: &Value) -> String {
    let mut lines = vec![
        format!("name:          {}", cell(&v["name"])),
        format!("identifiers:   {}", cell(&v["identifiers"])),
        format!("status:        {}", cell(&v["status"])),
        format!("step:          {}", cell(&v["step"])),
        format!("next renewal:  {}", cell(&v["next_renewal_at"])),
    ];
    if let Some(c) = v["certificate"].as_object() {
        lines.push(format!(
            "certificate:   serial {}, {} days left, issuer {}",
            cell(&c["serial"]),
            cell(&c["days_remaining"]),
            cell(&c["issuer"])
        ));
    }
    for m in v["missing"].as_array().into_iter().flatten() {
        lines.push(format!("missing:       {}", cell(&m["detail"])));
    }
    if !v["error"].is_null() {
        lines.push(format!("last error:    {}", cell(&v["error"])));
    }
    lines.join("\n")
}

async fn token(client: &Client, command: &TokenCommand) -> Result<Output, String> {
    match command {
        TokenCommand::List => {
            let v = client.get("/api/v1/tokens").await?;
            let t = table(&TOKEN_FIELDS, &rows(&v, &TOKEN_FIELDS));
            Ok((v, t))
        }
        TokenCommand::Create { name, scope, role } => {
            let v = client
                .post(
                    "/api/v1/tokens",
                    json!({"name": name, "scope": scope, "role": role}),
                )
                .await?;
            let t = format!(
                "token {name} created ({scope}, {role}); it is shown only now:\n{}",
                cell(&v["token"])
            );
            Ok((v, t))
        }
        TokenCommand::Revoke { token } => {
            client
                .delete(&format!("/api/v1/tokens/{}", seg(token)))
                .await?;
            Ok((json!({"revoked": token}), format!("token {token} revoked")))
        }
    }
}

const USER_FIELDS: [&str; 5] = ["name", "scope", "role", "created_at", "locked_until"];

/// The first line of a password file (or of standard input for `-`).
fn read_password(path: &std::path::Path) -> Result<String, String> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_line(&mut text)
            .map_err(|e| format!("reading the password from standard input: {e}"))?;
        text
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| format!("reading the password file {}: {e}", path.display()))?
    };
    Ok(text.lines().next().unwrap_or("").to_string())
}

async fn user(client: &Client, command: &UserCommand) -> Result<Output, String> {
    match command {
        UserCommand::List => {
            let v = client.get("/api/v1/users").await?;
            let t = table(&USER_FIELDS, &rows(&v, &USER_FIELDS));
            Ok((v, t))
        }
        UserCommand::Create {
            name,
            scope,
            role,
            password_file,
        } => {
            let password = read_password(password_file)?;
            let v = client
                .post(
                    "/api/v1/users",
                    json!({"name": name, "scope": scope, "role": role, "password": password}),
                )
                .await?;
            let t = format!("user {name} created ({scope}, {role}); sign in at /ui/");
            Ok((v, t))
        }
        UserCommand::Delete { user } => {
            client
                .delete(&format!("/api/v1/users/{}", seg(user)))
                .await?;
            Ok((json!({"deleted": user}), format!("user {user} deleted")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_render_identifiers() {
        let items = json!([
            {"name": "a", "identifiers": [{"type": "dns", "value": "x.example"}], "n": 1},
            {"name": "long-name", "identifiers": [], "n": null}
        ]);
        let t = table(
            &["name", "identifiers", "n"],
            &rows(&items, &["name", "identifiers", "n"]),
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "NAME       IDENTIFIERS  N");
        assert_eq!(lines[1], "a          x.example    1");
        assert_eq!(lines[2], "long-name               -");
        assert_eq!(seg("a/b"), "a%2Fb");
    }
}

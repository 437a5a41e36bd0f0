//! Certificates, from the intent recorded before signing to revocation, and
//! the inventory listings of them. Owns the `certificates` table; never
//! signs, and never decides who may revoke (that is `ca` and `orders`).

use super::audit::event_statement;
use super::engine::{Fields, Statement};
use super::{
    CertificateDownload, Event, FromRow, Order, Result, Store, StoreError, guard,
    identifiers_to_json, pick_by_id,
};
use crate::policy::Identifier;
use crate::util::{now, ordered_id};

status_enum!(
    /// Certificate lifecycle as recorded: `signing` is the intent written before
    /// the signature exists; `failed` is an intent the CA refused or could not
    /// sign (its order is invalid, its serial never used); `expired` is
    /// derived from `not_after` when read.
    CertificateStatus { Signing => "signing", Valid => "valid", Revoked => "revoked", Failed => "failed" }
);

/// Who signed a certificate, as recorded with it (and in the admin API):
/// `local`, or `ca-account:NAME` for a certificate relayed through the CA
/// account of that name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CertificateIssuer {
    /// The hub's own CA; its CRL lists these.
    Local,
    /// An upstream CA, through the instance's CA account of this name.
    CaAccount(String),
}

impl CertificateIssuer {
    const LOCAL: &str = "local";
    const CA_ACCOUNT: &str = "ca-account:";

    /// A stored value; `Corrupt` when it is neither form.
    pub fn parse(text: &str) -> Result<Self, super::StoreError> {
        if text == Self::LOCAL {
            return Ok(Self::Local);
        }
        text.strip_prefix(Self::CA_ACCOUNT)
            .map(|name| Self::CaAccount(name.to_string()))
            .ok_or_else(|| {
                super::StoreError::Corrupt(format!("unknown CertificateIssuer {text:?}"))
            })
    }
}

impl std::fmt::Display for CertificateIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local => f.write_str(Self::LOCAL),
            Self::CaAccount(name) => write!(f, "{}{name}", Self::CA_ACCOUNT),
        }
    }
}

/// An issued (or being-issued) certificate.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub id: String,
    pub instance_id: String,
    pub account_id: String,
    pub order_id: String,
    /// Lowercase hex of the serial's DER content bytes.
    pub serial: String,
    pub status: CertificateStatus,
    pub issuer: CertificateIssuer,
    pub identifiers: Vec<Identifier>,
    pub spki: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
    pub der: Option<Vec<u8>>,
    pub chain_pem: Option<String>,
    /// Alternate chains from an upstream CA (relayed certificates only).
    pub alternate_chains: Vec<String>,
    pub ari_id: Option<String>,
    pub revoked_at: Option<i64>,
    pub revocation_reason: Option<i64>,
}

/// The intent recorded before signing (DESIGN: persist intent before side effects).
#[derive(Debug, Clone)]
pub struct CertificateIntent {
    pub instance_id: String,
    pub account_id: String,
    pub order_id: String,
    pub serial: String,
    pub issuer: CertificateIssuer,
    pub identifiers: Vec<Identifier>,
    pub spki: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
}

/// A revoked certificate as the CRL lists it.
#[derive(Debug, Clone)]
pub struct RevokedCertificate {
    pub serial: String,
    pub revoked_at: i64,
    pub reason: i64,
}

/// Which certificates an inventory listing shows.
#[derive(Debug, Clone, Default)]
pub struct CertificateFilter {
    /// `active`, `expired` or `revoked`.
    pub status: Option<String>,
    /// Certificates with this identifier, or one under it.
    pub identifier: Option<String>,
    /// Active certificates whose `not_after` falls within this many days.
    pub expiring_within_days: Option<i64>,
    pub limit: i64,
    pub offset: i64,
}

/// `LIKE` text matching `text` literally.
fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

impl FromRow for Certificate {
    fn from_row(r: &impl Fields) -> Result<Self> {
        Ok(Certificate {
            id: r.field("id")?,
            instance_id: r.field("instance_id")?,
            account_id: r.field("account_id")?,
            order_id: r.field("order_id")?,
            serial: r.field("serial")?,
            status: CertificateStatus::parse(&r.field::<String>("status")?)?,
            issuer: CertificateIssuer::parse(&r.field::<String>("issuer")?)?,
            identifiers: r.json("identifiers", "identifiers")?,
            spki: r.field("spki")?,
            not_before: r.field("not_before")?,
            not_after: r.field("not_after")?,
            der: r.field("der")?,
            chain_pem: r.field("chain_pem")?,
            alternate_chains: match r.field::<Option<String>>("alternate_chains")? {
                Some(json) => serde_json::from_str(&json)
                    .map_err(|e| StoreError::Corrupt(format!("alternate_chains: {e}")))?,
                None => Vec::new(),
            },
            ari_id: r.field("ari_id")?,
            revoked_at: r.field("revoked_at")?,
            revocation_reason: r.field("revocation_reason")?,
        })
    }
}

impl FromRow for RevokedCertificate {
    fn from_row(r: &impl Fields) -> Result<Self> {
        Ok(RevokedCertificate {
            serial: r.field("serial")?,
            revoked_at: r.field::<Option<i64>>("revoked_at")?.unwrap_or(0),
            reason: r.field::<Option<i64>>("revocation_reason")?.unwrap_or(0),
        })
    }
}

impl Store {
    /// Moves a ready order to `processing` and records the certificate to be
    /// signed (serial, key, names, validity) in the same transaction, so a
    /// crash after this point resumes with the same serial instead of losing
    /// or duplicating the certificate. `Guard` when the order was not ready.
    pub async fn begin_issuance(&self, intent: &CertificateIntent) -> Result<Certificate> {
        let now = now();
        let cert = Certificate {
            id: ordered_id(),
            instance_id: intent.instance_id.clone(),
            account_id: intent.account_id.clone(),
            order_id: intent.order_id.clone(),
            serial: intent.serial.clone(),
            status: CertificateStatus::Signing,
            issuer: intent.issuer.clone(),
            identifiers: intent.identifiers.clone(),
            spki: intent.spki.clone(),
            not_before: intent.not_before,
            not_after: intent.not_after,
            der: None,
            chain_pem: None,
            alternate_chains: Vec::new(),
            ari_id: None,
            revoked_at: None,
            revocation_reason: None,
        };
        self.write_at_once(vec![
            Statement::new(
                "UPDATE orders SET status = 'processing', updated_at = $1 WHERE id = $2 AND status = 'ready' AND expires_at > $1",
                vec![now.into(), (&cert.order_id).into()],
            )
            .guard(),
            Statement::new(
                "INSERT INTO certificates (id, instance_id, account_id, order_id, serial, status, issuer, \
                 identifiers, spki, not_before, not_after, der, chain_pem, ari_id, revoked_at, revocation_reason, created_at) \
                 VALUES ($1, $2, $3, $4, $5, 'signing', $6, $7, $8, $9, $10, NULL, NULL, NULL, NULL, NULL, $11)",
                vec![
                    (&cert.id).into(),
                    (&cert.instance_id).into(),
                    (&cert.account_id).into(),
                    (&cert.order_id).into(),
                    (&cert.serial).into(),
                    cert.issuer.to_string().into(),
                    identifiers_to_json(&cert.identifiers).into(),
                    cert.spki.clone().into(),
                    cert.not_before.into(),
                    cert.not_after.into(),
                    now.into(),
                ],
            ),
        ])
        .await?;
        Ok(cert)
    }

    /// Stores the signed certificate, makes its order valid and appends the
    /// audit event, in one transaction. False when the order had left
    /// `processing` (it stays as it was); `Guard` when the certificate was
    /// stored already.
    pub async fn complete_issuance(
        &self,
        cert: &Certificate,
        der: &[u8],
        chain_pem: &str,
        ari_id: &str,
        event: Option<&Event>,
        now: i64,
    ) -> Result<bool> {
        let cert_id = cert.id.as_str();
        let mut statements = vec![
            Statement::new(
                "UPDATE certificates SET status = 'valid', der = $1, chain_pem = $2, ari_id = $3 \
                 WHERE id = $4 AND status = 'signing'",
                vec![
                    der.to_vec().into(),
                    chain_pem.into(),
                    ari_id.into(),
                    cert_id.into(),
                ],
            )
            .guard(),
            Statement::new(
                "UPDATE orders SET status = 'valid', certificate_id = $1, updated_at = $2 \
                 WHERE id = (SELECT order_id FROM certificates WHERE id = $1) AND status = 'processing'",
                vec![cert_id.into(), now.into()],
            ),
        ];
        statements.extend(event.map(event_statement));
        let changed = self.write_at_once(statements).await?;
        self.finished.chain_issued(
            cert_id,
            CertificateDownload {
                instance_id: cert.instance_id.clone(),
                account_id: cert.account_id.clone(),
                issuer: cert.issuer.clone(),
                chain_pem: Some(chain_pem.to_string()),
                alternate_chains: Vec::new(),
            },
        );
        Ok(changed.get(1) == Some(&1))
    }

    /// An order this process has just made valid, as it wrote it: final, so
    /// [`Store::order`] answers with it from memory for a while (see
    /// [`super::cache`]).
    pub fn order_made_valid(&self, order: &Order) {
        self.finished.order_valid(order);
    }

    /// What downloading certificate `id` of `instance_id` needs; a chain
    /// this process has just issued comes from memory.
    pub async fn certificate_download(
        &self,
        instance_id: &str,
        id: &str,
    ) -> Result<Option<CertificateDownload>> {
        if let Some(download) = self.finished.chain(id) {
            return Ok((download.instance_id == instance_id).then_some(download));
        }
        Ok(self
            .certificate(instance_id, id)
            .await?
            .map(|c| CertificateDownload {
                instance_id: c.instance_id,
                account_id: c.account_id,
                issuer: c.issuer,
                chain_pem: c.chain_pem,
                alternate_chains: c.alternate_chains,
            }))
    }

    /// Ends an issuance the CA could not sign: the certificate intent becomes
    /// `failed` and its order `invalid` with `error` (a problem document), in
    /// one transaction with `event`, so no `signing` row is left for a resume
    /// to take up again. True when this call ended it (false: another worker
    /// finished or failed it first).
    pub async fn fail_issuance(
        &self,
        cert: &Certificate,
        error: &str,
        event: Option<&Event>,
    ) -> Result<bool> {
        let mut statements = vec![
            Statement::new(
                "UPDATE certificates SET status = 'failed' WHERE id = $1 AND status = 'signing'",
                vec![(&cert.id).into()],
            )
            .guard(),
            Statement::new(
                "UPDATE orders SET status = 'invalid', error = $1, updated_at = $2 \
                 WHERE id = $3 AND status = 'processing'",
                vec![error.into(), now().into(), (&cert.order_id).into()],
            ),
        ];
        statements.extend(event.map(event_statement));
        match self.write_at_once(statements).await {
            Ok(_) => Ok(true),
            Err(StoreError::Guard) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Certificates whose signing was recorded before `stale_before` but not
    /// finished, and that no process has taken over since `now`.
    pub async fn unsigned_certificates(
        &self,
        stale_before: i64,
        now: i64,
    ) -> Result<Vec<(Certificate, i64)>> {
        let rows = sqlx::query(
            "SELECT * FROM certificates WHERE status = 'signing' AND created_at < $1 AND lease_until < $2",
        )
        .bind(stale_before)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((Certificate::from_row(r)?, r.field("lease_until")?)))
            .collect()
    }

    /// Takes over signing a certificate until `until`: true for exactly one
    /// of the processes that try with the `lease` they read.
    pub async fn claim_signing(
        &self,
        certificate_id: &str,
        lease: i64,
        until: i64,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE certificates SET lease_until = $1 \
             WHERE id = $2 AND status = 'signing' AND lease_until = $3",
        )
        .bind(until)
        .bind(certificate_id)
        .bind(lease)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// A certificate of the instance (by id alone, as [`Self::order`]).
    pub async fn certificate(&self, instance_id: &str, id: &str) -> Result<Option<Certificate>> {
        let row = self
            .reader
            .fetch_optional(&Statement::new(
                "SELECT * FROM certificates WHERE id = $1",
                vec![id.into()],
            ))
            .await?;
        let cert = row.as_ref().map(Certificate::from_row).transpose()?;
        Ok(cert.filter(|c| c.instance_id == instance_id))
    }

    pub async fn certificate_by_serial(&self, serial: &str) -> Result<Option<Certificate>> {
        let row = self
            .reader
            .fetch_optional(&Statement::new(
                "SELECT * FROM certificates WHERE serial = $1",
                vec![serial.into()],
            ))
            .await?;
        row.as_ref().map(Certificate::from_row).transpose()
    }

    pub async fn certificate_by_ari_id(
        &self,
        instance_id: &str,
        ari_id: &str,
    ) -> Result<Option<Certificate>> {
        let row = sqlx::query("SELECT * FROM certificates WHERE instance_id = $1 AND ari_id = $2")
            .bind(instance_id)
            .bind(ari_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Certificate::from_row).transpose()
    }

    /// Revokes a valid certificate. `Guard` when it was already revoked.
    pub async fn revoke_certificate(&self, id: &str, reason: i64, at: i64) -> Result<()> {
        let r = sqlx::query(
            "UPDATE certificates SET status = 'revoked', revoked_at = $1, revocation_reason = $2 \
             WHERE id = $3 AND status = 'valid'",
        )
        .bind(at)
        .bind(reason)
        .bind(id)
        .execute(&self.pool)
        .await?;
        guard(r.rows_affected())
    }

    /// Every revoked, unexpired certificate of an issuer, for its CRL.
    pub async fn revoked_certificates(
        &self,
        issuer: &CertificateIssuer,
        now: i64,
    ) -> Result<Vec<RevokedCertificate>> {
        let rows = sqlx::query(
            "SELECT serial, revoked_at, revocation_reason FROM certificates \
             WHERE issuer = $1 AND status = 'revoked' AND not_after > $2 ORDER BY revoked_at",
        )
        .bind(issuer.to_string())
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(RevokedCertificate::from_row).collect()
    }

    /// An instance's certificates (issued or revoked), newest first.
    pub async fn certificates_for_instance(
        &self,
        instance_id: &str,
        f: &CertificateFilter,
        now: i64,
    ) -> Result<Vec<Certificate>> {
        let mut sql = String::from(
            "SELECT * FROM certificates WHERE instance_id = $1 AND status IN ('valid', 'revoked')",
        );
        match f.status.as_deref() {
            Some("active") => sql.push_str(" AND status = 'valid' AND not_after > $2"),
            Some("expired") => sql.push_str(" AND status = 'valid' AND not_after <= $2"),
            Some("revoked") => sql.push_str(" AND status = 'revoked' AND $2 = $2"),
            _ => sql.push_str(" AND $2 = $2"),
        }
        if f.expiring_within_days.is_some() {
            sql.push_str(" AND status = 'valid' AND not_after > $2 AND not_after <= $3");
        } else {
            sql.push_str(" AND $3 = $3");
        }
        if f.identifier.is_some() {
            sql.push_str(
                " AND (identifiers LIKE $4 ESCAPE '\\' OR identifiers LIKE $5 ESCAPE '\\')",
            );
        } else {
            sql.push_str(" AND $4 = $5");
        }
        sql.push_str(" ORDER BY created_at DESC, id LIMIT $6 OFFSET $7");
        let (exact, under) = match &f.identifier {
            Some(v) => {
                let v = like_escape(v);
                (format!("%\"value\":\"{v}\"%"), format!("%.{v}\"%"))
            }
            None => (String::new(), String::new()),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(instance_id)
            .bind(now)
            .bind(now + f.expiring_within_days.unwrap_or(0) * 86400)
            .bind(exact)
            .bind(under)
            .bind(f.limit)
            .bind(f.offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Certificate::from_row).collect()
    }

    /// A certificate of the instance by id or by serial (hex).
    pub async fn certificate_by_ref(
        &self,
        instance_id: &str,
        id_or_serial: &str,
    ) -> Result<Option<Certificate>> {
        let rows = sqlx::query(
            "SELECT * FROM certificates WHERE instance_id = $1 AND (id = $2 OR serial = $3)",
        )
        .bind(instance_id)
        .bind(id_or_serial)
        .bind(id_or_serial.to_ascii_lowercase())
        .fetch_all(&self.pool)
        .await?;
        pick_by_id(rows, id_or_serial, |c: &Certificate| &c.id)
    }
}

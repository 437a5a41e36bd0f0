//! The one internal error that travels between the hub's parts (Boulder's
//! `berrors`): a kind and a human detail. Only the front ends turn it into a
//! wire format: `acme/problem.rs` into RFC 8555 problem responses, from the
//! problem document defined at the end of this file (which a failed order
//! or authorization also stores as its `error`).
//! A detail must never contain a secret or a body fetched from a customer host.

use std::fmt;

/// What went wrong, in terms a client can act on. Each kind maps to exactly one
/// RFC 8555 §6.7 error type ([`kind_info`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request was malformed.
    Malformed,
    /// The nonce was missing, unknown or already used.
    BadNonce,
    /// The JWS algorithm is not one we accept.
    BadSignatureAlgorithm,
    /// The account or certificate key is unacceptable (weak, unknown type).
    BadPublicKey,
    /// The CSR is unacceptable.
    BadCsr,
    /// The client lacks authorization for the action or the signature is wrong.
    Unauthorized,
    /// The key identified in the request has no account.
    AccountDoesNotExist,
    /// A contact URL is of a scheme we don't support.
    UnsupportedContact,
    /// A contact URL is invalid.
    InvalidContact,
    /// The server will not issue for this identifier.
    RejectedIdentifier,
    /// The identifier type is not supported.
    UnsupportedIdentifier,
    /// The order is not in a state that allows this request.
    OrderNotReady,
    /// The certificate is already revoked.
    AlreadyRevoked,
    /// The revocation reason is not allowed.
    BadRevocationReason,
    /// Too many requests.
    RateLimited,
    /// An External Account Binding is required.
    ExternalAccountRequired,
    /// A DNS problem during validation.
    Dns,
    /// A connection problem during validation.
    Connection,
    /// A TLS problem during validation.
    Tls,
    /// The response received during validation did not match.
    IncorrectResponse,
    /// CAA records forbid issuance.
    Caa,
    /// The order asks for a profile that is not offered (draft-ietf-acme-profiles).
    InvalidProfile,
    /// The resource does not exist (HTTP 404).
    NotFound,
    /// The request conflicts with the current state (HTTP 409), e.g. keyChange to a used key.
    Conflict,
    /// The request's content type is not supported (HTTP 415).
    UnsupportedMediaType,
    /// The request body is larger than the server accepts (HTTP 413).
    PayloadTooLarge,
    /// Something failed on our side.
    ServerInternal,
}

impl ErrorKind {
    /// A short stable name for logs, metrics and audit events (the RFC 8555
    /// §6.7 name where there is one; the wire type is [`kind_info`]'s).
    pub fn name(self) -> &'static str {
        use ErrorKind::*;
        match self {
            Malformed => "malformed",
            BadNonce => "badNonce",
            BadSignatureAlgorithm => "badSignatureAlgorithm",
            BadPublicKey => "badPublicKey",
            BadCsr => "badCSR",
            Unauthorized => "unauthorized",
            AccountDoesNotExist => "accountDoesNotExist",
            UnsupportedContact => "unsupportedContact",
            InvalidContact => "invalidContact",
            RejectedIdentifier => "rejectedIdentifier",
            UnsupportedIdentifier => "unsupportedIdentifier",
            OrderNotReady => "orderNotReady",
            AlreadyRevoked => "alreadyRevoked",
            BadRevocationReason => "badRevocationReason",
            RateLimited => "rateLimited",
            ExternalAccountRequired => "externalAccountRequired",
            Dns => "dns",
            Connection => "connection",
            Tls => "tls",
            IncorrectResponse => "incorrectResponse",
            Caa => "caa",
            InvalidProfile => "invalidProfile",
            NotFound => "notFound",
            Conflict => "conflict",
            UnsupportedMediaType => "unsupportedMediaType",
            PayloadTooLarge => "payloadTooLarge",
            ServerInternal => "serverInternal",
        }
    }
}

/// A hub error: a kind, a detail for the user, and optional per-identifier
/// subproblems (RFC 8555 §6.7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub detail: String,
    pub subproblems: Vec<Subproblem>,
    /// Seconds the client should wait before trying again (`Retry-After`).
    pub retry_after: Option<u64>,
    /// The request field at fault, for admin API errors (`{"field": ...}`).
    pub field: Option<String>,
}

/// One identifier's own failure inside a compound error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subproblem {
    pub kind: ErrorKind,
    pub detail: String,
    pub identifier: NamedIdentifier,
}

/// An identifier as a problem document names it (RFC 8555 §6.7.1):
/// `{"type": "dns", "value": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NamedIdentifier {
    #[serde(rename = "type")]
    pub type_: String,
    pub value: String,
}

impl Error {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            subproblems: Vec::new(),
            retry_after: None,
            field: None,
        }
    }

    /// A request field is invalid.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::malformed(detail)
        }
    }

    /// Too many requests; try again in `retry_after` seconds.
    pub fn rate_limited(detail: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(ErrorKind::RateLimited, detail)
        }
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Malformed, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, detail)
    }

    /// An internal failure. The cause is logged here; the client gets a
    /// generic detail so internals (paths, SQL) never leak.
    pub fn internal(context: &str, cause: impl fmt::Display) -> Self {
        tracing::error!(context, error = %cause, "internal error");
        Self::new(
            ErrorKind::ServerInternal,
            format!("internal error while {context}"),
        )
    }

    pub fn with_subproblems(mut self, subproblems: Vec<Subproblem>) -> Self {
        self.subproblems = subproblems;
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

// The RFC 8555 §6.7 form of an error: a problem document (RFC 7807). The
// ACME front end sends it (`acme/problem.rs` adds the HTTP side), and an
// order or authorization that failed keeps it as its `error` field.

const PREFIX: &str = "urn:ietf:params:acme:error:";

/// The problem document as sent.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub detail: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub subproblems: Vec<SubproblemDoc>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct SubproblemDoc {
    #[serde(rename = "type")]
    pub type_: String,
    pub detail: String,
    pub identifier: NamedIdentifier,
}

/// The ACME error type name and HTTP status for a kind.
pub fn kind_info(kind: ErrorKind) -> (&'static str, u16) {
    use ErrorKind::*;
    match kind {
        Malformed => ("malformed", 400),
        BadNonce => ("badNonce", 400),
        BadSignatureAlgorithm => ("badSignatureAlgorithm", 400),
        BadPublicKey => ("badPublicKey", 400),
        BadCsr => ("badCSR", 400),
        Unauthorized => ("unauthorized", 403),
        AccountDoesNotExist => ("accountDoesNotExist", 400),
        UnsupportedContact => ("unsupportedContact", 400),
        InvalidContact => ("invalidContact", 400),
        RejectedIdentifier => ("rejectedIdentifier", 400),
        UnsupportedIdentifier => ("unsupportedIdentifier", 400),
        OrderNotReady => ("orderNotReady", 403),
        AlreadyRevoked => ("alreadyRevoked", 400),
        BadRevocationReason => ("badRevocationReason", 400),
        RateLimited => ("rateLimited", 429),
        ExternalAccountRequired => ("externalAccountRequired", 400),
        Dns => ("dns", 400),
        Connection => ("connection", 400),
        Tls => ("tls", 400),
        IncorrectResponse => ("incorrectResponse", 400),
        Caa => ("caa", 403),
        InvalidProfile => ("invalidProfile", 400),
        // RFC 8555 has no type for these; `malformed` is what clients expect.
        NotFound => ("malformed", 404),
        Conflict => ("malformed", 409),
        UnsupportedMediaType => ("malformed", 415),
        PayloadTooLarge => ("malformed", 413),
        ServerInternal => ("serverInternal", 500),
    }
}

impl Problem {
    pub fn from_error(error: &Error) -> Self {
        let (name, status) = kind_info(error.kind);
        // RFC 8555 §6.7.1: several identifiers failing for different reasons is `compound`.
        let type_ = if error.subproblems.len() > 1
            && error.subproblems.iter().any(|s| s.kind != error.kind)
        {
            format!("{PREFIX}compound")
        } else {
            format!("{PREFIX}{name}")
        };
        Self {
            type_,
            detail: error.detail.clone(),
            status,
            subproblems: error
                .subproblems
                .iter()
                .map(|s| SubproblemDoc {
                    type_: format!("{PREFIX}{}", kind_info(s.kind).0),
                    detail: s.detail.clone(),
                    identifier: s.identifier.clone(),
                })
                .collect(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

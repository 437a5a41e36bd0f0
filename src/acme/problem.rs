//! The one place that knows ACME error URNs: hub errors become RFC 8555 §6.7
//! problem documents (`application/problem+json`, RFC 7807) here.

use axum::http::StatusCode;
use serde::Serialize;

use crate::error::{Error, ErrorKind};
use crate::policy::Identifier;

/// The problem document as sent.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub detail: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub subproblems: Vec<SubproblemDoc>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct SubproblemDoc {
    #[serde(rename = "type")]
    pub type_: String,
    pub detail: String,
    pub identifier: Identifier,
}

const PREFIX: &str = "urn:ietf:params:acme:error:";

/// The ACME error type name and HTTP status for a kind.
pub fn kind_info(kind: ErrorKind) -> (&'static str, StatusCode) {
    use ErrorKind::*;
    match kind {
        Malformed => ("malformed", StatusCode::BAD_REQUEST),
        BadNonce => ("badNonce", StatusCode::BAD_REQUEST),
        BadSignatureAlgorithm => ("badSignatureAlgorithm", StatusCode::BAD_REQUEST),
        BadPublicKey => ("badPublicKey", StatusCode::BAD_REQUEST),
        BadCsr => ("badCSR", StatusCode::BAD_REQUEST),
        Unauthorized => ("unauthorized", StatusCode::FORBIDDEN),
        AccountDoesNotExist => ("accountDoesNotExist", StatusCode::BAD_REQUEST),
        UnsupportedContact => ("unsupportedContact", StatusCode::BAD_REQUEST),
        InvalidContact => ("invalidContact", StatusCode::BAD_REQUEST),
        RejectedIdentifier => ("rejectedIdentifier", StatusCode::BAD_REQUEST),
        UnsupportedIdentifier => ("unsupportedIdentifier", StatusCode::BAD_REQUEST),
        OrderNotReady => ("orderNotReady", StatusCode::FORBIDDEN),
        AlreadyRevoked => ("alreadyRevoked", StatusCode::BAD_REQUEST),
        BadRevocationReason => ("badRevocationReason", StatusCode::BAD_REQUEST),
        RateLimited => ("rateLimited", StatusCode::TOO_MANY_REQUESTS),
        ExternalAccountRequired => ("externalAccountRequired", StatusCode::BAD_REQUEST),
        Dns => ("dns", StatusCode::BAD_REQUEST),
        Connection => ("connection", StatusCode::BAD_REQUEST),
        Tls => ("tls", StatusCode::BAD_REQUEST),
        IncorrectResponse => ("incorrectResponse", StatusCode::BAD_REQUEST),
        Caa => ("caa", StatusCode::FORBIDDEN),
        InvalidProfile => ("invalidProfile", StatusCode::BAD_REQUEST),
        // RFC 8555 has no type for these; `malformed` is what clients expect.
        NotFound => ("malformed", StatusCode::NOT_FOUND),
        Conflict => ("malformed", StatusCode::CONFLICT),
        UnsupportedMediaType => ("malformed", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        PayloadTooLarge => ("malformed", StatusCode::PAYLOAD_TOO_LARGE),
        ServerInternal => ("serverInternal", StatusCode::INTERNAL_SERVER_ERROR),
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
            status: status.as_u16(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Subproblem;

    #[test]
    fn kinds_map_to_rfc8555_types() {
        let p = Problem::from_error(&Error::new(ErrorKind::BadNonce, "stale"));
        assert_eq!(p.type_, "urn:ietf:params:acme:error:badNonce");
        assert_eq!(p.status, 400);
        let p = Problem::from_error(&Error::new(ErrorKind::BadCsr, "x"));
        assert_eq!(p.type_, "urn:ietf:params:acme:error:badCSR");
    }

    #[test]
    fn mixed_subproblems_make_a_compound_problem() {
        let id = |n: &str| Identifier::dns(n).unwrap();
        let err = Error::new(ErrorKind::RejectedIdentifier, "two identifiers refused")
            .with_subproblems(vec![
                Subproblem {
                    kind: ErrorKind::RejectedIdentifier,
                    detail: "a".into(),
                    identifier: id("a.example.com"),
                },
                Subproblem {
                    kind: ErrorKind::Caa,
                    detail: "b".into(),
                    identifier: id("b.example.com"),
                },
            ]);
        let p = Problem::from_error(&err);
        assert_eq!(p.type_, "urn:ietf:params:acme:error:compound");
        assert_eq!(p.subproblems[1].type_, "urn:ietf:params:acme:error:caa");
        let json: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
        assert_eq!(json["subproblems"][0]["identifier"]["type"], "dns");
    }
}

//! The ACME front end's error responses: a hub error becomes an RFC 8555
//! §6.7 problem document (`application/problem+json`, RFC 7807) with its
//! HTTP status. The document itself is the error's own form
//! (`error::Problem`); this module is the HTTP side.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{Error, Problem};

/// A hub error on its way to the client as a problem document.
#[derive(Debug)]
pub struct AcmeError(pub Error);

impl From<Error> for AcmeError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl From<crate::store::StoreError> for AcmeError {
    fn from(e: crate::store::StoreError) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for AcmeError {
    fn into_response(self) -> Response {
        let problem = Problem::from_error(&self.0);
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        tracing::debug!(status = problem.status, r#type = %problem.type_, detail = %problem.detail, "ACME problem");
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            problem.to_json(),
        )
            .into_response();
        if let Some(secs) = self.0.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, ErrorKind, Subproblem};
    use crate::policy::Identifier;

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
                    identifier: (&id("a.example.com")).into(),
                },
                Subproblem {
                    kind: ErrorKind::Caa,
                    detail: "b".into(),
                    identifier: (&id("b.example.com")).into(),
                },
            ]);
        let p = Problem::from_error(&err);
        assert_eq!(p.type_, "urn:ietf:params:acme:error:compound");
        assert_eq!(p.subproblems[1].type_, "urn:ietf:params:acme:error:caa");
        let json: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
        assert_eq!(json["subproblems"][0]["identifier"]["type"], "dns");
    }
}

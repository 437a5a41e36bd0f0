//! Customer DNS, written by the hub to answer DNS-01 centrally: the
//! credential kinds of DNS providers ([`providers`]), the stored DNS
//! credentials and zone bindings ([`credentials`]), `_acme-challenge`
//! delegations into the technical zone ([`delegations`]), publishing DNS-01
//! TXT records through a zone binding or into the technical zone
//! ([`publish`]), and seeing them live on the authoritative servers
//! ([`propagation`]). The technical zone itself is `zone/`; the acme-dns and
//! httpreq APIs are `challenge_api`. It must never dial customer hosts for
//! validation (that is `validation/`'s job), and no log line, error or
//! response here ever carries a credential's secret.

pub mod credentials;
pub mod delegations;
pub mod propagation;
pub mod providers;
pub mod publish;

//! DNS that the hub publishes or serves: the credential kinds of DNS
//! providers ([`providers`]), publishing DNS-01 TXT records through a zone
//! binding or into the technical zone ([`publish`]), seeing them live on the
//! authoritative servers ([`propagation`]), the technical zone itself
//! ([`zone`], on the small authoritative server in [`memory`] that tests also
//! use as "the internet's DNS", rate-limited per client by [`ratelimit`]), and the managed-challenge APIs for clients
//! of other CAs ([`managed`]). It must never dial customer hosts for
//! validation (that is `validation/`'s job), and no log line, error or
//! response here ever carries a credential's secret.

pub mod managed;
pub mod memory;
pub mod propagation;
pub mod providers;
pub mod publish;
pub mod ratelimit;
pub mod zone;

//! Who may order what. Owns identifier syntax and the issuance rules applied
//! before any order is stored; never touches the network or the database.

mod identifier;

pub use identifier::{Identifier, IdentifierKind};

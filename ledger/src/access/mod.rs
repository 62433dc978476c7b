//! Access control (specs/access.md): who is asking (authentication: API tokens, sessions
//! the ledger mints, OIDC identity tokens, client certificates) and whether they may (authorization: Cedar
//! policies, deny by default).

pub mod audit;
pub mod authz;
pub mod config;
pub mod governance;
pub mod grants;
pub mod http;
pub mod limits;
pub mod mtls;
pub mod oidc;
pub mod principal;
pub mod session;
pub mod tokens;

//! Who is changing the registry, and whether they may change this artifact.
//!
//! With access control on, the access layer has already allowed the route (say `publish`
//! on the registry); here the registry asks again about the artifact version the body
//! names, with its attributes (kind, stage, sensitivity, publisher), and the acting
//! identity logged in each event is the authenticated principal, never a claim in the
//! body. With access control off, the body's `actor` is logged as given.

use super::api::artifact_attrs;
use super::service::{Registry, RegistryError};
use crate::access::audit::Queued;
use crate::access::authz::{Action, ArtifactAttrs};
use crate::access::http::{ArtifactRefusal, Authorized};
use crate::api_error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use ledger_client::digest::Digest;

/// The caller of a registry write: `None` when access control is off.
pub struct Caller(pub Option<Authorized>);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller(parts.extensions.get::<Authorized>().cloned()))
    }
}

/// Audit records of artifact-level allows, to be durable before the write is answered.
#[derive(Default)]
pub struct Pending(Vec<Queued>);

impl Pending {
    pub async fn durable(self) -> Result<(), ApiError> {
        for q in self.0 {
            q.durable().await.map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "audit_unavailable",
                    format!("the write is logged but its audit record failed: {e}"),
                )
            })?;
        }
        Ok(())
    }
}

impl Caller {
    /// The identity the event records. With access control it is the principal; a body
    /// naming someone else is refused rather than silently corrected.
    pub fn actor(&self, claimed: Option<&str>) -> Result<String, ApiError> {
        match (&self.0, claimed) {
            (Some(a), None) => Ok(a.principal.id.clone()),
            (Some(a), Some(c)) if c == a.principal.id => Ok(c.to_string()),
            (Some(a), Some(c)) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "actor {c:?} is not the authenticated principal {:?}; leave actor out",
                    a.principal.id
                ),
            )),
            (None, Some(c)) => Ok(c.to_string()),
            (None, None) => Err(ApiError::invalid(
                "actor is required (who is making this change)",
            )),
        }
    }

    /// Whether the caller may do `action` to this artifact version (nothing to check
    /// with access control off). Runs under the artifact's lock, on the state the write
    /// builds on. `artifact` is only called with access control on (it may read the
    /// log); the attributes it gave are returned for the write's own governance checks.
    pub fn permit(
        &self,
        action: Action,
        artifact: impl FnOnce() -> Result<ArtifactAttrs, RegistryError>,
        pending: &mut Pending,
    ) -> Result<Option<ArtifactAttrs>, RegistryError> {
        let Some(a) = &self.0 else { return Ok(None) };
        let attrs = artifact()?;
        match a.decide_artifact(action, attrs.clone()) {
            Ok(q) => {
                pending.0.push(q);
                Ok(Some(attrs))
            }
            Err(ArtifactRefusal::Denied(m)) => Err(RegistryError::Forbidden(m)),
            Err(ArtifactRefusal::AuditUnavailable(e)) => Err(RegistryError::Log(e)),
        }
    }

    /// Whether the caller may download the blob `d` (nothing to check with access control
    /// off). Bytes published as artifact versions are checked as `download` on each
    /// version that names them, allowed if any is ([`Authorized::decide_any`]); a
    /// restricted version's bytes thus need a grant. Blobs no version names (metadata
    /// documents, attestation statements, uploads not yet published) were decided by the
    /// route's check on the registry. The record is queued, not waited for: a read.
    pub fn permit_download(&self, r: &Registry, d: &Digest) -> Result<(), RegistryError> {
        let Some(a) = &self.0 else { return Ok(()) };
        let mut candidates = vec![];
        for (name, version) in r.catalog.by_digest(d)? {
            if let Some(v) = r.catalog.version(&name, &version)? {
                candidates.push(artifact_attrs(r, &v, None)?);
            }
        }
        if candidates.is_empty() {
            return Ok(());
        }
        match a.decide_any(Action::Download, candidates) {
            Ok(_queued) => Ok(()),
            Err(ArtifactRefusal::Denied(m)) => Err(RegistryError::Forbidden(m)),
            Err(ArtifactRefusal::AuditUnavailable(e)) => Err(RegistryError::Log(e)),
        }
    }
}

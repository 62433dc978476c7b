//! `/access/v1/grants`: short-lived, logged rights to download one artifact version
//! (specs/access.md, "Grants"). Mounted only with access control on.
//!
//! Making a grant is checked twice like any registry change: `grant` on the registry by
//! the route, then `grant` on the artifact version with its attributes (the shipped
//! policy asks a second factor for restricted ones). The grant takes effect only once its
//! record is durable in the access audit log, and the answer names that record's index,
//! so the grantee and any auditor can prove who granted what, until when.

use super::api::{artifact_attrs, body as json_body, existing_version, version_subject};
use super::service::Registry;
use crate::access::audit::{now_ms, GrantRecord, GrantRevokedRecord, RECORD_VERSION};
use crate::access::authz::Action;
use crate::access::grants::{self, Grant, GrantError};
use crate::access::http::{ArtifactRefusal, Authorized};
use crate::access::tokens::now;
use crate::api_error::ApiError;
use crate::log::LogError;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Grant requests are a few hundred bytes.
const MAX_GRANT_BODY: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGrant {
    /// Who may download.
    principal: String,
    name: String,
    version: String,
    expires_in_seconds: u64,
    reason: String,
}

fn audit_failed(e: LogError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        format!("the access audit log cannot record the grant now: {e}"),
    )
}

fn store_failed(e: GrantError) -> ApiError {
    match e {
        GrantError::Invalid(m) => ApiError::invalid(m),
        GrantError::Store(m) => {
            tracing::error!(error = %m, "grant storage failure");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", m)
        }
    }
}

async fn create(
    State(r): State<Arc<Registry>>,
    Extension(a): Extension<Authorized>,
    headers: HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    if raw.len() > MAX_GRANT_BODY {
        return Err(ApiError::too_large(format!(
            "a grant request is at most {MAX_GRANT_BODY} bytes"
        )));
    }
    let g: NewGrant = json_body(&headers, &raw)?;
    version_subject(&g.name, &g.version)?;
    let guard = a.guard().clone();
    let max = guard.access.grants_config().max_seconds;
    grants::validate(&g.principal, &g.reason, g.expires_in_seconds, max).map_err(store_failed)?;
    // Access to sensitive bytes is given by someone else: a grant to oneself would
    // make the record say nothing about a second person's judgement.
    if g.principal == a.principal.id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{} cannot grant access to itself; another principal allowed to grant must",
                a.principal.id
            ),
        ));
    }
    let v = existing_version(&r.catalog, &g.name, &g.version)?;
    let attrs = artifact_attrs(&r, &v, None)?;
    let artifact = crate::access::authz::artifact_id(&attrs);
    match a.decide_artifact(Action::Grant, attrs) {
        Ok(q) => q.durable().await.map_err(audit_failed)?,
        Err(ArtifactRefusal::Denied(m)) => {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", m))
        }
        Err(ArtifactRefusal::AuditUnavailable(e)) => return Err(audit_failed(e)),
    }
    let start = now();
    let mut grant = Grant {
        id: grants::new_id(),
        principal: g.principal,
        artifact,
        granted_by: a.principal.id.clone(),
        reason: g.reason,
        not_before: start,
        not_after: start + g.expires_in_seconds,
        audit_index: 0,
    };
    let policy_digest = a.policy_digest();
    let record = GrantRecord {
        kind: "grant",
        v: RECORD_VERSION,
        id: &grant.id,
        time_ms: now_ms(),
        granted_by: &grant.granted_by,
        principal: &grant.principal,
        artifact: &grant.artifact,
        not_before: grant.not_before,
        not_after: grant.not_after,
        reason: &grant.reason,
        policy_digest: &policy_digest,
    };
    grant.audit_index = guard
        .audit
        .append_entry(&record)
        .map_err(audit_failed)?
        .logged_at()
        .await
        .map_err(audit_failed)?;
    guard
        .access
        .grants
        .insert(grant.clone())
        .map_err(store_failed)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "grant": grant,
            "audit_log": guard.audit.log.origin,
        })),
    )
        .into_response())
}

/// `?principal=<id>` narrows the list to one grantee.
async fn list(
    Extension(a): Extension<Authorized>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let mut principal = None;
    for (k, v) in form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes()) {
        match &*k {
            "principal" => principal = Some(v.into_owned()),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {:?} (only principal)",
                    other.chars().take(64).collect::<String>()
                )))
            }
        }
    }
    let grants = a.guard().access.grants.list(principal.as_deref(), now());
    Ok(Json(json!({ "grants": grants })).into_response())
}

async fn revoke(
    Extension(a): Extension<Authorized>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let guard = a.guard().clone();
    let Some(g) = guard.access.grants.get(&id, now()) else {
        return Err(ApiError::not_found(format!(
            "no grant {:?} is in force",
            id.chars().take(64).collect::<String>()
        )));
    };
    // Logged before it takes effect, like the grant itself.
    let record = GrantRevokedRecord {
        kind: "grant_revoked",
        v: RECORD_VERSION,
        id: guard.audit.next_id(),
        time_ms: now_ms(),
        by: &a.principal.id,
        grant: &g.id,
    };
    let index = guard
        .audit
        .append_entry(&record)
        .map_err(audit_failed)?
        .logged_at()
        .await
        .map_err(audit_failed)?;
    guard.access.grants.revoke(&g.id).map_err(store_failed)?;
    Ok(Json(json!({"revoked": g.id, "audit_index": index})).into_response())
}

pub fn router<S: Clone + Send + Sync + 'static>(r: Arc<Registry>) -> Router<S> {
    Router::new()
        .route("/access/v1/grants", post(create).get(list))
        .route("/access/v1/grants/{id}", delete(revoke))
        .with_state(r)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_GRANT_BODY))
}

//! `/registry/v1`: publish and change artifact versions (each change one logged event, each
//! answer a receipt), and query the catalog (specs/api.md, "Registry").
//!
//! With access control on, the acting identity each event records is the authenticated
//! principal, and each change is checked against the policy with the artifact's attributes
//! ([`super::caller`]). With it off, the body's `actor` is recorded as given.

use super::caller::{Caller, Pending};
use super::intoto;
use super::service::{Registry, RegistryError, Written};
use super::state::{AliasState, VersionState};
use crate::access::authz::{Action, ArtifactAttrs};
use crate::access::http::Authorized;
use crate::api_error::ApiError;
use crate::http::{b64, note_str, tlog_proof_text, B64List, Query, B64};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::prelude::*;
use ledger_client::digest::Digest;
use ledger_client::event::{
    self, AliasMoved, Approval, ArtifactRef, Attestation, Event, Kind, Lifecycle, Lineage, Link,
    Metadata, MetadataChanged, Published, Signature, Stage, Subject, Target, Tombstone,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use tlog_tiles::Hash;

type Shared = Arc<Registry>;

/// Largest JSON body of a registry write (events are at most 64 KiB once encoded).
const MAX_BODY: usize = 256 * 1024;

pub fn router<S: Clone + Send + Sync + 'static>(r: Shared) -> Router<S> {
    Router::new()
        .route("/registry/v1/publish", post(publish))
        .route("/registry/v1/metadata", post(metadata))
        .route("/registry/v1/lifecycle", post(lifecycle))
        .route("/registry/v1/approve", post(approve))
        .route("/registry/v1/alias", post(alias))
        .route("/registry/v1/lineage", post(lineage))
        .route("/registry/v1/attestation", post(attestation))
        .route("/registry/v1/tombstone", post(tombstone))
        .route("/registry/v1/check", post(check_write))
        .route("/registry/v1/versions", get(versions))
        .route("/registry/v1/version", get(version))
        .route("/registry/v1/aliases", get(aliases))
        .route("/registry/v1/digest/{digest}", get(by_digest))
        .route("/registry/v1/history", get(history))
        .route("/registry/v1/graph", get(graph))
        .route("/registry/v1/entry/{index}", get(entry))
        .route("/registry/v1/status", get(status))
        .with_state(r)
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound(m) => ApiError::not_found(m),
            RegistryError::Invalid(m) => ApiError::invalid(m),
            RegistryError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            RegistryError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
            RegistryError::Log(l) => l.into(),
            RegistryError::Blob(crate::blob::BlobError::NotFound(d)) => ApiError::invalid(format!(
                "no blob {d}: upload it first (POST /v2/<name>/blobs/uploads/)"
            )),
            other => {
                tracing::error!(error = %other, "registry failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage",
                    other.to_string(),
                )
            }
        }
    }
}

/// Parses a JSON body strictly: unknown fields are errors, so a typo never goes unnoticed.
pub(super) fn body<T: DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    raw: &Bytes,
) -> Result<T, ApiError> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "registry writes take Content-Type: application/json",
        ));
    }
    if raw.len() > MAX_BODY {
        return Err(ApiError::too_large(format!(
            "the body exceeds {MAX_BODY} bytes"
        )));
    }
    serde_json::from_slice(raw).map_err(|e| ApiError::bad_request(format!("body: {e}")))
}

fn check(what: &str, r: Result<(), String>) -> Result<(), ApiError> {
    r.map_err(|e| ApiError::invalid(format!("{what}: {e}")))
}

/// The answer to every write: the event and its receipt (index, inclusion proof, signed
/// checkpoint, and all of it as a c2sp.org/tlog-proof file).
#[derive(Serialize)]
struct Receipt<'a> {
    index: u64,
    leaf_hash: B64<'a>,
    tree_size: u64,
    inclusion_proof: B64List<'a>,
    checkpoint: &'a str,
    tlog_proof: String,
    /// The logged entry (deterministic CBOR, specs/entries.md), base64.
    entry: String,
    event: &'a Event,
    /// True when the request changed nothing because the log already says it.
    existing: bool,
}

fn receipt(
    r: &Registry,
    index: u64,
    entry: &[u8],
    event: &Event,
    existing: bool,
) -> Result<Response, ApiError> {
    let snap = r.log.snapshot();
    let (leaf, proof) = r.log.leaf_and_inclusion_proof(&snap, index, snap.size())?;
    let status = if existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let answer = Receipt {
        index,
        leaf_hash: B64(&leaf),
        tree_size: snap.size(),
        inclusion_proof: B64List(&proof),
        checkpoint: note_str(&snap.checkpoint),
        tlog_proof: tlog_proof_text(index, proof.clone(), &snap.checkpoint),
        entry: BASE64_STANDARD.encode(entry),
        event,
        existing,
    };
    Ok((status, Json(answer)).into_response())
}

fn written(r: &Registry, w: Written) -> Result<Response, ApiError> {
    let index = w.receipt.entries[0].index;
    receipt(r, index, &w.entry, &w.event, false)
}

pub(super) fn version_subject(name: &str, version: &str) -> Result<Subject, ApiError> {
    check("name", event::validate_name(name))?;
    check("version", event::validate_version(version))?;
    Ok(Subject::Version {
        name: name.into(),
        version: version.into(),
    })
}

pub(super) fn existing_version(
    c: &super::catalog::Catalog,
    name: &str,
    version: &str,
) -> Result<VersionState, RegistryError> {
    let v = c
        .version(name, version)?
        .ok_or_else(|| RegistryError::NotFound(format!("{name}@{version} is not published")))?;
    if let Some(t) = &v.tombstone {
        return Err(RegistryError::Conflict(format!(
            "{name}@{version} was tombstoned by entry {}: {}",
            t.at.index, t.reason
        )));
    }
    Ok(v)
}

/// Every write about a published, live version: lock its subject, look it up, log the
/// event `build` makes from its state, answer the receipt.
async fn version_write(
    r: &Registry,
    name: &str,
    version: &str,
    (caller, action, target_stage): (&Caller, Action, Option<Stage>),
    build: impl FnOnce(
        &super::catalog::Catalog,
        VersionState,
        Option<&ArtifactAttrs>,
    ) -> Result<Event, RegistryError>,
) -> Result<Response, ApiError> {
    let subject = version_subject(name, version)?;
    let mut pending = Pending::default();
    let w = r
        .write(subject, |c| {
            let v = existing_version(c, name, version)?;
            let attrs =
                caller.permit(action, || artifact_attrs(r, &v, target_stage), &mut pending)?;
            build(c, v, attrs.as_ref())
        })
        .await?;
    pending.durable().await?;
    written(r, w)
}

/// What the policy sees of a published version. The publisher is read from the
/// version's `published` entry: the log, not a cached copy, says who it was.
pub(super) fn artifact_attrs(
    r: &Registry,
    v: &VersionState,
    target_stage: Option<Stage>,
) -> Result<ArtifactAttrs, RegistryError> {
    let (_, entry) = r.entry(v.published.index)?;
    let publisher = match Event::decode(&entry) {
        Ok(Event::Published(p)) => p.actor,
        _ => {
            return Err(RegistryError::Invalid(format!(
                "entry {} is not the publication of {}@{}",
                v.published.index, v.name, v.version
            )))
        }
    };
    Ok(ArtifactAttrs {
        name: v.name.clone(),
        version: v.version.clone(),
        kind: v.kind.as_str().to_string(),
        stage: v.stage.as_str().to_string(),
        sensitivity: sensitivity(v.meta.as_ref()),
        publisher,
        target_stage: target_stage
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
    })
}

/// A refusal by a governance rule (`governance.approvals`, `governance.separation_of_duties`)
/// rather than by the Cedar policy: recorded in the access audit log as a `deny` naming
/// the rule, then returned. The policy's allow for the same request is recorded before it,
/// so the log reads "the policy allowed it, governance refused it".
fn refuse(
    a: &Authorized,
    action: Action,
    artifact: ArtifactAttrs,
    rule: &str,
    e: RegistryError,
) -> RegistryError {
    match a.record_governance_denial(action, artifact, rule, &e.to_string()) {
        Ok(()) => e,
        // Nothing is refused unrecorded either: without the record the answer is 503.
        Err(log) => RegistryError::Log(log),
    }
}

/// The stages `v` may move to next, for messages.
fn successors(v: &VersionState) -> String {
    let next: Vec<&str> = v.stage.successors().iter().map(|s| s.as_str()).collect();
    if next.is_empty() {
        "none".into()
    } else {
        next.join(", ")
    }
}

/// What the policy sees of a version being published: a draft, by its publisher.
fn publication_attrs(
    name: &str,
    version: &str,
    kind: Kind,
    meta: Option<&Metadata>,
    publisher: &str,
) -> ArtifactAttrs {
    ArtifactAttrs {
        name: name.to_string(),
        version: version.to_string(),
        kind: kind.as_str().to_string(),
        stage: Stage::Draft.as_str().to_string(),
        sensitivity: sensitivity(meta),
        publisher: publisher.to_string(),
        target_stage: String::new(),
    }
}

/// The `sensitivity` metadata value policies test, `""` when unset.
fn sensitivity(meta: Option<&Metadata>) -> String {
    meta.and_then(|m| m.get("sensitivity"))
        .cloned()
        .unwrap_or_default()
}

/// 422 unless the blob `d` is stored: events may only name bytes the registry holds.
async fn require_blob(r: &Registry, d: &Digest) -> Result<u64, ApiError> {
    let size = r.blobs.stat(d).await.map_err(RegistryError::from)?;
    Ok(size.ok_or(RegistryError::Blob(crate::blob::BlobError::NotFound(*d)))?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishReq {
    name: String,
    version: String,
    kind: Kind,
    digest: Digest,
    /// Checked against the stored blob when given.
    size: Option<u64>,
    #[serde(default = "octet_stream")]
    media_type: String,
    meta: Option<Metadata>,
    meta_digest: Option<Digest>,
    /// Who makes the change; with access control, the principal (and optional).
    #[serde(default)]
    actor: Option<String>,
    sig: Option<Signature>,
}

fn octet_stream() -> String {
    "application/octet-stream".into()
}

async fn publish(
    State(r): State<Shared>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let q: PublishReq = body(&headers, &raw)?;
    let actor = caller.actor(q.actor.as_deref())?;
    let subject = version_subject(&q.name, &q.version)?;
    let stored = r
        .blobs
        .stat(&q.digest)
        .await
        .map_err(RegistryError::from)?
        .ok_or(RegistryError::Blob(crate::blob::BlobError::NotFound(
            q.digest,
        )))?;
    if q.size.is_some_and(|s| s != stored) {
        return Err(ApiError::invalid(format!(
            "the request says {} bytes but blob {} has {stored}",
            q.size.unwrap_or_default(),
            q.digest
        )));
    }
    if let Some(m) = &q.meta_digest {
        require_blob(&r, m).await?;
    }
    if let Some(a) = &caller.0 {
        a.governance()
            .check_metadata(q.kind, q.meta.as_ref())
            .map_err(ApiError::invalid)?;
    }
    let mut existing = None;
    let mut pending = Pending::default();
    let w = r
        .write(subject, |c| {
            caller.permit(
                Action::Publish,
                || {
                    Ok(publication_attrs(
                        &q.name,
                        &q.version,
                        q.kind,
                        q.meta.as_ref(),
                        &actor,
                    ))
                },
                &mut pending,
            )?;
            if let Some(v) = c.version(&q.name, &q.version)? {
                if v.digest == q.digest {
                    existing = Some(v.published.index);
                    return Err(RegistryError::Conflict(String::new()));
                }
                return Err(RegistryError::Conflict(format!(
                    "{}@{} is bound to {} (entry {}) forever; publish a new version",
                    q.name, q.version, v.digest, v.published.index
                )));
            }
            Ok(Event::Published(Published {
                name: q.name.clone(),
                version: q.version.clone(),
                kind: q.kind,
                digest: q.digest,
                size: stored,
                media_type: q.media_type.clone(),
                meta_digest: q.meta_digest,
                meta: q.meta.clone(),
                actor: actor.clone(),
                sig: q.sig.clone(),
                time: 0,
            }))
        })
        .await;
    pending.durable().await?;
    match (w, existing) {
        // Publishing the same bytes again is idempotent: answer the original receipt.
        (Err(_), Some(index)) => {
            let (_, entry) = r.entry(index)?;
            let ev = Event::decode(&entry).map_err(|e| ApiError::invalid(e.to_string()))?;
            receipt(&r, index, &entry, &ev, true)
        }
        (w, _) => written(&r, w?),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataReq {
    name: String,
    version: String,
    meta: Option<Metadata>,
    meta_digest: Option<Digest>,
    /// Who makes the change; with access control, the principal (and optional).
    #[serde(default)]
    actor: Option<String>,
}

async fn metadata(
    State(r): State<Shared>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let q: MetadataReq = body(&headers, &raw)?;
    let actor = caller.actor(q.actor.as_deref())?;
    version_subject(&q.name, &q.version)?;
    if q.meta.is_none() && q.meta_digest.is_none() {
        return Err(ApiError::invalid("give meta, meta_digest or both"));
    }
    if let Some(m) = &q.meta_digest {
        require_blob(&r, m).await?;
    }
    version_write(
        &r,
        &q.name,
        &q.version,
        (&caller, Action::Annotate, None),
        |_, v, _| {
            // New metadata replaces the old: it must still say what its kind requires.
            if let (Some(a), Some(meta)) = (&caller.0, &q.meta) {
                a.governance()
                    .check_metadata(v.kind, Some(meta))
                    .map_err(RegistryError::Invalid)?;
            }
            Ok(Event::MetadataChanged(MetadataChanged {
                name: q.name.clone(),
                version: q.version.clone(),
                meta_digest: q.meta_digest,
                meta: q.meta.clone(),
                prev: v.head,
                actor: actor.clone(),
                time: 0,
            }))
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LifecycleReq {
    name: String,
    version: String,
    to: Stage,
    reason: Option<String>,
    /// Who makes the change; with access control, the principal (and optional).
    #[serde(default)]
    actor: Option<String>,
}

async fn lifecycle(
    State(r): State<Shared>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let q: LifecycleReq = body(&headers, &raw)?;
    let actor = caller.actor(q.actor.as_deref())?;
    version_subject(&q.name, &q.version)?;
    version_write(
        &r,
        &q.name,
        &q.version,
        (&caller, Action::Transition, Some(q.to)),
        |_, v, attrs| {
            if !v.stage.can_transition_to(q.to) {
                return Err(RegistryError::Conflict(format!(
                    "{}@{} is {}; it cannot move to {} (allowed: {})",
                    q.name,
                    q.version,
                    v.stage,
                    q.to,
                    successors(&v)
                )));
            }
            // A transition with an approval rule needs its quorum now, counted under the
            // artifact's lock from the approvals recorded since the stage was set (the
            // catalog clears them at every transition).
            // `attrs` is there exactly when access control is (Caller::permit).
            if let (Some(a), Some(attrs)) = (&caller.0, attrs) {
                let gov = a.governance();
                if let Some(rule) = gov.rule(q.to) {
                    let attrs = attrs.clone();
                    let subject = format!("{}@{}", q.name, q.version);
                    let publisher = attrs.publisher.clone();
                    if gov.separation_of_duties && publisher == actor {
                        let e = RegistryError::Forbidden(format!(
                            "{actor} published {subject}; separation of duties: its publisher \
                             cannot make a transition that needs approvals \
                             (governance.separation_of_duties)"
                        ));
                        return Err(refuse(
                            a,
                            Action::Transition,
                            attrs,
                            "governance.separation_of_duties",
                            e,
                        ));
                    }
                    let excluded = gov.separation_of_duties.then_some(publisher.as_str());
                    let tally = rule.tally(&v.approvals, excluded, super::service::now());
                    if let Err(m) = rule.met(&tally, &subject) {
                        let e = RegistryError::Conflict(m);
                        return Err(refuse(
                            a,
                            Action::Transition,
                            attrs,
                            "governance.approvals",
                            e,
                        ));
                    }
                }
            }
            Ok(Event::Lifecycle(Lifecycle {
                name: q.name.clone(),
                version: q.version.clone(),
                from: v.stage,
                to: q.to,
                reason: q.reason.clone(),
                prev: v.head,
                actor: actor.clone(),
                time: 0,
            }))
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveReq {
    name: String,
    version: String,
    /// The stage the approval is for: a successor of the version's current stage.
    to: Stage,
    comment: Option<String>,
    /// Who approves; with access control, the principal (and optional).
    #[serde(default)]
    actor: Option<String>,
}

/// Logs one approval of a transition (specs/access.md, "Governance"). With access control
/// on: the policy's `approve` on the artifact, then the governance rules (the approver
/// holds the rule's role; separation of duties). With it off there are no principals and
/// no governance: the approval is recorded as given.
async fn approve(
    State(r): State<Shared>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let q: ApproveReq = body(&headers, &raw)?;
    let actor = caller.actor(q.actor.as_deref())?;
    version_subject(&q.name, &q.version)?;
    if let Some(c) = &q.comment {
        check("comment", event::validate_text(c, event::MAX_COMMENT_BYTES))?;
    }
    version_write(
        &r,
        &q.name,
        &q.version,
        (&caller, Action::Approve, Some(q.to)),
        |_, v, attrs| {
            let subject = format!("{}@{}", q.name, q.version);
            if !v.stage.can_transition_to(q.to) {
                return Err(RegistryError::Conflict(format!(
                    "{subject} is {}, which cannot move to {}; only a transition it can make \
                     next can be approved (allowed: {})",
                    v.stage,
                    q.to,
                    successors(&v)
                )));
            }
            // `attrs` is there exactly when access control is (Caller::permit).
            if let (Some(a), Some(attrs)) = (&caller.0, attrs) {
                let gov = a.governance();
                let attrs = attrs.clone();
                if let Some(rule) = gov.rule(q.to) {
                    if !a.principal.roles.contains(&rule.role) {
                        let e = RegistryError::Forbidden(format!(
                            "{actor} does not hold role {:?}, which approvals of moves to {} \
                             need (governance.approvals)",
                            rule.role, q.to
                        ));
                        return Err(refuse(a, Action::Approve, attrs, "governance.approvals", e));
                    }
                }
                if gov.separation_of_duties && attrs.publisher == actor {
                    let e = RegistryError::Forbidden(format!(
                        "{actor} published {subject}; separation of duties: the publisher of a \
                         version cannot approve it (governance.separation_of_duties)"
                    ));
                    return Err(refuse(
                        a,
                        Action::Approve,
                        attrs,
                        "governance.separation_of_duties",
                        e,
                    ));
                }
            }
            if let Some(earlier) = v
                .approvals
                .iter()
                .find(|x| x.to == q.to && x.at.actor == actor)
            {
                return Err(RegistryError::Conflict(format!(
                    "{actor} already approved moving {subject} to {} (entry {}); each approver \
                     counts once",
                    q.to, earlier.at.index
                )));
            }
            Ok(Event::Approval(Approval {
                name: q.name.clone(),
                version: q.version.clone(),
                to: q.to,
                comment: q.comment.clone(),
                prev: v.head,
                actor: actor.clone(),
                time: 0,
            }))
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasReq {
    name: String,
    alias: String,
    /// The version to point at; null removes the alias.
    version: Option<String>,
    /// Who makes the change; with access control, the principal (and optional).
    #[serde(default)]
    actor: Option<String>,
}

async fn alias(
    State(r): State<Shared>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let q: AliasReq = body(&headers, &raw)?;
    let actor = caller.actor(q.actor.as_deref())?;
    check("name", event::validate_name(&q.name))?;
    check("alias", event::validate_alias(&q.alias))?;
    if let Some(v) = &q.version {
        check("version", event::validate_version(v))?;
    }
    let subject = Subject::Alias {
        name: q.name.clone(),
        alias: q.alias.clone(),
    };
    let mut pending = Pending::default();
    let w = r
        .write(subject, |c| {
            let old = c.alias(&q.name, &q.alias)?;
            // The policy sees the version the alias will point at, or, when it is
            // removed, the one it pointed at.
            let target = match (&q.version, &old) {
                (Some(v), _) => Some(existing_version(c, &q.name, v)?),
                (
                    None,
                    Some(AliasState {
                        version: Some(v), ..
                    }),
                ) => c.version(&q.name, v)?,
                (None, _) => None,
            };
            if let Some(t) = &target {
                caller.permit(Action::Alias, || artifact_attrs(&r, t, None), &mut pending)?;
            }
            if old.as_ref().map(|a| &a.version) == Some(&q.version)
                || (old.is_none() && q.version.is_none())
            {
                return Err(RegistryError::Conflict(format!(
                    "alias {} of {} already points there",
                    q.alias, q.name
                )));
            }
            Ok(Event::AliasMoved(AliasMoved {
                name: q.name.clone(),
                alias: q.alias.clone(),
                to: q.version.clone(),
                prev: old.map(|a| a.head),
                actor: actor.clone(),
                time: 0,
            }))
        })
        .await?;
    pending.durable().await?;
    written(&r, w)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineageReq {
    name: String,
    version: String,
    links: Vec<Link>,
    /// Who makes the change; with access control, the principal (and optional).
    #[serde(default)]
    actor: Option<String>,
}

async fn lineage(
    State(r): State<Shared>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let q: LineageReq = body(&headers, &raw)?;
    let actor = caller.actor(q.actor.as_deref())?;
    version_subject(&q.name, &q.version)?;
    if q.links.is_empty() {
        return Err(ApiError::invalid("links: give at least one"));
    }
    version_write(
        &r,
        &q.name,
        &q.version,
        (&caller, Action::Annotate, None),
        |c, v, _| {
            for l in &q.links {
                if let Target::Artifact(t) = &l.target {
                    let target = c.version(&t.name, &t.version)?.ok_or_else(|| {
                        RegistryError::Invalid(format!(
                            "lineage target {}@{} is not published",
                            t.name, t.version
                        ))
                    })?;
                    if target.digest != t.digest {
                        return Err(RegistryError::Invalid(format!(
                            "lineage target {}@{} has digest {}, not {}",
                            t.name, t.version, target.digest, t.digest
                        )));
                    }
                }
            }
            Ok(Event::Lineage(Lineage {
                name: q.name.clone(),
                version: q.version.clone(),
                links: q.links.clone(),
                prev: v.head,
                actor: actor.clone(),
                time: 0,
            }))
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttestationReq {
    name: String,
    version: String,
    statement: Digest,
    predicate_type: String,
    /// Checked against the blob's framing when given; derived from it otherwise.
    media_type: Option<String>,
    /// Who makes the change; with access control, the principal (and optional).
    #[serde(default)]
    actor: Option<String>,
}

async fn attestation(
    State(r): State<Shared>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let q: AttestationReq = body(&headers, &raw)?;
    let actor = caller.actor(q.actor.as_deref())?;
    version_subject(&q.name, &q.version)?;
    let size = require_blob(&r, &q.statement).await?;
    if size > intoto::MAX_STATEMENT_BYTES {
        return Err(ApiError::invalid(format!(
            "statement {} is {size} bytes; an attestation is at most {} bytes",
            q.statement,
            intoto::MAX_STATEMENT_BYTES
        )));
    }
    let (_, mut body) = r
        .blobs
        .get(&q.statement, None)
        .await
        .map_err(RegistryError::from)?;
    let mut bytes = Vec::with_capacity(size as usize);
    while let Some(chunk) = futures::StreamExt::next(&mut body).await {
        let chunk =
            chunk.map_err(|e| RegistryError::Blob(crate::blob::BlobError::Io(e.to_string())))?;
        bytes.extend_from_slice(&chunk);
    }
    let claims = intoto::parse(&bytes)
        .map_err(|e| ApiError::invalid(format!("statement {}: {e}", q.statement)))?;
    if claims.predicate_type != q.predicate_type {
        return Err(ApiError::invalid(format!(
            "the statement's predicateType is {:?}, not {:?}",
            claims.predicate_type, q.predicate_type
        )));
    }
    let media_type = match &q.media_type {
        Some(m) if m != claims.media_type => {
            return Err(ApiError::invalid(format!(
                "media_type {m:?} does not match the blob, which is {}",
                claims.media_type
            )))
        }
        _ => claims.media_type.to_string(),
    };
    version_write(
        &r,
        &q.name,
        &q.version,
        (&caller, Action::Annotate, None),
        |_, v, _| {
            if !claims.subjects.contains(&v.digest) {
                return Err(RegistryError::Invalid(format!(
                    "the statement is about {}, not about {}@{} ({})",
                    claims
                        .subjects
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    q.name,
                    q.version,
                    v.digest
                )));
            }
            Ok(Event::Attestation(Attestation {
                name: q.name.clone(),
                version: q.version.clone(),
                statement: q.statement,
                predicate_type: q.predicate_type.clone(),
                media_type: media_type.clone(),
                prev: v.head,
                actor: actor.clone(),
                time: 0,
            }))
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TombstoneReq {
    name: String,
    version: String,
    reason: String,
    /// Who makes the change; with access control, the principal (and optional).
    #[serde(default)]
    actor: Option<String>,
}

async fn tombstone(
    State(r): State<Shared>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let q: TombstoneReq = body(&headers, &raw)?;
    let actor = caller.actor(q.actor.as_deref())?;
    let subject = version_subject(&q.name, &q.version)?;
    let mut pending = Pending::default();
    let w = r
        .write(subject, |c| {
            let v = existing_version(c, &q.name, &q.version)?;
            caller.permit(
                Action::Tombstone,
                || artifact_attrs(&r, &v, None),
                &mut pending,
            )?;
            Ok(Event::Tombstone(Tombstone {
                name: q.name.clone(),
                version: q.version.clone(),
                digest: v.digest,
                reason: q.reason.clone(),
                prev: v.head,
                actor: actor.clone(),
                time: 0,
            }))
        })
        .await?;
    pending.durable().await?;
    // The log now says the bytes are gone; purge them unless a live version shares them.
    if let Event::Tombstone(t) = &w.event {
        let mut live = false;
        for (n, v) in r
            .catalog
            .by_digest(&t.digest)
            .map_err(RegistryError::from)?
        {
            if let Some(s) = r.catalog.version(&n, &v).map_err(RegistryError::from)? {
                live |= s.tombstone.is_none();
            }
        }
        if !live {
            r.blobs
                .delete(&t.digest)
                .await
                .map_err(RegistryError::from)?;
        }
    }
    written(&r, w)
}

/// `POST /registry/v1/check`: would this write be allowed, for the caller, now? Nothing is
/// written; for pre-commit hooks and CI gates (`ledgerctl policy check`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckReq {
    /// `publish`, `annotate`, `transition`, `approve`, `alias`, `tombstone` or
    /// `download` (of the version's bytes: a restricted one needs a grant in force).
    action: String,
    name: String,
    version: String,
    /// For `publish`: the kind and metadata of the proposed version.
    kind: Option<Kind>,
    meta: Option<Metadata>,
    /// For `transition` and `approve`: the stage to move to.
    to: Option<Stage>,
}

#[derive(Serialize)]
struct CheckStep {
    check: &'static str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    policies: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

async fn check_write(
    State(r): State<Shared>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let q: CheckReq = body(&headers, &raw)?;
    let action = match Action::from_name(&q.action) {
        Some(
            a @ (Action::Publish
            | Action::Annotate
            | Action::Transition
            | Action::Approve
            | Action::Alias
            | Action::Tombstone
            | Action::Download),
        ) => a,
        _ => {
            return Err(ApiError::invalid(format!(
                "action must be publish, annotate, transition, approve, alias, tombstone or download, not {:?}",
                q.action
            )))
        }
    };
    version_subject(&q.name, &q.version)?;
    if action == Action::Publish && q.kind.is_none() {
        return Err(ApiError::invalid("a publish check needs the kind"));
    }
    if matches!(action, Action::Transition | Action::Approve) && q.to.is_none() {
        return Err(ApiError::invalid(format!(
            "a{} {} check needs to (the stage)",
            if action == Action::Approve { "n" } else { "" },
            action.name()
        )));
    }
    let Some(a) = &caller.0 else {
        return Ok(Json(serde_json::json!({
            "allowed": true,
            "access_control": false,
            "checks": [],
        }))
        .into_response());
    };
    let mut steps = vec![];
    let mut step = |check: &'static str,
                    resource: Option<String>,
                    verdict: anyhow::Result<crate::access::authz::Verdict>| {
        let s = match verdict {
            Ok(v) => CheckStep {
                check,
                allowed: v.allowed,
                resource,
                policies: v.policies,
                reason: None,
            },
            Err(e) => CheckStep {
                check,
                allowed: false,
                resource,
                policies: vec![],
                reason: Some(format!("the policy could not be evaluated: {e:#}")),
            },
        };
        steps.push(s);
    };
    let route = crate::access::authz::Resource::Registry;
    step(
        "route",
        Some(route.describe()),
        a.would_allow(action, &route),
    );
    let existing = r
        .catalog
        .version(&q.name, &q.version)
        .map_err(RegistryError::from)?;
    let mut problems: Vec<String> = vec![];
    let attrs = match (action, &existing) {
        (Action::Publish, Some(v)) => {
            problems.push(format!(
                "{}@{} is already published (entry {}) and bound to {}",
                q.name, q.version, v.published.index, v.digest
            ));
            None
        }
        (Action::Publish, None) => {
            let kind = q.kind.unwrap_or(Kind::Other);
            if let Err(e) = a.governance().check_metadata(kind, q.meta.as_ref()) {
                problems.push(e);
            }
            Some(publication_attrs(
                &q.name,
                &q.version,
                kind,
                q.meta.as_ref(),
                &a.principal.id,
            ))
        }
        (_, None) => {
            problems.push(format!("{}@{} is not published", q.name, q.version));
            None
        }
        (_, Some(v)) => {
            if let Some(t) = &v.tombstone {
                problems.push(format!(
                    "{}@{} was tombstoned by entry {}",
                    q.name, q.version, t.at.index
                ));
            }
            let moving = matches!(action, Action::Transition | Action::Approve);
            if let Some(to) = q.to.filter(|_| moving) {
                if !v.stage.can_transition_to(to) {
                    problems.push(format!(
                        "{}@{} is {}; it cannot move to {to}",
                        q.name, q.version, v.stage
                    ));
                }
            }
            if let (Action::Annotate, Some(meta)) = (action, &q.meta) {
                if let Err(e) = a.governance().check_metadata(v.kind, Some(meta)) {
                    problems.push(e);
                }
            }
            let target = if moving { q.to } else { None };
            Some(artifact_attrs(&r, v, target)?)
        }
    };
    if let Some(attrs) = attrs {
        let res = crate::access::authz::Resource::Artifact(attrs);
        step(
            "artifact",
            Some(res.describe()),
            a.would_allow(action, &res),
        );
    }
    let allowed = problems.is_empty() && steps.iter().all(|s| s.allowed);
    Ok(Json(serde_json::json!({
        "allowed": allowed,
        "access_control": true,
        "principal": a.principal.id,
        "action": action.name(),
        "policy_digest": a.policy_digest(),
        "checks": steps,
        "problems": problems,
    }))
    .into_response())
}

// ---- reads ----

/// How far the catalog has applied the log (it follows it, normally within milliseconds).
async fn status(State(r): State<Shared>) -> Response {
    Json(serde_json::json!({
        "log": r.log.name,
        "tree_size": r.log.snapshot().size(),
        "catalog_applied": r.catalog.applied(),
    }))
    .into_response()
}

fn as_of(q: &Query, r: &Registry) -> Result<Option<u64>, ApiError> {
    let a = q.u64("as_of")?;
    let size = r.log.snapshot().size();
    if let Some(a) = a {
        if a > size {
            return Err(ApiError::invalid(format!(
                "as_of {a} is beyond the log's size {size}"
            )));
        }
    }
    Ok(a)
}

fn required<'a>(q: &'a Query, name: &str) -> Result<&'a str, ApiError> {
    q.0.get(name)
        .map(String::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("{name}= is required")))
}

async fn versions(State(r): State<Shared>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let q = Query::parse(q)?;
    let name = required(&q, "name")?;
    check("name", event::validate_name(name))?;
    let as_of = as_of(&q, &r)?;
    let v = r.versions(name, as_of)?;
    Ok(Json(serde_json::json!({ "name": name, "as_of": as_of, "versions": v })).into_response())
}

async fn version(State(r): State<Shared>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let q = Query::parse(q)?;
    let (name, version) = (required(&q, "name")?, required(&q, "version")?);
    version_subject(name, version)?;
    let as_of = as_of(&q, &r)?;
    let v = r
        .version(name, version, as_of)?
        .ok_or_else(|| ApiError::not_found(format!("{name}@{version} is not published")))?;
    let aliases: Vec<String> = r
        .aliases(name, as_of)?
        .into_iter()
        .filter(|a| a.version.as_deref() == Some(version))
        .map(|a| a.alias)
        .collect();
    Ok(
        Json(serde_json::json!({ "as_of": as_of, "version": v, "aliases": aliases }))
            .into_response(),
    )
}

async fn aliases(State(r): State<Shared>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let q = Query::parse(q)?;
    let name = required(&q, "name")?;
    check("name", event::validate_name(name))?;
    let as_of = as_of(&q, &r)?;
    Ok(Json(
        serde_json::json!({ "name": name, "as_of": as_of, "aliases": r.aliases(name, as_of)? }),
    )
    .into_response())
}

async fn by_digest(State(r): State<Shared>, Path(d): Path<String>) -> Result<Response, ApiError> {
    let d: Digest = d
        .parse()
        .map_err(|e: ledger_client::digest::BadDigest| ApiError::bad_request(e.to_string()))?;
    let found: Vec<_> = r
        .catalog
        .by_digest(&d)
        .map_err(RegistryError::from)?
        .into_iter()
        .map(|(name, version)| serde_json::json!({"name": name, "version": version}))
        .collect();
    Ok(Json(serde_json::json!({ "digest": d, "versions": found })).into_response())
}

#[derive(Serialize)]
struct HistoryItem {
    index: u64,
    leaf_hash: String,
    event: Event,
}

async fn history(State(r): State<Shared>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let q = Query::parse(q)?;
    let name = required(&q, "name")?;
    let subject = match (q.0.get("version"), q.0.get("alias")) {
        (Some(v), None) => version_subject(name, v)?,
        (None, Some(a)) => {
            check("name", event::validate_name(name))?;
            check("alias", event::validate_alias(a))?;
            Subject::Alias {
                name: name.into(),
                alias: a.clone(),
            }
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of version= or alias=",
            ))
        }
    };
    let items: Vec<HistoryItem> = r
        .history(&subject)?
        .into_iter()
        .map(|(index, leaf, event)| HistoryItem {
            index,
            leaf_hash: b64(&leaf),
            event,
        })
        .collect();
    if items.is_empty() {
        return Err(ApiError::not_found(format!("no entries about {subject}")));
    }
    Ok(
        Json(serde_json::json!({ "subject": subject.to_string(), "entries": items }))
            .into_response(),
    )
}

/// Lineage as a graph around one version: `up` follows its links to what it came from,
/// `down` follows links from others to what came from it.
async fn graph(State(r): State<Shared>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let q = Query::parse(q)?;
    let (name, version) = (required(&q, "name")?, required(&q, "version")?);
    version_subject(name, version)?;
    let depth = q.u64("depth")?.unwrap_or(5).min(20);
    const MAX_NODES: usize = 1000;
    let root = r
        .catalog
        .version(name, version)
        .map_err(RegistryError::from)?
        .ok_or_else(|| ApiError::not_found(format!("{name}@{version} is not published")))?;
    let mut nodes: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut edges: BTreeSet<(String, String, String)> = BTreeSet::new();
    let key = |n: &str, v: &str| format!("{n}@{v}");
    let node = |s: &VersionState| serde_json::json!({"name": s.name, "version": s.version, "digest": s.digest, "kind": s.kind, "stage": s.stage, "tombstoned": s.tombstone.is_some()});
    nodes.insert(key(name, version), node(&root));
    let mut queue = VecDeque::from([(root, 0u64)]);
    while let Some((v, d)) = queue.pop_front() {
        if d >= depth || nodes.len() >= MAX_NODES {
            continue;
        }
        let here = key(&v.name, &v.version);
        let mut next = vec![];
        for l in &v.lineage {
            match &l.link.target {
                Target::Artifact(ArtifactRef { name, version, .. }) => {
                    edges.insert((here.clone(), key(name, version), l.link.rel.as_str().into()));
                    next.push((name.clone(), version.clone()));
                }
                Target::Uri(u) => {
                    edges.insert((here.clone(), u.clone(), l.link.rel.as_str().into()));
                }
            }
        }
        let me = Target::Artifact(ArtifactRef {
            name: v.name.clone(),
            version: v.version.clone(),
            digest: v.digest,
        });
        for i in r.catalog.linked_from(&me).map_err(RegistryError::from)? {
            edges.insert((
                key(&i.name, &i.version),
                here.clone(),
                i.rel.as_str().into(),
            ));
            next.push((i.name, i.version));
        }
        for (n, ver) in next {
            if nodes.contains_key(&key(&n, &ver)) {
                continue;
            }
            if let Some(s) = r.catalog.version(&n, &ver).map_err(RegistryError::from)? {
                nodes.insert(key(&n, &ver), node(&s));
                queue.push_back((s, d + 1));
            }
        }
    }
    let edges: Vec<_> = edges
        .into_iter()
        .map(|(from, to, rel)| serde_json::json!({"from": from, "to": to, "rel": rel}))
        .collect();
    Ok(Json(serde_json::json!({
        "root": key(name, version),
        "nodes": nodes.into_values().collect::<Vec<_>>(),
        "edges": edges,
    }))
    .into_response())
}

/// One entry with its decoded event (if it is one), the catalog's verdict and a receipt.
async fn entry(State(r): State<Shared>, Path(index): Path<String>) -> Result<Response, ApiError> {
    let index: u64 = index.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "entry index must be a decimal integer, not {index:?}"
        ))
    })?;
    let (_, entry) = r.entry(index)?;
    let event = Event::decode(&entry);
    let rejection = r.catalog.rejection(index).map_err(RegistryError::from)?;
    let snap = r.log.snapshot();
    let (leaf, proof): (Hash, Vec<Hash>) =
        r.log.leaf_and_inclusion_proof(&snap, index, snap.size())?;
    Ok(Json(serde_json::json!({
        "index": index,
        "entry": BASE64_STANDARD.encode(&entry),
        "leaf_hash": b64(&leaf),
        "event": event.as_ref().ok(),
        "not_an_event": event.as_ref().err().map(|e| e.to_string()),
        "rejected": rejection,
        "tree_size": snap.size(),
        "inclusion_proof": B64List(&proof),
        "checkpoint": note_str(&snap.checkpoint),
        "tlog_proof": tlog_proof_text(index, proof.clone(), &snap.checkpoint),
        "attested": attested_receipt(&r, index)?,
    }))
    .into_response())
}

/// The entry's attested proof (cosigned checkpoint, time-stamp tokens in `extra`) once an
/// attestation covers it; `null` before that or when the ledger attests nothing.
fn attested_receipt(r: &Registry, index: u64) -> Result<serde_json::Value, ApiError> {
    let Some(att) = &r.attest else {
        return Ok(serde_json::Value::Null);
    };
    let Some(a) = att
        .covering(index)
        .map_err(|e| ApiError::from(crate::log::LogError::Store(e)))?
    else {
        return Ok(serde_json::Value::Null);
    };
    let (_, file) = crate::attest::http::tlog_proof(&r.log, index, &a)?;
    let answer = crate::attest::http::AttestationAnswer::new(&a);
    Ok(serde_json::json!({
        "tree_size": a.size,
        "cosigners": answer.cosigners,
        "timestamps": answer.timestamps,
        "tlog_proof": String::from_utf8_lossy(&file),
    }))
}

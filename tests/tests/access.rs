//! Access control end to end (specs/access.md): the real `ledger` with `--access-config`,
//! API tokens created offline and over HTTP, sessions, a CI identity token signed by a
//! configured issuer, and the Cedar decisions the shipped policies make.

use base64::prelude::*;
use ed25519_dalek::{Signer, SigningKey};
use ledger_e2e::{agent, binary, offline_token, request, Ledger, Resp};
use serde_json::json;
use std::path::Path;
use std::process::Command;

fn call(method: &str, url: &str, token: Option<&str>, body: &[u8], ct: &str) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = vec![("content-type", ct)];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    request(&agent(), method, url, &headers, body).unwrap()
}

fn get(url: &str, token: Option<&str>) -> Resp {
    call("GET", url, token, b"", "text/plain")
}

fn add(l: &Ledger, token: Option<&str>, entry: &[u8]) -> Resp {
    call(
        "POST",
        &l.url("/artifacts/add"),
        token,
        entry,
        "application/octet-stream",
    )
}

fn b64url(b: &[u8]) -> String {
    BASE64_URL_SAFE_NO_PAD.encode(b)
}

/// A compact JWS signed with Ed25519 (RFC 8037), built by hand: independent of the
/// `jsonwebtoken` crate the ledger verifies with.
fn jwt(key: &SigningKey, kid: &str, alg: &str, claims: &serde_json::Value) -> String {
    let header = json!({"alg": alg, "kid": kid, "typ": "JWT"});
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(&sig.to_bytes()))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const ISSUER: &str = "https://ci.example.test";

/// A data directory with an admin token, and an access configuration trusting one CI
/// issuer whose tokens from `org/models` are publishers.
fn setup(dir: &Path, ci_key: &SigningKey) -> (std::path::PathBuf, String) {
    let data = dir.join("ledger");
    // Create the database (and the log) first, then stop, then create the admin token.
    drop(Ledger::start(&data, &[]));
    let admin = offline_token(&data, "root", "admin");
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA",
                                "use": "sig", "x": b64url(ci_key.verifying_key().as_bytes())}]});
    std::fs::write(dir.join("ci-jwks.json"), jwks.to_string()).unwrap();
    let config = json!({
        "session_ttl_seconds": 600,
        "oidc": [{
            "issuer": ISSUER, "audience": "ledger", "jwks_file": "ci-jwks.json",
            "attributes": {"repository": "repository", "branch": "ref"},
            "roles": [{"role": "publisher", "claims": {"repository": "org/models"}}]
        }]
    });
    std::fs::write(dir.join("access.json"), config.to_string()).unwrap();
    (data, admin)
}

#[test]
fn without_a_credential_every_route_is_401_and_nothing_leaks_whether_it_exists() {
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::from_bytes(&[9; 32]);
    let (data, _) = setup(dir.path(), &ci);
    let cfg = dir.path().join("access.json");
    let l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    for path in [
        "/artifacts/checkpoint",
        "/no-such-log/checkpoint",
        "/registry/v1/versions?name=x",
        "/metrics",
        "/logs",
        "/nowhere",
    ] {
        let r = get(&l.url(path), None);
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"ledger\"")
        );
        assert_eq!(r.json()["error"]["code"], "unauthenticated");
    }
    assert_eq!(add(&l, None, b"x").status, 401);
    assert_eq!(
        add(&l, Some("ldgr_0000000000000000_AAAA"), b"x").status,
        401
    );
    assert_eq!(add(&l, Some("garbage"), b"x").status, 401);
    let r = call(
        "GET",
        &l.url("/artifacts/checkpoint"),
        None,
        b"",
        "text/plain",
    );
    assert_eq!(r.status, 401);
    // Basic credentials are not accepted.
    let r = request(
        &agent(),
        "GET",
        &l.url("/artifacts/checkpoint"),
        &[("authorization", "Basic cm9vdDpyb290")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    // Liveness stays public.
    assert_eq!(get(&l.url("/healthz"), None).status, 200);
    assert_eq!(get(&l.url("/readyz"), None).status, 200);
}

#[test]
fn roles_decide_what_a_token_may_do_and_revocation_is_immediate() {
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::from_bytes(&[9; 32]);
    let (data, admin) = setup(dir.path(), &ci);
    let cfg = dir.path().join("access.json");
    let l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    let mint = |principal: &str, role: &str| -> (String, String) {
        let r = call(
            "POST",
            &l.url("/access/v1/tokens"),
            Some(&admin),
            json!({"principal": principal, "roles": [role], "expires_in_seconds": 3600})
                .to_string()
                .as_bytes(),
            "application/json",
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let j = r.json();
        (
            j["token"].as_str().unwrap().to_string(),
            j["id"].as_str().unwrap().to_string(),
        )
    };
    let (reader, reader_id) = mint("rita", "reader");
    let (publisher, _) = mint("paul", "publisher");

    // Reader: reads, may not append; a 403 names the action, not whether things exist.
    assert_eq!(
        get(&l.url("/artifacts/checkpoint"), Some(&reader)).status,
        200
    );
    let r = add(&l, Some(&reader), b"from a reader");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("may not append"), "{}", r.text());
    // Authorized to read logs, so an unknown one is now an honest 404.
    assert_eq!(
        get(&l.url("/no-such-log/checkpoint"), Some(&reader)).status,
        404
    );
    // Only admins manage tokens or read metrics.
    assert_eq!(get(&l.url("/access/v1/tokens"), Some(&reader)).status, 403);
    assert_eq!(get(&l.url("/metrics"), Some(&reader)).status, 403);
    assert_eq!(get(&l.url("/metrics"), Some(&admin)).status, 200);

    // Publisher: appends.
    assert_eq!(add(&l, Some(&publisher), b"from a publisher").status, 200);

    // The token list never shows secrets.
    let list = get(&l.url("/access/v1/tokens"), Some(&admin)).text();
    // `ldgr_<16 hex>_<secret>`: the base64url secret may itself hold '_'.
    assert!(!list.contains(&reader[22..]));

    // Revocation takes effect on the next request.
    let r = call(
        "DELETE",
        &l.url(&format!("/access/v1/tokens/{reader_id}")),
        Some(&admin),
        b"",
        "text/plain",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let r = get(&l.url("/artifacts/checkpoint"), Some(&reader));
    assert_eq!(r.status, 401);
    assert!(r.text().contains("revoked"), "{}", r.text());

    // Bad token requests name the problem.
    for body in [
        json!({"principal": "Bad Name", "roles": ["reader"], "expires_in_seconds": 60}),
        json!({"principal": "x", "roles": ["reader"], "expires_in_seconds": 0}),
        json!({"principal": "x", "roles": ["reader"], "expires_in_seconds": 100000000}),
    ] {
        let r = call(
            "POST",
            &l.url("/access/v1/tokens"),
            Some(&admin),
            body.to_string().as_bytes(),
            "application/json",
        );
        assert_eq!(r.status, 422, "{body}: {}", r.text());
    }
    let r = call(
        "POST",
        &l.url("/access/v1/tokens"),
        Some(&admin),
        b"{",
        "application/json",
    );
    assert_eq!(r.status, 400);
}

#[test]
fn a_session_is_short_lived_cannot_renew_itself_and_carries_the_principal() {
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::from_bytes(&[9; 32]);
    let (data, admin) = setup(dir.path(), &ci);
    let cfg = dir.path().join("access.json");
    let l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    let r = call(
        "POST",
        &l.url("/access/v1/session"),
        Some(&admin),
        b"",
        "text/plain",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let session = j["token"].as_str().unwrap().to_string();
    let expires = j["expires"].as_u64().unwrap();
    assert!(expires <= now() + 600 && expires > now() + 500, "{expires}");
    let who = get(&l.url("/access/v1/whoami"), Some(&session)).json();
    assert_eq!(who["principal"]["id"], "root");
    assert_eq!(who["principal"]["method"]["kind"], "session");
    assert_eq!(get(&l.url("/metrics"), Some(&session)).status, 200);
    let r = call(
        "POST",
        &l.url("/access/v1/session"),
        Some(&session),
        b"",
        "text/plain",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    // A tampered session (another signature) is refused.
    let mut parts: Vec<&str> = session.split('.').collect();
    let forged_sig = b64url(&[0u8; 64]);
    parts[2] = &forged_sig;
    assert_eq!(get(&l.url("/metrics"), Some(&parts.join("."))).status, 401);
}

#[test]
fn a_ci_identity_token_is_verified_offline_and_its_claims_become_roles_and_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::from_bytes(&[9; 32]);
    let (data, _) = setup(dir.path(), &ci);
    let cfg = dir.path().join("access.json");
    let l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    let claims = |repo: &str, aud: &str, exp: u64, nbf: u64| {
        json!({"iss": ISSUER, "aud": aud, "sub": format!("repo:{repo}:ref:refs/heads/main"),
               "exp": exp, "nbf": nbf, "iat": now(), "repository": repo,
               "ref": "refs/heads/main", "amr": ["pwd", "mfa"]})
    };
    let good = jwt(
        &ci,
        "k1",
        "EdDSA",
        &claims("org/models", "ledger", now() + 300, now() - 10),
    );
    let who = get(&l.url("/access/v1/whoami"), Some(&good));
    assert_eq!(who.status, 200, "{}", who.text());
    let p = &who.json()["principal"];
    assert_eq!(p["roles"], json!(["publisher"]));
    assert_eq!(p["attributes"]["repository"], "org/models");
    assert_eq!(p["attributes"]["branch"], "refs/heads/main");
    assert_eq!(p["mfa"], true);
    assert_eq!(add(&l, Some(&good), b"built by CI").status, 200);

    // Another repository authenticates but has no role: 403, not 401.
    let fork = jwt(
        &ci,
        "k1",
        "EdDSA",
        &claims("evil/fork", "ledger", now() + 300, now() - 10),
    );
    assert_eq!(add(&l, Some(&fork), b"x").status, 403);

    // Each broken property is a 401.
    let other_key = SigningKey::from_bytes(&[10; 32]);
    for (what, token) in [
        (
            "wrong audience",
            jwt(
                &ci,
                "k1",
                "EdDSA",
                &claims("org/models", "other", now() + 300, now() - 10),
            ),
        ),
        (
            "expired beyond the leeway",
            jwt(
                &ci,
                "k1",
                "EdDSA",
                &claims("org/models", "ledger", now() - 600, now() - 900),
            ),
        ),
        (
            "not yet valid",
            jwt(
                &ci,
                "k1",
                "EdDSA",
                &claims("org/models", "ledger", now() + 3600, now() + 1800),
            ),
        ),
        (
            "unknown key id",
            jwt(
                &ci,
                "k2",
                "EdDSA",
                &claims("org/models", "ledger", now() + 300, now() - 10),
            ),
        ),
        (
            "wrong signer",
            jwt(
                &other_key,
                "k1",
                "EdDSA",
                &claims("org/models", "ledger", now() + 300, now() - 10),
            ),
        ),
        ("alg none", {
            let t = jwt(
                &ci,
                "k1",
                "none",
                &claims("org/models", "ledger", now() + 300, now() - 10),
            );
            let mut p: Vec<&str> = t.split('.').collect();
            p[2] = "";
            p.join(".")
        }),
        (
            "HMAC",
            jwt(
                &ci,
                "k1",
                "HS256",
                &claims("org/models", "ledger", now() + 300, now() - 10),
            ),
        ),
    ] {
        let r = add(&l, Some(&token), b"x");
        assert_eq!(r.status, 401, "{what}: {}", r.text());
    }
    let untrusted =
        json!({"iss": "https://elsewhere", "aud": "ledger", "sub": "x", "exp": now() + 300});
    let r = add(&l, Some(&jwt(&ci, "k1", "EdDSA", &untrusted)), b"x");
    assert_eq!(r.status, 401);
    assert!(r.text().contains("not trusted"), "{}", r.text());
}

#[test]
fn an_invalid_policy_is_refused_at_start_and_on_reload_the_old_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::from_bytes(&[9; 32]);
    let (data, admin) = setup(dir.path(), &ci);
    // A policy file naming an action the schema does not have.
    std::fs::write(
        dir.path().join("bad.cedar"),
        r#"permit (principal, action == Ledger::Action::"fly", resource);"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.json"),
        json!({"policies": "bad.cedar"}).to_string(),
    )
    .unwrap();
    let out = Command::new(binary("ledger"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--access-config"])
        .arg(dir.path().join("bad.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("do not validate"), "{err}");

    // Start with a good custom policy file, then break it and reload.
    let good = ledger::access::authz::DEFAULT_POLICIES;
    std::fs::write(dir.path().join("p.cedar"), good).unwrap();
    std::fs::write(
        dir.path().join("p.json"),
        json!({"policies": "p.cedar"}).to_string(),
    )
    .unwrap();
    let cfg = dir.path().join("p.json");
    let l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    std::fs::write(
        dir.path().join("p.cedar"),
        "permit (principal, action, resource",
    )
    .unwrap();
    let r = call(
        "POST",
        &l.url("/access/v1/policy/reload"),
        Some(&admin),
        b"",
        "text/plain",
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("stays"), "{}", r.text());
    assert_eq!(
        get(&l.url("/metrics"), Some(&admin)).status,
        200,
        "old set in force"
    );
    // A valid change takes effect: admins lose metrics.
    std::fs::write(
        dir.path().join("p.cedar"),
        r#"@id("read-only") permit (principal, action == Ledger::Action::"read", resource);"#,
    )
    .unwrap();
    let r = call(
        "POST",
        &l.url("/access/v1/policy/reload"),
        Some(&admin),
        b"",
        "text/plain",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(&l.url("/metrics"), Some(&admin)).status, 403);
    assert_eq!(
        get(&l.url("/artifacts/checkpoint"), Some(&admin)).status,
        200
    );
}

/// The access audit log as any auditor reads it: its checkpoint (verified with the audit
/// log's own key) and its entries over the tlog-tiles read path, checked to be exactly the
/// tree the checkpoint signs.
fn audit_raw(
    l: &Ledger,
    token: &str,
) -> (ledger_client::checkpoint::VerifiedCheckpoint, Vec<Vec<u8>>) {
    let cp = get(&l.url("/audit/checkpoint"), Some(token));
    assert_eq!(cp.status, 200, "{}", cp.text());
    let verified =
        ledger_client::checkpoint::verify_checkpoint(cp.body.as_slice(), &[l.vkey("audit")], None)
            .expect("the audit checkpoint verifies under the audit log's key");
    let size = verified.size;
    assert!(
        size > 0 && size < 256,
        "one partial bundle holds them: {size}"
    );
    let r = get(
        &l.url(&format!("/audit/tile/entries/000.p/{size}")),
        Some(token),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let entries: Vec<Vec<u8>> = ledger_client::tiles::decode_bundle(&r.body)
        .unwrap()
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    let leaves: Vec<_> = entries
        .iter()
        .map(|e| ledger_client::merkle::leaf_hash(e))
        .collect();
    assert_eq!(
        ledger_client::merkle::root_from_leaves(&leaves),
        verified.root,
        "the audit records are exactly the signed tree"
    );
    (verified, entries)
}

/// The audit log's records, decoded.
fn audit_records(l: &Ledger, token: &str) -> Vec<serde_json::Value> {
    audit_raw(l, token)
        .1
        .iter()
        .flat_map(|e| ledger_e2e::audit_entry_records(e))
        .collect()
}

#[test]
fn every_decision_and_every_policy_in_force_is_in_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::from_bytes(&[9; 32]);
    let (data, admin) = setup(dir.path(), &ci);
    let good = ledger::access::authz::DEFAULT_POLICIES;
    std::fs::write(dir.path().join("p.cedar"), good).unwrap();
    std::fs::write(
        dir.path().join("p.json"),
        json!({"policies": "p.cedar"}).to_string(),
    )
    .unwrap();
    let cfg = dir.path().join("p.json");
    let mut l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    assert_ne!(l.vkey("audit"), l.vkey("artifacts"), "its own key");

    // A 401, a 403 and an allowed write.
    assert_eq!(get(&l.url("/artifacts/checkpoint"), None).status, 401);
    let r = call(
        "POST",
        &l.url("/access/v1/tokens"),
        Some(&admin),
        json!({"principal": "rita", "roles": ["reader"], "expires_in_seconds": 60})
            .to_string()
            .as_bytes(),
        "application/json",
    );
    let reader = r.json()["token"].as_str().unwrap().to_string();
    assert_eq!(add(&l, Some(&reader), b"denied").status, 403);
    assert_eq!(add(&l, Some(&admin), b"acknowledged").status, 200);
    // Nobody writes the audit log over HTTP, admins included.
    let r = call(
        "POST",
        &l.url("/audit/add"),
        Some(&admin),
        b"{\"type\":\"decision\"}",
        "application/octet-stream",
    );
    assert_eq!(r.status, 403, "{}", r.text());

    // The acknowledged write's record survives kill -9.
    l.kill9();
    let l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    let records = audit_records(&l, &admin);
    let digest = ledger::access::authz::policy_digest(ledger::access::authz::DEFAULT_SCHEMA, good);
    let startup = &records[0];
    assert_eq!(startup["type"], "policy");
    assert_eq!(startup["by"], "startup");
    assert_eq!(startup["policy_digest"], digest.as_str());
    assert_eq!(
        startup["policies"], good,
        "the rules themselves are in the log"
    );
    let decision = |method: &str, path: &str| {
        records
            .iter()
            .find(|r| r["type"] == "decision" && r["method"] == method && r["path"] == path)
            .unwrap_or_else(|| panic!("no record of {method} {path} in {records:#?}"))
            .clone()
    };
    let unauth = decision("GET", "/artifacts/checkpoint");
    assert_eq!(unauth["decision"], "unauthenticated");
    assert_eq!(unauth["principal"], serde_json::Value::Null);
    assert!(unauth["source"].as_str().unwrap().starts_with("127.0.0.1:"));
    let adds: Vec<_> = records
        .iter()
        .filter(|r| r["path"] == "/artifacts/add")
        .collect();
    assert_eq!(adds.len(), 2, "{adds:#?}");
    assert_eq!(adds[0]["principal"], "rita");
    assert_eq!(adds[0]["decision"], "deny");
    assert_eq!(adds[0]["action"], "append");
    assert_eq!(adds[0]["resource"], "Ledger::Log::\"artifacts\"");
    assert_eq!(adds[1]["principal"], "root");
    assert_eq!(adds[1]["decision"], "allow");
    assert_eq!(adds[1]["policies"], json!(["admins-admin"]));
    assert_eq!(adds[1]["policy_digest"], digest.as_str());
    let forged = decision("POST", "/audit/add");
    assert_eq!(
        forged["decision"], "allow",
        "the policy allowed it; the log refused it"
    );
    // The restart put the policy in force again.
    assert_eq!(
        records.iter().filter(|r| r["type"] == "policy").count(),
        2,
        "{records:#?}"
    );

    // A reload is logged with who did it, and later decisions name the new digest.
    let narrower = format!("{good}\n@id(\"no-metrics\") forbid (principal, action == Ledger::Action::\"admin\", resource == Ledger::Service::\"ledger\") when {{ context.hour_utc > 24 }};\n");
    std::fs::write(dir.path().join("p.cedar"), &narrower).unwrap();
    let r = call(
        "POST",
        &l.url("/access/v1/policy/reload"),
        Some(&admin),
        b"",
        "text/plain",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let new_digest =
        ledger::access::authz::policy_digest(ledger::access::authz::DEFAULT_SCHEMA, &narrower);
    assert_eq!(r.json()["policy_digest"], new_digest.as_str());
    assert_eq!(get(&l.url("/logs"), Some(&admin)).status, 200);
    // A read's record is queued, not waited for; a write waits for its own, and the pool
    // is first come, first sequenced.
    assert_eq!(add(&l, Some(&admin), b"after the reload").status, 200);
    let records = audit_records(&l, &admin);
    let reload = records.iter().rfind(|r| r["type"] == "policy").unwrap();
    assert_eq!(reload["by"], "root");
    assert_eq!(reload["policy_digest"], new_digest.as_str());
    let logs = records.iter().rfind(|r| r["path"] == "/logs").unwrap();
    assert_eq!(logs["policy_digest"], new_digest.as_str());
}

#[test]
fn a_principal_over_its_rate_gets_429_with_retry_after_and_others_are_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::from_bytes(&[9; 32]);
    let (data, admin) = setup(dir.path(), &ci);
    std::fs::write(
        dir.path().join("slow.json"),
        json!({"limits": {"requests_per_second": 0.01, "burst": 3,
                          "unauthenticated_per_second": 0.01, "unauthenticated_burst": 2}})
        .to_string(),
    )
    .unwrap();
    let cfg = dir.path().join("slow.json");
    let l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    let second = token_over_http(&l, &admin, "sam", "reader");
    // `token_over_http` spent one of admin's three.
    for _ in 0..2 {
        assert_eq!(
            get(&l.url("/artifacts/checkpoint"), Some(&admin)).status,
            200
        );
    }
    let r = get(&l.url("/artifacts/checkpoint"), Some(&admin));
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "rate_limited");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=100).contains(&wait), "{wait}");
    assert_eq!(
        get(&l.url("/artifacts/checkpoint"), Some(&second)).status,
        200
    );

    // Without a valid credential the source address has a small budget of its own.
    assert_eq!(get(&l.url("/artifacts/checkpoint"), None).status, 401);
    assert_eq!(
        get(&l.url("/artifacts/checkpoint"), Some("garbage")).status,
        401
    );
    let r = get(&l.url("/artifacts/checkpoint"), None);
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    // ...which does not touch the budgets of principals.
    assert_eq!(
        get(&l.url("/artifacts/checkpoint"), Some(&second)).status,
        200
    );

    // Nonsense limits stop the server at start, naming the field.
    std::fs::write(
        dir.path().join("zero.json"),
        json!({"limits": {"burst": 0}}).to_string(),
    )
    .unwrap();
    let out = Command::new(binary("ledger"))
        .arg("--data-dir")
        .arg(dir.path().join("other"))
        .args(["--listen", "127.0.0.1:0", "--access-config"])
        .arg(dir.path().join("zero.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("limits.burst"), "{err}");
}

/// An API token made over HTTP by `admin`.
fn token_over_http(l: &Ledger, admin: &str, principal: &str, role: &str) -> String {
    let r = call(
        "POST",
        &l.url("/access/v1/tokens"),
        Some(admin),
        json!({"principal": principal, "roles": [role], "expires_in_seconds": 600})
            .to_string()
            .as_bytes(),
        "application/json",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_string()
}

#[test]
fn beyond_max_concurrent_requests_the_answer_is_503_and_a_held_request_still_completes() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    // No embedded time-stamping authority: the ledger's own requests to it would take the
    // only slot now and then, and the held request below could be the one refused.
    let l = Ledger::start(
        dir.path(),
        &["--max-concurrent-requests", "1", "--no-embedded-tsa"],
    );
    let addr = l
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    // Hold the only slot: an add whose body arrives slowly. It must reach the server
    // while nothing else is in flight (a request racing it could take the slot first and
    // get it refused instead), so nothing is sent for a moment; if the probe still gets
    // through, the held request was not in flight: start over.
    let mut attempt = 0;
    let (mut held, refused) = loop {
        attempt += 1;
        let mut held = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            held,
            "POST /artifacts/add HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: 10\r\nconnection: close\r\n\r\nhalf "
        )
        .unwrap();
        held.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200 * attempt));
        let r = get(&l.url("/artifacts/checkpoint"), None);
        if r.status == 503 || attempt == 20 {
            break (held, r);
        }
    };
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "overloaded");
    assert_eq!(refused.header("retry-after"), Some("1"));
    // The held request completes, and the slot is free again.
    held.write_all(b"done!").unwrap();
    let mut answer = String::new();
    held.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(get(&l.url("/artifacts/checkpoint"), None).status, 200);
}

/// The logged bytes (base64) of the publication of m@1, from the registry's entry endpoint.
fn r_entry(l: &Ledger, token: &str) -> String {
    let v = get(&l.url("/registry/v1/version?name=m&version=1"), Some(token));
    assert_eq!(v.status, 200, "{}", v.text());
    let index = v.json()["version"]["published"]["index"].as_u64().unwrap();
    let e = get(&l.url(&format!("/registry/v1/entry/{index}")), Some(token));
    assert_eq!(e.status, 200, "{}", e.text());
    e.json()["entry"].as_str().unwrap().to_string()
}

fn upload_blob(l: &Ledger, token: &str, bytes: &[u8]) -> String {
    let d = ledger_client::digest::Digest::of(bytes).to_string();
    let r = call(
        "POST",
        &l.url(&format!("/v2/models/x/blobs/uploads/?digest={d}")),
        Some(token),
        bytes,
        "application/octet-stream",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    d
}

fn registry_write(l: &Ledger, token: &str, what: &str, body: serde_json::Value) -> Resp {
    call(
        "POST",
        &l.url(&format!("/registry/v1/{what}")),
        Some(token),
        body.to_string().as_bytes(),
        "application/json",
    )
}

#[test]
fn registry_changes_are_made_as_the_principal_and_checked_against_the_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::from_bytes(&[9; 32]);
    let (data, admin) = setup(dir.path(), &ci);
    // CI identities from org/approvals approve; their tokens carry a second factor.
    let config = json!({
        "oidc": [{
            "issuer": ISSUER, "audience": "ledger", "jwks_file": "ci-jwks.json",
            "attributes": {"repository": "repository"},
            "roles": [{"role": "publisher", "claims": {"repository": "org/models"}},
                      {"role": "approver", "claims": {"repository": "org/approvals"}}]
        }]
    });
    std::fs::write(dir.path().join("gov.json"), config.to_string()).unwrap();
    let cfg = dir.path().join("gov.json");
    let l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    let publisher = token_over_http(&l, &admin, "paul", "publisher");
    let approver = token_over_http(&l, &admin, "anna", "approver");
    let reader = token_over_http(&l, &admin, "rita", "reader");
    let d = upload_blob(&l, &publisher, b"weights");

    // The event records the principal; a body naming someone else is refused.
    let r = registry_write(
        &l,
        &publisher,
        "publish",
        json!({"name": "m", "version": "1", "kind": "model", "digest": d,
               "meta": {"sensitivity": "restricted"}}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["event"]["actor"], "paul", "{}", r.text());
    let r = registry_write(
        &l,
        &publisher,
        "publish",
        json!({"name": "m", "version": "2", "kind": "model", "digest": d, "actor": "mallory"}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("not the authenticated principal"),
        "{}",
        r.text()
    );
    // Events go through the registry only: a raw append of one (here a copy of the
    // publication, as it would be of a forged approval) is refused; opaque entries are not.
    let event = BASE64_STANDARD.decode(r_entry(&l, &publisher)).unwrap();
    let r = add(&l, Some(&publisher), &event);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("registry event"), "{}", r.text());
    assert_eq!(add(&l, Some(&publisher), b"an opaque entry").status, 200);
    // A reader is refused at the route, before the body is read.
    let r = registry_write(
        &l,
        &reader,
        "publish",
        json!({"name": "m", "version": "3", "kind": "model", "digest": d}),
    );
    assert_eq!(r.status, 403, "{}", r.text());

    // Governance: a dataset says its licence and source.
    let r = registry_write(
        &l,
        &publisher,
        "publish",
        json!({"name": "ds", "version": "1", "kind": "dataset", "digest": d,
               "meta": {"license": "CC-BY-4.0"}}),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("missing: source"), "{}", r.text());
    let r = registry_write(
        &l,
        &publisher,
        "publish",
        json!({"name": "ds", "version": "1", "kind": "dataset", "digest": d,
               "meta": {"license": "CC-BY-4.0", "source": "https://data.example/ds"}}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // ...and keeps saying it when its metadata changes.
    let r = registry_write(
        &l,
        &publisher,
        "metadata",
        json!({"name": "ds", "version": "1", "meta": {"license": "CC-BY-4.0"}}),
    );
    assert_eq!(r.status, 422, "{}", r.text());

    // ABAC: the restricted model moves only with a second factor, whoever asks.
    let r = registry_write(
        &l,
        &approver,
        "lifecycle",
        json!({"name": "m", "version": "1", "to": "approved"}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("Ledger::Artifact::\"m@1\""), "{message}");
    let claims = json!({"iss": ISSUER, "aud": "ledger", "sub": "repo:org/approvals",
        "exp": now() + 300, "iat": now(), "repository": "org/approvals", "amr": ["mfa"]});
    let with_mfa = jwt(&ci, "k1", "EdDSA", &claims);
    let r = registry_write(
        &l,
        &with_mfa,
        "lifecycle",
        json!({"name": "m", "version": "1", "to": "approved"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.json()["event"]["actor"],
        format!("{ISSUER}#repo:org/approvals")
    );
    // An unrestricted version moves without one.
    let r = registry_write(
        &l,
        &approver,
        "lifecycle",
        json!({"name": "ds", "version": "1", "to": "approved"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());

    // The artifact-level decisions are in the audit log, naming the artifact.
    assert_eq!(add(&l, Some(&admin), b"flush").status, 200);
    let records = audit_records(&l, &admin);
    let artifact_denial = records
        .iter()
        .find(|r| r["resource"] == "Ledger::Artifact::\"m@1\"" && r["decision"] == "deny")
        .unwrap_or_else(|| panic!("{records:#?}"));
    assert_eq!(artifact_denial["principal"], "anna");
    assert_eq!(artifact_denial["action"], "transition");
    assert_eq!(artifact_denial["policies"], json!(["restricted-needs-mfa"]));
}

/// `ledgerctl` with `LEDGER_TOKEN`: (exit code, stdout, stderr).
fn ledgerctl(token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(binary("ledgerctl"));
    cmd.args(args).env_remove("LEDGER_TOKEN");
    if let Some(t) = token {
        cmd.env("LEDGER_TOKEN", t);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn policy_check_answers_for_the_caller_without_writing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::from_bytes(&[9; 32]);
    let (data, admin) = setup(dir.path(), &ci);
    let cfg = dir.path().join("access.json");
    let l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    let publisher = token_over_http(&l, &admin, "paul", "publisher");
    let approver = token_over_http(&l, &admin, "anna", "approver");
    let reader = token_over_http(&l, &admin, "rita", "reader");
    let d = upload_blob(&l, &publisher, b"weights");
    let r = registry_write(
        &l,
        &publisher,
        "publish",
        json!({"name": "m", "version": "1", "kind": "model", "digest": d,
               "meta": {"sensitivity": "restricted"}}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let size = |l: &Ledger| {
        let cp = get(&l.url("/artifacts/checkpoint"), Some(&admin)).text();
        cp.lines().nth(1).unwrap().to_string()
    };
    let before = size(&l);
    let server = l.url("");
    let server = server.trim_end_matches('/');
    let publish = |extra: &[&str]| {
        let mut a = vec![
            "policy",
            "check",
            "--server",
            server,
            "--action",
            "publish",
            "--name",
            "ds",
            "--version",
            "1",
            "--kind",
            "dataset",
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |token: &str, args: &[String]| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        ledgerctl(Some(token), &a)
    };

    // Governance: refused with the reason, exit 4.
    let (code, _, err) = run(&publisher, &publish(&["--meta", "license=CC-BY-4.0"]));
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("missing: source"), "{err}");
    // Complete metadata: allowed, exit 0, naming the permit.
    let (code, out, err) = run(
        &publisher,
        &publish(&["--meta", "license=CC-BY-4.0", "--meta", "source=s3://d"]),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("allowed") && out.contains("publishers-publish"),
        "{out}"
    );
    // A reader is refused at the route.
    let (code, _, err) = run(
        &reader,
        &publish(&["--meta", "license=x", "--meta", "source=y"]),
    );
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("route") && err.contains("denied"), "{err}");
    // ABAC: the restricted model needs a second factor to move.
    let (code, _, err) = ledgerctl(
        Some(&approver),
        &[
            "policy",
            "check",
            "--server",
            server,
            "--action",
            "transition",
            "--name",
            "m",
            "--version",
            "1",
            "--to",
            "approved",
        ],
    );
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("restricted-needs-mfa"), "{err}");
    // A transition the lifecycle does not allow is a problem too.
    let (code, _, err) = ledgerctl(
        Some(&approver),
        &[
            "policy",
            "check",
            "--server",
            server,
            "--action",
            "transition",
            "--name",
            "m",
            "--version",
            "1",
            "--to",
            "retired",
        ],
    );
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("cannot move to retired"), "{err}");
    // --json carries the decision.
    let (code, out, _) = ledgerctl(
        Some(&approver),
        &[
            "--json",
            "policy",
            "check",
            "--server",
            server,
            "--action",
            "tombstone",
            "--name",
            "m",
            "--version",
            "1",
        ],
    );
    assert_eq!(code, 4);
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(j["ok"], false);
    assert_eq!(j["error"]["kind"], "policy_denied");

    // Bad input, and a missing credential, are input errors (2).
    for (args, what) in [
        (publish(&["--meta", "novalue"]), "KEY=VALUE"),
        (publish(&["--meta", "a=1", "--meta", "a=2"]), "twice"),
        (
            vec![
                "policy".into(),
                "check".into(),
                "--server".into(),
                server.into(),
                "--action".into(),
                "publish".into(),
                "--name".into(),
                "../x".into(),
                "--version".into(),
                "1".into(),
                "--kind".into(),
                "model".into(),
            ],
            "--name",
        ),
    ] {
        let (code, _, err) = run(&publisher, &args);
        assert_eq!(code, 2, "{what}: {err}");
        assert!(err.contains(what), "{what}: {err}");
    }
    let (code, _, err) = ledgerctl(
        None,
        &publish(&[]).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("401") && err.contains("Bearer credential"),
        "{err}"
    );
    let (code, _, err) = run("two words", &publish(&[]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("LEDGER_TOKEN"), "{err}");

    // The endpoint itself names what is wrong with a hostile body.
    for (body, status, what) in [
        (
            json!({"action": "fly", "name": "m", "version": "1"}),
            422,
            "action must be",
        ),
        (
            json!({"action": "publish", "name": "m", "version": "1"}),
            422,
            "needs the kind",
        ),
        (
            json!({"action": "transition", "name": "m", "version": "1"}),
            422,
            "needs to",
        ),
        (
            json!({"action": "publish", "name": "../m", "version": "1", "kind": "model"}),
            422,
            "name",
        ),
        (
            json!({"action": "publish", "name": "m", "version": "1", "kind": "model", "x": 1}),
            400,
            "unknown field",
        ),
    ] {
        let r = registry_write(&l, &publisher, "check", body.clone());
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert!(r.text().contains(what), "{body}: {}", r.text());
    }
    let r = call(
        "POST",
        &l.url("/registry/v1/check"),
        Some(&publisher),
        b"{",
        "application/json",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(size(&l), before, "a check writes nothing to the log");
}

/// Every protected route × every shipped role: allowed exactly where the shipped policies
/// say (specs/access.md), 403 elsewhere; then every decision of the run is found in the
/// audit log, each with an inclusion proof that verifies against the signed audit
/// checkpoint.
#[test]
fn the_authorization_matrix_of_the_shipped_policies_holds_route_by_route() {
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::from_bytes(&[9; 32]);
    let (data, admin) = setup(dir.path(), &ci);
    let cfg = dir.path().join("access.json");
    let l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    // (method, path, body content type, action)
    let routes: &[(&str, &str, &str, &str)] = &[
        ("GET", "/artifacts/checkpoint", "text/plain", "read"),
        (
            "GET",
            "/artifacts/tile/entries/000.p/1",
            "text/plain",
            "read",
        ),
        (
            "GET",
            "/artifacts/proof/consistency?from=0",
            "text/plain",
            "read",
        ),
        ("GET", "/audit/checkpoint", "text/plain", "read"),
        ("GET", "/logs", "text/plain", "read"),
        (
            "POST",
            "/artifacts/add",
            "application/octet-stream",
            "append",
        ),
        ("GET", "/v2/", "text/plain", "download"),
        (
            "POST",
            "/v2/models/x/blobs/uploads/",
            "application/octet-stream",
            "upload",
        ),
        ("GET", "/registry/v1/versions?name=m", "text/plain", "read"),
        (
            "POST",
            "/registry/v1/publish",
            "application/json",
            "publish",
        ),
        (
            "POST",
            "/registry/v1/metadata",
            "application/json",
            "annotate",
        ),
        (
            "POST",
            "/registry/v1/lifecycle",
            "application/json",
            "transition",
        ),
        ("POST", "/registry/v1/alias", "application/json", "alias"),
        (
            "POST",
            "/registry/v1/tombstone",
            "application/json",
            "tombstone",
        ),
        (
            "POST",
            "/registry/v1/approve",
            "application/json",
            "approve",
        ),
        ("POST", "/access/v1/grants", "application/json", "grant"),
        ("GET", "/access/v1/grants", "text/plain", "read"),
        (
            "DELETE",
            "/access/v1/grants/g0000000000000000",
            "text/plain",
            "grant",
        ),
        ("GET", "/metrics", "text/plain", "admin"),
        ("GET", "/access/v1/tokens", "text/plain", "admin"),
        ("POST", "/access/v1/policy/reload", "text/plain", "admin"),
    ];
    let allowed = |role: &str, action: &str| -> bool {
        match role {
            "reader" | "auditor" => matches!(action, "read" | "download"),
            "publisher" => matches!(
                action,
                "read" | "download" | "upload" | "publish" | "annotate" | "append"
            ),
            "approver" => matches!(
                action,
                "read" | "transition" | "alias" | "approve" | "grant"
            ),
            // Tombstones need a second factor, which an API token is not.
            "admin" => action != "tombstone",
            _ => false,
        }
    };
    let mut made = vec![];
    for role in ["reader", "auditor", "publisher", "approver", "admin"] {
        let token = token_over_http(&l, &admin, &format!("{role}-1"), role);
        for (method, path, ct, action) in routes {
            let body: &[u8] = match *ct {
                "application/json" => b"{}",
                "application/octet-stream" if path.ends_with("/add") => b"matrix entry",
                _ => b"",
            };
            let r = call(method, &l.url(path), Some(&token), body, ct);
            let expect = allowed(role, action);
            if expect {
                assert!(
                    r.status != 401 && r.status != 403,
                    "{role} {method} {path}: expected allowed, got {} {}",
                    r.status,
                    r.text()
                );
            } else {
                assert_eq!(r.status, 403, "{role} {method} {path}: {}", r.text());
            }
            made.push((
                format!("{role}-1"),
                *method,
                path.split('?').next().unwrap().to_string(),
                expect,
            ));
        }
    }

    // The audit log: every decision above, each proven included in the signed tree.
    assert_eq!(add(&l, Some(&admin), b"flush").status, 200);
    let (verified, raw) = audit_raw(&l, &admin);
    // (index of the entry holding it, record)
    let records: Vec<(usize, serde_json::Value)> = raw
        .iter()
        .enumerate()
        .flat_map(|(i, e)| {
            ledger_e2e::audit_entry_records(e)
                .into_iter()
                .map(move |r| (i, r))
        })
        .collect();
    for (principal, method, path, expect) in &made {
        let (index, rec) = records
            .iter()
            .map(|(i, r)| (*i, r))
            .find(|(_, r)| {
                r["principal"] == principal.as_str()
                    && r["method"] == *method
                    && r["path"] == path.as_str()
                    && r["resource"] != serde_json::Value::Null
                    && !r["resource"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("Ledger::Artifact")
            })
            .unwrap_or_else(|| panic!("no audit record of {principal} {method} {path}"));
        assert_eq!(
            rec["decision"],
            if *expect { "allow" } else { "deny" },
            "{principal} {method} {path}: {rec}"
        );
        let p = get(
            &l.url(&format!(
                "/audit/proof/inclusion?index={index}&tree_size={}",
                verified.size
            )),
            Some(&admin),
        );
        assert_eq!(p.status, 200, "{}", p.text());
        let proof: Vec<_> = p.json()["inclusion_proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| ledger_client::merkle::hash_from_base64(h.as_str().unwrap()).unwrap())
            .collect();
        let leaf = ledger_client::merkle::leaf_hash(&raw[index]);
        ledger_client::merkle::verify_inclusion(
            &leaf,
            index as u64,
            verified.size,
            &proof,
            &verified.root,
        )
        .unwrap_or_else(|e| panic!("record {index} ({principal} {method} {path}): {e:?}"));
    }
}

/// An API token with several roles, made over HTTP by `admin`.
fn token_with_roles(l: &Ledger, admin: &str, principal: &str, roles: &[&str]) -> String {
    let r = call(
        "POST",
        &l.url("/access/v1/tokens"),
        Some(admin),
        json!({"principal": principal, "roles": roles, "expires_in_seconds": 600})
            .to_string()
            .as_bytes(),
        "application/json",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_string()
}

/// Checks a registry write's receipt offline, as a client would: the checkpoint verifies
/// under the log's key, the entry's leaf is included in it, and the entry is exactly the
/// event the answer describes.
fn verified_receipt(l: &Ledger, r: &Resp) -> (u64, ledger_client::event::Event) {
    assert_eq!(r.status, 201, "{}", r.text());
    ledger_e2e::verified_receipt(l, r)
}

fn approve(l: &Ledger, token: &str, version: &str, to: &str) -> Resp {
    registry_write(
        l,
        token,
        "approve",
        json!({"name": "m", "version": version, "to": to}),
    )
}

fn transition(l: &Ledger, token: &str, version: &str, to: &str) -> Resp {
    registry_write(
        l,
        token,
        "lifecycle",
        json!({"name": "m", "version": version, "to": to}),
    )
}

fn message(r: &Resp) -> String {
    r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_transition_that_needs_approvals_happens_only_once_distinct_approvers_reach_the_quorum() {
    use ledger_client::event::{Event, Stage};
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::from_bytes(&[9; 32]);
    let (data, admin) = setup(dir.path(), &ci);
    // Two approvers within a week to approve; one within a second to release (so that an
    // approval expires within the test: only its expiry is timed, never a success).
    let config = json!({
        "governance": {"approvals": [
            {"to": "approved", "required": 2, "role": "approver", "within_seconds": 604800},
            {"to": "released", "required": 1, "role": "approver", "within_seconds": 1}
        ]}
    });
    std::fs::write(dir.path().join("gov.json"), config.to_string()).unwrap();
    let cfg = dir.path().join("gov.json");
    let l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    // pat may both publish and approve: the policy lets it, separation of duties does not.
    let pat = token_with_roles(&l, &admin, "pat", &["publisher", "approver"]);
    let anna = token_over_http(&l, &admin, "anna", "approver");
    let bob = token_over_http(&l, &admin, "bob", "approver");
    let rita = token_over_http(&l, &admin, "rita", "reader");
    let d = upload_blob(&l, &pat, b"weights v1");
    let r = registry_write(
        &l,
        &pat,
        "publish",
        json!({"name": "m", "version": "1", "kind": "model", "digest": d}),
    );
    let (published_at, _) = verified_receipt(&l, &r);

    // Separation of duties: the publisher cannot approve its own version...
    let r = approve(&l, &pat, "1", "approved");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        message(&r).contains("pat published m@1; separation of duties"),
        "{}",
        r.text()
    );
    // ...a reader cannot approve at all (the policy, at the route)...
    let r = approve(&l, &rita, "1", "approved");
    assert_eq!(r.status, 403, "{}", r.text());
    // ...and an admin, whom the policy lets do anything, does not hold the rule's role.
    let r = approve(&l, &admin, "1", "approved");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        message(&r).contains("root does not hold role \"approver\""),
        "{}",
        r.text()
    );

    // The first approval is a log entry in the version's chain, proved by its receipt.
    let r = registry_write(
        &l,
        &anna,
        "approve",
        json!({"name": "m", "version": "1", "to": "approved", "comment": "eval looks good"}),
    );
    let (first, ev) = verified_receipt(&l, &r);
    let Event::Approval(a) = &ev else {
        panic!("{ev:?}")
    };
    assert_eq!(
        (a.actor.as_str(), a.to, a.comment.as_deref()),
        ("anna", Stage::Approved, Some("eval looks good"))
    );
    assert_eq!(
        a.prev.index, published_at,
        "it names the publication as prev"
    );
    assert_eq!(ev.schema_version(), 2);
    assert_eq!(r.json()["event"]["v"], 2);
    // The same approver twice is one voice, not two.
    let r = approve(&l, &anna, "1", "approved");
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        message(&r).contains("anna already approved"),
        "{}",
        r.text()
    );
    // Only a move the version can make next can be approved.
    let r = approve(&l, &anna, "1", "released");
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        message(&r).contains("cannot move to released"),
        "{}",
        r.text()
    );

    // One of two: the transition is refused, naming what is needed and what counts.
    let r = transition(&l, &anna, "1", "approved");
    assert_eq!(r.status, 409, "{}", r.text());
    let m = message(&r);
    assert!(m.contains("needs 2 approval(s)"), "{m}");
    assert!(
        m.contains(&format!("valid approvals: 1 (anna (entry {first}))")),
        "{m}"
    );
    // The publisher may not make a transition that needs approvals, quorum or not.
    let r = transition(&l, &pat, "1", "approved");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(message(&r).contains("separation of duties"), "{}", r.text());

    // The second, distinct approver meets the quorum.
    let (second, _) = verified_receipt(&l, &approve(&l, &bob, "1", "approved"));
    let v = get(&l.url("/registry/v1/version?name=m&version=1"), Some(&anna)).json();
    let approvals: Vec<(String, u64)> = v["version"]["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["at"]["actor"].as_str().unwrap().to_string(),
                a["at"]["index"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        approvals,
        [("anna".to_string(), first), ("bob".to_string(), second)]
    );
    let (moved_at, ev) = verified_receipt(&l, &transition(&l, &anna, "1", "approved"));
    assert!(matches!(ev, Event::Lifecycle(ref t) if t.to == Stage::Approved));
    // The transition used them up: the next stage starts with none.
    let v = get(&l.url("/registry/v1/version?name=m&version=1"), Some(&anna)).json();
    assert_eq!(v["version"]["stage"], "approved");
    assert!(v["version"].get("approvals").is_none(), "{v}");

    // An approval older than `within_seconds` does not count.
    let (stale, _) = verified_receipt(&l, &approve(&l, &anna, "1", "released"));
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let r = transition(&l, &bob, "1", "released");
    assert_eq!(r.status, 409, "{}", r.text());
    let m = message(&r);
    assert!(m.contains("valid approvals: 0 (none)"), "{m}");
    assert!(m.contains(&format!("anna (entry {stale}): expired")), "{m}");

    // The version's chain holds every approval, in order, each naming the one before.
    let h = get(&l.url("/registry/v1/history?name=m&version=1"), Some(&anna)).json();
    let chain: Vec<(u64, String)> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["event"]["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let kinds = |t: &str| t.to_string();
    assert_eq!(
        chain,
        [
            (published_at, kinds("published")),
            (first, kinds("approval")),
            (second, kinds("approval")),
            (moved_at, kinds("lifecycle")),
            (stale, kinds("approval")),
        ]
    );

    // Every decision is in the audit log: the policy's, and governance's refusals naming
    // the rule that refused.
    assert_eq!(add(&l, Some(&admin), b"flush").status, 200);
    let records = audit_records(&l, &admin);
    let find = |f: &dyn Fn(&serde_json::Value) -> bool| {
        records
            .iter()
            .find(|r| f(r))
            .unwrap_or_else(|| panic!("not in the audit log: {records:#?}"))
            .clone()
    };
    let sod = find(&|r| {
        r["principal"] == "pat"
            && r["action"] == "approve"
            && r["policies"] == json!(["governance.separation_of_duties"])
    });
    assert_eq!(sod["decision"], "deny");
    assert_eq!(sod["resource"], "Ledger::Artifact::\"m@1\"");
    assert!(sod["reason"]
        .as_str()
        .unwrap()
        .contains("separation of duties"));
    let role = find(&|r| {
        r["principal"] == "root"
            && r["action"] == "approve"
            && r["policies"] == json!(["governance.approvals"])
    });
    assert_eq!(role["decision"], "deny");
    let quorum = find(&|r| {
        r["principal"] == "anna"
            && r["action"] == "transition"
            && r["decision"] == "deny"
            && r["policies"] == json!(["governance.approvals"])
    });
    assert!(quorum["reason"].as_str().unwrap().contains("needs 2"));
    let reader = find(&|r| r["principal"] == "rita" && r["action"] == "approve");
    assert_eq!(reader["decision"], "deny");
    assert_eq!(reader["resource"], "Ledger::Registry::\"registry\"");
    let allowed = find(&|r| {
        r["principal"] == "bob"
            && r["action"] == "approve"
            && r["resource"] == "Ledger::Artifact::\"m@1\""
    });
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(allowed["policies"], json!(["approvers-transition"]));
}

#[test]
fn approval_requests_with_hostile_or_malformed_bodies_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::from_bytes(&[9; 32]);
    let (data, admin) = setup(dir.path(), &ci);
    let cfg = dir.path().join("access.json");
    let l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    let publisher = token_over_http(&l, &admin, "paul", "publisher");
    let anna = token_over_http(&l, &admin, "anna", "approver");
    let d = upload_blob(&l, &publisher, b"w");
    let r = registry_write(
        &l,
        &publisher,
        "publish",
        json!({"name": "m", "version": "1", "kind": "model", "digest": d}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let cases: Vec<(serde_json::Value, u16, &str)> = vec![
        (
            json!({"name": "m", "version": "1", "to": "approved", "votes": 9}),
            400,
            "unknown field `votes`",
        ),
        (
            json!({"name": "m", "version": "1", "to": "shipped"}),
            400,
            "unknown variant `shipped`",
        ),
        (
            json!({"name": "m", "version": "1"}),
            400,
            "missing field `to`",
        ),
        (
            json!({"name": "m", "version": "1", "to": "approved",
                   "comment": "fine\u{1b}]0;owned\u{7}"}),
            422,
            "comment: contains control character",
        ),
        (
            json!({"name": "m", "version": "1", "to": "approved", "comment": "x".repeat(1025)}),
            422,
            "comment: 1025 bytes",
        ),
        (
            json!({"name": "m", "version": "1", "to": "approved", "comment": ""}),
            422,
            "comment: empty",
        ),
        (
            json!({"name": "../m", "version": "1", "to": "approved"}),
            422,
            "name",
        ),
        (
            json!({"name": "m", "version": "9", "to": "approved"}),
            404,
            "m@9 is not published",
        ),
        (
            json!({"name": "m", "version": "1", "to": "approved", "actor": "paul"}),
            403,
            "not the authenticated principal",
        ),
        (
            json!({"name": "m", "version": "1", "to": "draft"}),
            409,
            "cannot move to draft",
        ),
    ];
    for (body, status, needle) in cases {
        let r = registry_write(&l, &anna, "approve", body.clone());
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert!(r.text().contains(needle), "{body}: {}", r.text());
    }
    let r = call(
        "POST",
        &l.url("/registry/v1/approve"),
        Some(&anna),
        b"{}",
        "text/plain",
    );
    assert_eq!(r.status, 415, "{}", r.text());
    // Nothing of it reached the version's chain.
    let h = get(&l.url("/registry/v1/history?name=m&version=1"), Some(&anna)).json();
    assert_eq!(h["entries"].as_array().unwrap().len(), 1, "{h}");
}

#[test]
fn without_access_control_approvals_are_logged_as_given_with_no_roles_or_separation_of_duties() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::start(dir.path(), &[]);
    let open = |what: &str, body: serde_json::Value| {
        call(
            "POST",
            &l.url(&format!("/registry/v1/{what}")),
            None,
            body.to_string().as_bytes(),
            "application/json",
        )
    };
    let d = ledger_client::digest::Digest::of(b"w").to_string();
    let r = call(
        "POST",
        &l.url(&format!("/v2/m/blobs/uploads/?digest={d}")),
        None,
        b"w",
        "application/octet-stream",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = open(
        "publish",
        json!({"name": "m", "version": "1", "kind": "model", "digest": d, "actor": "paul"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // No principals: the actor is required and recorded as given, the publisher included.
    let r = open(
        "approve",
        json!({"name": "m", "version": "1", "to": "approved"}),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("actor is required"), "{}", r.text());
    let r = open(
        "approve",
        json!({"name": "m", "version": "1", "to": "approved", "actor": "paul"}),
    );
    let (_, ev) = verified_receipt(&l, &r);
    assert_eq!(ev.actor(), "paul");
    // The catalog's own rule holds whatever the access control: one voice per approver.
    let r = open(
        "approve",
        json!({"name": "m", "version": "1", "to": "approved", "actor": "paul"}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    // No governance without an access configuration: the transition needs no quorum.
    let r = open(
        "lifecycle",
        json!({"name": "m", "version": "1", "to": "approved", "actor": "paul"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
}

fn blob(l: &Ledger, method: &str, token: &str, digest: &str) -> Resp {
    call(
        method,
        &l.url(&format!("/v2/models/m/blobs/{digest}")),
        Some(token),
        b"",
        "text/plain",
    )
}

fn grant(l: &Ledger, token: &str, body: serde_json::Value) -> Resp {
    call(
        "POST",
        &l.url("/access/v1/grants"),
        Some(token),
        body.to_string().as_bytes(),
        "application/json",
    )
}

#[test]
fn a_restricted_models_bytes_are_downloaded_only_under_a_logged_grant_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::from_bytes(&[9; 32]);
    let (data, admin) = setup(dir.path(), &ci);
    let config = json!({
        "oidc": [{
            "issuer": ISSUER, "audience": "ledger", "jwks_file": "ci-jwks.json",
            "attributes": {"repository": "repository"},
            "roles": [{"role": "approver", "claims": {"repository": "org/approvals"}}]
        }],
        "grants": {"max_seconds": 3600}
    });
    std::fs::write(dir.path().join("grants.json"), config.to_string()).unwrap();
    let cfg = dir.path().join("grants.json");
    let args = ["--access-config", cfg.to_str().unwrap()];
    let mut l = Ledger::start(&data, &args);
    let publisher = token_over_http(&l, &admin, "paul", "publisher");
    let approver = token_over_http(&l, &admin, "anna", "approver");
    let reader = token_over_http(&l, &admin, "rita", "reader");
    let steward = jwt(
        &ci,
        "k1",
        "EdDSA",
        &json!({"iss": ISSUER, "aud": "ledger", "sub": "repo:org/approvals",
                "exp": now() + 600, "iat": now(), "repository": "org/approvals", "amr": ["mfa"]}),
    );
    let secret = upload_blob(&l, &publisher, b"restricted weights");
    let open = upload_blob(&l, &publisher, b"open weights");
    for (version, digest, meta) in [
        ("1", &secret, json!({"sensitivity": "restricted"})),
        ("2", &open, json!({"sensitivity": "public"})),
    ] {
        let r = registry_write(
            &l,
            &publisher,
            "publish",
            json!({"name": "m", "version": version, "kind": "model", "digest": digest, "meta": meta}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
    }

    // Without a grant nobody has the restricted bytes, not even their publisher or an
    // admin; the unrestricted version's bytes are there for any reader.
    assert_eq!(blob(&l, "GET", &reader, &open).body, b"open weights");
    for who in [&reader, &publisher, &admin] {
        for method in ["GET", "HEAD"] {
            let r = blob(&l, method, who, &secret);
            assert_eq!(r.status, 403, "{method}: {}", r.text());
        }
    }
    let r = blob(&l, "GET", &reader, &secret);
    assert_eq!(r.json()["errors"][0]["code"], "DENIED");
    let m = r.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        m.contains("rita may not download Ledger::Artifact::\"m@1\"")
            && m.contains("restricted-downloads-need-a-grant"),
        "{m}"
    );

    // Granting a restricted version takes a second factor; readers cannot grant at all,
    // and nobody grants to themselves.
    let ask = |expires: u64| {
        json!({"principal": "rita", "name": "m", "version": "1",
               "expires_in_seconds": expires, "reason": "incident 7: compare outputs"})
    };
    let r = grant(&l, &approver, ask(600));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(message(&r).contains("restricted-needs-mfa"), "{}", r.text());
    assert_eq!(grant(&l, &reader, ask(600)).status, 403);
    let mut to_self = ask(600);
    to_self["principal"] = json!(format!("{ISSUER}#repo:org/approvals"));
    let r = grant(&l, &steward, to_self);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(message(&r).contains("itself"), "{}", r.text());

    // Malformed and hostile grant requests get clear errors and grant nothing.
    let mut bad: Vec<(serde_json::Value, u16, &str)> = vec![
        (ask(0), 422, "1 to 3600 seconds"),
        (ask(3601), 422, "1 to 3600 seconds"),
        (ask(u64::MAX), 422, "1 to 3600 seconds"),
    ];
    for (field, value, status, says) in [
        ("reason", json!(""), 422, "reason is required"),
        ("reason", json!("x\u{1b}[2J"), 422, "printable"),
        ("reason", json!("r".repeat(600)), 422, "at most 512 bytes"),
        ("principal", json!("r ita"), 422, "principal"),
        ("principal", json!(""), 422, "principal"),
        ("version", json!("9"), 404, "is not published"),
        ("version", json!("../1"), 422, "version"),
        ("name", json!("M"), 422, "name"),
        ("expires_in_seconds", json!(-1), 400, "body"),
        ("principal", json!(7), 400, "body"),
        ("until", json!("forever"), 400, "unknown field"),
    ] {
        let mut b = ask(600);
        b[field] = value;
        bad.push((b, status, says));
    }
    for (b, status, says) in bad {
        let r = grant(&l, &steward, b.clone());
        assert_eq!(r.status, status, "{b}: {}", r.text());
        assert!(message(&r).contains(says), "{b}: {}", r.text());
    }
    let r = call(
        "POST",
        &l.url("/access/v1/grants"),
        Some(&steward),
        ask(600).to_string().as_bytes(),
        "text/plain",
    );
    assert_eq!(r.status, 415, "{}", r.text());
    let huge = format!("{{\"reason\": \"{}\"}}", "x".repeat(8000));
    let r = call(
        "POST",
        &l.url("/access/v1/grants"),
        Some(&steward),
        huge.as_bytes(),
        "application/json",
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(
        get(&l.url("/access/v1/grants"), Some(&admin)).json()["grants"],
        json!([])
    );

    // A CI gate can ask first: `ledgerctl policy check --action download` says no (exit 4)
    // and names the rule, until a grant is in force.
    let check = || {
        ledgerctl(
            Some(&reader),
            &[
                "policy",
                "check",
                "--server",
                &l.url(""),
                "--action",
                "download",
                "--name",
                "m",
                "--version",
                "1",
            ],
        )
    };
    let (code, out, err) = check();
    assert_eq!(code, 4, "{out}{err}");
    assert!(
        format!("{out}{err}").contains("restricted-downloads-need-a-grant"),
        "{out}{err}"
    );

    // A grant by someone allowed to give it: rita, and only rita, has the bytes.
    let r = grant(&l, &steward, ask(600));
    assert_eq!(r.status, 201, "{}", r.text());
    let g = r.json()["grant"].clone();
    assert_eq!(g["principal"], "rita");
    assert_eq!(g["artifact"], "m@1");
    assert_eq!(g["granted_by"], format!("{ISSUER}#repo:org/approvals"));
    assert_eq!(
        g["not_after"].as_u64().unwrap(),
        g["not_before"].as_u64().unwrap() + 600
    );
    let id = g["id"].as_str().unwrap().to_string();
    let r = blob(&l, "GET", &reader, &secret);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"restricted weights");
    assert_eq!(blob(&l, "GET", &publisher, &secret).status, 403);
    let (code, out, err) = check();
    assert_eq!(code, 0, "{out}{err}");
    let me = get(&l.url("/access/v1/whoami"), Some(&reader)).json();
    assert_eq!(me["grants"][0]["id"], id.as_str(), "{me}");
    assert_eq!(
        get(&l.url("/access/v1/whoami"), Some(&publisher)).json()["grants"],
        json!([])
    );

    // The grant is an entry of the audit log, at the index the answer gave, inside the
    // signed tree; so are the refused and the allowed downloads.
    assert_eq!(add(&l, Some(&admin), b"flush").status, 200);
    let (_, entries) = audit_raw(&l, &admin);
    let at = g["audit_index"].as_u64().unwrap() as usize;
    let logged: serde_json::Value = serde_json::from_slice(&entries[at]).unwrap();
    assert_eq!(logged["type"], "grant");
    assert_eq!(logged["id"], id.as_str());
    assert_eq!(logged["principal"], "rita");
    assert_eq!(logged["artifact"], "m@1");
    assert_eq!(logged["granted_by"], g["granted_by"]);
    assert_eq!(logged["not_after"], g["not_after"]);
    assert_eq!(logged["reason"], "incident 7: compare outputs");
    let records = audit_records(&l, &admin);
    let downloads: Vec<&str> = records
        .iter()
        .filter(|r| {
            r["principal"] == "rita"
                && r["action"] == "download"
                && r["resource"] == "Ledger::Artifact::\"m@1\""
        })
        .map(|r| r["decision"].as_str().unwrap())
        .collect();
    // GET, HEAD and GET again refused, then the download under the grant.
    assert_eq!(downloads, ["deny", "deny", "deny", "allow"], "{records:#?}");

    // Revocation is logged and immediate; revoking again finds nothing.
    let revoke = |token: &str, id: &str| {
        call(
            "DELETE",
            &l.url(&format!("/access/v1/grants/{id}")),
            Some(token),
            b"",
            "text/plain",
        )
    };
    assert_eq!(revoke(&reader, &id).status, 403);
    let r = revoke(&approver, &id);
    assert_eq!(r.status, 200, "{}", r.text());
    let revoked_at = r.json()["audit_index"].as_u64().unwrap() as usize;
    assert_eq!(blob(&l, "GET", &reader, &secret).status, 403);
    assert_eq!(revoke(&approver, &id).status, 404);
    assert_eq!(revoke(&approver, "g%00%22x").status, 404);
    assert_eq!(add(&l, Some(&admin), b"flush").status, 200);
    let (_, entries) = audit_raw(&l, &admin);
    let logged: serde_json::Value = serde_json::from_slice(&entries[revoked_at]).unwrap();
    assert_eq!(logged["type"], "grant_revoked");
    assert_eq!(logged["grant"], id.as_str());
    assert_eq!(logged["by"], "anna");

    // A grant ends at its `not_after` with no one doing anything.
    let r = grant(&l, &steward, ask(1));
    assert_eq!(r.status, 201, "{}", r.text());
    let until = r.json()["grant"]["not_after"].as_u64().unwrap();
    while now() < until {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(blob(&l, "GET", &reader, &secret).status, 403);

    // A grant in force survives a restart.
    let r = grant(&l, &steward, ask(3600));
    assert_eq!(r.status, 201, "{}", r.text());
    drop(l);
    l = Ledger::start(&data, &args);
    assert_eq!(blob(&l, "GET", &reader, &secret).status, 200);
    assert_eq!(
        get(&l.url("/access/v1/grants"), Some(&admin)).json()["grants"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

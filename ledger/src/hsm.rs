//! Checkpoint keys behind PKCS#11 (an HSM; SoftHSM2 in the tests): an Ed25519 key that
//! never leaves its token signs every checkpoint with CKM_EDDSA.
//!
//! One logged-in session per key signs one checkpoint per batch under a mutex. A session the
//! token dropped (restarted HSM, network HSM failover) is reopened once per signature; any
//! other failure, and a signature that does not verify under the key's public key, is an
//! error for that batch only.

use crate::keys;
use anyhow::{bail, Context, Result};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// CKA_EC_PARAMS of Ed25519: the DER OID id-Ed25519 (1.3.101.112, RFC 8410)...
const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// ...or the curve name as a PrintableString (PKCS#11 3.0; what `pkcs11-tool` writes).
const ED25519_NAME: &[u8] = b"\x13\x0cedwards25519";
/// A PIN file longer than this is not a PIN.
const MAX_PIN_FILE: u64 = 1024;
/// Signed once when a key is opened: proves the private key pairs with its public key.
const SELF_TEST: &[u8] = b"ledger PKCS#11 self-test: not a checkpoint\n";

/// Where the token is and how to log in to it.
#[derive(Debug, Clone)]
pub struct HsmConfig {
    /// The PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// The token's label (CKA_LABEL of the token, at most 32 bytes).
    pub token: String,
    /// File holding the user PIN; mode 0600 or stricter.
    pub pin_file: PathBuf,
}

/// Reads a user PIN: one line, refusing a file that group or others can read.
pub fn read_pin_file(path: &Path) -> Result<AuthPin> {
    read_pin(path).map(AuthPin::from)
}

fn read_pin(path: &Path) -> Result<String> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("reading PIN file {}", path.display()))?;
    if !meta.is_file() || meta.len() > MAX_PIN_FILE {
        bail!(
            "PIN file {} is not a regular file of at most {MAX_PIN_FILE} bytes",
            path.display()
        );
    }
    let text = keys::read_private(path, "PIN file").map_err(|e| {
        // Its own messages name the file; an I/O error (say, not UTF-8) may not.
        if e.to_string().contains(&path.display().to_string()) {
            e
        } else {
            e.context(format!("PIN file {}", path.display()))
        }
    })?;
    let pin = text
        .strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(&text);
    if pin.is_empty() {
        bail!("PIN file {} is empty", path.display());
    }
    if pin.contains(['\n', '\r', '\0']) {
        bail!(
            "PIN file {} must hold the PIN on a single line",
            path.display()
        );
    }
    Ok(pin.to_string())
}

/// An initialised module with the token found and the PIN checked; shared by every key on
/// the token.
pub struct Token {
    ctx: Pkcs11,
    slot: Slot,
    label: String,
    pin: AuthPin,
}

impl Token {
    pub fn open(config: &HsmConfig) -> Result<Arc<Token>> {
        let label = config.token.as_str();
        if label.is_empty() || label.len() > 32 {
            bail!("token label {label:?} must be 1 to 32 bytes");
        }
        let pin = read_pin_file(&config.pin_file)?;
        let module = &config.module;
        if !module.exists() {
            bail!("PKCS#11 module {} does not exist", module.display());
        }
        let ctx = Pkcs11::new(module)
            .with_context(|| format!("loading PKCS#11 module {}", module.display()))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("initialising {}", module.display()));
            }
        }
        let mut found = vec![];
        let mut labels = vec![];
        for slot in ctx
            .get_slots_with_token()
            .context("listing PKCS#11 slots")?
        {
            let Ok(info) = ctx.get_token_info(slot) else {
                continue;
            };
            let l = info.label().trim_end().to_string();
            if l == label {
                found.push(slot);
            }
            labels.push(l);
        }
        let slot = match found.as_slice() {
            [slot] => *slot,
            [] => bail!(
                "no PKCS#11 token labelled {label:?} in {} (tokens: {})",
                module.display(),
                if labels.is_empty() {
                    "none".to_string()
                } else {
                    format!("{labels:?}")
                }
            ),
            _ => bail!(
                "{} PKCS#11 tokens are labelled {label:?}; the label must pick one",
                found.len()
            ),
        };
        let token = Token {
            ctx,
            slot,
            label: label.to_string(),
            pin,
        };
        // Log in once now, so a wrong PIN stops the server before it serves anything.
        drop(
            token
                .session(false)
                .map_err(|e| e.context(format!("PIN file {}", config.pin_file.display())))?,
        );
        Ok(Arc::new(token))
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// A new session logged in as the user. Login is per application and token in PKCS#11,
    /// so a token already logged in through another session is fine.
    fn session(&self, read_write: bool) -> Result<Session> {
        let s = if read_write {
            self.ctx.open_rw_session(self.slot)
        } else {
            self.ctx.open_ro_session(self.slot)
        }
        .with_context(|| format!("opening a session on token {:?}", self.label))?;
        match s.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(s),
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                bail!("wrong PIN for token {:?}", self.label)
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                bail!("the user PIN of token {:?} is locked", self.label)
            }
            Err(e) => Err(e).with_context(|| format!("logging in to token {:?}", self.label)),
        }
    }

    /// Creates an Ed25519 key pair labelled `label` that only signs and never leaves the
    /// token; returns its public key. Refuses a label already in use.
    pub fn generate_ed25519(&self, label: &str) -> Result<VerifyingKey> {
        check_key_label(label)?;
        let s = self.session(true)?;
        let existing = s
            .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
            .context("searching the token")?;
        if !existing.is_empty() {
            bail!(
                "token {:?} already holds {} object(s) labelled {label:?}; pick another label",
                self.label,
                existing.len()
            );
        }
        let mut id = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
        let common = [
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        let public: Vec<Attribute> = common
            .iter()
            .cloned()
            .chain([
                Attribute::EcParams(ED25519_OID.to_vec()),
                Attribute::Verify(true),
                Attribute::Private(false),
            ])
            .collect();
        let private: Vec<Attribute> = common
            .iter()
            .cloned()
            .chain([
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::Decrypt(false),
                Attribute::Derive(false),
                Attribute::Unwrap(false),
            ])
            .collect();
        let (pub_h, _) = s
            .generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public, &private)
            .with_context(|| {
                format!(
                    "generating an Ed25519 key pair on token {:?} (does the module support CKM_EC_EDWARDS_KEY_PAIR_GEN?)",
                    self.label
                )
            })?;
        read_public_key(&s, pub_h, label)
    }
}

/// Key labels are shown in messages and typed on command lines: printable, no spaces at
/// the ends, at most 128 bytes.
pub fn check_key_label(label: &str) -> Result<()> {
    if label.is_empty()
        || label.len() > 128
        || label.trim() != label
        || label.chars().any(|c| c.is_control())
    {
        bail!("key label {label:?} must be 1 to 128 printable bytes without surrounding spaces");
    }
    Ok(())
}

/// The 32-byte Ed25519 public key in a CKA_EC_POINT: a DER OCTET STRING around the point
/// (PKCS#11 2.40 and SoftHSM2) or the raw point (some tokens, PKCS#11 3.0 style).
pub fn ed25519_point(ec_point: &[u8]) -> Result<[u8; 32]> {
    let raw = match ec_point {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest,
        raw if raw.len() == 32 => raw,
        other => bail!(
            "CKA_EC_POINT holds {} bytes ({}...): not an Ed25519 point, raw or as a DER OCTET STRING of 32 bytes",
            other.len(),
            hex::encode(&other[..other.len().min(4)])
        ),
    };
    let mut out = [0u8; 32];
    out.copy_from_slice(raw);
    Ok(out)
}

/// Checks CKA_EC_PARAMS names Ed25519 (by OID or by name).
pub fn check_ed25519_params(params: &[u8]) -> Result<()> {
    if params == ED25519_OID || params == ED25519_NAME {
        return Ok(());
    }
    bail!(
        "the key's curve (CKA_EC_PARAMS {}) is not Ed25519; signed-note checkpoints need Ed25519",
        hex::encode(params)
    )
}

fn read_public_key(s: &Session, handle: ObjectHandle, label: &str) -> Result<VerifyingKey> {
    let attrs = s
        .get_attributes(handle, &[AttributeType::EcParams, AttributeType::EcPoint])
        .with_context(|| format!("reading the public key labelled {label:?}"))?;
    let mut point = None;
    for a in attrs {
        match a {
            Attribute::EcParams(p) => check_ed25519_params(&p)
                .with_context(|| format!("public key labelled {label:?}"))?,
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    let point =
        point.with_context(|| format!("public key labelled {label:?} has no CKA_EC_POINT"))?;
    let raw = ed25519_point(&point).with_context(|| format!("public key labelled {label:?}"))?;
    VerifyingKey::from_bytes(&raw)
        .map_err(|_| anyhow::anyhow!("public key labelled {label:?} is not a valid Ed25519 point"))
}

/// Finds the one object of `class` with `label` (and the key's CKA_ID, when it has one).
fn find_one(s: &Session, class: ObjectClass, label: &str, id: &[u8]) -> Result<ObjectHandle> {
    let what = if class == ObjectClass::PRIVATE_KEY {
        "private"
    } else {
        "public"
    };
    let mut template = vec![
        Attribute::Class(class),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    if !id.is_empty() {
        template.push(Attribute::Id(id.to_vec()));
    }
    let found = s
        .find_objects(&template)
        .with_context(|| format!("searching for the {what} key labelled {label:?}"))?;
    match found.as_slice() {
        [h] => Ok(*h),
        [] => bail!("no {what} key labelled {label:?} on the token"),
        many => bail!(
            "{} {what} keys are labelled {label:?}; the label must pick one",
            many.len()
        ),
    }
}

/// One logged-in session and the private key's handle in it.
struct Open {
    session: Session,
    key: ObjectHandle,
}

/// A checkpoint signer whose Ed25519 key lives in a PKCS#11 token.
pub struct Pkcs11Signer {
    token: Arc<Token>,
    label: String,
    /// The key name: the log's origin.
    name: String,
    id: u32,
    public: VerifyingKey,
    vkey: String,
    open: Mutex<Option<Open>>,
}

impl Pkcs11Signer {
    /// Opens the key labelled `label` as the signer for `origin`, and checks with one test
    /// signature that its private and public halves pair.
    pub fn open(token: Arc<Token>, label: &str, origin: &str) -> Result<Self> {
        check_key_label(label)?;
        if !signed_note::is_key_name_valid(origin) {
            bail!("origin {origin:?} is not a valid key name");
        }
        let on_token = || format!("token {:?}", token.label);
        let session = token.session(false)?;
        let key =
            find_one(&session, ObjectClass::PRIVATE_KEY, label, &[]).with_context(on_token)?;
        let attrs = session
            .get_attributes(key, &[AttributeType::KeyType, AttributeType::Id])
            .with_context(|| format!("reading the private key labelled {label:?}"))?;
        let mut id = vec![];
        for a in attrs {
            match a {
                Attribute::KeyType(t) if t != KeyType::EC_EDWARDS => bail!(
                    "the private key labelled {label:?} on {} is a {t} key, not Ed25519 (CKK_EC_EDWARDS)",
                    on_token()
                ),
                Attribute::Id(i) => id = i,
                _ => {}
            }
        }
        let pub_h =
            find_one(&session, ObjectClass::PUBLIC_KEY, label, &id).with_context(on_token)?;
        let public = read_public_key(&session, pub_h, label).with_context(on_token)?;
        let vkey = signed_note::new_ed25519_verifier_key(origin, &public);
        let encoded = [&[0x01u8][..], public.as_bytes()].concat();
        let signer = Pkcs11Signer {
            id: signed_note::key_id(origin, &encoded),
            name: origin.to_string(),
            label: label.to_string(),
            public,
            vkey,
            open: Mutex::new(Some(Open { session, key })),
            token,
        };
        signer.sign_checked(SELF_TEST).with_context(|| {
            format!(
                "self-test of the key labelled {label:?} on {}",
                signer.describe_token()
            )
        })?;
        Ok(signer)
    }

    /// The vkey clients pin: `<origin>+<id>+<base64(0x01 || public key)>`.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    pub fn public_key(&self) -> &VerifyingKey {
        &self.public
    }

    pub fn describe(&self) -> String {
        format!("PKCS#11 key {:?} on {}", self.label, self.describe_token())
    }

    fn describe_token(&self) -> String {
        format!("token {:?}", self.token.label)
    }

    /// Signs with the token and verifies the signature before returning it.
    pub fn sign_checked(&self, msg: &[u8]) -> Result<Vec<u8>> {
        let sig = self.sign_raw(msg)?;
        let parsed = Signature::from_slice(&sig).map_err(|_| {
            anyhow::anyhow!("the token returned a {}-byte signature, not 64", sig.len())
        })?;
        self.public.verify(msg, &parsed).map_err(|_| {
            anyhow::anyhow!("the token's signature does not verify under the key's public key")
        })?;
        Ok(sig)
    }

    fn sign_raw(&self, msg: &[u8]) -> Result<Vec<u8>> {
        let mech = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
        let mut open = self.open.lock();
        if let Some(o) = open.as_ref() {
            match o.session.sign(&mech, o.key, msg) {
                Ok(sig) => return Ok(sig),
                Err(CkError::Pkcs11(rv, _)) if session_lost(rv) => {
                    tracing::warn!(key = %self.label, error = %rv, "PKCS#11 session lost; reopening");
                }
                Err(e) => return Err(e).context("PKCS#11 C_Sign"),
            }
        }
        // No session, or the token dropped it: reopen once.
        *open = None;
        let session = self.token.session(false)?;
        let key = find_one(&session, ObjectClass::PRIVATE_KEY, &self.label, &[])
            .with_context(|| self.describe_token())?;
        let sig = session
            .sign(&mech, key, msg)
            .context("PKCS#11 C_Sign after reopening the session")?;
        *open = Some(Open { session, key });
        Ok(sig)
    }
}

/// Errors after which a new session (and a new key handle) may succeed.
fn session_lost(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::UserNotLoggedIn
            | RvError::KeyHandleInvalid
            | RvError::ObjectHandleInvalid
            | RvError::DeviceRemoved
            | RvError::TokenNotPresent
    )
}

impl signed_note::Signer for Pkcs11Signer {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, ed25519_dalek::SignatureError> {
        self.sign_checked(msg).map_err(|e| {
            let e = format!("{}: {e:#}", self.describe());
            tracing::error!(error = %e, "checkpoint signing failed");
            ed25519_dalek::SignatureError::from_source(e)
        })
    }
}

/// Parses `--hsm-key LOG=LABEL`.
pub fn parse_key_spec(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((log, label)) if !log.is_empty() && !label.is_empty() => {
            check_key_label(label)?;
            Ok((log.to_string(), label.to_string()))
        }
        _ => bail!("--hsm-key {s:?} must have the form LOG=KEYLABEL"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_ec_point_is_read_wrapped_in_an_octet_string_or_raw() {
        let point: Vec<u8> = (1..=32).collect();
        let wrapped = [&[0x04, 0x20][..], &point].concat();
        assert_eq!(ed25519_point(&wrapped).unwrap().to_vec(), point);
        assert_eq!(ed25519_point(&point).unwrap().to_vec(), point);
    }

    #[test]
    fn malformed_ec_points_are_refused() {
        let p = [7u8; 32];
        for bad in [
            vec![],
            vec![0x04],
            vec![0x04, 0x20],
            [&[0x04, 0x20][..], &p[..31]].concat(),
            [&[0x04, 0x21][..], &p, &[0]].concat(),
            [&[0x04, 0x81, 0x20][..], &p].concat(), // long form: not DER
            [&[0x03, 0x20][..], &p].concat(),       // a BIT STRING
            [&[0x04, 0x20][..], &p, &[0]].concat(), // trailing byte
            vec![0x04; 57],                         // an Ed448 point
        ] {
            let err = ed25519_point(&bad).unwrap_err().to_string();
            assert!(err.contains("not an Ed25519 point"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn only_ed25519_curve_parameters_are_accepted() {
        check_ed25519_params(ED25519_OID).unwrap();
        check_ed25519_params(ED25519_NAME).unwrap();
        let ed448_oid = [0x06, 0x03, 0x2b, 0x65, 0x71];
        let p256_oid = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        for bad in [&ed448_oid[..], &p256_oid, b"\x13\x0aedwards448", b""] {
            let err = check_ed25519_params(bad).unwrap_err().to_string();
            assert!(err.contains("not Ed25519"), "{err}");
        }
    }

    fn pin_file(dir: &Path, contents: &[u8], mode: u32) -> PathBuf {
        let p = dir.join("pin");
        std::fs::write(&p, contents).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn a_pin_is_one_line_from_a_private_file() {
        let d = tempfile::tempdir().unwrap();
        for (contents, want) in [
            (&b"1234"[..], "1234"),
            (b"1234\n", "1234"),
            (b"1234\r\n", "1234"),
            (b" 12 34", " 12 34"),
        ] {
            let pin = read_pin(&pin_file(d.path(), contents, 0o600)).unwrap();
            assert_eq!(pin, want);
        }
        let pin = read_pin(&pin_file(d.path(), b"1234", 0o400)).unwrap();
        assert_eq!(pin, "1234");
    }

    #[test]
    fn hostile_pin_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let err = |contents: &[u8], mode| {
            format!(
                "{:#}",
                read_pin_file(&pin_file(d.path(), contents, mode)).unwrap_err()
            )
        };
        assert!(err(b"1234", 0o644).contains("chmod 600"));
        assert!(err(b"1234", 0o640).contains("chmod 600"));
        assert!(err(b"1234", 0o604).contains("chmod 600"));
        assert!(err(b"", 0o600).contains("is empty"));
        assert!(err(b"\n", 0o600).contains("is empty"));
        assert!(err(b"12\n34", 0o600).contains("single line"));
        assert!(err(b"1234\n\n", 0o600).contains("single line"));
        assert!(err(b"12\x0034", 0o600).contains("single line"));
        assert!(err(&[0xff, 0xfe, 0x00], 0o600).contains("PIN file"));
        assert!(err(&vec![b'1'; 4096], 0o600).contains("at most 1024 bytes"));
        let missing = read_pin_file(&d.path().join("nope")).unwrap_err();
        assert!(format!("{missing:#}").contains("nope"), "{missing:#}");
        let dir = read_pin_file(d.path()).unwrap_err();
        assert!(format!("{dir:#}").contains("not a regular file"), "{dir:#}");
    }

    #[test]
    fn key_specs_name_a_log_and_a_label() {
        assert_eq!(
            parse_key_spec("artifacts=ckpt key").unwrap(),
            ("artifacts".to_string(), "ckpt key".to_string())
        );
        for bad in ["artifacts", "=x", "artifacts=", "a= x", "a=x\n", ""] {
            assert!(parse_key_spec(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_missing_module_is_named_in_the_error() {
        let d = tempfile::tempdir().unwrap();
        let config = HsmConfig {
            module: d.path().join("libnothere.so"),
            token: "ledger".into(),
            pin_file: pin_file(d.path(), b"1234", 0o600),
        };
        let err = format!("{:#}", Token::open(&config).err().unwrap());
        assert!(
            err.contains("libnothere.so") && err.contains("does not exist"),
            "{err}"
        );
        // A file that is not a shared library.
        let fake = d.path().join("fake.so");
        std::fs::write(&fake, b"not a library").unwrap();
        let config = HsmConfig {
            module: fake,
            ..config
        };
        let err = format!("{:#}", Token::open(&config).err().unwrap());
        assert!(err.contains("loading PKCS#11 module"), "{err}");
    }
}

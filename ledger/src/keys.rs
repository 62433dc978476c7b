//! Signing keys in Go's note formats (`PRIVATE+KEY+<name>+<id>+<base64>` and the vkey
//! `<name>+<id>+<base64>`), as c2sp.org/signed-note#verifier-keys.

use anyhow::{bail, Context, Result};
use signed_note::{StandardSigner, StandardVerifier};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub struct KeyPair {
    pub signer: StandardSigner,
    pub vkey: String,
}

pub fn key_paths(dir: &Path, log: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{log}.key")),
        dir.join(format!("{log}.vkey")),
    )
}

/// Creates a secret file (`what` names it in errors) with mode 0600, synced; refuses to
/// overwrite one: it may be the only copy of a key.
pub fn write_private(path: &Path, what: &str, contents: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {what} file {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Reads a secret file, refusing one that group or others can read.
pub fn read_private(path: &Path, what: &str) -> Result<String> {
    let meta = fs::metadata(path).with_context(|| format!("reading {what} {}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "{what} {} has mode {:o}; it must not be readable by group or others (chmod 600)",
            path.display(),
            mode & 0o777
        );
    }
    // Key files are text (PEM, note keys); a binary file is named, not just "invalid UTF-8".
    fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Writes a new key pair named `origin`. The private key file is created with mode 0600 and
/// never overwritten.
pub fn generate(skey_path: &Path, vkey_path: &Path, origin: &str) -> Result<String> {
    if !signed_note::is_key_name_valid(origin) {
        bail!("origin {origin:?} is not a valid key name (no spaces, no '+', not empty)");
    }
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, origin);
    write_private(skey_path, "private key", &format!("{skey}\n"))?;
    fs::write(vkey_path, format!("{vkey}\n"))
        .with_context(|| format!("writing {}", vkey_path.display()))?;
    Ok(vkey)
}

/// Loads a private key, refusing one that other users can read, and derives its vkey.
pub fn load(skey_path: &Path, expected_origin: &str) -> Result<KeyPair> {
    let text = read_private(skey_path, "private key")?;
    let skey = text.trim();
    let signer = StandardSigner::new(skey)
        .map_err(|e| anyhow::anyhow!("private key {}: {e}", skey_path.display()))?;
    let name = skey.split('+').nth(2).unwrap_or_default();
    if name != expected_origin {
        bail!(
            "private key {} is named {name:?} but the log's origin is {expected_origin:?}",
            skey_path.display()
        );
    }
    let vkey = vkey_from_skey(skey)?;
    StandardVerifier::new(&vkey).map_err(|e| anyhow::anyhow!("derived vkey: {e}"))?;
    Ok(KeyPair { signer, vkey })
}

fn vkey_from_skey(skey: &str) -> Result<String> {
    use base64::prelude::*;
    // PRIVATE+KEY+<name>+<id>+<base64>; the base64 itself may contain '+'.
    let parts: Vec<&str> = skey.splitn(5, '+').collect();
    let (name, b64) = match parts.as_slice() {
        [_, _, name, _, b64] => (*name, *b64),
        _ => bail!("private key does not have the form PRIVATE+KEY+name+id+key"),
    };
    let raw = BASE64_STANDARD
        .decode(b64)
        .context("private key is not base64")?;
    if raw.len() != 33 || raw[0] != 0x01 {
        bail!("private key is not an Ed25519 signed-note key");
    }
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&raw[1..]);
    let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
    Ok(signed_note::new_ed25519_verifier_key(
        name,
        &sk.verifying_key(),
    ))
}

/// Loads the log's key, generating it on first start.
pub fn load_or_generate(dir: &Path, log: &str, origin: &str) -> Result<(KeyPair, bool)> {
    let (skey_path, vkey_path) = key_paths(dir, log);
    let created = if skey_path.exists() {
        false
    } else {
        generate(&skey_path, &vkey_path, origin)?;
        true
    };
    Ok((load(&skey_path, origin)?, created))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_are_private() {
        let d = tempfile::tempdir().unwrap();
        let (kp, created) =
            load_or_generate(d.path(), "artifacts", "example.com/artifacts").unwrap();
        assert!(created);
        assert!(kp.vkey.starts_with("example.com/artifacts+"));
        let (skey, vkey) = key_paths(d.path(), "artifacts");
        assert_eq!(fs::read_to_string(vkey).unwrap().trim(), kp.vkey);
        assert_eq!(
            fs::metadata(&skey).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (again, created) =
            load_or_generate(d.path(), "artifacts", "example.com/artifacts").unwrap();
        assert!(!created);
        assert_eq!(again.vkey, kp.vkey);
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let (skey, _) = key_paths(d.path(), "a");
        load_or_generate(d.path(), "a", "o.example/a").unwrap();
        fs::set_permissions(&skey, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&skey, "o.example/a").err().unwrap().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn a_key_for_another_origin_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let (skey, _) = key_paths(d.path(), "a");
        load_or_generate(d.path(), "a", "o.example/a").unwrap();
        assert!(load(&skey, "o.example/b").is_err());
    }

    #[test]
    fn malformed_private_keys_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bad.key");
        for bad in ["", "PRIVATE+KEY+x", "PRIVATE+KEY+x+00000000+!!!!", "hello"] {
            fs::write(&p, bad).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
            assert!(load(&p, "x").is_err(), "{bad:?}");
        }
    }
}

//! The witness's cosigning key: `witness.key` holds
//! `PRIVATE+KEY+<name>+<id>+base64(0x04 || seed)` (mode 0600, never overwritten) and
//! `witness.vkey` its vkey (c2sp.org/tlog-cosignature#format, signature type 0x04).

use anyhow::{bail, Context, Result};
use ledger_client::cosignature::{generate_cosigner_key, CosignerSigner};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const KEY_FILE: &str = "witness.key";
pub const VKEY_FILE: &str = "witness.vkey";

/// Largest key file read.
const MAX_KEY_FILE: u64 = 16 * 1024;

/// Creates a private file with mode 0600 and syncs it; an existing file is never replaced,
/// since it may be the only copy of a key.
fn create_private(path: &Path, contents: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("creating directory {}", parent.display()))?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "creating private key file {} (it must not exist yet)",
                path.display()
            )
        })?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Writes a new key pair named `name` into `dir`; returns (private key path, vkey).
pub fn generate(dir: &Path, name: &str) -> Result<(PathBuf, String)> {
    if !signed_note::is_key_name_valid(name) {
        bail!("witness name {name:?} is not a valid key name (non-empty, no spaces, no '+')");
    }
    let (skey, vkey) = generate_cosigner_key(&mut rand::rngs::OsRng, name);
    let key_path = dir.join(KEY_FILE);
    create_private(&key_path, &format!("{skey}\n"))?;
    let vkey_path = dir.join(VKEY_FILE);
    fs::write(&vkey_path, format!("{vkey}\n"))
        .with_context(|| format!("writing {}", vkey_path.display()))?;
    Ok((key_path, vkey))
}

/// Loads a private key file, refusing one that group or others can read.
pub fn load(path: &Path) -> Result<CosignerSigner> {
    let meta =
        fs::metadata(path).with_context(|| format!("reading private key {}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "private key {} has mode {:o}; it must not be readable by group or others (chmod 600)",
            path.display(),
            mode & 0o777
        );
    }
    if meta.len() > MAX_KEY_FILE {
        bail!(
            "private key {} is larger than {MAX_KEY_FILE} bytes",
            path.display()
        );
    }
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading private key {}", path.display()))?;
    CosignerSigner::from_skey(text.trim())
        .with_context(|| format!("private key {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_are_private_and_never_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let (path, vkey) = generate(d.path(), "witness.example/w1").unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_to_string(d.path().join(VKEY_FILE)).unwrap().trim(),
            vkey
        );
        let s = load(&path).unwrap();
        assert_eq!(s.vkey(), vkey);
        let before = fs::read(&path).unwrap();
        assert!(generate(d.path(), "witness.example/w1").is_err());
        assert_eq!(fs::read(&path).unwrap(), before);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(format!("{:#}", load(&path).unwrap_err()).contains("chmod 600"));
    }

    #[test]
    fn bad_names_and_keys_are_refused() {
        let d = tempfile::tempdir().unwrap();
        for bad in ["", "a b", "a+b"] {
            assert!(generate(d.path(), bad).is_err(), "{bad:?}");
        }
        let p = d.path().join("bad.key");
        // A log key (type 0x01) is not a cosigning key.
        let (log_skey, _) = signed_note::generate_key(&mut rand::rngs::OsRng, "x");
        create_private(&p, &log_skey).unwrap();
        assert!(load(&p).is_err());
    }
}

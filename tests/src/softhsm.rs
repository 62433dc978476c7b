//! SoftHSM2 for tests: a PKCS#11 module whose tokens live in a temporary directory of their
//! own. Each [`SoftHsm`] writes its own `softhsm2.conf` and passes it as `SOFTHSM2_CONF` to
//! every child process it starts, so tests never touch `/etc/softhsm` or each other's tokens.
//! PKCS#11 state is per process (C_Initialize, login), so everything that loads the module
//! runs in a child: `ledger`, `softhsm2-util`, and the `pkcs11-probe` test binary.
//!
//! Needs SoftHSM2 (Debian package `softhsm2`).

use std::ffi::OsStr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The token every [`SoftHsm`] starts with, and its PINs.
pub const TOKEN: &str = "ledger";
pub const PIN: &str = "1234";
pub const SO_PIN: &str = "5678";

/// Where Debian and source builds put the module; `SOFTHSM2_MODULE` overrides.
pub fn module() -> PathBuf {
    if let Ok(p) = std::env::var("SOFTHSM2_MODULE") {
        return PathBuf::from(p);
    }
    let candidates = [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("SoftHSM2 is not installed (apt-get install softhsm2); looked in {candidates:?}")
        })
}

pub struct SoftHsm {
    pub dir: tempfile::TempDir,
    /// This instance's `softhsm2.conf`.
    pub conf: PathBuf,
    pub module: PathBuf,
    /// The user PIN of [`TOKEN`], mode 0600.
    pub pin_file: PathBuf,
}

impl SoftHsm {
    /// A fresh token directory with one initialised token, [`TOKEN`].
    pub fn new() -> SoftHsm {
        let dir = tempfile::tempdir().expect("temp dir");
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .unwrap();
        let hsm = SoftHsm {
            pin_file: dir.path().join("user.pin"),
            dir,
            conf,
            module: module(),
        };
        hsm.init_token(TOKEN, PIN);
        write_secret(&hsm.pin_file, PIN);
        hsm
    }

    /// Initialises another token in this instance's directory.
    pub fn init_token(&self, label: &str, pin: &str) {
        let out = self
            .command("softhsm2-util")
            .args(["--init-token", "--free", "--label", label, "--pin", pin])
            .args(["--so-pin", SO_PIN])
            .output()
            .expect("run softhsm2-util (apt-get install softhsm2)");
        assert!(
            out.status.success(),
            "softhsm2-util --init-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The environment every child that loads the module needs.
    pub fn env(&self) -> [(&'static str, &OsStr); 1] {
        [("SOFTHSM2_CONF", self.conf.as_os_str())]
    }

    /// A command with this instance's configuration in its environment.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(program);
        c.envs(self.env())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        c
    }

    /// `ledger hsm-keygen` on [`TOKEN`]; the whole output, successful or not.
    pub fn keygen(&self, label: &str, origin: &str, extra: &[&str]) -> Output {
        self.command(crate::binary("ledger"))
            .arg("hsm-keygen")
            .arg("--module")
            .arg(&self.module)
            .args(["--token", TOKEN, "--label", label, "--origin", origin])
            .arg("--pin-file")
            .arg(&self.pin_file)
            .args(extra)
            .output()
            .unwrap()
    }

    /// `ledger hsm-keygen` that must succeed; returns the vkey it printed.
    pub fn new_key(&self, label: &str, origin: &str) -> String {
        let out = self.keygen(label, origin, &[]);
        assert!(
            out.status.success(),
            "hsm-keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// The `ledger serve` flags that sign log `log` with the key labelled `label`.
    pub fn serve_args(&self, keys: &[(&str, &str)]) -> Vec<String> {
        let mut a = vec![
            "--hsm-module".to_string(),
            self.module.display().to_string(),
            "--hsm-token".into(),
            TOKEN.into(),
            "--hsm-pin-file".into(),
            self.pin_file.display().to_string(),
        ];
        for (log, label) in keys {
            a.push("--hsm-key".into());
            a.push(format!("{log}={label}"));
        }
        a
    }

    /// Starts `ledger` with this instance's environment.
    pub fn start_ledger(&self, data_dir: &Path, args: &[String]) -> crate::Ledger {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::Ledger::start_with_env(data_dir, "127.0.0.1:0", &self.env(), &args)
    }

    /// Runs `ledger` with `args`, which must make it stop with an error before listening;
    /// returns its stderr. Panics if it starts serving.
    pub fn ledger_fails(&self, data_dir: &Path, args: &[String]) -> String {
        let mut child = self
            .command(crate::binary("ledger"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let out = child.wait_with_output().unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                assert!(!status.success(), "ledger exited successfully: {stdout}");
                assert!(
                    !stdout.contains("ledger listening"),
                    "ledger started serving: {stdout}"
                );
                return String::from_utf8_lossy(&out.stderr).into_owned();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("ledger {args:?} kept running; it should have refused to start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the `pkcs11-probe` test binary (cryptoki used directly, independently of the
    /// ledger) against [`TOKEN`]; returns its stdout, parsed as JSON.
    pub fn probe(&self, probe: &Path, args: &[&str]) -> serde_json::Value {
        let out = self
            .command(probe)
            .arg("--module")
            .arg(&self.module)
            .args(["--token", TOKEN])
            .arg("--pin-file")
            .arg(&self.pin_file)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pkcs11-probe {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "pkcs11-probe printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

impl Default for SoftHsm {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes a secret file with mode 0600.
pub fn write_secret(path: &Path, contents: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    writeln!(f, "{contents}").unwrap();
}

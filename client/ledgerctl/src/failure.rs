//! Errors of the CLI, classified by exit code.

use std::fmt;

/// Exit status classes (documented in `ledgerctl --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 1: a signature, proof or consistency check failed.
    Verification,
    /// 2: bad usage or unusable local input (file, key, malformed data given by the user).
    Input,
    /// 3: the network failed or the server answered with an error or with garbage.
    Server,
    /// 4: the policy in force would refuse the proposed change (`policy check`).
    Denied,
    /// A check of `verify --bundle` with its own code (10-15) and name.
    Check(u8, &'static str),
}

impl Kind {
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Verification => 1,
            Kind::Input => 2,
            Kind::Server => 3,
            Kind::Denied => 4,
            Kind::Check(code, _) => code,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Verification => "verification_failed",
            Kind::Input => "input_error",
            Kind::Server => "server_error",
            Kind::Denied => "policy_denied",
            Kind::Check(_, name) => name,
        }
    }
}

/// A failure with the sentence shown to the user.
#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
}

impl Failure {
    pub fn verification(message: impl Into<String>) -> Self {
        Failure {
            kind: Kind::Verification,
            message: message.into(),
        }
    }
    pub fn input(message: impl Into<String>) -> Self {
        Failure {
            kind: Kind::Input,
            message: message.into(),
        }
    }
    pub fn denied(message: impl Into<String>) -> Self {
        Failure {
            kind: Kind::Denied,
            message: message.into(),
        }
    }
    pub fn code(code: u8, name: &'static str, message: impl Into<String>) -> Self {
        Failure {
            kind: Kind::Check(code, name),
            message: message.into(),
        }
    }
    pub fn server(message: impl Into<String>) -> Self {
        Failure {
            kind: Kind::Server,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

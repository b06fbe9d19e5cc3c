//! Passwords and secrets: argon2id PHC hashes, robot secrets, constant-time comparison.
//!
//! A password is stored only as its PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`,
//! a random 16-byte salt, the OWASP-recommended argon2id parameters). Verification reads the
//! parameters from the stored string, so raising the defaults later keeps old hashes valid.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

use crate::error::{RegistryError, Result};

/// Bytes of randomness in a generated robot secret.
pub const SECRET_BYTES: usize = 32;

/// Hashes `password` with argon2id and a fresh random salt; returns the PHC string.
pub fn hash_password(password: &str) -> Result<String> {
    let hash: PasswordHash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| RegistryError::Storage(format!("password hashing failed: {e}")))?;
    Ok(hash.to_string())
}

/// Whether `candidate` matches the PHC string `phc`. A malformed or unsupported PHC string
/// is no match. The comparison of the hashes is constant time (inside `argon2`).
pub fn verify_password(phc: &str, candidate: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(candidate.as_bytes(), &parsed)
        .is_ok()
}

/// Spends the time of one password verification and answers `false`: call it when the
/// user is unknown (or disabled), so the answer time does not tell which names exist.
pub fn verify_unknown_user(candidate: &str) -> bool {
    // A hash of a random secret nobody knows, with the same parameters as real hashes.
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    if let Some(phc) = DUMMY.get_or_init(|| hash_password(&generate_secret()).ok()) {
        let _ = verify_password(phc, candidate);
    }
    false
}

/// A new robot secret: 32 random bytes from the OS-seeded CSPRNG, URL-safe base64 without
/// padding (43 characters).
pub fn generate_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password(&phc, "correct horse"));
        assert!(!verify_password(&phc, "correct horse "));
        assert!(!verify_password(&phc, ""));
    }

    #[test]
    fn each_hash_has_its_own_salt() {
        let a = hash_password("same").unwrap();
        let b = hash_password("same").unwrap();
        assert_ne!(a, b);
        assert!(verify_password(&a, "same") && verify_password(&b, "same"));
    }

    #[test]
    fn malformed_hashes_match_nothing() {
        for phc in ["", "plain", "$argon2id$v=19$", "$md5$abc$def"] {
            assert!(!verify_password(phc, ""), "{phc:?}");
            assert!(!verify_password(phc, "plain"), "{phc:?}");
        }
        assert!(!verify_unknown_user("anything"));
    }

    #[test]
    fn secrets_are_random_url_safe_and_32_bytes() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), SECRET_BYTES);
    }

    /// Cost of one hash and one verification (a Basic login); run with `--nocapture` (and
    /// `--release` for production numbers) to read it. Not an assertion.
    #[test]
    fn cost_of_hashing_and_verifying() {
        let start = std::time::Instant::now();
        let phc = hash_password("correct horse").unwrap();
        let hash = start.elapsed();
        let start = std::time::Instant::now();
        assert!(verify_password(&phc, "correct horse"));
        let verify = start.elapsed();
        println!(
            "argon2id cost ({} build): hash {hash:?}, verify {verify:?}",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
    }

    #[test]
    fn constant_time_eq_compares_bytes_and_lengths() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}

//! Signed, expiring upload-session tokens: the API function puts one in the upload
//! `Location` it hands out, so the upload endpoint (another process, another host) can
//! trust that the upload was authorised without asking anyone.
//!
//! A token is `<expiry ms>.<hex HMAC-SHA256(secret, "<repo>\n<upload id>\n<expiry ms>")>`.

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::error::{RegistryError, Result};
use crate::names::RepoName;

type HmacSha256 = hmac::Hmac<Sha256>;

fn mac(secret: &[u8], repo: &RepoName, upload_id: &str, expires_ms: u64) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{repo}\n{upload_id}\n{expires_ms}").as_bytes());
    mac
}

/// Signs a token for `upload_id` of `repo`, valid until `expires_ms`.
pub fn sign(secret: &[u8], repo: &RepoName, upload_id: &str, expires_ms: u64) -> String {
    let tag = mac(secret, repo, upload_id, expires_ms)
        .finalize()
        .into_bytes();
    format!("{expires_ms}.{}", hex::encode(tag))
}

/// Checks a token for `upload_id` of `repo` at time `now_ms` (constant-time comparison).
/// Any failure is `BlobUploadUnknown`: a bad token reveals nothing about the session.
pub fn verify(
    secret: &[u8],
    repo: &RepoName,
    upload_id: &str,
    token: Option<&str>,
    now_ms: u64,
) -> Result<()> {
    let unknown = || RegistryError::BlobUploadUnknown;
    let (expires, tag) = token.and_then(|t| t.split_once('.')).ok_or_else(unknown)?;
    let expires_ms: u64 = expires.parse().map_err(|_| unknown())?;
    let tag = hex::decode(tag).map_err(|_| unknown())?;
    mac(secret, repo, upload_id, expires_ms)
        .verify_slice(&tag)
        .map_err(|_| unknown())?;
    if expires_ms <= now_ms {
        return Err(unknown());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let t = sign(b"secret", &repo("a/b"), "id1", 1_000);
        assert!(verify(b"secret", &repo("a/b"), "id1", Some(&t), 999).is_ok());
        assert!(verify(b"secret", &repo("a/b"), "id1", Some(&t), 1_000).is_err());
    }

    #[test]
    fn any_change_breaks_the_token() {
        let t = sign(b"secret", &repo("a/b"), "id1", 1_000);
        assert!(verify(b"other", &repo("a/b"), "id1", Some(&t), 0).is_err());
        assert!(verify(b"secret", &repo("a/c"), "id1", Some(&t), 0).is_err());
        assert!(verify(b"secret", &repo("a/b"), "id2", Some(&t), 0).is_err());
        let later = t.replacen("1000.", "9999.", 1);
        assert!(verify(b"secret", &repo("a/b"), "id1", Some(&later), 0).is_err());
        assert!(verify(b"secret", &repo("a/b"), "id1", None, 0).is_err());
        assert!(verify(b"secret", &repo("a/b"), "id1", Some("garbage"), 0).is_err());
    }
}

//! Bearer tokens in the Docker registry token format: short-lived ES256 (P-256) JWTs whose
//! `access` claim lists the granted scopes, verified with no database read.
//!
//! Claims: `iss` (this registry's token issuer), `sub` (the caller, e.g. `user:alice`), `aud`
//! (the service), `exp`, `nbf`, `iat` (seconds), `jti` (random), `typ` (`access` or
//! `refresh`) and `access: [{type, name, actions}]`. The header carries the `kid` of the
//! signing key. Refresh tokens (OAuth2 `refresh_token` grant) are longer-lived, carry no
//! access, and are refused where an access token is expected (and the other way round);
//! the token endpoint re-evaluates the grants when it exchanges one.
//!
//! Keys rotate: a [`KeySet`] holds one active signing key and any number of
//! verification-only keys. To rotate, make a new key active (the old one stays for
//! verification), and retire the old one once the longest token it signed has expired.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::auth::scope::{Resource, Scope, parse_actions};
use crate::error::{RegistryError, Result};
use crate::identity::Action;

/// The signature algorithm of every token: ECDSA on P-256 with SHA-256.
pub const ALGORITHM: Algorithm = Algorithm::ES256;
/// Clock skew tolerated on `exp` and `nbf` by default.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Whether a token grants access or may be exchanged for an access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
    Refresh,
}

/// One entry of the `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A repository name, or `catalog`.
    pub name: String,
    /// `pull`, `push`, `delete`, `admin`, or `*` for all of them.
    pub actions: Vec<String>,
}

impl From<&Scope> for AccessEntry {
    fn from(scope: &Scope) -> Self {
        AccessEntry {
            kind: scope.resource.type_str().to_owned(),
            name: scope.resource.name().to_owned(),
            actions: scope.action_strings(),
        }
    }
}

/// The claims of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    pub typ: TokenType,
    #[serde(default)]
    pub access: Vec<AccessEntry>,
}

impl Claims {
    /// The `access` claim as scopes; an entry that does not parse is an error.
    pub fn scopes(&self) -> Result<Vec<Scope>> {
        self.access
            .iter()
            .map(|e| {
                Ok(Scope {
                    resource: Resource::from_parts(&e.kind, &e.name)?,
                    actions: parse_actions(e.actions.iter().map(String::as_str), &e.name)?,
                })
            })
            .collect()
    }

    /// Whether the token grants `action` on `resource`.
    pub fn allows(&self, resource: &Resource, action: Action) -> bool {
        self.scopes().is_ok_and(|scopes| {
            scopes
                .iter()
                .any(|s| &s.resource == resource && s.actions.contains(&action))
        })
    }
}

fn unauthorized(why: impl fmt::Display) -> RegistryError {
    RegistryError::Unauthorized(format!("invalid token: {why}"))
}

fn internal(why: impl fmt::Display) -> RegistryError {
    RegistryError::Storage(format!("token signing key: {why}"))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The RFC 7638 JWK thumbprint of a P-256 public key given as an uncompressed point.
fn thumbprint(point: &[u8]) -> String {
    let (x, y) = point[1..].split_at(32);
    let jwk = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(x),
        URL_SAFE_NO_PAD.encode(y)
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes()))
}

/// A public key that verifies tokens.
struct VerifyingKey {
    decoding: DecodingKey,
    public_pem: String,
}

/// The active signing key. Never printed.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    private_pem: String,
}

/// A P-256 private key from a PKCS#8 PEM: the signing key and its public half.
fn load_private(kid: &str, pem: &str) -> Result<(SigningKey, VerifyingKey)> {
    let bad = |why: &str| internal(format!("key {kid:?}: {why}"));
    let encoding = EncodingKey::from_ec_pem(pem.as_bytes())
        .map_err(|_| bad("not a PKCS#8 EC private key PEM"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, encoding.as_bytes())
        .map_err(|_| bad("not a valid P-256 private key"))?;
    let spki = pair
        .public_key()
        .as_der()
        .map_err(|_| bad("cannot encode its public key"))?;
    let verifying = VerifyingKey {
        decoding: DecodingKey::from_ec_der(pair.public_key().as_ref()),
        public_pem: pem_encode("PUBLIC KEY", spki.as_ref()),
    };
    let signing = SigningKey {
        kid: kid.to_owned(),
        encoding,
        private_pem: pem.to_owned(),
    };
    Ok((signing, verifying))
}

/// A configured signing key as PKCS#8 PEM: given as PEM, or as the base64 of its DER on
/// one line (what fits a CloudFormation parameter: `openssl genpkey -algorithm EC -pkeyopt
/// ec_paramgen_curve:P-256 | openssl pkcs8 -topk8 -nocrypt -outform DER | base64 -w0`).
pub fn private_key_pem(configured: &str) -> Result<String> {
    let value = configured.trim();
    if value.starts_with("-----BEGIN ") {
        return Ok(configured.to_owned());
    }
    let compact: String = value.split_whitespace().collect();
    let der = STANDARD.decode(compact.as_bytes()).map_err(|_| {
        internal("the signing key is neither a PEM nor the base64 of a PKCS#8 DER key")
    })?;
    Ok(pem_encode("PRIVATE KEY", &der))
}

/// The key id (RFC 7638 JWK thumbprint) of a P-256 private key PEM.
pub fn key_id(pem: &str) -> Result<String> {
    let encoding = EncodingKey::from_ec_pem(pem.as_bytes())
        .map_err(|_| internal("the signing key is not a PKCS#8 EC private key PEM"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, encoding.as_bytes())
        .map_err(|_| internal("the signing key is not a valid P-256 private key"))?;
    Ok(thumbprint(pair.public_key().as_ref()))
}

/// The key id of a P-256 public or private key PEM.
pub fn key_id_of_any(pem: &str) -> Result<String> {
    if pem.contains("PRIVATE KEY") {
        return key_id(pem);
    }
    let decoding = DecodingKey::from_ec_pem(pem.as_bytes())
        .map_err(|_| internal("a verification key is not an EC public key PEM"))?;
    let point = decoding
        .try_get_as_bytes()
        .map_err(|_| internal("a verification key has no key bytes"))?;
    if point.len() != 65 || point[0] != 4 {
        return Err(internal("a verification key is not a P-256 public key"));
    }
    Ok(thumbprint(point))
}

/// Splits concatenated PEM blocks (`-----BEGIN …-----` … `-----END …-----`).
pub fn split_pems(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.starts_with("-----BEGIN ") {
            current.clear();
        }
        current.push_str(line);
        current.push('\n');
        if line.starts_with("-----END ") {
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

/// A verification key from a PEM: a P-256 public key (`PUBLIC KEY`) or private key
/// (`PRIVATE KEY`, of which only the public half is kept).
fn load_verifying(kid: &str, pem: &str) -> Result<VerifyingKey> {
    if pem.contains("PRIVATE KEY") {
        return Ok(load_private(kid, pem)?.1);
    }
    let decoding = DecodingKey::from_ec_pem(pem.as_bytes())
        .map_err(|_| internal(format!("key {kid:?}: not an EC public key PEM")))?;
    let point = decoding
        .try_get_as_bytes()
        .map_err(|_| internal(format!("key {kid:?}: no key bytes")))?;
    if point.len() != 65 || point[0] != 4 {
        return Err(internal(format!("key {kid:?}: not a P-256 public key")));
    }
    Ok(VerifyingKey {
        decoding,
        public_pem: pem.to_owned(),
    })
}

fn check_kid(kid: &str) -> Result<()> {
    let ok = !kid.is_empty()
        && kid.len() <= 128
        && kid
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(internal(format!(
            "invalid key id {kid:?} (1 to 128 of [A-Za-z0-9._-])"
        )))
    }
}

/// The token keys: one active signing key (with its `kid`) and the verification keys, the
/// active one's public half included.
pub struct KeySet {
    active: SigningKey,
    verifiers: BTreeMap<String, VerifyingKey>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("active_kid", &self.active.kid)
            .field("verification_kids", &self.verifiers.keys())
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// A new P-256 key as `(kid, PKCS#8 PEM)`; the kid is its RFC 7638 JWK thumbprint.
    pub fn generate_pem() -> Result<(String, String)> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| internal("key generation failed"))?;
        let pkcs8 = pair
            .to_pkcs8v1()
            .map_err(|_| internal("cannot encode the new key"))?;
        let kid = thumbprint(pair.public_key().as_ref());
        Ok((kid, pem_encode("PRIVATE KEY", pkcs8.as_ref())))
    }

    /// A key set of one newly generated key.
    pub fn generate() -> Result<KeySet> {
        let (kid, pem) = Self::generate_pem()?;
        Self::from_pems((&kid, &pem), [])
    }

    /// The active key `(kid, PKCS#8 private key PEM)` and verification-only keys
    /// `(kid, PEM)`, each a public or a private key PEM. Key ids are unique.
    pub fn from_pems<'a>(
        active: (&str, &str),
        others: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<KeySet> {
        check_kid(active.0)?;
        let (signing, verifying) = load_private(active.0, active.1)?;
        let mut verifiers = BTreeMap::from([(active.0.to_owned(), verifying)]);
        for (kid, pem) in others {
            check_kid(kid)?;
            if verifiers.contains_key(kid) {
                return Err(internal(format!("duplicate key id {kid:?}")));
            }
            verifiers.insert(kid.to_owned(), load_verifying(kid, pem)?);
        }
        Ok(KeySet {
            active: signing,
            verifiers,
        })
    }

    /// Makes `(kid, private key PEM)` the signing key; the previous one stays for
    /// verification until [`KeySet::retire`].
    pub fn rotate(&mut self, active: (&str, &str)) -> Result<()> {
        check_kid(active.0)?;
        if self.verifiers.contains_key(active.0) {
            return Err(internal(format!("duplicate key id {:?}", active.0)));
        }
        let (signing, verifying) = load_private(active.0, active.1)?;
        self.verifiers.insert(active.0.to_owned(), verifying);
        self.active = signing;
        Ok(())
    }

    /// Stops accepting tokens signed by `kid`. The active key cannot be retired; answers
    /// whether a key was removed.
    pub fn retire(&mut self, kid: &str) -> bool {
        kid != self.active.kid && self.verifiers.remove(kid).is_some()
    }

    /// The key id of the signing key.
    pub fn active_kid(&self) -> &str {
        &self.active.kid
    }

    /// The PKCS#8 PEM of the signing key, to persist it (a secret: write it to a file only
    /// its owner reads, or to a secret store).
    pub fn to_pem(&self) -> &str {
        &self.active.private_pem
    }

    /// Every verification key as `(kid, public key PEM)`, the active one's included.
    pub fn public_pems(&self) -> Vec<(String, String)> {
        self.verifiers
            .iter()
            .map(|(kid, k)| (kid.clone(), k.public_pem.clone()))
            .collect()
    }

    /// The key ids tokens may be signed with.
    pub fn verification_kids(&self) -> impl Iterator<Item = &str> {
        self.verifiers.keys().map(String::as_str)
    }
}

/// Issues and verifies the tokens of one service.
pub struct TokenIssuer {
    keys: KeySet,
    issuer: String,
    service: String,
    leeway_secs: u64,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.issuer)
            .field("service", &self.service)
            .field("leeway_secs", &self.leeway_secs)
            .field("keys", &self.keys)
            .finish()
    }
}

impl TokenIssuer {
    /// An issuer named `issuer` (the `iss` claim) for `service` (the `aud` claim, the
    /// `service` parameter of token requests), with the default leeway.
    pub fn new(keys: KeySet, issuer: impl Into<String>, service: impl Into<String>) -> Self {
        TokenIssuer {
            keys,
            issuer: issuer.into(),
            service: service.into(),
            leeway_secs: DEFAULT_LEEWAY.as_secs(),
        }
    }

    /// The same issuer with another tolerance for clock skew.
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway_secs = leeway.as_secs();
        self
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// For rotation: [`KeySet::rotate`], [`KeySet::retire`].
    pub fn keys_mut(&mut self) -> &mut KeySet {
        &mut self.keys
    }

    /// An access token for `subject` granting `access` (scopes with no action are left
    /// out), valid `ttl` (whole seconds, at least one) from `now_ms`. Returns the token and
    /// its `expires_in` in seconds.
    pub fn issue(
        &self,
        subject: &str,
        access: Vec<Scope>,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<(String, u64)> {
        let access = access
            .iter()
            .filter(|s| !s.actions.is_empty())
            .map(AccessEntry::from)
            .collect();
        self.sign(subject, TokenType::Access, access, now_ms, ttl)
    }

    /// A refresh token for `subject`, valid `ttl` from `now_ms`: no access of its own.
    pub fn issue_refresh(
        &self,
        subject: &str,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<(String, u64)> {
        self.sign(subject, TokenType::Refresh, Vec::new(), now_ms, ttl)
    }

    fn sign(
        &self,
        subject: &str,
        typ: TokenType,
        access: Vec<AccessEntry>,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<(String, u64)> {
        let now = now_ms / 1000;
        let expires_in = ttl.as_secs().max(1);
        let mut jti = [0u8; 16];
        rand::rng().fill_bytes(&mut jti);
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: self.service.clone(),
            exp: now + expires_in,
            nbf: now,
            iat: now,
            jti: URL_SAFE_NO_PAD.encode(jti),
            typ,
            access,
        };
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.keys.active.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.keys.active.encoding)
            .map_err(|e| internal(format!("signing failed: {e}")))?;
        Ok((token, expires_in))
    }

    /// The claims of an access token, if its signature (by its `kid`), issuer, audience
    /// and validity period (with the leeway) check out at `now_ms`.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<Claims> {
        self.check(token, TokenType::Access, now_ms)
    }

    /// The claims of a refresh token, checked like [`TokenIssuer::verify`].
    pub fn verify_refresh(&self, token: &str, now_ms: u64) -> Result<Claims> {
        self.check(token, TokenType::Refresh, now_ms)
    }

    fn check(&self, token: &str, typ: TokenType, now_ms: u64) -> Result<Claims> {
        let header = jsonwebtoken::decode_header(token).map_err(unauthorized)?;
        let kid = header
            .kid
            .ok_or_else(|| unauthorized("no key id in the header"))?;
        let key = self
            .keys
            .verifiers
            .get(&kid)
            .ok_or_else(|| unauthorized("unknown key id"))?;
        let mut validation = Validation::new(ALGORITHM);
        // Times are checked below against the caller's clock, not the system's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.set_audience(&[&self.service]);
        validation.set_issuer(&[&self.issuer]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(unauthorized)?
            .claims;
        let now = now_ms / 1000;
        if now >= claims.exp.saturating_add(self.leeway_secs) {
            return Err(unauthorized("expired"));
        }
        if claims.nbf > now.saturating_add(self.leeway_secs) {
            return Err(unauthorized("not yet valid"));
        }
        if claims.typ != typ {
            return Err(unauthorized(match typ {
                TokenType::Access => "a refresh token is not an access token",
                TokenType::Refresh => "an access token is not a refresh token",
            }));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::names::RepoName;
    use Action::*;

    const NOW: u64 = 1_700_000_000_000;
    const TTL: Duration = Duration::from_secs(300);

    fn repo(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(
            KeySet::generate().unwrap(),
            "registry-token",
            "registry.test",
        )
    }

    fn scopes() -> Vec<Scope> {
        vec![
            Scope::repository(repo("team/app"), [Pull, Push]),
            Scope::repository(repo("team/empty"), []),
            Scope::catalog(),
        ]
    }

    fn is_unauthorized(r: Result<Claims>) -> bool {
        matches!(r, Err(RegistryError::Unauthorized(_)))
    }

    #[test]
    fn round_trip() {
        let t = issuer();
        let (token, expires_in) = t.issue("user:alice", scopes(), NOW, TTL).unwrap();
        assert_eq!(expires_in, 300);
        let c = t.verify(&token, NOW).unwrap();
        assert_eq!(c.iss, "registry-token");
        assert_eq!(c.sub, "user:alice");
        assert_eq!(c.aud, "registry.test");
        assert_eq!(
            (c.iat, c.nbf, c.exp),
            (NOW / 1000, NOW / 1000, NOW / 1000 + 300)
        );
        assert_eq!(c.typ, TokenType::Access);
        assert_eq!(c.jti.len(), 22);
        assert_eq!(
            c.scopes().unwrap(),
            vec![
                Scope::repository(repo("team/app"), [Pull, Push]),
                Scope::catalog()
            ]
        );
        let app = Resource::Repository(repo("team/app"));
        assert!(c.allows(&app, Pull) && c.allows(&app, Push) && !c.allows(&app, Delete));
        assert!(!c.allows(&Resource::Repository(repo("team/empty")), Pull));
        assert!(c.allows(&Resource::Catalog, Pull));
        // The wire format of the access claim is Docker's.
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(
            json["access"],
            serde_json::json!([
                {"type": "repository", "name": "team/app", "actions": ["pull", "push"]},
                {"type": "registry", "name": "catalog", "actions": ["*"]},
            ])
        );
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some(t.keys().active_kid()));
        // Two tokens never share an id.
        let (other, _) = t.issue("user:alice", scopes(), NOW, TTL).unwrap();
        assert_ne!(t.verify(&other, NOW).unwrap().jti, c.jti);
    }

    #[test]
    fn expiry_and_not_before_with_leeway() {
        let t = issuer().with_leeway(Duration::from_secs(10));
        let (token, _) = t.issue("user:alice", scopes(), NOW, TTL).unwrap();
        let exp_ms = NOW + 300_000;
        assert!(t.verify(&token, exp_ms - 1).is_ok());
        assert!(
            t.verify(&token, exp_ms + 9_999).is_ok(),
            "within the leeway"
        );
        assert!(is_unauthorized(t.verify(&token, exp_ms + 10_000)));
        assert!(is_unauthorized(t.verify(&token, exp_ms + 86_400_000)));
        assert!(t.verify(&token, NOW - 10_000).is_ok(), "within the leeway");
        assert!(
            is_unauthorized(t.verify(&token, NOW - 11_000)),
            "before nbf"
        );
    }

    #[test]
    fn wrong_signature_and_unknown_kid_are_refused() {
        let t = issuer();
        // Another key under the same kid: a forged signature.
        let (_, other_pem) = KeySet::generate_pem().unwrap();
        let kid = t.keys().active_kid().to_owned();
        let forger = TokenIssuer::new(
            KeySet::from_pems((&kid, &other_pem), []).unwrap(),
            "registry-token",
            "registry.test",
        );
        let (forged, _) = forger.issue("user:alice", scopes(), NOW, TTL).unwrap();
        assert!(is_unauthorized(t.verify(&forged, NOW)));
        // Another key under its own kid: unknown here.
        let stranger = issuer();
        let (token, _) = stranger.issue("user:alice", scopes(), NOW, TTL).unwrap();
        assert!(is_unauthorized(t.verify(&token, NOW)));
        // Garbage and truncation.
        let (good, _) = t.issue("user:alice", scopes(), NOW, TTL).unwrap();
        for bad in ["", "a.b.c", "not a token", &good[..good.len() - 4]] {
            assert!(is_unauthorized(t.verify(bad, NOW)), "{bad:?}");
        }
    }

    #[test]
    fn wrong_audience_or_issuer_is_refused() {
        let keys = |t: &TokenIssuer| {
            let pems = t.keys().to_pem().to_owned();
            KeySet::from_pems((t.keys().active_kid(), &pems), []).unwrap()
        };
        let t = issuer();
        let other_service = TokenIssuer::new(keys(&t), "registry-token", "elsewhere.test");
        let other_issuer = TokenIssuer::new(keys(&t), "someone-else", "registry.test");
        for signer in [&other_service, &other_issuer] {
            let (token, _) = signer.issue("user:alice", scopes(), NOW, TTL).unwrap();
            assert!(signer.verify(&token, NOW).is_ok());
            assert!(is_unauthorized(t.verify(&token, NOW)));
        }
    }

    /// Replaces `from` by `to` in the decoded payload of `token` (exactly once), keeping
    /// the header and the signature: a hand edit of the claims.
    fn tamper(token: &str, from: &str, to: &str) -> String {
        let parts: Vec<&str> = token.split('.').collect();
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(payload.matches(from).count(), 1, "{from} in {payload}");
        let payload = URL_SAFE_NO_PAD.encode(payload.replace(from, to));
        format!("{}.{payload}.{}", parts[0], parts[2])
    }

    #[test]
    fn edited_claims_are_refused() {
        let t = issuer();
        let pull_only = vec![Scope::repository(repo("team/app"), [Pull])];
        let (token, _) = t.issue("user:alice", pull_only, NOW, TTL).unwrap();
        assert!(t.verify(&token, NOW).is_ok());
        let unchanged = tamper(&token, r#""actions":["pull"]"#, r#""actions":["pull"]"#);
        assert!(
            t.verify(&unchanged, NOW).is_ok(),
            "the edit helper alone is harmless"
        );
        let widened = tamper(
            &token,
            r#""actions":["pull"]"#,
            r#""actions":["pull","push"]"#,
        );
        assert!(is_unauthorized(t.verify(&widened, NOW)));
        let star = tamper(&token, r#""actions":["pull"]"#, r#""actions":["*"]"#);
        assert!(is_unauthorized(t.verify(&star, NOW)));
        let other_repo = tamper(&token, r#""name":"team/app""#, r#""name":"secret/app""#);
        assert!(is_unauthorized(t.verify(&other_repo, NOW)));
        let exp = format!(r#""exp":{}"#, NOW / 1000 + 300);
        let later = tamper(&token, &exp, &format!(r#""exp":{}"#, NOW / 1000 + 999_999));
        assert!(is_unauthorized(t.verify(&later, NOW)));
        let other_sub = tamper(&token, r#""sub":"user:alice""#, r#""sub":"user:admin""#);
        assert!(is_unauthorized(t.verify(&other_sub, NOW)));
    }

    #[test]
    fn other_algorithms_in_the_header_are_refused() {
        let t = issuer();
        let (token, _) = t.issue("user:alice", scopes(), NOW, TTL).unwrap();
        let rest = token.split_once('.').unwrap().1;
        let kid = t.keys().active_kid();
        for alg in ["none", "HS256", "ES384", "RS256"] {
            let header =
                URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"{kid}"}}"#));
            assert!(
                is_unauthorized(t.verify(&format!("{header}.{rest}"), NOW)),
                "{alg}"
            );
        }
    }

    #[test]
    fn rotation_keeps_old_tokens_until_the_old_key_is_retired() {
        let mut t = issuer();
        let old_kid = t.keys().active_kid().to_owned();
        let (old_token, _) = t.issue("user:alice", scopes(), NOW, TTL).unwrap();
        let (new_kid, new_pem) = KeySet::generate_pem().unwrap();
        t.keys_mut().rotate((&new_kid, &new_pem)).unwrap();
        assert_eq!(t.keys().active_kid(), new_kid);
        let (new_token, _) = t.issue("user:alice", scopes(), NOW, TTL).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&new_token)
                .unwrap()
                .kid
                .as_deref(),
            Some(new_kid.as_str())
        );
        assert!(
            t.verify(&old_token, NOW).is_ok(),
            "previous key still verifies"
        );
        assert!(t.verify(&new_token, NOW).is_ok());
        assert!(!t.keys_mut().retire(&new_kid), "the active key stays");
        assert!(t.keys_mut().retire(&old_kid));
        assert!(is_unauthorized(t.verify(&old_token, NOW)), "retired key");
        assert!(t.verify(&new_token, NOW).is_ok());
        assert!(
            t.keys_mut().rotate((&new_kid, &new_pem)).is_err(),
            "duplicate kid"
        );
    }

    #[test]
    fn keys_persist_as_pem_and_verification_keys_may_be_public_only() {
        let first = KeySet::generate().unwrap();
        let kid1 = first.active_kid().to_owned();
        let pem1 = first.to_pem().to_owned();
        assert!(pem1.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem1.ends_with("-----END PRIVATE KEY-----\n"));
        assert_eq!(kid1.len(), 43, "a SHA-256 JWK thumbprint");
        let public1 = first.public_pems()[0].1.clone();
        assert!(public1.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let old = TokenIssuer::new(first, "iss", "svc");
        let (token, _) = old.issue("robot:ci", scopes(), NOW, TTL).unwrap();

        // Reloaded from its PEM, the same key verifies what it signed.
        let reloaded = KeySet::from_pems((&kid1, &pem1), []).unwrap();
        assert_eq!(reloaded.to_pem(), pem1);
        assert!(
            TokenIssuer::new(reloaded, "iss", "svc")
                .verify(&token, NOW)
                .is_ok()
        );

        // A new active key with the old one as a public verification key.
        let (kid2, pem2) = KeySet::generate_pem().unwrap();
        let both = KeySet::from_pems((&kid2, &pem2), [(kid1.as_str(), public1.as_str())]).unwrap();
        let kids: Vec<_> = both.verification_kids().collect();
        assert_eq!(kids.len(), 2);
        assert!(kids.contains(&kid1.as_str()) && kids.contains(&kid2.as_str()));
        assert_eq!(both.public_pems().len(), 2);
        let t = TokenIssuer::new(both, "iss", "svc");
        assert!(t.verify(&token, NOW).is_ok());
        // The old key as a private PEM works too.
        let both = KeySet::from_pems((&kid2, &pem2), [(kid1.as_str(), pem1.as_str())]).unwrap();
        assert!(
            TokenIssuer::new(both, "iss", "svc")
                .verify(&token, NOW)
                .is_ok()
        );

        // Invalid input is refused, and never echoed.
        assert!(KeySet::from_pems(("k", "not a pem"), []).is_err());
        assert!(
            KeySet::from_pems(("k", &public1), []).is_err(),
            "public key cannot sign"
        );
        assert!(KeySet::from_pems(("", &pem2), []).is_err());
        assert!(KeySet::from_pems(("a b", &pem2), []).is_err());
        assert!(KeySet::from_pems(("k", &pem2), [("k", public1.as_str())]).is_err());
        let err = KeySet::from_pems(("k", &pem2.replace('A', "B")), [])
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("PRIVATE KEY") && !err.contains(&pem2[40..60]),
            "{err}"
        );
    }

    #[test]
    fn debug_output_holds_no_key_material() {
        let t = issuer();
        let pem = t.keys().to_pem().to_owned();
        let body: String = pem.lines().nth(1).unwrap().to_owned();
        let shown = format!("{t:?} {:?}", t.keys());
        assert!(shown.contains(t.keys().active_kid()), "{shown}");
        assert!(
            !shown.contains(&body[..20]) && !shown.contains("PRIVATE"),
            "{shown}"
        );
    }

    #[test]
    fn refresh_and_access_tokens_are_not_interchangeable() {
        let t = issuer();
        let day = Duration::from_secs(86_400);
        let (refresh, expires_in) = t.issue_refresh("user:alice", NOW, day).unwrap();
        assert_eq!(expires_in, 86_400);
        let c = t.verify_refresh(&refresh, NOW + 3_600_000).unwrap();
        assert_eq!((c.typ, c.sub.as_str()), (TokenType::Refresh, "user:alice"));
        assert!(c.access.is_empty());
        assert!(is_unauthorized(t.verify(&refresh, NOW)));
        let (access, _) = t.issue("user:alice", scopes(), NOW, TTL).unwrap();
        assert!(is_unauthorized(t.verify_refresh(&access, NOW)));
        assert!(is_unauthorized(
            t.verify_refresh(&refresh, NOW + 86_400_000 + 31_000)
        ));
        let retyped = tamper(&refresh, r#""typ":"refresh""#, r#""typ":"access""#);
        assert!(is_unauthorized(t.verify(&retyped, NOW)));
    }

    /// Cost of issuing and verifying one token; run with `--nocapture` (and `--release`
    /// for production numbers) to read it. Not an assertion.
    #[test]
    fn cost_of_issuing_and_verifying() {
        let t = issuer();
        let scopes = vec![Scope::repository(repo("team/app"), [Pull, Push])];
        let n = 200;
        let start = Instant::now();
        let tokens: Vec<String> = (0..n)
            .map(|_| t.issue("user:alice", scopes.clone(), NOW, TTL).unwrap().0)
            .collect();
        let issue = start.elapsed() / n;
        let start = Instant::now();
        for token in &tokens {
            t.verify(token, NOW).unwrap();
        }
        let verify = start.elapsed() / n;
        println!(
            "token cost ({} build): issue {issue:?}, verify {verify:?} per token ({} bytes)",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            tokens[0].len()
        );
    }

    #[test]
    fn a_signing_key_may_be_given_as_the_base64_of_its_der() {
        let (_, pem) = KeySet::generate_pem().unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let from_base64 = private_key_pem(&body).unwrap();
        assert_eq!(key_id(&from_base64).unwrap(), key_id(&pem).unwrap());
        assert_eq!(private_key_pem(&pem).unwrap(), pem);
        assert!(private_key_pem("not base64 at all!").is_err());
        assert!(key_id(&private_key_pem("aGVsbG8=").unwrap()).is_err());
    }
}

//! Content digests (`sha256:…`, `sha512:…`): parsing by the OCI grammar and hashing with a
//! state that can be saved between requests.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::digest::common::hazmat::{SerializableState, SerializedState};
use sha2::{Digest as _, Sha256, Sha512};

use crate::error::RegistryError;

/// The hash functions the registry verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestAlgorithm {
    Sha256,
    Sha512,
}

impl DigestAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sha512 => "sha512",
        }
    }

    /// Parses an algorithm name (`sha256`, `sha512`).
    pub fn parse(name: &str) -> Result<Self, RegistryError> {
        match name {
            "sha256" => Ok(DigestAlgorithm::Sha256),
            "sha512" => Ok(DigestAlgorithm::Sha512),
            _ => Err(RegistryError::DigestInvalid(format!(
                "unsupported digest algorithm {name:?}"
            ))),
        }
    }

    fn hex_len(self) -> usize {
        match self {
            DigestAlgorithm::Sha256 => 64,
            DigestAlgorithm::Sha512 => 128,
        }
    }
}

/// A verified-form digest: a known algorithm and its lowercase hex encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: DigestAlgorithm,
    hex: String,
}

impl Digest {
    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The digest of `bytes` with `algorithm`.
    pub fn of(algorithm: DigestAlgorithm, bytes: &[u8]) -> Digest {
        let mut hasher = DigestHasher::new(algorithm);
        hasher.update(bytes);
        hasher.finish()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl FromStr for Digest {
    type Err = RegistryError;

    /// Parses `algorithm:encoded` by the grammar of the OCI image spec; algorithms other
    /// than sha256 and sha512 are refused as unsupported digests.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || RegistryError::DigestInvalid(format!("invalid digest {s:?}"));
        let (alg, hex) = s.split_once(':').ok_or_else(invalid)?;
        let algorithm = DigestAlgorithm::parse(alg)?;
        let well_formed = hex.len() == algorithm.hex_len()
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(invalid());
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A running hash whose state can be saved and restored, so an upload's chunks may be
/// hashed by different processes.
#[derive(Clone)]
pub enum DigestHasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl DigestHasher {
    pub fn new(algorithm: DigestAlgorithm) -> Self {
        match algorithm {
            DigestAlgorithm::Sha256 => DigestHasher::Sha256(Sha256::new()),
            DigestAlgorithm::Sha512 => DigestHasher::Sha512(Sha512::new()),
        }
    }

    pub fn algorithm(&self) -> DigestAlgorithm {
        match self {
            DigestHasher::Sha256(_) => DigestAlgorithm::Sha256,
            DigestHasher::Sha512(_) => DigestAlgorithm::Sha512,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            DigestHasher::Sha256(h) => h.update(bytes),
            DigestHasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        let algorithm = self.algorithm();
        let hex = match self {
            DigestHasher::Sha256(h) => hex::encode(h.finalize()),
            DigestHasher::Sha512(h) => hex::encode(h.finalize()),
        };
        Digest { algorithm, hex }
    }

    /// The serialised hash state (a few hundred bytes at most).
    pub fn save(&self) -> Vec<u8> {
        match self {
            DigestHasher::Sha256(h) => h.serialize().to_vec(),
            DigestHasher::Sha512(h) => h.serialize().to_vec(),
        }
    }

    /// Restores a state written by [`DigestHasher::save`].
    pub fn restore(algorithm: DigestAlgorithm, state: &[u8]) -> Result<Self, RegistryError> {
        let corrupt = || RegistryError::Storage("corrupt upload hash state".into());
        Ok(match algorithm {
            DigestAlgorithm::Sha256 => {
                let s = SerializedState::<Sha256>::try_from(state).map_err(|_| corrupt())?;
                DigestHasher::Sha256(Sha256::deserialize(&s).map_err(|_| corrupt())?)
            }
            DigestAlgorithm::Sha512 => {
                let s = SerializedState::<Sha512>::try_from(state).map_err(|_| corrupt())?;
                DigestHasher::Sha512(Sha512::deserialize(&s).map_err(|_| corrupt())?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sha256_and_sha512() {
        let d = Digest::of(DigestAlgorithm::Sha256, b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        let d = Digest::of(DigestAlgorithm::Sha512, b"abc");
        assert!(d.to_string().starts_with("sha512:ddaf35a193617aba"));
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn refuses_malformed_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:abc",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:../../../../etc/passwd",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn saved_state_continues_the_same_hash() {
        for alg in [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512] {
            let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
            let mut first = DigestHasher::new(alg);
            first.update(&data[..3333]);
            let state = first.save();
            let mut second = DigestHasher::restore(alg, &state).unwrap();
            second.update(&data[3333..]);
            assert_eq!(second.finish(), Digest::of(alg, &data));
        }
    }

    #[test]
    fn corrupt_state_is_an_error() {
        assert!(DigestHasher::restore(DigestAlgorithm::Sha256, b"short").is_err());
    }
}

//! Manifest kinds the registry accepts (OCI image manifest and index, Docker schema 2
//! manifest and manifest list) and what a pushed manifest references.

use std::collections::BTreeMap;

use oci_spec::image::{ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{RegistryError, Result};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Largest manifest body accepted (the spec's clients limit themselves to 4 MiB).
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// Whether a manifest lists blobs (an image) or other manifests (an index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    Image,
    Index,
}

/// What the registry needs to know of a pushed manifest.
#[derive(Debug, Clone)]
pub struct ParsedManifest {
    pub media_type: String,
    pub kind: ManifestKind,
    /// Blobs (config and layers) that must be linked in the repository.
    pub blobs: Vec<Digest>,
    /// Child manifests (of an index) that must exist in the repository.
    pub manifests: Vec<Digest>,
    pub subject: Option<Digest>,
    /// `artifactType`, or for an image without one, its config media type.
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A descriptor of a referrer as the referrers API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferrerDescriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The fields every manifest kind may carry at the top level.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    config: Option<serde_json::Value>,
}

/// Media type without parameters (`; charset=…`), lowercased.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn invalid(msg: impl Into<String>) -> RegistryError {
    RegistryError::ManifestInvalid(msg.into())
}

fn parse_digest(s: &str) -> Result<Digest> {
    s.parse()
        .map_err(|_| invalid(format!("invalid digest {s:?} in manifest")))
}

fn hash_map_to_btree(
    m: &Option<std::collections::HashMap<String, String>>,
) -> Option<BTreeMap<String, String>> {
    m.as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Non-distributable ("foreign") layers live elsewhere and need not be pushed.
fn is_foreign_layer(media_type: &str) -> bool {
    media_type.contains(".foreign.") || media_type.contains(".nondistributable.")
}

/// Parses a manifest body pushed with `content_type`, checking that the declared media
/// types agree and that the body has the shape of its kind.
pub fn parse_manifest(content_type: Option<&str>, body: &[u8]) -> Result<ParsedManifest> {
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    let header = content_type.map(essence).filter(|c| !c.is_empty());
    let media_type = match (&envelope.media_type, &header) {
        (Some(body_type), Some(h)) if body_type != h => {
            return Err(invalid(format!(
                "mediaType {body_type:?} does not match Content-Type {h:?}"
            )));
        }
        (Some(t), _) => t.clone(),
        (None, Some(h)) if h != "application/json" && h != "application/octet-stream" => h.clone(),
        (None, _) if envelope.manifests.is_some() => OCI_INDEX.to_owned(),
        (None, _) if envelope.config.is_some() => OCI_MANIFEST.to_owned(),
        (None, _) => return Err(invalid("cannot tell the manifest's media type")),
    };
    if envelope.schema_version != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => parse_image(media_type, body),
        OCI_INDEX | DOCKER_MANIFEST_LIST => parse_index(media_type, body),
        other => Err(invalid(format!(
            "unsupported manifest media type {other:?}"
        ))),
    }
}

fn parse_image(media_type: String, body: &[u8]) -> Result<ParsedManifest> {
    let m: ImageManifest = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("invalid image manifest: {e}")))?;
    let mut blobs = vec![parse_digest(m.config().digest().as_ref())?];
    for layer in m.layers() {
        let foreign = is_foreign_layer(layer.media_type().as_ref())
            && layer.urls().as_ref().is_some_and(|u| !u.is_empty());
        if !foreign {
            blobs.push(parse_digest(layer.digest().as_ref())?);
        }
    }
    let subject = m
        .subject()
        .as_ref()
        .map(|s| parse_digest(s.digest().as_ref()))
        .transpose()?;
    let artifact_type = m
        .artifact_type()
        .as_ref()
        .map(|t| t.to_string())
        .or_else(|| Some(m.config().media_type().to_string()));
    Ok(ParsedManifest {
        media_type,
        kind: ManifestKind::Image,
        blobs,
        manifests: Vec::new(),
        subject,
        artifact_type,
        annotations: hash_map_to_btree(m.annotations()),
    })
}

fn parse_index(media_type: String, body: &[u8]) -> Result<ParsedManifest> {
    let ix: ImageIndex =
        serde_json::from_slice(body).map_err(|e| invalid(format!("invalid index: {e}")))?;
    let manifests = ix
        .manifests()
        .iter()
        .map(|d| parse_digest(d.digest().as_ref()))
        .collect::<Result<Vec<_>>>()?;
    let subject = ix
        .subject()
        .as_ref()
        .map(|s| parse_digest(s.digest().as_ref()))
        .transpose()?;
    Ok(ParsedManifest {
        media_type,
        kind: ManifestKind::Index,
        blobs: Vec::new(),
        manifests,
        subject,
        artifact_type: ix.artifact_type().as_ref().map(|t| t.to_string()),
        annotations: hash_map_to_btree(ix.annotations()),
    })
}

/// Whether an `Accept` header admits `media_type`. No header, or an empty one, admits all.
pub fn accepts(accept: &[String], media_type: &str) -> bool {
    let wanted: Vec<String> = accept
        .iter()
        .flat_map(|h| h.split(','))
        .map(essence)
        .filter(|t| !t.is_empty())
        .collect();
    if wanted.is_empty() {
        return true;
    }
    let (top, _) = media_type.split_once('/').unwrap_or((media_type, ""));
    wanted
        .iter()
        .any(|w| w == media_type || w == "*/*" || *w == format!("{top}/*"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(media_type: Option<&str>) -> Vec<u8> {
        let mut v = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D1, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D2, "size": 3}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": D2, "size": 9}
        });
        if let Some(t) = media_type {
            v["mediaType"] = t.into();
        }
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn image_lists_config_layers_and_subject() {
        let p = parse_manifest(Some(OCI_MANIFEST), &image(Some(OCI_MANIFEST))).unwrap();
        assert_eq!(p.kind, ManifestKind::Image);
        assert_eq!(p.blobs.len(), 2);
        assert_eq!(p.subject.unwrap().to_string(), D2);
        assert_eq!(
            p.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn media_type_comes_from_body_or_header() {
        let p = parse_manifest(None, &image(None)).unwrap();
        assert_eq!(p.media_type, OCI_MANIFEST);
        let p = parse_manifest(Some(DOCKER_MANIFEST), &image(None)).unwrap();
        assert_eq!(p.media_type, DOCKER_MANIFEST);
        let err = parse_manifest(Some(OCI_INDEX), &image(Some(OCI_MANIFEST))).unwrap_err();
        assert!(matches!(err, RegistryError::ManifestInvalid(_)));
    }

    #[test]
    fn refuses_garbage_and_unknown_types() {
        assert!(parse_manifest(Some(OCI_MANIFEST), b"not json").is_err());
        assert!(parse_manifest(Some(OCI_MANIFEST), b"{\"schemaVersion\":2}").is_err());
        assert!(parse_manifest(Some("text/plain"), &image(None)).is_err());
        let schema1 = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(parse_manifest(None, schema1).is_err());
    }

    #[test]
    fn index_lists_children() {
        let ix = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": D1, "size": 5,
                           "platform": {"architecture": "amd64", "os": "linux"}}]
        });
        let p = parse_manifest(Some(OCI_INDEX), &serde_json::to_vec(&ix).unwrap()).unwrap();
        assert_eq!(p.kind, ManifestKind::Index);
        assert_eq!(p.manifests.len(), 1);
        assert!(p.blobs.is_empty());
    }

    #[test]
    fn accept_negotiation() {
        assert!(accepts(&[], OCI_MANIFEST));
        assert!(accepts(
            &[format!("{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.5")],
            OCI_MANIFEST
        ));
        assert!(!accepts(&[DOCKER_MANIFEST.to_owned()], OCI_MANIFEST));
        assert!(accepts(&["*/*".to_owned()], OCI_INDEX));
        assert!(accepts(&["application/*".to_owned()], OCI_INDEX));
    }
}

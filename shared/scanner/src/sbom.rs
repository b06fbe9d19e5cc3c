//! CycloneDX 1.5 JSON SBOMs of an image's inventory, with a package URL (purl) per
//! component; stored by the registry as an OCI artifact whose `subject` is the image.

use serde_json::{Value, json};

use crate::{Distro, Ecosystem, Inventory, Package};

/// The media type of a CycloneDX JSON document (artifact type and layer type).
pub const CYCLONEDX_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";

/// What the SBOM describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef<'a> {
    /// `team/app`.
    pub repository: &'a str,
    /// `sha256:…` of the image manifest.
    pub digest: &'a str,
    /// RFC 3339 time of the scan; `None` keeps the document the same for the same
    /// inventory (the registry stores SBOMs by digest: a rescan that finds the same
    /// packages writes no new artifact).
    pub timestamp: Option<&'a str>,
    /// The tool version written into `metadata.tools`.
    pub tool_version: &'a str,
}

/// Percent-encodes everything but unreserved characters (RFC 3986), as purl requires
/// for names, versions and qualifier values.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The purl namespace of an OS package: the distribution id (`debian`, `alpine`, …).
fn os_namespace(pkg: &Package, distro: Option<&Distro>) -> String {
    match (pkg.ecosystem, distro) {
        (_, Some(d)) if !d.id.is_empty() => d.id.clone(),
        (Ecosystem::Ubuntu, _) => "ubuntu".into(),
        (Ecosystem::Alpine, _) => "alpine".into(),
        (Ecosystem::Rpm, _) => "redhat".into(),
        _ => "debian".into(),
    }
}

/// The package URL of `pkg` (https://github.com/package-url/purl-spec).
pub fn purl(pkg: &Package, distro: Option<&Distro>) -> String {
    let ty = pkg.ecosystem.purl_type();
    let version = encode(&pkg.version);
    match pkg.ecosystem {
        Ecosystem::Debian | Ecosystem::Ubuntu | Ecosystem::Alpine | Ecosystem::Rpm => {
            let mut qualifiers = Vec::new();
            if let Some(d) = distro
                && let Some(v) = &d.version_id
            {
                qualifiers.push(format!("distro={}", encode(&format!("{}-{v}", d.id))));
            }
            if let Some(source) = &pkg.source_name
                && source != &pkg.name
            {
                let upstream = match &pkg.source_version {
                    Some(v) => format!("{source}@{v}"),
                    None => source.clone(),
                };
                qualifiers.push(format!("upstream={}", encode(&upstream)));
            }
            let mut purl = format!(
                "pkg:{ty}/{}/{}@{version}",
                os_namespace(pkg, distro),
                encode(&pkg.name)
            );
            if !qualifiers.is_empty() {
                qualifiers.sort();
                purl.push('?');
                purl.push_str(&qualifiers.join("&"));
            }
            purl
        }
        Ecosystem::PyPI => format!(
            "pkg:pypi/{}@{version}",
            encode(&pkg.name.to_lowercase().replace('_', "-"))
        ),
        Ecosystem::Npm => match pkg.name.strip_prefix('@').and_then(|n| n.split_once('/')) {
            Some((scope, name)) => {
                format!("pkg:npm/%40{}/{}@{version}", encode(scope), encode(name))
            }
            None => format!("pkg:npm/{}@{version}", encode(&pkg.name)),
        },
        Ecosystem::CratesIo => format!("pkg:cargo/{}@{version}", encode(&pkg.name)),
        Ecosystem::Go => {
            let path: Vec<String> = pkg.name.split('/').map(encode).collect();
            format!("pkg:golang/{}@{version}", path.join("/"))
        }
        Ecosystem::Maven => match pkg.name.split_once(':') {
            Some((group, artifact)) => {
                format!("pkg:maven/{}/{}@{version}", encode(group), encode(artifact))
            }
            None => format!("pkg:maven/{}@{version}", encode(&pkg.name)),
        },
    }
}

/// The SBOM of `inventory`, found in `image`.
pub fn cyclonedx(inventory: &Inventory, image: &ImageRef<'_>) -> Value {
    let distro = inventory.distro.as_ref();
    let mut components: Vec<Value> = Vec::new();
    if let Some(d) = distro {
        components.push(json!({
            "type": "operating-system",
            "bom-ref": format!("os:{}", d.id),
            "name": d.id,
            "version": d.version_id,
            "description": d.pretty_name,
        }));
    }
    for pkg in &inventory.packages {
        let purl = purl(pkg, distro);
        let mut properties = vec![
            json!({"name": "registry:layer", "value": pkg.layer.to_string()}),
            json!({"name": "registry:path", "value": pkg.path}),
            json!({"name": "registry:ecosystem", "value": pkg.ecosystem.osv_name()}),
        ];
        if let Some(source) = &pkg.source_name {
            properties.push(json!({"name": "registry:source-name", "value": source}));
        }
        if let Some(v) = &pkg.source_version {
            properties.push(json!({"name": "registry:source-version", "value": v}));
        }
        components.push(json!({
            "type": "library",
            "bom-ref": purl,
            "name": pkg.name,
            "version": pkg.version,
            "purl": purl,
            "properties": properties,
        }));
    }
    let hex = image
        .digest
        .split_once(':')
        .map_or(image.digest, |(_, h)| h);
    let mut metadata = serde_json::Map::new();
    if let Some(timestamp) = image.timestamp {
        metadata.insert("timestamp".into(), json!(timestamp));
    }
    metadata.insert(
        "tools".into(),
        json!({"components": [{"type": "application", "name": "registry-scanner",
                               "version": image.tool_version}]}),
    );
    metadata.insert(
        "component".into(),
        json!({
            "type": "container",
            "bom-ref": format!("pkg:oci/{}@{}", encode(image.repository.rsplit('/').next().unwrap_or(image.repository)), encode(image.digest)),
            "name": image.repository,
            "version": image.digest,
            "hashes": [{"alg": "SHA-256", "content": hex}],
        }),
    );
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", serial(image.digest)),
        "version": 1,
        "metadata": metadata,
        "components": components,
    })
}

/// A stable UUID-shaped serial derived from the image digest (one SBOM per image and
/// scanner version; a rescan of the same image names the same document).
fn serial(digest: &str) -> String {
    let hex: String = digest
        .split_once(':')
        .map_or(digest, |(_, h)| h)
        .chars()
        .filter(char::is_ascii_hexdigit)
        .chain(std::iter::repeat('0'))
        .take(32)
        .collect();
    format!(
        "{}-{}-5{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(ecosystem: Ecosystem, name: &str, version: &str) -> Package {
        Package {
            ecosystem,
            name: name.into(),
            version: version.into(),
            source_name: None,
            source_version: None,
            layer: 0,
            path: "p".into(),
        }
    }

    fn debian() -> Distro {
        Distro {
            id: "debian".into(),
            version_id: Some("12".into()),
            codename: Some("bookworm".into()),
            pretty_name: Some("Debian GNU/Linux 12 (bookworm)".into()),
        }
    }

    #[test]
    fn purls_per_ecosystem() {
        let d = debian();
        let mut libssl = pkg(Ecosystem::Debian, "libssl3", "3.0.11-1~deb12u2");
        libssl.source_name = Some("openssl".into());
        assert_eq!(
            purl(&libssl, Some(&d)),
            "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?distro=debian-12&upstream=openssl"
        );
        let mut perl = pkg(Ecosystem::Debian, "perl-base", "5.36.0-7+deb12u1");
        perl.source_name = Some("perl".into());
        perl.source_version = Some("5.36.0-7".into());
        assert_eq!(
            purl(&perl, Some(&d)),
            "pkg:deb/debian/perl-base@5.36.0-7%2Bdeb12u1?distro=debian-12&upstream=perl%405.36.0-7"
        );
        assert_eq!(
            purl(&pkg(Ecosystem::PyPI, "Flask_Login", "0.6.3"), None),
            "pkg:pypi/flask-login@0.6.3"
        );
        assert_eq!(
            purl(&pkg(Ecosystem::Npm, "@babel/core", "7.23.0"), None),
            "pkg:npm/%40babel/core@7.23.0"
        );
        assert_eq!(
            purl(&pkg(Ecosystem::CratesIo, "serde", "1.0.193"), None),
            "pkg:cargo/serde@1.0.193"
        );
        assert_eq!(
            purl(&pkg(Ecosystem::Go, "golang.org/x/net", "v0.17.0"), None),
            "pkg:golang/golang.org/x/net@v0.17.0"
        );
        assert_eq!(
            purl(
                &pkg(
                    Ecosystem::Maven,
                    "org.apache.logging.log4j:log4j-core",
                    "2.14.1"
                ),
                None
            ),
            "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"
        );
        let alpine = Distro {
            id: "alpine".into(),
            version_id: Some("3.19.1".into()),
            ..Distro::default()
        };
        assert_eq!(
            purl(
                &pkg(Ecosystem::Alpine, "musl", "1.2.4_git20230717-r4"),
                Some(&alpine)
            ),
            "pkg:apk/alpine/musl@1.2.4_git20230717-r4?distro=alpine-3.19.1"
        );
    }

    #[test]
    fn cyclonedx_document_lists_every_package() {
        let inventory = Inventory {
            distro: Some(debian()),
            packages: vec![
                pkg(Ecosystem::Debian, "bash", "5.2.15-2+b2"),
                pkg(Ecosystem::PyPI, "requests", "2.31.0"),
            ],
        };
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let doc = cyclonedx(
            &inventory,
            &ImageRef {
                repository: "team/app",
                digest,
                timestamp: Some("2026-11-28T12:00:00.000Z"),
                tool_version: "0.1.0",
            },
        );
        assert_eq!(doc["bomFormat"], "CycloneDX");
        assert_eq!(doc["specVersion"], "1.5");
        assert_eq!(
            doc["serialNumber"],
            "urn:uuid:01234567-89ab-5def-8123-456789abcdef"
        );
        assert_eq!(doc["metadata"]["component"]["type"], "container");
        assert_eq!(doc["metadata"]["component"]["name"], "team/app");
        let components = doc["components"].as_array().unwrap();
        assert_eq!(components.len(), 3, "the OS and two packages");
        assert_eq!(components[0]["type"], "operating-system");
        assert_eq!(components[0]["version"], "12");
        assert_eq!(
            components[1]["purl"],
            "pkg:deb/debian/bash@5.2.15-2%2Bb2?distro=debian-12"
        );
        assert_eq!(components[2]["purl"], "pkg:pypi/requests@2.31.0");
        assert_eq!(components[2]["properties"][0]["name"], "registry:layer");
    }
}

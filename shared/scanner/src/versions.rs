//! Version comparison the way each ecosystem's own tools do it: dpkg, apk, rpm EVR,
//! SemVer (npm, crates.io), Go modules, PEP 440 (PyPI) and Maven.
//!
//! [`compare`] parses both versions with the [`VersionScheme`]'s rules and orders them;
//! a version the scheme cannot parse is a [`VersionError`], never a guess.
//!
//! | scheme | implementation |
//! |---|---|
//! | [`VersionScheme::Dpkg`] | the `debversion` crate (dpkg's `verrevcmp`: epochs, `~` before everything, revisions) |
//! | [`VersionScheme::Apk`] | apk-tools' rules, implemented here ([`compare_apk`]) |
//! | [`VersionScheme::RpmEvr`] | the `rpm-version` crate (rpm's `rpmvercmp` with `~` and `^`, epochs) |
//! | [`VersionScheme::Semver`] | the `semver` crate, SemVer 2.0 precedence, npm-style leading `v`/`=` |
//! | [`VersionScheme::Go`] | SemVer precedence with Go's spelling (`v` prefix, `+incompatible`, `go1.21.5`) |
//! | [`VersionScheme::Pep440`] | the `pep440_rs` crate (epochs, pre/post/dev releases, local versions) |
//! | [`VersionScheme::Maven`] | Maven's `ComparableVersion` algorithm, implemented here ([`compare_maven`]) |

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::Ecosystem;

/// How an ecosystem orders its versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionScheme {
    /// Debian and Ubuntu packages: `[epoch:]upstream[-revision]`.
    Dpkg,
    /// Alpine packages: `digit{.digit}…{letter}{_suffix{#}}…{~hash}{-r#}`.
    Apk,
    /// rpm packages: `[epoch:]version[-release]`.
    RpmEvr,
    /// npm and crates.io: SemVer 2.0.
    Semver,
    /// PyPI: PEP 440.
    Pep440,
    /// Go modules: SemVer with a `v` prefix.
    Go,
    /// Maven artifacts: `ComparableVersion`.
    Maven,
}

impl VersionScheme {
    /// A short lowercase name (`dpkg`, `apk`, `rpm`, `semver`, `pep440`, `go`, `maven`).
    pub fn name(self) -> &'static str {
        match self {
            VersionScheme::Dpkg => "dpkg",
            VersionScheme::Apk => "apk",
            VersionScheme::RpmEvr => "rpm",
            VersionScheme::Semver => "semver",
            VersionScheme::Pep440 => "pep440",
            VersionScheme::Go => "go",
            VersionScheme::Maven => "maven",
        }
    }
}

impl fmt::Display for VersionScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Ecosystem> for VersionScheme {
    /// Debian/Ubuntu → dpkg, Alpine → apk, rpm → EVR, PyPI → PEP 440, npm/crates.io →
    /// SemVer, Go → Go, Maven → Maven `ComparableVersion`.
    fn from(ecosystem: Ecosystem) -> Self {
        match ecosystem {
            Ecosystem::Debian | Ecosystem::Ubuntu => VersionScheme::Dpkg,
            Ecosystem::Alpine => VersionScheme::Apk,
            Ecosystem::Rpm => VersionScheme::RpmEvr,
            Ecosystem::PyPI => VersionScheme::Pep440,
            Ecosystem::Npm | Ecosystem::CratesIo => VersionScheme::Semver,
            Ecosystem::Go => VersionScheme::Go,
            Ecosystem::Maven => VersionScheme::Maven,
        }
    }
}

/// A version string the scheme cannot parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {scheme} version {version:?}: {reason}")]
pub struct VersionError {
    pub scheme: VersionScheme,
    pub version: String,
    pub reason: String,
}

impl VersionError {
    fn new(scheme: VersionScheme, version: &str, reason: impl fmt::Display) -> Self {
        VersionError {
            scheme,
            version: version.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Orders `a` and `b` with the rules of `scheme`; an error names the first version that
/// does not parse. Surrounding whitespace is ignored.
pub fn compare(scheme: VersionScheme, a: &str, b: &str) -> Result<Ordering, VersionError> {
    let (a, b) = (a.trim(), b.trim());
    match scheme {
        VersionScheme::Dpkg => Ok(parse_dpkg(a)?.cmp(&parse_dpkg(b)?)),
        VersionScheme::Apk => compare_apk(a, b),
        VersionScheme::RpmEvr => {
            check_rpm(a)?;
            check_rpm(b)?;
            Ok(rpm_version::rpm_evr_compare(a, b))
        }
        VersionScheme::Semver => {
            Ok(parse_semver(scheme, a)?.cmp_precedence(&parse_semver(scheme, b)?))
        }
        VersionScheme::Go => Ok(parse_go(a)?.cmp_precedence(&parse_go(b)?)),
        VersionScheme::Pep440 => Ok(parse_pep440(a)?.cmp(&parse_pep440(b)?)),
        VersionScheme::Maven => compare_maven(a, b),
    }
}

/// Checks that `version` parses in `scheme`.
pub fn validate(scheme: VersionScheme, version: &str) -> Result<(), VersionError> {
    compare(scheme, version, version).map(|_| ())
}

// ---------------------------------------------------------------------------------------
// dpkg

/// Debian Policy's syntax first; versions with `_` (seen in the wild) parse leniently.
fn parse_dpkg(v: &str) -> Result<debversion::Version, VersionError> {
    if v.is_empty() {
        return Err(VersionError::new(VersionScheme::Dpkg, v, "empty"));
    }
    debversion::Version::from_str(v)
        .or_else(|_| debversion::Version::parse_lenient(v))
        .map_err(|e| VersionError::new(VersionScheme::Dpkg, v, e))
}

// ---------------------------------------------------------------------------------------
// rpm

/// `rpm-version` accepts any string (rpmvercmp skips separators); empty strings and
/// whitespace are refused here so that garbage is an error rather than a low version.
fn check_rpm(v: &str) -> Result<(), VersionError> {
    if v.is_empty() {
        return Err(VersionError::new(VersionScheme::RpmEvr, v, "empty"));
    }
    if v.chars().any(char::is_whitespace) {
        return Err(VersionError::new(
            VersionScheme::RpmEvr,
            v,
            "contains whitespace",
        ));
    }
    let (epoch, rest) = v.split_once(':').unwrap_or(("0", v));
    if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VersionError::new(
            VersionScheme::RpmEvr,
            v,
            "epoch is not a number",
        ));
    }
    if rest.is_empty() || rest.starts_with('-') {
        return Err(VersionError::new(VersionScheme::RpmEvr, v, "no version"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// SemVer and Go

/// SemVer 2.0 with npm's leniency: surrounding whitespace, a leading `=` and a leading
/// `v` are accepted (`=v1.2.3`). Partial versions (`1.2`) are errors.
fn parse_semver(scheme: VersionScheme, v: &str) -> Result<semver::Version, VersionError> {
    let s = v.strip_prefix('=').unwrap_or(v).trim_start();
    let s = s
        .strip_prefix('v')
        .or_else(|| s.strip_prefix('V'))
        .unwrap_or(s);
    semver::Version::parse(s).map_err(|e| VersionError::new(scheme, v, e))
}

/// Go module versions: SemVer with an optional `v` (OSV writes Go versions without it,
/// modules with it), `+incompatible` (build metadata, ignored by precedence), Go's
/// shorthands `v1` and `v1.2` (= `v1.0.0`, `v1.2.0`), and toolchain versions of the
/// standard library (`go1.21.5`, `go1.21`, `go1.22rc1` = `1.22.0-rc.1`).
fn parse_go(v: &str) -> Result<semver::Version, VersionError> {
    let err = |reason: &str| VersionError::new(VersionScheme::Go, v, reason);
    if let Some(toolchain) = v.strip_prefix("go") {
        return parse_go_toolchain(toolchain).ok_or_else(|| err("not a Go toolchain version"));
    }
    let s = v.strip_prefix('v').unwrap_or(v);
    let core_end = s.find(['-', '+']).unwrap_or(s.len());
    let (core, tail) = s.split_at(core_end);
    let parts = core.split('.').count();
    let padded = match parts {
        1 if tail.is_empty() => format!("{core}.0.0"),
        2 if tail.is_empty() => format!("{core}.0"),
        _ => s.to_owned(),
    };
    semver::Version::parse(&padded).map_err(|e| err(&e.to_string()))
}

/// `1.21.5`, `1.21`, `1.22rc1`, `1.22beta2` → SemVer.
fn parse_go_toolchain(s: &str) -> Option<semver::Version> {
    let pre_at = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (numbers, pre) = s.split_at(pre_at);
    let mut nums = numbers.split('.').map(|n| {
        (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .then(|| n.parse::<u64>().ok())
            .flatten()
    });
    let major = nums.next()??;
    let minor = nums.next().unwrap_or(Some(0))?;
    let patch = nums.next().unwrap_or(Some(0))?;
    if nums.next().is_some() {
        return None;
    }
    let mut version = semver::Version::new(major, minor, patch);
    if !pre.is_empty() {
        let kind_end = pre
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(pre.len());
        let (kind, number) = pre.split_at(kind_end);
        if !matches!(kind, "rc" | "beta" | "alpha") || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let text = if number.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{number}")
        };
        version.pre = semver::Prerelease::new(&text).ok()?;
    }
    Some(version)
}

// ---------------------------------------------------------------------------------------
// PEP 440

fn parse_pep440(v: &str) -> Result<pep440_rs::Version, VersionError> {
    pep440_rs::Version::from_str(v).map_err(|e| VersionError::new(VersionScheme::Pep440, v, e))
}

// ---------------------------------------------------------------------------------------
// apk

/// The kinds of apk version tokens, in the order the grammar allows them; the order
/// matters for comparison (see [`compare_apk`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ApkKind {
    InitialDigit,
    Digit,
    Letter,
    Suffix,
    SuffixNumber,
    CommitHash,
    Revision,
    End,
}

/// apk suffixes in order; the ones before `""` (release) are pre-releases.
const APK_SUFFIXES: [&str; 10] = [
    "alpha", "beta", "pre", "rc", "", "cvs", "svn", "git", "hg", "p",
];
const APK_RELEASE: usize = 4;

#[derive(Debug, Clone, Copy)]
struct ApkToken<'a> {
    kind: ApkKind,
    text: &'a str,
    /// Index into [`APK_SUFFIXES`] for [`ApkKind::Suffix`].
    suffix: usize,
}

fn take_while(s: &str, pred: impl Fn(u8) -> bool) -> (&str, &str) {
    let end = s.bytes().position(|b| !pred(b)).unwrap_or(s.len());
    s.split_at(end)
}

/// Splits an apk version into tokens, refusing what `apk_version_validate` refuses.
fn apk_tokens(v: &str) -> Result<Vec<ApkToken<'_>>, VersionError> {
    let err = |reason: &str| VersionError::new(VersionScheme::Apk, v, reason);
    let (digits, mut rest) = take_while(v, |b| b.is_ascii_digit());
    if digits.is_empty() {
        return Err(err("does not start with a digit"));
    }
    let mut tokens = vec![ApkToken {
        kind: ApkKind::InitialDigit,
        text: digits,
        suffix: 0,
    }];
    let mut last = ApkKind::InitialDigit;
    while let Some(c) = rest.bytes().next() {
        let (kind, text, suffix, after) = match c {
            b'a'..=b'z' if last <= ApkKind::Digit => (ApkKind::Letter, &rest[..1], 0, &rest[1..]),
            b'.' if last <= ApkKind::Digit => {
                let (digits, after) = take_while(&rest[1..], |b| b.is_ascii_digit());
                if digits.is_empty() {
                    return Err(err("`.` not followed by digits"));
                }
                (ApkKind::Digit, digits, 0, after)
            }
            b'0'..=b'9' if last == ApkKind::Suffix => {
                let (digits, after) = take_while(rest, |b| b.is_ascii_digit());
                (ApkKind::SuffixNumber, digits, 0, after)
            }
            b'_' if last <= ApkKind::SuffixNumber => {
                let (name, after) = take_while(&rest[1..], |b| b.is_ascii_lowercase());
                let suffix = APK_SUFFIXES
                    .iter()
                    .position(|s| !s.is_empty() && *s == name)
                    .ok_or_else(|| err("unknown suffix"))?;
                (ApkKind::Suffix, name, suffix, after)
            }
            b'~' if last < ApkKind::CommitHash => {
                let (hash, after) = take_while(&rest[1..], |b| b.is_ascii_hexdigit());
                if hash.is_empty() {
                    return Err(err("`~` not followed by a commit hash"));
                }
                (ApkKind::CommitHash, hash, 0, after)
            }
            b'-' if last < ApkKind::Revision => {
                let Some(r) = rest.strip_prefix("-r") else {
                    return Err(err("`-` not followed by `r`"));
                };
                let (digits, after) = take_while(r, |b| b.is_ascii_digit());
                if digits.is_empty() {
                    return Err(err("`-r` not followed by digits"));
                }
                (ApkKind::Revision, digits, 0, after)
            }
            _ => return Err(err("unexpected character")),
        };
        tokens.push(ApkToken { kind, text, suffix });
        last = kind;
        rest = after;
    }
    Ok(tokens)
}

/// Compares decimal digit strings by value, whatever their length.
fn cmp_decimal(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// apk-tools' version comparison (`apk_version_compare` in apk-tools' `src/version.c`,
/// the rules of `apk version -t`), re-implemented:
///
/// * A version is `digit{.digit}…{letter}{_suffix{#}}…{~hash}{-r#}`; anything else (an
///   unknown suffix, `-` not followed by `r` and digits, upper case) is an error.
/// * Tokens are compared pairwise while both versions have a token of the same kind:
///   numbers by value, except that a dotted number with a leading zero on either side
///   compares as a string (`1.01 < 1.1`, Gentoo's rule); letters by character; suffixes
///   in the order `_alpha < _beta < _pre < _rc` (pre-releases, below the release) `<`
///   release `< _cvs < _svn < _git < _hg < _p` (post-releases); suffix numbers, and the
///   `-r` revision, by value; commit hashes as strings.
/// * When one version runs out or the next tokens differ in kind: a pre-release suffix
///   is lower (`1.0_rc1 < 1.0`); otherwise the version whose next token comes *later*
///   in the grammar above is lower — a version that ends is lower than one that goes
///   on (`1.0 < 1.0.1 < 1.0.1a`, `1.0 < 1.0_p1`, `1.0 < 1.0-r1`), and a letter or suffix
///   is lower than a further dotted number (`1.0z < 1.0.1`, `1.0_p1 < 1.0.1`).
pub fn compare_apk(a: &str, b: &str) -> Result<Ordering, VersionError> {
    let ta = apk_tokens(a)?;
    let tb = apk_tokens(b)?;
    let end = ApkToken {
        kind: ApkKind::End,
        text: "",
        suffix: APK_RELEASE,
    };
    for i in 0.. {
        let x = ta.get(i).copied().unwrap_or(end);
        let y = tb.get(i).copied().unwrap_or(end);
        if x.kind != y.kind {
            let pre = |t: ApkToken<'_>| t.kind == ApkKind::Suffix && t.suffix < APK_RELEASE;
            if pre(x) {
                return Ok(Ordering::Less);
            }
            if pre(y) {
                return Ok(Ordering::Greater);
            }
            return Ok(y.kind.cmp(&x.kind));
        }
        let ordering = match x.kind {
            ApkKind::End => return Ok(Ordering::Equal),
            ApkKind::Digit if x.text.starts_with('0') || y.text.starts_with('0') => {
                x.text.cmp(y.text)
            }
            ApkKind::InitialDigit | ApkKind::Digit | ApkKind::SuffixNumber | ApkKind::Revision => {
                cmp_decimal(x.text, y.text)
            }
            ApkKind::Letter | ApkKind::CommitHash => x.text.cmp(y.text),
            ApkKind::Suffix => x.suffix.cmp(&y.suffix),
        };
        if ordering != Ordering::Equal {
            return Ok(ordering);
        }
    }
    unreachable!("the loop returns once both versions end")
}

// ---------------------------------------------------------------------------------------
// Maven

/// An item of a parsed Maven version.
#[derive(Debug, Clone)]
enum MavenItem {
    /// A number, without leading zeros.
    Int(String),
    /// A qualifier, lower case, aliases resolved (`ga`, `final`, `release` → `""`,
    /// `cr` → `rc`, `a1` → `alpha`…).
    Str(String),
    /// What follows a `-` (or a switch between digits and letters).
    List(Vec<MavenItem>),
}

const MAVEN_QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];

impl MavenItem {
    fn string(value: &str, followed_by_digit: bool) -> Self {
        let value = match value {
            "a" if followed_by_digit => "alpha",
            "b" if followed_by_digit => "beta",
            "m" if followed_by_digit => "milestone",
            "ga" | "final" | "release" => "",
            "cr" => "rc",
            other => other,
        };
        MavenItem::Str(value.to_owned())
    }

    fn parse(text: &str, digits: bool) -> Self {
        if digits {
            let trimmed = text.trim_start_matches('0');
            MavenItem::Int(trimmed.to_owned())
        } else {
            MavenItem::string(text, false)
        }
    }

    /// `0`, the release qualifier and empty lists are "null": trailing ones are dropped.
    fn is_null(&self) -> bool {
        match self {
            MavenItem::Int(n) => n.is_empty(),
            MavenItem::Str(s) => s.is_empty(),
            MavenItem::List(l) => l.is_empty(),
        }
    }

    /// The rank of a qualifier: known ones by position, unknown ones after all of them,
    /// alphabetically (Maven compares `"<index>"` / `"7-<qualifier>"` strings).
    fn qualifier_rank(q: &str) -> (usize, &str) {
        match MAVEN_QUALIFIERS.iter().position(|k| *k == q) {
            Some(i) => (i, ""),
            None => (MAVEN_QUALIFIERS.len(), q),
        }
    }

    /// `ComparableVersion.Item.compareTo`; `None` is a missing item (padding).
    fn compare(this: Option<&MavenItem>, other: Option<&MavenItem>) -> Ordering {
        use MavenItem::{Int, List, Str};
        match (this, other) {
            (None, None) => Ordering::Equal,
            (None, Some(o)) => MavenItem::compare(Some(o), None).reverse(),
            (Some(Int(n)), None) => {
                if n.is_empty() {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                }
            }
            (Some(Str(s)), None) => {
                MavenItem::qualifier_rank(s).cmp(&MavenItem::qualifier_rank(""))
            }
            (Some(List(l)), None) => l
                .iter()
                .map(|i| MavenItem::compare(Some(i), None))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal),
            (Some(Int(a)), Some(Int(b))) => cmp_decimal(a, b),
            (Some(Int(_)), Some(_)) => Ordering::Greater,
            (Some(Str(_)), Some(Int(_))) => Ordering::Less,
            (Some(Str(a)), Some(Str(b))) => {
                MavenItem::qualifier_rank(a).cmp(&MavenItem::qualifier_rank(b))
            }
            (Some(Str(_)), Some(List(_))) => Ordering::Less,
            (Some(List(_)), Some(Int(_))) => Ordering::Less,
            (Some(List(_)), Some(Str(_))) => Ordering::Greater,
            (Some(List(a)), Some(List(b))) => {
                let n = a.len().max(b.len());
                (0..n)
                    .map(|i| MavenItem::compare(a.get(i), b.get(i)))
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal)
            }
        }
    }
}

/// Drops trailing null items, looking past non-null sub-lists (`ListItem.normalize`).
fn maven_normalize(list: &mut Vec<MavenItem>) {
    let mut i = list.len();
    while i > 0 {
        i -= 1;
        if list[i].is_null() {
            list.remove(i);
        } else if !matches!(list[i], MavenItem::List(_)) {
            break;
        }
    }
}

/// Parses like `ComparableVersion.parseVersion`: each list only ever grows a sub-list
/// as its last item, so the nesting is kept as a stack and folded at the end.
fn parse_maven(v: &str) -> Result<Vec<MavenItem>, VersionError> {
    if v.is_empty() {
        return Err(VersionError::new(VersionScheme::Maven, v, "empty"));
    }
    let version = v.to_lowercase();
    let mut stack: Vec<Vec<MavenItem>> = vec![Vec::new()];
    let mut digits = false;
    let mut start = 0;
    for (i, c) in version.char_indices() {
        let list = stack.last_mut().expect("stack never empty");
        match c {
            '.' | '-' => {
                if i == start {
                    list.push(MavenItem::Int(String::new()));
                } else {
                    list.push(MavenItem::parse(&version[start..i], digits));
                }
                start = i + 1;
                if c == '-' {
                    stack.push(Vec::new());
                }
            }
            c if c.is_ascii_digit() => {
                if !digits && i > start {
                    // `1.0.0.X1 < 1.0.0-X2`: a qualifier followed by digits starts a list.
                    list.push(MavenItem::string(&version[start..i], true));
                    start = i;
                    stack.push(Vec::new());
                }
                digits = true;
            }
            _ => {
                if digits && i > start {
                    list.push(MavenItem::parse(&version[start..i], true));
                    start = i;
                    stack.push(Vec::new());
                }
                digits = false;
            }
        }
    }
    if version.len() > start {
        let list = stack.last_mut().expect("stack never empty");
        if !digits && !list.is_empty() {
            // `1.0.RELEASE` like `1.0-RELEASE`: a trailing qualifier gets its own list.
            stack.push(Vec::new());
        }
        let list = stack.last_mut().expect("stack never empty");
        list.push(MavenItem::parse(&version[start..], digits));
    }
    let mut child = stack.pop().expect("stack never empty");
    maven_normalize(&mut child);
    while let Some(mut parent) = stack.pop() {
        parent.push(MavenItem::List(child));
        maven_normalize(&mut parent);
        child = parent;
    }
    Ok(child)
}

/// Maven's `org.apache.maven.artifact.versioning.ComparableVersion` (Maven 3), the
/// order Maven itself and OSV's Maven ecosystem use, re-implemented:
///
/// * Lower case; items are split at `.`, `-` and switches between digits and letters;
///   a `-` or a switch starts a nested list. Empty items are `0`.
/// * Trailing "null" items (`0`, the release qualifiers `ga`/`final`/`release`/`""`,
///   empty lists) are dropped: `1 = 1.0 = 1.0.0 = 1.0-ga = 1.0.Final`.
/// * Qualifiers rank `alpha < beta < milestone < rc = cr < snapshot < release < sp <`
///   any other qualifier (alphabetically); `a1`, `b1`, `m1` mean `alpha-1`, `beta-1`,
///   `milestone-1`.
/// * Numbers are greater than lists, which are greater than qualifiers
///   (`1.1 > 1-1 > 1-sp`). A missing item compares as null (`0` / release).
///
/// Every non-empty string is a Maven version; only the empty string is an error.
pub fn compare_maven(a: &str, b: &str) -> Result<Ordering, VersionError> {
    let a = MavenItem::List(parse_maven(a)?);
    let b = MavenItem::List(parse_maven(b)?);
    Ok(MavenItem::compare(Some(&a), Some(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    /// Checks each `(a, expected, b)` both ways round.
    fn check(scheme: VersionScheme, cases: &[(&str, Ordering, &str)]) {
        for &(a, expected, b) in cases {
            assert_eq!(compare(scheme, a, b), Ok(expected), "{scheme}: {a} vs {b}");
            assert_eq!(
                compare(scheme, b, a),
                Ok(expected.reverse()),
                "{scheme}: {b} vs {a}"
            );
        }
    }

    fn check_invalid(scheme: VersionScheme, versions: &[&str]) {
        for v in versions {
            let err = compare(scheme, v, v).expect_err(v);
            assert_eq!(err.scheme, scheme);
        }
    }

    /// Sorted ascending: each version is lower than the next.
    fn check_sorted(scheme: VersionScheme, versions: &[&str]) {
        for pair in versions.windows(2) {
            assert_eq!(
                compare(scheme, pair[0], pair[1]),
                Ok(Less),
                "{scheme}: {} < {}",
                pair[0],
                pair[1]
            );
            assert_eq!(compare(scheme, pair[1], pair[0]), Ok(Greater));
        }
    }

    #[test]
    fn schemes_of_ecosystems() {
        assert_eq!(VersionScheme::from(Ecosystem::Debian), VersionScheme::Dpkg);
        assert_eq!(VersionScheme::from(Ecosystem::Ubuntu), VersionScheme::Dpkg);
        assert_eq!(VersionScheme::from(Ecosystem::Alpine), VersionScheme::Apk);
        assert_eq!(VersionScheme::from(Ecosystem::Rpm), VersionScheme::RpmEvr);
        assert_eq!(VersionScheme::from(Ecosystem::PyPI), VersionScheme::Pep440);
        assert_eq!(VersionScheme::from(Ecosystem::Npm), VersionScheme::Semver);
        assert_eq!(
            VersionScheme::from(Ecosystem::CratesIo),
            VersionScheme::Semver
        );
        assert_eq!(VersionScheme::from(Ecosystem::Go), VersionScheme::Go);
        assert_eq!(VersionScheme::from(Ecosystem::Maven), VersionScheme::Maven);
    }

    #[test]
    fn dpkg() {
        check(
            VersionScheme::Dpkg,
            &[
                ("1.0", Equal, "1.0"),
                ("1.0", Equal, "0:1.0"),
                ("1.0", Equal, "1.0-0"),
                ("1.0-1", Less, "1.0-2"),
                ("1.0-10", Greater, "1.0-9"),
                ("1.2.3", Less, "1.10"),
                // Epochs win over everything.
                ("1:1.0", Greater, "2.0"),
                ("1:0.1-1", Greater, "0:9.9-9"),
                ("2:1.0", Greater, "1:9.0"),
                // `~` sorts before everything, even the end of the string.
                ("1.0~rc1", Less, "1.0"),
                ("1.0~rc1", Less, "1.0~rc2"),
                ("1.0~~", Less, "1.0~"),
                ("1.0~", Less, "1.0"),
                ("1.0~beta", Less, "1.0~rc"),
                // Letters before other characters, `+` after the end.
                ("1.0", Less, "1.0a"),
                ("1.0a", Less, "1.0+"),
                ("1.0", Less, "1.0+b1"),
                ("1.0.1", Greater, "1.0+dfsg"),
                // Debian stable updates and backports.
                ("3.0.11-1~deb12u2", Less, "3.0.13-1~deb12u1"),
                ("3.0.13-1~deb12u1", Less, "3.0.13-1"),
                ("3.0.13-1~deb12u1", Greater, "3.0.11-1~deb12u2"),
                ("2.36-9+deb12u4", Greater, "2.36-9+deb12u3"),
                ("2.36-9+deb12u4", Greater, "2.36-9"),
                // binNMU suffixes are above the source version.
                ("3.0.11-1~deb12u2+b1", Greater, "3.0.11-1~deb12u2"),
                ("3.0.11-1~deb12u2+b1", Less, "3.0.11-1~deb12u3"),
                // Ubuntu.
                ("3.0.2-0ubuntu1.15", Greater, "3.0.2-0ubuntu1.10"),
                ("1.2.11.dfsg-2ubuntu9.2", Less, "1:1.2.11.dfsg-2ubuntu9.2"),
                // Hyphens in the upstream version: the revision is after the last one.
                ("1.0-beta-1", Less, "1.0-beta-2"),
                // Leading zeros are numeric.
                ("1.01", Equal, "1.1"),
                ("1.0010", Greater, "1.9"),
                ("0", Less, "0.1"),
            ],
        );
        check_sorted(
            VersionScheme::Dpkg,
            &["1.0~~", "1.0~~a", "1.0~", "1.0", "1.0a", "1.0+", "1.0.1"],
        );
        check_invalid(VersionScheme::Dpkg, &["", "1.0 2", "1.0#", "1.0-\u{e9}"]);
    }

    #[test]
    fn apk() {
        check(
            VersionScheme::Apk,
            &[
                ("1.0", Equal, "1.0"),
                ("1.0", Less, "1.0.1"),
                ("1.0.10", Greater, "1.0.9"),
                ("2.0", Greater, "1.99.99"),
                // Revisions.
                ("1.0-r0", Greater, "1.0"),
                ("1.0-r1", Greater, "1.0-r0"),
                ("1.0-r10", Greater, "1.0-r9"),
                ("3.1.4-r5", Greater, "3.1.4-r4"),
                ("3.1.5-r0", Greater, "3.1.4-r5"),
                // Pre-release suffixes sort below the release…
                ("1.0_alpha", Less, "1.0"),
                ("1.0_alpha1", Less, "1.0_alpha2"),
                ("1.0_alpha", Less, "1.0_alpha1"),
                ("1.0_alpha9", Less, "1.0_beta"),
                ("1.0_beta", Less, "1.0_pre"),
                ("1.0_pre", Less, "1.0_rc"),
                ("1.0_rc1", Less, "1.0_rc2"),
                ("1.0_rc2", Less, "1.0"),
                ("1.0_rc1-r5", Less, "1.0-r0"),
                // …post-release suffixes above it.
                ("1.0_p1", Greater, "1.0"),
                ("1.0_p1", Greater, "1.0-r9"),
                ("1.0_cvs", Greater, "1.0"),
                ("1.0_cvs", Less, "1.0_svn"),
                ("1.0_svn", Less, "1.0_git"),
                ("1.0_git", Less, "1.0_hg"),
                ("1.0_hg", Less, "1.0_p"),
                ("1.0_git20240101", Greater, "1.0"),
                ("1.0_git20240101", Less, "1.0_git20240102"),
                ("1.0_p1", Less, "1.0.1"),
                ("1.0_p1", Less, "1.0_p1-r1"),
                // Letters.
                ("1.0a", Greater, "1.0"),
                ("1.0b", Greater, "1.0a"),
                ("1.0z", Less, "1.0.1"),
                ("1.1.1w-r1", Greater, "1.1.1t-r3"),
                // Several suffixes.
                ("1.0_alpha1_p2", Greater, "1.0_alpha1"),
                ("1.0_alpha1_p2", Less, "1.0_alpha2"),
                // Leading zeros compare as strings (Gentoo's rule).
                ("1.01", Less, "1.1"),
                ("1.001", Less, "1.01"),
                ("1.10", Greater, "1.01"),
                ("1.0", Less, "1.00"),
                // Commit hashes (apk-tools 3).
                ("1.0~abc1", Greater, "1.0"),
                ("1.0~abc1", Less, "1.0~abc2"),
                ("1.0~abc1-r1", Greater, "1.0~abc1-r0"),
                // Long numbers do not overflow.
                (
                    "1.99999999999999999999999",
                    Less,
                    "1.100000000000000000000000",
                ),
            ],
        );
        check_sorted(
            VersionScheme::Apk,
            &[
                "1.2_alpha",
                "1.2_beta2",
                "1.2_pre1",
                "1.2_rc1",
                "1.2",
                "1.2-r1",
                "1.2_p1",
                "1.2a",
                "1.2.1",
            ],
        );
        check_invalid(
            VersionScheme::Apk,
            &[
                "", "abc", "v1.0", "1.0-1", "1.0-r", "1.0_foo", "1.0.", "1.0A", "1.0_p1a",
                "1.0-r1.1", "1..0", "1.0~", "1.0~xyz",
            ],
        );
    }

    #[test]
    fn rpm() {
        check(
            VersionScheme::RpmEvr,
            &[
                ("1.0", Equal, "1.0"),
                ("1.0", Equal, "0:1.0"),
                ("1.0-1", Less, "1.0-2"),
                ("1.0-1.el9", Less, "1.0-1.el9_3"),
                ("1.0", Less, "1.0.1"),
                ("1.0.10", Greater, "1.0.9"),
                ("1.0a", Greater, "1.0"),
                ("1.0", Less, "1.0a"),
                ("1.0", Less, "1.0-1"),
                ("1.0a", Less, "1.0.1"),
                ("1.0.1", Equal, "1.0_1"),
                ("1.0", Greater, "1.a"),
                // Epochs.
                ("1:1.0", Greater, "2.0"),
                ("1:1.0-1", Greater, "0:9.9-9"),
                ("2:1.0", Greater, "1:3.0"),
                // `~`: pre-release, below the version without it.
                ("1.0~rc1", Less, "1.0"),
                ("1.0~rc1", Less, "1.0~rc2"),
                ("1.0~~", Less, "1.0~"),
                ("1.0~rc1-5", Less, "1.0-1"),
                // `^`: post-release snapshot, above the version, below the next one.
                ("1.0^post1", Greater, "1.0"),
                ("1.0^post1", Less, "1.0.1"),
                ("1.0^post1", Less, "1.0a"),
                ("1.0^post1", Less, "1.0^post2"),
                ("1.0~rc1^git1", Greater, "1.0~rc1"),
                ("1.0~rc1^git1", Less, "1.0"),
                ("1.0^", Greater, "1.0"),
                // Real ones.
                ("3.0.7-25.el9_3", Less, "3.0.7-27.el9"),
                ("1:3.0.7-27.el9", Greater, "3.0.7-99.el9"),
                ("2.34-83.el9_3.7", Greater, "2.34-83.el9_3"),
            ],
        );
        check_sorted(
            VersionScheme::RpmEvr,
            &["1.0~rc1", "1.0", "1.0^post1", "1.0.1", "1:0.1"],
        );
        check_invalid(
            VersionScheme::RpmEvr,
            &["", "a:1.0", ":1.0", "1:", "1.0 2", "-1"],
        );
    }

    #[test]
    fn semver() {
        check(
            VersionScheme::Semver,
            &[
                ("1.2.3", Equal, "1.2.3"),
                ("1.2.3", Less, "1.2.4"),
                ("1.10.0", Greater, "1.9.0"),
                ("2.0.0", Greater, "1.99.99"),
                ("1.0.0-alpha", Less, "1.0.0"),
                ("1.0.0-alpha", Less, "1.0.0-alpha.1"),
                ("1.0.0-alpha.1", Less, "1.0.0-alpha.beta"),
                ("1.0.0-beta.2", Less, "1.0.0-beta.11"),
                ("1.0.0-rc.1", Less, "1.0.0"),
                // Build metadata does not take part in precedence.
                ("1.0.0+build.1", Equal, "1.0.0+build.2"),
                ("1.0.0+build", Equal, "1.0.0"),
                // npm leniency.
                ("v1.2.3", Equal, "1.2.3"),
                ("=1.2.3", Equal, "1.2.3"),
                ("=v1.2.3", Less, "1.2.4"),
                (" 1.2.3 ", Equal, "1.2.3"),
            ],
        );
        check_invalid(
            VersionScheme::Semver,
            &[
                "", "1.2", "1", "01.2.3", "1.2.3.4", "latest", "1.2.x", "^1.2.3",
            ],
        );
    }

    #[test]
    fn go() {
        check(
            VersionScheme::Go,
            &[
                ("v1.2.3", Equal, "1.2.3"),
                ("v1.2.3", Less, "v1.2.4"),
                ("v1.10.0", Greater, "v1.9.9"),
                ("v2.0.0+incompatible", Greater, "v1.9.9"),
                ("v2.0.0+incompatible", Equal, "2.0.0"),
                ("v2.0.0+incompatible", Less, "v2.0.1+incompatible"),
                ("v1.0.0-rc.1", Less, "v1.0.0"),
                // Pseudo-versions.
                (
                    "v0.0.0-20210101000000-abcdef123456",
                    Less,
                    "v0.0.0-20220101000000-abcdef123456",
                ),
                ("v0.0.0-20210101000000-abcdef123456", Less, "v0.0.1"),
                ("v1.2.4-0.20210101000000-abcdef123456", Greater, "v1.2.3"),
                ("v1.2.4-0.20210101000000-abcdef123456", Less, "v1.2.4"),
                // Shorthands.
                ("v1", Equal, "v1.0.0"),
                ("v1.2", Equal, "1.2.0"),
                // Toolchain versions of the standard library.
                ("go1.21.5", Equal, "1.21.5"),
                ("go1.21", Equal, "1.21.0"),
                ("go1.22rc1", Equal, "1.22.0-rc.1"),
                ("go1.22rc1", Less, "go1.22.0"),
                ("go1.21.5", Less, "go1.22rc1"),
            ],
        );
        check_invalid(
            VersionScheme::Go,
            &[
                "",
                "latest",
                "v1.2.3.4",
                "va.b.c",
                "go",
                "go1.x",
                "go1.21foo",
                "vv1.0.0",
            ],
        );
    }

    #[test]
    fn pep440() {
        check(
            VersionScheme::Pep440,
            &[
                ("1.0", Equal, "1.0.0"),
                ("1.0", Equal, "1.0.0.0"),
                ("1.0", Less, "1.0.1"),
                ("1.10", Greater, "1.9"),
                // Epochs.
                ("1!1.0", Greater, "2.0"),
                ("1!1.0", Greater, "2024.1"),
                ("0!1.0", Equal, "1.0"),
                // Pre-, post- and dev-releases.
                ("1.0.dev1", Less, "1.0a1"),
                ("1.0a1", Less, "1.0a2"),
                ("1.0a2", Less, "1.0b1"),
                ("1.0b1", Less, "1.0rc1"),
                ("1.0rc1", Less, "1.0"),
                ("1.0c1", Equal, "1.0rc1"),
                ("1.0", Less, "1.0.post1"),
                ("1.0.post1.dev1", Less, "1.0.post1"),
                ("1.0.post1", Less, "1.0.1"),
                ("1.0-1", Equal, "1.0.post1"),
                // Local versions sort above the public one.
                ("1.0+local.1", Greater, "1.0"),
                ("1.0+local.1", Less, "1.0.post1"),
                ("1.0+abc.2", Greater, "1.0+abc.1"),
                // Normalisation.
                ("v1.0", Equal, "1.0"),
                ("1.0ALPHA1", Equal, "1.0a1"),
                ("2.31.0", Greater, "2.3.1"),
            ],
        );
        check_sorted(
            VersionScheme::Pep440,
            &[
                "1.0.dev456",
                "1.0a1",
                "1.0a2.dev456",
                "1.0a12",
                "1.0b2.post345",
                "1.0rc1",
                "1.0",
                "1.0+abc.5",
                "1.0.post456.dev34",
                "1.0.post456",
                "1.1.dev1",
                "1!0.1",
            ],
        );
        check_invalid(
            VersionScheme::Pep440,
            &["", "latest", "1.0-beta-gamma", "1..0"],
        );
    }

    #[test]
    fn maven() {
        check(
            VersionScheme::Maven,
            &[
                ("1", Equal, "1.0"),
                ("1", Equal, "1.0.0"),
                ("1.0", Equal, "1.0-ga"),
                ("1.0", Equal, "1.0.Final"),
                ("1.0", Equal, "1.0.RELEASE"),
                ("1.0-cr1", Equal, "1.0-rc1"),
                ("1.0-alpha-1", Equal, "1.0-a1"),
                ("1.0-b1", Equal, "1.0-beta-1"),
                ("1.0-m1", Equal, "1.0-milestone-1"),
                ("1.0", Less, "1.0.1"),
                ("1.0.10", Greater, "1.0.9"),
                ("1-1", Less, "1.1"),
                ("1-sp", Less, "1-1"),
                ("1.0-alpha1", Less, "1.0-beta1"),
                ("1.0-beta1", Less, "1.0-milestone1"),
                ("1.0-milestone1", Less, "1.0-rc1"),
                ("1.0-rc1", Less, "1.0-SNAPSHOT"),
                ("1.0-SNAPSHOT", Less, "1.0"),
                ("1.0", Less, "1.0-sp1"),
                ("1.0-sp1", Less, "1.0-whatever"),
                ("1.0-sp1", Less, "1.0.1"),
                ("2.12.6.1", Greater, "2.12.6"),
                ("2.9.10.8", Less, "2.10.0"),
                ("5.3.18.RELEASE", Less, "5.3.19"),
                ("5.3.18.RELEASE", Equal, "5.3.18"),
                ("2.17.1", Greater, "2.17.0"),
                ("2.0.0-rc2", Less, "2.0.0"),
                ("2.15.0-rc1", Less, "2.15.0-rc2"),
                ("1.0RC1", Equal, "1.0-rc-1"),
                ("9.4.51.v20230217", Greater, "9.4.50.v20221201"),
                ("31.1-jre", Greater, "31.0.1-jre"),
            ],
        );
        check_invalid(VersionScheme::Maven, &[""]);
    }

    #[test]
    fn errors_say_what_failed() {
        let err = compare(VersionScheme::Apk, "1.0", "1.0-1").unwrap_err();
        assert_eq!(err.version, "1.0-1");
        assert!(
            err.to_string().starts_with("invalid apk version \"1.0-1\""),
            "{err}"
        );
        assert!(validate(VersionScheme::Semver, "1.2.3").is_ok());
        assert!(validate(VersionScheme::Semver, "1.2").is_err());
    }
}

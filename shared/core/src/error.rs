//! The one error enum of the registry; the HTTP layer maps each variant to an OCI error code.

/// Every failure a use-case or port can report.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("blob unknown to registry: {0}")]
    BlobUnknown(String),
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown,
    #[error("provided digest did not match uploaded content: {0}")]
    DigestInvalid(String),
    #[error("manifest references a manifest or blob unknown to registry: {0}")]
    ManifestBlobUnknown(String),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest larger than the limit of {limit} bytes")]
    ManifestTooLarge { limit: usize },
    #[error("manifest unknown to registry: {0}")]
    ManifestUnknown(String),
    #[error("invalid repository name: {0}")]
    NameInvalid(String),
    #[error("repository name not known to registry: {0}")]
    NameUnknown(String),
    #[error("provided length did not match content length: {0}")]
    SizeInvalid(String),
    #[error("invalid tag: {0}")]
    TagInvalid(String),
    #[error("requested range not satisfiable: {0}")]
    RangeInvalid(String),
    /// A `Range` request past the end of a blob of `size` bytes.
    #[error("requested range not satisfiable: the blob has {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    /// A chunk did not start where the upload stands; carries the current offset.
    #[error("chunk out of order: upload is at offset {offset}")]
    UploadOutOfOrder { offset: u64 },
    #[error("request body too large: {0}")]
    PayloadTooLarge(String),
    /// A method the endpoint does not serve; `allow` lists the ones it does.
    #[error("the operation is unsupported: {message}")]
    MethodNotAllowed {
        message: String,
        allow: &'static str,
    },
    #[error("no such endpoint: {0}")]
    NoSuchEndpoint(String),
    #[error("the operation is unsupported: {0}")]
    Unsupported(String),
    #[error("pagination parameter invalid: {0}")]
    PaginationInvalid(String),
    /// A conditional write lost a race; the caller may retry.
    #[error("concurrent modification: {0}")]
    Conflict(String),
    /// A name to create is taken (a user, group, project or robot).
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("storage failure: {0}")]
    Storage(String),
    /// No credentials, or credentials or a token that do not check out.
    #[error("authentication required: {0}")]
    Unauthorized(String),
    /// An authenticated caller lacks the permission.
    #[error("requested access to the resource is denied: {0}")]
    Denied(String),
    /// An outbound URL (webhook target, upstream) is not allowed: its scheme, or an
    /// address it resolves to (loopback, link-local, private) without the operator's leave.
    #[error("outbound target refused: {0}")]
    OutboundRefused(String),
    /// A remote server (webhook target, upstream registry) could not be reached, did not
    /// answer in time, failed, refused the credentials or sent something invalid.
    #[error("remote server unavailable: {0}")]
    Upstream(String),
    /// Too many requests (failed logins here, or an upstream registry's 429): retry after
    /// `retry_after_secs`.
    #[error("too many requests: {message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl RegistryError {
    /// Wraps any adapter failure as a storage error, keeping its message.
    pub fn storage(err: impl std::fmt::Display) -> Self {
        RegistryError::Storage(err.to_string())
    }
}

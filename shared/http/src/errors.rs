//! The one table from core errors to HTTP status and OCI error code, and the JSON error body.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use registry_core::RegistryError;
use serde_json::json;

/// Status and OCI error code of each core error.
pub fn status_and_code(err: &RegistryError) -> (StatusCode, &'static str) {
    use RegistryError as E;
    match err {
        E::BlobUnknown(_) => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
        E::BlobUploadInvalid(_) => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
        E::BlobUploadUnknown => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
        E::DigestInvalid(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        E::ManifestBlobUnknown(_) => (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
        E::ManifestInvalid(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        E::ManifestTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID"),
        E::ManifestUnknown(_) => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        E::NameInvalid(_) => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
        E::NameUnknown(_) => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        E::SizeInvalid(_) => (StatusCode::BAD_REQUEST, "SIZE_INVALID"),
        // The spec's code list has no tag code: a bad tag makes the manifest reference invalid.
        E::TagInvalid(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        E::RangeInvalid(_) | E::RangeNotSatisfiable { .. } => {
            (StatusCode::RANGE_NOT_SATISFIABLE, "SIZE_INVALID")
        }
        E::UploadOutOfOrder { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
        E::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID"),
        E::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
        E::NoSuchEndpoint(_) => (StatusCode::NOT_FOUND, "UNSUPPORTED"),
        E::Unsupported(_) => (StatusCode::BAD_REQUEST, "UNSUPPORTED"),
        E::PaginationInvalid(_) => (StatusCode::BAD_REQUEST, "UNSUPPORTED"),
        E::Conflict(_) => (StatusCode::CONFLICT, "BLOB_UPLOAD_INVALID"),
        E::AlreadyExists(_) => (StatusCode::CONFLICT, "UNSUPPORTED"),
        E::OutboundRefused(_) => (StatusCode::BAD_REQUEST, "DENIED"),
        E::Upstream(_) => (StatusCode::BAD_GATEWAY, "UNKNOWN"),
        E::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        E::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
        E::Denied(_) => (StatusCode::FORBIDDEN, "DENIED"),
        E::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
    }
}

/// A core error as an HTTP response with the OCI error body.
pub struct ApiError(pub RegistryError);

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = status_and_code(&self.0);
        let message = match &self.0 {
            // Storage details stay in the log, not in the answer.
            RegistryError::Storage(detail) => {
                tracing::error!(%detail, "storage failure");
                "the storage backend failed; retry the request".to_owned()
            }
            other => other.to_string(),
        };
        let body = json!({"errors": [{"code": code, "message": message, "detail": null}]});
        let mut res = (status, Json(body)).into_response();
        let extra = match &self.0 {
            RegistryError::UploadOutOfOrder { offset } => {
                Some(("range", format!("0-{}", offset.saturating_sub(1))))
            }
            RegistryError::RangeNotSatisfiable { size } => {
                Some(("content-range", format!("bytes */{size}")))
            }
            RegistryError::MethodNotAllowed { allow, .. } => Some(("allow", (*allow).to_owned())),
            RegistryError::TooManyRequests {
                retry_after_secs, ..
            } => Some(("retry-after", retry_after_secs.to_string())),
            _ => None,
        };
        if let Some((name, value)) = extra
            && let Ok(v) = HeaderValue::from_str(&value)
        {
            res.headers_mut().insert(name, v);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_codes_and_statuses() {
        let (s, c) = status_and_code(&RegistryError::DigestInvalid("x".into()));
        assert_eq!((s.as_u16(), c), (400, "DIGEST_INVALID"));
        let (s, c) = status_and_code(&RegistryError::ManifestTooLarge { limit: 1 });
        assert_eq!((s.as_u16(), c), (413, "MANIFEST_INVALID"));
        let (s, _) = status_and_code(&RegistryError::UploadOutOfOrder { offset: 3 });
        assert_eq!(s.as_u16(), 416);
    }
}

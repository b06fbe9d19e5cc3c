//! Authentication and authorization, as pure logic: password hashes and secrets, Docker
//! token scopes, the access policy (deny by default), signed bearer tokens with key
//! rotation, and login throttling. The HTTP layer wires them to requests.

pub mod password;
pub mod policy;
pub mod scope;
pub mod service;
pub mod throttle;
pub mod token;

pub use password::{constant_time_eq, generate_secret, hash_password, verify_password};
pub use policy::{Caller, Grants, allowed, grant_scopes, granted_actions};
pub use scope::{Resource, Scope, parse_scopes};
pub use service::{AuthService, AuthSettings, Credentials, Decided, TokenGrant};
pub use throttle::{Decision, FailureWindow, ThrottleConfig};
pub use token::{Claims, KeySet, TokenIssuer, TokenType};

//! Who is asking, as the pages see it: a session's [`Role`] and its
//! [`Viewer`] (a request extension set by [`super::session`]).

use super::ApiError;
use crate::auth::secret_eq;

/// What a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read every page.
    Read,
    /// Also readmit, run verify, record a pin.
    Admin,
}

/// Who is asking, as the pages see it (a request extension).
#[derive(Debug, Clone)]
pub struct Viewer {
    pub role: Role,
    /// The session's CSRF token, for the forms a page renders.
    pub csrf: String,
    /// Signed in with a token (not an open console's automatic session).
    pub signed_in: bool,
    /// The session's id (its cookie), for sign-out.
    pub(super) id: String,
}

impl Viewer {
    /// 403 unless the session has the admin role.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Read => Err(ApiError::Forbidden(
                "this needs the admin role: sign in with the admin token".into(),
            )),
        }
    }

    /// 403 unless `given` is this session's CSRF token.
    pub fn check_csrf(&self, given: &str) -> Result<(), ApiError> {
        if secret_eq(given.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "the form's CSRF token is missing or stale: reload the page and try again".into(),
            ))
        }
    }
}

//! Who may read `/metrics`: a bearer token the API server accepts (TokenReview) for a user it allows `get`
//! on the non-resource URL `/metrics` (SubjectAccessReview), as controller-runtime's
//! `WithAuthenticationAndAuthorization` filter does. Decisions are remembered briefly, so a scrape every few
//! seconds costs the API server two reviews a minute, not two a scrape.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::Client;
use kube::api::{Api, PostParams};

/// How long an allowed token is trusted without asking again.
const ALLOWED_FOR: Duration = Duration::from_secs(60);
/// How long a refusal stands: short, so a binding just granted takes effect soon.
const REFUSED_FOR: Duration = Duration::from_secs(10);
/// Remembered tokens at most; beyond it the oldest decisions are dropped.
const MAX_REMEMBERED: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// The token is missing or the API server does not accept it.
    Unauthenticated,
    /// The user may not read the path.
    Forbidden,
}

/// Decisions by the SHA-256 of the token, with when they were made.
type Remembered = Arc<Mutex<HashMap<[u8; 32], (Instant, Decision)>>>;

#[derive(Clone)]
pub struct Reviewer {
    client: Client,
    path: &'static str,
    remembered: Remembered,
}

impl Reviewer {
    pub fn new(client: Client, path: &'static str) -> Self {
        Self { client, path, remembered: Arc::default() }
    }

    /// The decision for `token`, from memory or from the API server.
    pub async fn review(&self, token: &str) -> Result<Decision, kube::Error> {
        // Only a digest of the token is kept.
        let key: [u8; 32] =
            ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref().try_into().unwrap_or([0; 32]);
        if let Ok(remembered) = self.remembered.lock()
            && let Some((at, decision)) = remembered.get(&key)
        {
            let lasts = if *decision == Decision::Allowed { ALLOWED_FOR } else { REFUSED_FOR };
            if at.elapsed() < lasts {
                return Ok(*decision);
            }
        }
        let decision = self.ask(token).await?;
        if let Ok(mut remembered) = self.remembered.lock() {
            if remembered.len() >= MAX_REMEMBERED {
                remembered.retain(|_, (at, _)| at.elapsed() < ALLOWED_FOR);
            }
            if remembered.len() < MAX_REMEMBERED {
                remembered.insert(key, (Instant::now(), decision));
            }
        }
        Ok(decision)
    }

    async fn ask(&self, token: &str) -> Result<Decision, kube::Error> {
        let review = TokenReview {
            spec: TokenReviewSpec { token: Some(token.to_string()), audiences: None },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone()).create(&PostParams::default(), &review).await?;
        let Some(user) = reviewed.status.filter(|s| s.authenticated == Some(true)).and_then(|s| s.user) else {
            return Ok(Decision::Unauthenticated);
        };
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                uid: user.uid,
                groups: user.groups,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(self.path.to_string()),
                    verb: Some("get".to_string()),
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answered =
            Api::<SubjectAccessReview>::all(self.client.clone()).create(&PostParams::default(), &access).await?;
        Ok(if answered.status.is_some_and(|s| s.allowed) { Decision::Allowed } else { Decision::Forbidden })
    }
}

/// The bearer token of an `Authorization` header, if it carries one.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Middleware: the request goes on only for an allowed token.
pub async fn require_access(State(reviewer): State<Reviewer>, request: Request, next: Next) -> Response {
    let token = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
    let Some(token) = token else {
        return (StatusCode::UNAUTHORIZED, "a bearer token is required\n").into_response();
    };
    match reviewer.review(token).await {
        Ok(Decision::Allowed) => next.run(request).await,
        Ok(Decision::Unauthenticated) => (StatusCode::UNAUTHORIZED, "the token was not accepted\n").into_response(),
        Ok(Decision::Forbidden) => {
            (StatusCode::FORBIDDEN, format!("not allowed to get {}\n", reviewer.path)).into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "reviewing a metrics token failed");
            (StatusCode::SERVICE_UNAVAILABLE, "the token could not be reviewed\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn only_a_bearer_token_is_taken() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}

//! The brute-force limit of the admin endpoints and the token check itself.
//!
//! Why its own module: it is the one piece of the ops server with security weight (a
//! constant-time comparison, a lockout window), and it is easier to review alone.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// Failed admin attempts allowed within [`ADMIN_FAILURE_WINDOW`]; beyond it every admin
/// request is refused with 429 until the oldest failure leaves the window, so the
/// 256-bit token cannot be guessed through the port (at most 5 guesses per 10 s).
pub const MAX_ADMIN_FAILURES: usize = 5;

/// See [`MAX_ADMIN_FAILURES`].
pub const ADMIN_FAILURE_WINDOW: Duration = Duration::from_secs(10);

/// Recent failed admin attempts, shared by both admin endpoints.
#[derive(Clone, Default)]
pub struct AdminGuard {
    failures: Arc<Mutex<VecDeque<Instant>>>,
}

impl AdminGuard {
    fn failures(&self) -> std::sync::MutexGuard<'_, VecDeque<Instant>> {
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `None` when the request carries the admin token; otherwise the refusal: 429 while
    /// too many attempts failed recently, 401 without a bearer token, 403 with a wrong
    /// one. Every refusal is logged with the peer's address.
    pub fn refusal(&self, headers: &HeaderMap, peer: SocketAddr, expected: &str) -> Option<Response> {
        let mut failures = self.failures();
        let now = Instant::now();
        while failures.front().is_some_and(|at| now.duration_since(*at) >= ADMIN_FAILURE_WINDOW) {
            failures.pop_front();
        }
        if failures.len() >= MAX_ADMIN_FAILURES {
            tracing::warn!(%peer, "admin endpoint refused a request: too many failed attempts");
            return Some(
                (StatusCode::TOO_MANY_REQUESTS, "too many failed attempts, try again later\n").into_response(),
            );
        }
        let given = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
        let refused = match given.map(|value| value.strip_prefix("Bearer ")) {
            None => (StatusCode::UNAUTHORIZED, "missing bearer token\n"),
            Some(Some(token)) if bool::from(token.trim().as_bytes().ct_eq(expected.as_bytes())) => return None,
            Some(_) => (StatusCode::FORBIDDEN, "invalid token\n"),
        };
        failures.push_back(now);
        tracing::warn!(%peer, status = refused.0.as_u16(), failures = failures.len(), "admin endpoint refused a request");
        Some(refused.into_response())
    }
}

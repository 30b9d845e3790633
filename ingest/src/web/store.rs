//! What the web door keeps in Redis, under the queue's namespace: pending sign-ins (by `state`,
//! short-lived, read once), sessions (by the SHA-256 of their id, so a copy of the database
//! holds no usable session), and the burnt nonces of used links.

use grantline_queue::Queue;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a sign-in may take, from the redirect to the identity platform to the callback.
pub const SIGNIN_TTL_SECS: u64 = 600;

fn digest(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The key of a pending sign-in (relative to the namespace).
pub fn signin_key(state: &str) -> String {
    format!("web:signin:{}", digest(state))
}

/// The key of a session (relative to the namespace).
pub fn session_key(id: &str) -> String {
    format!("web:session:{}", digest(id))
}

/// The key that marks a link's nonce as used (relative to the namespace).
pub fn used_key(nonce: &str) -> String {
    format!("link:used:{nonce}")
}

/// 256 bits from the operating system's random source, as 64 hex characters (three version-4
/// UUIDs, 366 random bits, hashed).
pub fn random_id() -> String {
    let mut h = Sha256::new();
    for _ in 0..3 {
        h.update(uuid::Uuid::new_v4().as_bytes());
    }
    hex::encode(h.finalize())
}

/// A sign-in under way: what the callback needs to finish it.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingSignIn {
    /// The PKCE verifier.
    pub verifier: String,
    /// The nonce the id_token must carry.
    pub nonce: String,
    /// The link to go back to.
    pub token: String,
    /// SHA-256 of the browser's sign-in cookie: the callback must come back to the browser
    /// that left.
    pub binding: String,
}

impl std::fmt::Debug for PendingSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSignIn").finish_non_exhaustive()
    }
}

/// A signed-in approver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The directory object id from the verified id_token.
    pub oid: String,
    /// `preferred_username` (display only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When the session ends (ms since the epoch, on grantline's clock).
    pub exp_ms: u64,
}

/// The SHA-256 of a cookie value, as the pending sign-in keeps it.
pub fn binding_of(cookie: &str) -> String {
    digest(cookie)
}

/// Keeps a pending sign-in for [`SIGNIN_TTL_SECS`].
pub async fn put_signin(queue: &Queue, state: &str, p: &PendingSignIn) -> redis::RedisResult<()> {
    let json = serde_json::to_string(p).unwrap_or_default();
    let mut conn = queue.connection();
    redis::cmd("SET")
        .arg(queue.namespace().key(&signin_key(state)))
        .arg(json)
        .arg("EX")
        .arg(SIGNIN_TTL_SECS)
        .query_async::<()>(&mut conn)
        .await
}

/// Reads and deletes a pending sign-in in one command: a state works once.
pub async fn take_signin(queue: &Queue, state: &str) -> redis::RedisResult<Option<PendingSignIn>> {
    let mut conn = queue.connection();
    let raw: Option<String> =
        redis::cmd("GETDEL").arg(queue.namespace().key(&signin_key(state))).query_async(&mut conn).await?;
    Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
}

/// Stores a session for `ttl_secs`.
pub async fn put_session(queue: &Queue, id: &str, s: &Session, ttl_secs: u64) -> redis::RedisResult<()> {
    let json = serde_json::to_string(s).unwrap_or_default();
    let mut conn = queue.connection();
    redis::cmd("SET")
        .arg(queue.namespace().key(&session_key(id)))
        .arg(json)
        .arg("EX")
        .arg(ttl_secs.max(1))
        .query_async::<()>(&mut conn)
        .await
}

/// The session with this id, unless it is unknown or ended at `now_ms`.
pub async fn session(queue: &Queue, id: &str, now_ms: u64) -> redis::RedisResult<Option<Session>> {
    let mut conn = queue.connection();
    let raw: Option<String> =
        redis::cmd("GET").arg(queue.namespace().key(&session_key(id))).query_async(&mut conn).await?;
    Ok(raw.and_then(|r| serde_json::from_str::<Session>(&r).ok()).filter(|s| now_ms < s.exp_ms))
}

/// Ends a session.
pub async fn drop_session(queue: &Queue, id: &str) -> redis::RedisResult<()> {
    let mut conn = queue.connection();
    redis::cmd("DEL").arg(queue.namespace().key(&session_key(id))).query_async::<()>(&mut conn).await
}

/// Whether a link's nonce was used.
pub async fn is_used(queue: &Queue, nonce: &str) -> redis::RedisResult<bool> {
    let mut conn = queue.connection();
    let n: i64 = redis::cmd("EXISTS").arg(queue.namespace().key(&used_key(nonce))).query_async(&mut conn).await?;
    Ok(n > 0)
}

/// Burns a link's nonce until `ttl_ms` from now (the link's remaining life): `true` for the
/// first caller only.
pub async fn consume(queue: &Queue, nonce: &str, by: &str, ttl_ms: u64) -> redis::RedisResult<bool> {
    let mut conn = queue.connection();
    let set: Option<String> = redis::cmd("SET")
        .arg(queue.namespace().key(&used_key(nonce)))
        .arg(by)
        .arg("NX")
        .arg("PX")
        .arg(ttl_ms.max(1))
        .query_async(&mut conn)
        .await?;
    Ok(set.is_some())
}

/// Gives a nonce back after a decision that could not be recorded at all (the store or the
/// directory failed): nothing was decided, so the link may be used again.
pub async fn release(queue: &Queue, nonce: &str) -> redis::RedisResult<()> {
    let mut conn = queue.connection();
    redis::cmd("DEL").arg(queue.namespace().key(&used_key(nonce))).query_async::<()>(&mut conn).await
}

//! Evidence packs: everything an auditor needs to prove, offline, who asked for what, which
//! checks the policy ran, who approved and when, what changed upstream and when it was removed,
//! in one signed JSON file (and a printable HTML rendering of it).
//!
//! # The pack
//!
//! A pack is one JSON object with three members:
//!
//! ```text
//! { "format": "grantline-evidence/1",
//!   "content": { ... },                  // see `Content`: the facts, and the complete audit trail
//!   "signature": { "alg": "Ed25519", "canonical": "grantline-canonical-json/1",
//!                  "key_id": "sha256:<hex>", "public_key": "<PEM>", "value": "<base64>" } }
//! ```
//!
//! `content` holds the request's summary (inputs, checks, decision, policy hash, approvals, the
//! grant receipt, ticket updates, the removal) and the request's complete audit trail: every
//! stored record as its exact JSON text with its `prev` and `hash`, the record's audit head, and
//! the result of verifying the hash chain when the pack was made. The summary is derived from the
//! record and the trail; `verify-evidence` derives it again from the trail inside the pack and
//! reports any difference.
//!
//! # Canonical form (`grantline-canonical-json/1`)
//!
//! The signature covers the canonical bytes of the `content` value, computed from the parsed
//! JSON (so a pack may be pretty-printed or re-indented without breaking it):
//!
//! - objects: members sorted by key, comparing the keys' UTF-8 bytes; `{`, `}`, `:` and `,`
//!   with no whitespace anywhere;
//! - arrays: elements in order, separated by `,`;
//! - strings: `"`, with `"` and `\` escaped as `\"` and `\\`; U+0008, U+0009, U+000A, U+000C
//!   and U+000D as `\b`, `\t`, `\n`, `\f`, `\r`; every other character below U+0020 as `\u00xx`
//!   (lowercase hex); every other character as its UTF-8 bytes, unescaped;
//! - numbers: integers only, in decimal without sign for non-negative values, without leading
//!   zeros or exponent (a fractional or exponent number makes the content invalid);
//! - `true`, `false`, `null` as such.
//!
//! For content that holds only integers and ASCII keys (every key grantline writes is ASCII)
//! this is the JSON Canonicalization Scheme (RFC 8785), which compares keys as UTF-16 units.
//! The signature is Ed25519 (RFC 8032, pure, no pre-hash) over those bytes; `value` is the
//! 64-byte signature in standard base64, `key_id` is `sha256:` and the lowercase hex SHA-256 of
//! the 32-byte raw public key, and `public_key` the key as a PEM `PUBLIC KEY` (SPKI).
//!
//! An embedded key proves that the content was not changed since whoever holds that key signed
//! it; only a public key obtained apart from the pack (`--public-key`) proves who signed it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use grantline_queue::Queue;
use grantline_shared::audit::{self, AuditEvent, AuditRecord};
use grantline_shared::policy::{Decision, Principal, UserFacts};
use grantline_shared::receipt::{CurrentState, Receipt, RemovalReceipt};
use grantline_shared::record::{ApprovalEntry, RequestRecord};
use grantline_shared::request::TicketRef;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::sign::{Signer, Verifier};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The format of the packs this version writes and reads.
pub const FORMAT: &str = "grantline-evidence/1";
/// The signature algorithm.
pub const ALG: &str = "Ed25519";
/// The name of the canonical form the signature covers (see the module documentation).
pub const CANONICAL: &str = "grantline-canonical-json/1";

/// Why a pack could not be made, signed or read. (The binary's crate has no `thiserror`; the
/// three impls below are what it would derive.)
#[derive(Debug)]
pub enum EvidenceError {
    /// A key file or key text that is not what it must be.
    Key(String),
    /// The content cannot be put in canonical form.
    Canonical(String),
    /// OpenSSL refused an operation.
    Crypto(openssl::error::ErrorStack),
    /// The content cannot be encoded or decoded.
    Json(serde_json::Error),
}

impl std::fmt::Display for EvidenceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvidenceError::Key(m) => write!(f, "key: {m}"),
            EvidenceError::Canonical(m) => write!(f, "canonical form: {m}"),
            EvidenceError::Crypto(e) => write!(f, "openssl: {e}"),
            EvidenceError::Json(e) => write!(f, "encoding: {e}"),
        }
    }
}

impl std::error::Error for EvidenceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EvidenceError::Crypto(e) => Some(e),
            EvidenceError::Json(e) => Some(e),
            EvidenceError::Key(_) | EvidenceError::Canonical(_) => None,
        }
    }
}

impl From<openssl::error::ErrorStack> for EvidenceError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        EvidenceError::Crypto(e)
    }
}

impl From<serde_json::Error> for EvidenceError {
    fn from(e: serde_json::Error) -> Self {
        EvidenceError::Json(e)
    }
}

// ---------------------------------------------------------------------------------------------
// Canonical form and signatures

/// The canonical bytes of a JSON value (`grantline-canonical-json/1`, see the module docs).
pub fn canonical_bytes(value: &Value) -> Result<Vec<u8>, EvidenceError> {
    let mut out = String::new();
    write_canonical(value, &mut out)?;
    Ok(out.into_bytes())
}

fn write_canonical(value: &Value, out: &mut String) -> Result<(), EvidenceError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else {
                return Err(EvidenceError::Canonical(format!("{n} is not an integer")));
            }
        }
        Value::String(s) => write_canonical_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out)?;
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut keys: Vec<&String> = members.keys().collect();
            keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical_string(key, out);
                out.push(':');
                if let Some(v) = members.get(key) {
                    write_canonical(v, out)?;
                }
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_canonical_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `sha256:<lowercase hex>` of some bytes (the form policy versions have).
pub fn sha256_tagged(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&openssl::sha::sha256(bytes)))
}

/// An Ed25519 private key that signs packs. Its `Debug` shows the key id only.
pub struct SigningKey(PKey<Private>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = self.public_key().and_then(|k| k.key_id()).unwrap_or_default();
        f.debug_struct("SigningKey").field("key_id", &id).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<Self, EvidenceError> {
        Ok(SigningKey(PKey::generate_ed25519()?))
    }

    /// Reads a PEM private key (PKCS#8, `-----BEGIN PRIVATE KEY-----`), which must be Ed25519.
    pub fn from_pem(pem: &[u8]) -> Result<Self, EvidenceError> {
        let key = PKey::private_key_from_pem(pem)
            .map_err(|_| EvidenceError::Key("not a PEM private key (expected PKCS#8, BEGIN PRIVATE KEY)".into()))?;
        if key.id() != Id::ED25519 {
            return Err(EvidenceError::Key("the private key is not an Ed25519 key".into()));
        }
        Ok(SigningKey(key))
    }

    /// A key from its 32-byte raw private seed (test vectors).
    pub fn from_raw(seed: &[u8]) -> Result<Self, EvidenceError> {
        Ok(SigningKey(PKey::private_key_from_raw_bytes(seed, Id::ED25519)?))
    }

    /// The key as PEM PKCS#8, for writing its file (never for printing).
    pub fn to_pkcs8_pem(&self) -> Result<Vec<u8>, EvidenceError> {
        Ok(self.0.private_key_to_pem_pkcs8()?)
    }

    /// The matching public key.
    pub fn public_key(&self) -> Result<PublicKey, EvidenceError> {
        PublicKey::from_raw(&self.0.raw_public_key()?)
    }

    /// The Ed25519 signature of `data`.
    pub fn sign_bytes(&self, data: &[u8]) -> Result<Vec<u8>, EvidenceError> {
        let mut signer = Signer::new_without_digest(&self.0)?;
        Ok(signer.sign_oneshot_to_vec(data)?)
    }
}

/// An Ed25519 public key that checks packs.
#[derive(Clone)]
pub struct PublicKey(PKey<Public>);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PublicKey").field(&self.key_id().unwrap_or_default()).finish()
    }
}

impl PublicKey {
    /// A key from its 32 raw bytes.
    pub fn from_raw(raw: &[u8]) -> Result<Self, EvidenceError> {
        if raw.len() != 32 {
            return Err(EvidenceError::Key(format!("an Ed25519 public key has 32 bytes, not {}", raw.len())));
        }
        Ok(PublicKey(PKey::public_key_from_raw_bytes(raw, Id::ED25519)?))
    }

    /// A key as PEM (`-----BEGIN PUBLIC KEY-----`), or as the standard base64 of its 32 raw
    /// bytes.
    pub fn parse(text: &str) -> Result<Self, EvidenceError> {
        let text = text.trim();
        if text.starts_with("-----BEGIN") {
            if text.contains("PRIVATE KEY") {
                return Err(EvidenceError::Key("this is a private key; give the public key".into()));
            }
            let key = PKey::public_key_from_pem(text.as_bytes())
                .map_err(|_| EvidenceError::Key("not a PEM public key (expected BEGIN PUBLIC KEY)".into()))?;
            if key.id() != Id::ED25519 {
                return Err(EvidenceError::Key("the public key is not an Ed25519 key".into()));
            }
            return Ok(PublicKey(key));
        }
        let raw = openssl::base64::decode_block(text)
            .map_err(|_| EvidenceError::Key("neither a PEM public key nor base64 of a raw key".into()))?;
        Self::from_raw(&raw)
    }

    /// The 32 raw bytes.
    pub fn raw(&self) -> Result<Vec<u8>, EvidenceError> {
        Ok(self.0.raw_public_key()?)
    }

    /// `sha256:<hex>` of the 32 raw bytes: the key's id in packs and messages.
    pub fn key_id(&self) -> Result<String, EvidenceError> {
        Ok(sha256_tagged(&self.raw()?))
    }

    /// The key as PEM SPKI.
    pub fn to_pem(&self) -> Result<String, EvidenceError> {
        String::from_utf8(self.0.public_key_to_pem()?).map_err(|e| EvidenceError::Key(e.to_string()))
    }

    /// Whether `signature` is this key's Ed25519 signature of `data`.
    pub fn verify_bytes(&self, data: &[u8], signature: &[u8]) -> Result<bool, EvidenceError> {
        let mut verifier = Verifier::new_without_digest(&self.0)?;
        // a malformed signature is an answer (no), not an error
        Ok(verifier.verify_oneshot(signature, data).unwrap_or(false))
    }
}

/// The `signature` member of a pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Always `Ed25519`.
    pub alg: String,
    /// The canonical form signed: [`CANONICAL`].
    pub canonical: String,
    /// `sha256:<hex>` of the raw public key.
    pub key_id: String,
    /// The public key, PEM SPKI.
    pub public_key: String,
    /// The signature, standard base64.
    pub value: String,
}

/// Signs a pack's content: Ed25519 over its canonical bytes.
pub fn sign(content: &Value, key: &SigningKey) -> Result<Signature, EvidenceError> {
    let bytes = canonical_bytes(content)?;
    let public = key.public_key()?;
    Ok(Signature {
        alg: ALG.into(),
        canonical: CANONICAL.into(),
        key_id: public.key_id()?,
        public_key: public.to_pem()?,
        value: openssl::base64::encode_block(&key.sign_bytes(&bytes)?),
    })
}

/// Whether `signature` is `key`'s signature of `content`'s canonical bytes.
pub fn signature_holds(content: &Value, signature: &Signature, key: &PublicKey) -> Result<bool, EvidenceError> {
    let bytes = canonical_bytes(content)?;
    let Ok(value) = openssl::base64::decode_block(signature.value.trim()) else {
        return Ok(false);
    };
    key.verify_bytes(&bytes, &value)
}

/// The pack as written: `format` first, then the signature, then the content in the order
/// its fields are declared (the order is for readers; the signature does not depend on it).
#[derive(Serialize)]
struct PackOut<'a> {
    format: &'a str,
    signature: &'a Signature,
    content: &'a Content,
}

/// The whole pack as its file's text (format, signature, content), and its signature.
pub fn seal(content: &Content, key: &SigningKey) -> Result<(String, Signature), EvidenceError> {
    let signature = sign(&serde_json::to_value(content)?, key)?;
    let mut text = serde_json::to_string_pretty(&PackOut { format: FORMAT, signature: &signature, content })?;
    text.push('\n');
    Ok((text, signature))
}

/// Signs an arbitrary content value into a pack (also what a forger with another key would do:
/// the tests use it to show what verification still catches).
pub fn reseal(content: Value, key: &SigningKey) -> Result<Value, EvidenceError> {
    let signature = sign(&content, key)?;
    Ok(serde_json::json!({ "format": FORMAT, "content": content, "signature": signature }))
}

// ---------------------------------------------------------------------------------------------
// The content

/// What a pack holds. Every field is always present (`null` when unknown), so the shape is
/// stable; times are milliseconds since the Unix epoch unless named otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Content {
    /// [`FORMAT`], repeated inside what is signed.
    pub format: String,
    /// When the pack was made (RFC 3339) and the same in ms.
    pub generated_at: String,
    pub generated_ms: u64,
    pub tool: Tool,
    pub request_id: String,
    /// The ticket the request came from.
    pub ticket: TicketRef,
    /// The request's state when the pack was made.
    pub state: String,
    /// Why it is there, as the record says.
    pub reason: Option<String>,
    pub trace_id: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// When a time-bound grant ends.
    pub end_ms: Option<u64>,
    /// What the directory said of the person the access is for.
    pub requester: Option<UserFacts>,
    /// Who filed the ticket, when someone else than the requester.
    pub opened_by: Option<Principal>,
    /// What the ticket asked.
    pub inputs: Inputs,
    /// Every policy check, from the trail's `check_evaluated` records.
    pub checks: Vec<CheckEvidence>,
    pub decision: Option<DecisionEvidence>,
    /// The policy file in force when the pack was made.
    pub policy: PolicyEvidence,
    /// Every approval (or rejection), the policy's own auto-approval included.
    pub approvals: Vec<ApprovalEvidence>,
    /// Approvals refused because the requester tried to approve their own request.
    pub refused_approvals: Vec<RefusedApproval>,
    pub grant: Option<GrantEvidence>,
    /// Every ticket update, from the trail's `ticket_updated` records.
    pub ticket_updates: Vec<TicketUpdateEvidence>,
    pub scheduled_removal: Option<ScheduledRemoval>,
    pub removal: Option<RemovalEvidence>,
    /// The complete audit trail and its verification.
    pub audit: AuditEvidence,
}

/// The tool that made the pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

/// What the ticket asked (from the trail's last `ticket_read` record, the record and the
/// decision).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// The ticket number as read back from the ticket system.
    pub ticket: Option<String>,
    pub catalog_item: Option<String>,
    pub requested_for: Option<String>,
    pub opened_by: Option<String>,
    pub justification: Option<String>,
    /// When the ticket was read back.
    pub read_ms: Option<u64>,
    /// The target's display name.
    pub target: Option<String>,
    /// The target's key in the policy, its kind and its upstream id (group id or mailbox).
    pub target_key: Option<String>,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub level: Option<String>,
    /// The duration or end the ticket asked for, and what the policy gave.
    pub duration_requested: Option<String>,
    pub end_requested: Option<String>,
    pub duration_granted: Option<String>,
    pub ends_at: Option<String>,
}

/// One policy check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckEvidence {
    pub code: String,
    pub passed: bool,
    /// `pass`, `fail` or `skip` as the decision has it (null for checks outside the policy).
    pub status: Option<String>,
    pub reason: String,
    pub at_ms: u64,
    pub actor: String,
}

/// The policy's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionEvidence {
    /// `allow` or `deny`.
    pub outcome: String,
    /// The approval rule that matched.
    pub rule: Option<String>,
    /// `sha256:<hex>` of the policy file it was made under.
    pub policy_version: String,
    pub evaluated_at: String,
    pub execute_at: String,
    /// From the trail's `decision_made` record.
    pub reason: Option<String>,
    pub decided_ms: Option<u64>,
    pub actor: Option<String>,
    /// The decision as stored on the record.
    pub recorded: Decision,
}

/// The policy file read when the pack was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyEvidence {
    pub path: String,
    /// `sha256:<hex>` of the file's bytes (the same form as a policy version).
    pub sha256: String,
    pub bytes: u64,
    /// Whether it is the policy the decision was made under.
    pub matches_decision: bool,
    /// The file's text.
    pub text: String,
}

/// One approver's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalEvidence {
    /// The approver as shown to people (UPN when known, else the directory object id).
    pub approver: String,
    pub approve: bool,
    pub comment: String,
    pub at_ms: u64,
    /// Who wrote it to the trail (`operator:<id>`, `grantline:request-approval`); null when
    /// the trail has no `approval_recorded` record for it.
    pub actor: Option<String>,
    /// `record` (one of the record's approvals, matched to its trail record) or `trail` (the
    /// trail only, as the policy's own auto-approval).
    pub source: String,
    /// The record's entry, as stored: the approver's proven ids, the stage, the door it came
    /// through, who recorded it on the approver's behalf.
    pub entry: Option<ApprovalEntry>,
}

/// An answer that did not count (a self-approval, someone not an approver, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedApproval {
    /// The trail record's type (`self_approval_refused`, `approval_refused`).
    pub event: String,
    /// The identity it claimed.
    pub approver: String,
    pub at_ms: u64,
    pub actor: String,
    /// The record's own fields (door, reason, ...).
    pub detail: Value,
}

/// What execute-grant changed (or found already there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantEvidence {
    /// `group` or `mailbox`.
    pub kind: String,
    pub description: String,
    pub user_id: String,
    pub user_upn: String,
    /// The group id or the mailbox address, and its name.
    pub target_id: String,
    pub target_name: String,
    pub level: Option<String>,
    /// Whether the access was there before and after (from the trail's grant record).
    pub before: Option<bool>,
    pub after: Option<bool>,
    /// It existed before this request: never removed by it.
    pub pre_existing: bool,
    pub granted_ms: u64,
    /// The upstream's `request-id` and grantline's `client-request-id` of the call that is the
    /// evidence, and when it was made.
    pub upstream_request_id: Option<String>,
    pub client_request_id: String,
    pub call_ms: u64,
    /// What validate read before anything changed.
    pub read_before: Option<CurrentState>,
    pub audited_ms: Option<u64>,
    pub actor: Option<String>,
    /// The receipt as stored on the record.
    pub receipt: Receipt,
}

/// One ticket update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketUpdateEvidence {
    pub update: String,
    /// The ticket state written ("" when it was left alone).
    pub state: String,
    pub at_ms: u64,
    pub actor: String,
}

/// When the removal was scheduled for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledRemoval {
    pub remove_at_ms: u64,
    pub at_ms: u64,
    pub actor: String,
}

/// What removal (or compensation) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovalEvidence {
    pub trigger: String,
    pub removed: bool,
    pub kept_pre_existing: bool,
    pub kept_for: Vec<String>,
    pub already_gone: bool,
    pub at_ms: u64,
    pub upstream_request_id: Option<String>,
    pub client_request_id: Option<String>,
    pub audited_ms: Option<u64>,
    pub actor: Option<String>,
    /// The receipt as stored on the record.
    pub receipt: RemovalReceipt,
}

/// The complete audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvidence {
    /// The record's audit head: the hash the chain must end at.
    pub head: String,
    pub records: usize,
    /// Every stored record, in stream order.
    pub trail: Vec<TrailEntry>,
    /// Positions of records this version cannot read (a newer event type); they are chained
    /// and hashed like the others.
    pub unreadable: Vec<usize>,
    /// The chain's verification when the pack was made.
    pub verification: ChainCheck,
}

/// One stored audit record: its exact JSON text (what the hash covers), the previous hash
/// and its own: `hash = sha256(prev + "\n" + record)`, hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrailEntry {
    pub record: String,
    pub prev: String,
    pub hash: String,
}

/// The result of verifying a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainCheck {
    pub intact: bool,
    pub records: usize,
    pub broken_at: Option<usize>,
    pub reason: Option<String>,
}

impl ChainCheck {
    fn of(trail: &[TrailEntry], head: &str) -> ChainCheck {
        let entries: Vec<(String, String, String)> =
            trail.iter().map(|e| (e.record.clone(), e.prev.clone(), e.hash.clone())).collect();
        let v = audit::verify(&entries, head);
        ChainCheck { intact: v.broken_at.is_none(), records: v.records, broken_at: v.broken_at, reason: v.reason }
    }
}

// ---------------------------------------------------------------------------------------------
// Building the content

/// What a pack is made from.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    pub record: &'a RequestRecord,
    /// The audit stream: (record JSON, prev, hash), in order.
    pub trail: &'a [(String, String, String)],
    /// The policy file in force and its bytes.
    pub policy_path: &'a str,
    pub policy_text: &'a str,
    pub now_ms: u64,
}

/// The trail's records this version can read, with their positions.
fn parse_trail(trail: &[TrailEntry]) -> (Vec<AuditRecord>, Vec<usize>) {
    let mut records = Vec::new();
    let mut unreadable = Vec::new();
    for (i, e) in trail.iter().enumerate() {
        match serde_json::from_str::<AuditRecord>(&e.record) {
            Ok(r) => records.push(r),
            Err(_) => unreadable.push(i),
        }
    }
    (records, unreadable)
}

fn ts(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// Builds the content of a pack. Pure: the caller reads the record, the trail and the policy.
pub fn build(src: Sources<'_>) -> Content {
    let rec = src.record;
    let trail: Vec<TrailEntry> =
        src.trail.iter().map(|(r, p, h)| TrailEntry { record: r.clone(), prev: p.clone(), hash: h.clone() }).collect();
    let verification = ChainCheck::of(&trail, &rec.audit_head);
    let (records, unreadable) = parse_trail(&trail);
    let policy_sha = sha256_tagged(src.policy_text.as_bytes());
    let decision = derive_decision(&records, rec.decision.as_ref());
    Content {
        format: FORMAT.into(),
        generated_at: ts(src.now_ms),
        generated_ms: src.now_ms,
        tool: Tool { name: "grantline".into(), version: env!("CARGO_PKG_VERSION").into() },
        request_id: rec.id.clone(),
        ticket: rec.ticket.clone(),
        state: rec.state.as_str().into(),
        reason: rec.reason.clone(),
        trace_id: rec.trace_id.clone(),
        created_ms: rec.created_ms,
        updated_ms: rec.updated_ms,
        end_ms: rec.end_ms,
        requester: rec.requester.clone(),
        opened_by: rec.opened_by.clone(),
        inputs: derive_inputs(&records, rec.target.as_deref(), rec.decision.as_ref()),
        checks: derive_checks(&records, rec.decision.as_ref()),
        policy: PolicyEvidence {
            path: src.policy_path.into(),
            matches_decision: rec.decision.as_ref().is_some_and(|d| d.policy_version == policy_sha),
            sha256: policy_sha,
            bytes: src.policy_text.len() as u64,
            text: src.policy_text.into(),
        },
        decision,
        approvals: derive_approvals(&records, &rec.approvals),
        refused_approvals: derive_refusals(&records),
        grant: rec.grant.as_ref().map(|g| derive_grant(&records, g, rec.current.as_ref())),
        ticket_updates: derive_ticket_updates(&records),
        scheduled_removal: derive_scheduled(&records),
        removal: rec.removal.as_ref().map(|r| derive_removal(&records, r)),
        audit: AuditEvidence { head: rec.audit_head.clone(), records: trail.len(), trail, unreadable, verification },
    }
}

fn last_ticket_read(records: &[AuditRecord]) -> Option<(&AuditRecord, &AuditEvent)> {
    records.iter().rev().find(|r| matches!(r.event, AuditEvent::TicketRead { .. })).map(|r| (r, &r.event))
}

fn last_decision_made(records: &[AuditRecord]) -> Option<&AuditRecord> {
    records.iter().rev().find(|r| matches!(r.event, AuditEvent::DecisionMade { .. }))
}

fn derive_inputs(records: &[AuditRecord], target: Option<&str>, decision: Option<&Decision>) -> Inputs {
    let read = last_ticket_read(records);
    let field = |f: fn(&AuditEvent) -> Option<String>| read.and_then(|(_, e)| f(e));
    let resolved = decision.and_then(|d| d.target.as_ref());
    let duration = decision.and_then(|d| d.duration.as_ref());
    Inputs {
        ticket: field(|e| match e {
            AuditEvent::TicketRead { ticket, .. } => Some(ticket.clone()),
            _ => None,
        }),
        catalog_item: field(|e| match e {
            AuditEvent::TicketRead { catalog_item, .. } => Some(catalog_item.clone()),
            _ => None,
        }),
        requested_for: field(|e| match e {
            AuditEvent::TicketRead { requested_for, .. } => Some(requested_for.clone()),
            _ => None,
        }),
        opened_by: field(|e| match e {
            AuditEvent::TicketRead { opened_by, .. } => Some(opened_by.clone()),
            _ => None,
        }),
        justification: field(|e| match e {
            AuditEvent::TicketRead { justification, .. } => justification.clone(),
            _ => None,
        }),
        read_ms: read.map(|(r, _)| r.at_ms),
        target: target.map(str::to_owned).or_else(|| resolved.map(|t| t.display_name.clone())),
        target_key: resolved.map(|t| t.key.clone()),
        target_kind: resolved.map(|t| t.kind.as_str().to_owned()),
        target_id: resolved.and_then(|t| t.group_id.clone().or_else(|| t.mailbox_address.clone())),
        level: decision.and_then(|d| d.level).map(|l| l.to_string()),
        duration_requested: duration.and_then(|d| d.requested).map(|d| d.to_string()),
        end_requested: duration.and_then(|d| d.requested_end).map(|t| t.to_string()),
        duration_granted: duration.and_then(|d| d.duration).map(|d| d.to_string()),
        ends_at: duration.and_then(|d| d.ends_at.or(d.not_after)).map(|t| t.to_string()),
    }
}

fn derive_checks(records: &[AuditRecord], decision: Option<&Decision>) -> Vec<CheckEvidence> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::CheckEvaluated { code, passed, reason } => Some(CheckEvidence {
                code: code.clone(),
                passed: *passed,
                status: decision.and_then(|d| d.check(code)).map(|c| c.status.as_str().to_owned()),
                reason: reason.clone(),
                at_ms: r.at_ms,
                actor: r.actor.clone(),
            }),
            _ => None,
        })
        .collect()
}

fn derive_decision(records: &[AuditRecord], decision: Option<&Decision>) -> Option<DecisionEvidence> {
    let d = decision?;
    let made = last_decision_made(records);
    Some(DecisionEvidence {
        outcome: d.outcome.as_str().into(),
        rule: d.rule.clone(),
        policy_version: d.policy_version.clone(),
        evaluated_at: d.evaluated_at.to_string(),
        execute_at: d.execute_at.to_string(),
        reason: made.and_then(|r| match &r.event {
            AuditEvent::DecisionMade { reason, .. } => Some(reason.clone()),
            _ => None,
        }),
        decided_ms: made.map(|r| r.at_ms),
        actor: made.map(|r| r.actor.clone()),
        recorded: d.clone(),
    })
}

/// The trail's `approval_recorded` records as (position, approver, approve, comment, at, actor).
fn approval_records(records: &[AuditRecord]) -> Vec<(usize, &str, bool, &str, u64, &str)> {
    records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match &r.event {
            AuditEvent::ApprovalRecorded { approver, approve, comment } => {
                Some((i, approver.as_str(), *approve, comment.as_str(), r.at_ms, r.actor.as_str()))
            }
            _ => None,
        })
        .collect()
}

/// Every approval: each `approval_recorded` record in trail order, joined with the record's
/// entry for it when there is one; then the record's entries the trail does not have.
fn derive_approvals(records: &[AuditRecord], entries: &[ApprovalEntry]) -> Vec<ApprovalEvidence> {
    let mut used = vec![false; entries.len()];
    let mut out = Vec::new();
    for (_, approver, approve, comment, at_ms, actor) in approval_records(records) {
        let hit = entries.iter().enumerate().position(|(i, e)| {
            !used[i] && e.approver == approver && e.approve == approve && e.comment == comment && e.at_ms == at_ms
        });
        match hit {
            Some(i) => {
                used[i] = true;
                out.push(from_entry(&entries[i], Some(actor.to_owned())));
            }
            None => out.push(ApprovalEvidence {
                approver: approver.into(),
                approve,
                comment: comment.into(),
                at_ms,
                actor: Some(actor.into()),
                source: "trail".into(),
                entry: None,
            }),
        }
    }
    for (i, e) in entries.iter().enumerate() {
        if !used[i] {
            out.push(from_entry(e, None));
        }
    }
    out
}

fn from_entry(e: &ApprovalEntry, actor: Option<String>) -> ApprovalEvidence {
    ApprovalEvidence {
        approver: e.approver.clone(),
        approve: e.approve,
        comment: e.comment.clone(),
        at_ms: e.at_ms,
        actor,
        source: "record".into(),
        entry: Some(e.clone()),
    }
}

/// The trail's refused answers, of whichever refusal type (read by name, so that every kind
/// of refusal the trail holds is listed).
fn derive_refusals(records: &[AuditRecord]) -> Vec<RefusedApproval> {
    records
        .iter()
        .filter(|r| r.event.name().ends_with("approval_refused"))
        .map(|r| {
            let mut detail = serde_json::to_value(&r.event).unwrap_or(Value::Null);
            if let Some(m) = detail.as_object_mut() {
                m.remove("type");
            }
            RefusedApproval {
                event: r.event.name().into(),
                approver: detail.get("approver").and_then(Value::as_str).unwrap_or_default().into(),
                at_ms: r.at_ms,
                actor: r.actor.clone(),
                detail,
            }
        })
        .collect()
}

fn last_grant_record(records: &[AuditRecord]) -> Option<&AuditRecord> {
    records
        .iter()
        .rev()
        .find(|r| matches!(r.event, AuditEvent::GrantExecuted { .. } | AuditEvent::PermissionGranted { .. }))
}

fn derive_grant(records: &[AuditRecord], receipt: &Receipt, current: Option<&CurrentState>) -> GrantEvidence {
    let event = last_grant_record(records);
    let (before, after) = match event.map(|r| &r.event) {
        Some(AuditEvent::GrantExecuted { before_member, after_member, .. }) => {
            (Some(*before_member), Some(*after_member))
        }
        // a mailbox grant is recorded once verified by read-back
        Some(AuditEvent::PermissionGranted { before_present, .. }) => (Some(*before_present), Some(true)),
        _ => (None, None),
    };
    let (kind, target_id, target_name, level) = match receipt {
        Receipt::Group(g) => ("group", g.group_id.clone(), g.group_name.clone(), Some("member".to_owned())),
        Receipt::Mailbox(m) => ("mailbox", m.mailbox.clone(), m.mailbox_name.clone(), Some(m.level.to_string())),
    };
    let evidence = receipt.evidence();
    GrantEvidence {
        kind: kind.into(),
        description: receipt.describe(),
        user_id: receipt.user_id().into(),
        user_upn: receipt.user_upn().into(),
        target_id,
        target_name,
        level,
        before,
        after,
        pre_existing: receipt.pre_existing(),
        granted_ms: receipt.granted_ms(),
        upstream_request_id: evidence.request_id.clone(),
        client_request_id: evidence.client_request_id.clone(),
        call_ms: evidence.at_ms,
        read_before: current.cloned(),
        audited_ms: event.map(|r| r.at_ms),
        actor: event.map(|r| r.actor.clone()),
        receipt: receipt.clone(),
    }
}

fn derive_ticket_updates(records: &[AuditRecord]) -> Vec<TicketUpdateEvidence> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::TicketUpdated { update, state } => Some(TicketUpdateEvidence {
                update: update.clone(),
                state: state.clone(),
                at_ms: r.at_ms,
                actor: r.actor.clone(),
            }),
            _ => None,
        })
        .collect()
}

fn derive_scheduled(records: &[AuditRecord]) -> Option<ScheduledRemoval> {
    records.iter().rev().find_map(|r| match &r.event {
        AuditEvent::RemovalScheduled { remove_at_ms } => {
            Some(ScheduledRemoval { remove_at_ms: *remove_at_ms, at_ms: r.at_ms, actor: r.actor.clone() })
        }
        _ => None,
    })
}

fn last_removal_record(records: &[AuditRecord]) -> Option<&AuditRecord> {
    records.iter().rev().find(|r| {
        matches!(
            r.event,
            AuditEvent::RemovalExecuted { .. } | AuditEvent::PermissionRemoved { .. } | AuditEvent::Compensated { .. }
        )
    })
}

fn derive_removal(records: &[AuditRecord], receipt: &RemovalReceipt) -> RemovalEvidence {
    let event = last_removal_record(records);
    RemovalEvidence {
        trigger: receipt.trigger.clone(),
        removed: receipt.removed,
        kept_pre_existing: receipt.kept_pre_existing,
        kept_for: receipt.kept_for.clone(),
        already_gone: receipt.already_gone,
        at_ms: receipt.at_ms,
        upstream_request_id: receipt.evidence.as_ref().and_then(|e| e.request_id.clone()),
        client_request_id: receipt.evidence.as_ref().map(|e| e.client_request_id.clone()),
        audited_ms: event.map(|r| r.at_ms),
        actor: event.map(|r| r.actor.clone()),
        receipt: receipt.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Verifying a pack

/// Which public key checked a pack's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// A key given apart from the pack: proves who signed it.
    Given,
    /// The key embedded in the pack: proves only that the content is unchanged since signed.
    Embedded,
}

/// What verifying a pack found.
#[derive(Debug)]
pub struct Report {
    /// Every reason the pack is invalid; empty when it is valid.
    pub problems: Vec<String>,
    pub key_source: Option<KeySource>,
    /// The id of the key that checked the signature.
    pub key_id: Option<String>,
    /// The content, when it could be read.
    pub content: Option<Content>,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A JSON value read strictly: an object that names a key twice is refused, so that no two
/// readers of one pack can see different values for the same field.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }
    fn visit_none<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(StrictValue(Value::Array(items)))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut members = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("the key {key:?} appears twice in one object")));
            }
            let StrictValue(v) = map.next_value()?;
            members.insert(key, v);
        }
        Ok(StrictValue(Value::Object(members)))
    }
}

/// Verifies a pack offline: its signature (with `given`, else the embedded key), the audit
/// chain inside it, and that every summary field agrees with the trail.
pub fn verify_pack(text: &str, given: Option<&PublicKey>) -> Report {
    let mut report = Report { problems: Vec::new(), key_source: None, key_id: None, content: None };
    let problems = &mut report.problems;
    let pack: Value = match serde_json::from_str::<StrictValue>(text) {
        Ok(StrictValue(v)) => v,
        Err(e) => {
            problems.push(format!("the file is not JSON: {e}"));
            return report;
        }
    };
    let Some(members) = pack.as_object() else {
        problems.push("the file is not a JSON object".into());
        return report;
    };
    match members.get("format").and_then(Value::as_str) {
        Some(FORMAT) => {}
        Some(other) => {
            problems.push(format!("unknown format {other:?}: this version reads {FORMAT}"));
            return report;
        }
        None => {
            problems.push(format!("no `format` member: not a grantline evidence pack ({FORMAT})"));
            return report;
        }
    }
    let Some(content) = members.get("content") else {
        problems.push("no `content` member".into());
        return report;
    };
    match members.get("signature").map(|s| serde_json::from_value::<Signature>(s.clone())) {
        None => problems.push("the pack is not signed (no `signature` member)".into()),
        Some(Err(e)) => problems.push(format!("the signature cannot be read: {e}")),
        Some(Ok(sig)) => {
            if sig.alg != ALG {
                problems.push(format!("signature algorithm {:?} is not {ALG}", sig.alg));
            }
            if sig.canonical != CANONICAL {
                problems.push(format!("the signature covers {:?}, not {CANONICAL}", sig.canonical));
            }
            let key = match given {
                Some(k) => {
                    report.key_source = Some(KeySource::Given);
                    let id = k.key_id().unwrap_or_default();
                    if id != sig.key_id {
                        problems.push(format!(
                            "the pack says it was signed by key {}, not by the given public key {id}",
                            sig.key_id
                        ));
                    }
                    report.key_id = Some(id);
                    Some(k.clone())
                }
                None => {
                    report.key_source = Some(KeySource::Embedded);
                    match PublicKey::parse(&sig.public_key) {
                        Ok(k) => {
                            let id = k.key_id().unwrap_or_default();
                            if id != sig.key_id {
                                problems.push(format!(
                                    "the embedded public key is {id}, not the key {} the signature names",
                                    sig.key_id
                                ));
                            }
                            report.key_id = Some(id);
                            Some(k)
                        }
                        Err(e) => {
                            problems.push(format!("the embedded public key cannot be read: {e}"));
                            None
                        }
                    }
                }
            };
            if let Some(key) = key {
                match signature_holds(content, &sig, &key) {
                    Ok(true) => {}
                    Ok(false) => problems.push(
                        match report.key_source {
                            Some(KeySource::Given) => {
                                "the signature does not verify with the given public key: the content was changed \
                                 after it was signed, or another key signed it"
                            }
                            _ => "the signature does not verify: the content was changed after it was signed",
                        }
                        .into(),
                    ),
                    Err(e) => problems.push(format!("the signature cannot be checked: {e}")),
                }
            }
        }
    }
    let c: Content = match serde_json::from_value(content.clone()) {
        Ok(c) => c,
        Err(e) => {
            problems.push(format!("the content does not have the {FORMAT} shape: {e}"));
            return report;
        }
    };
    if c.format != FORMAT {
        problems.push(format!("the content says format {:?}, the pack {FORMAT}", c.format));
    }
    problems.extend(check_content(&c));
    report.content = Some(c);
    report
}

/// The first difference between two JSON values, as `path: pack … trail …`.
fn first_difference(path: &str, pack: &Value, trail: &Value) -> Option<String> {
    match (pack, trail) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                first_difference(
                    &format!("{path}.{k}"),
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                )
            })
        }
        (Value::Array(a), Value::Array(b)) => {
            let n = a.len().max(b.len());
            (0..n).find_map(|i| match (a.get(i), b.get(i)) {
                (Some(x), Some(y)) => first_difference(&format!("{path}[{i}]"), x, y),
                (Some(x), None) => Some(format!("{path}[{i}]: the pack has {x}, the trail has nothing")),
                (None, Some(y)) => Some(format!("{path}[{i}]: the pack has nothing, the trail has {y}")),
                (None, None) => None,
            })
        }
        (a, b) if a == b => None,
        (a, b) => Some(format!("{path}: the pack says {a}, the trail says {b}")),
    }
}

fn agree<T: Serialize>(what: &str, pack: &T, trail: &T, problems: &mut Vec<String>) {
    let (Ok(a), Ok(b)) = (serde_json::to_value(pack), serde_json::to_value(trail)) else {
        problems.push(format!("{what} cannot be compared"));
        return;
    };
    if let Some(d) = first_difference(what, &a, &b) {
        problems.push(format!("the summary disagrees with the audit trail at {d}"));
    }
}

fn mismatch<T: std::fmt::Debug + PartialEq>(problems: &mut Vec<String>, what: &str, field: &str, summary: T, trail: T) {
    if summary != trail {
        problems.push(format!("{what}: the summary says {field} = {summary:?}, the audit trail says {trail:?}"));
    }
}

/// Checks a pack's content against itself: the chain, and every summary field against the
/// trail it carries.
pub fn check_content(c: &Content) -> Vec<String> {
    let mut p = Vec::new();
    let chain = ChainCheck::of(&c.audit.trail, &c.audit.head);
    if let Some(i) = chain.broken_at {
        p.push(format!(
            "the audit chain is broken at record {i} of {}: {}",
            chain.records,
            chain.reason.clone().unwrap_or_default()
        ));
    }
    if chain != c.audit.verification {
        p.push(format!(
            "the pack records its chain as {}, but the chain inside it is {}",
            chain_words(&c.audit.verification),
            chain_words(&chain)
        ));
    }
    if c.audit.records != c.audit.trail.len() {
        p.push(format!("the pack counts {} audit records but holds {}", c.audit.records, c.audit.trail.len()));
    }
    let (records, unreadable) = parse_trail(&c.audit.trail);
    if unreadable != c.audit.unreadable {
        p.push(format!("audit records {unreadable:?} cannot be read; the pack lists {:?}", c.audit.unreadable));
    }
    for (i, r) in records.iter().enumerate() {
        if r.request_id != c.request_id {
            p.push(format!("audit record {i} is about request {}, not {}", r.request_id, c.request_id));
        }
        if r.trace_id != c.trace_id {
            p.push(format!("audit record {i} carries trace {}, not the request's {}", r.trace_id, c.trace_id));
        }
    }
    match records.first().map(|r| &r.event) {
        Some(AuditEvent::RequestReceived { system, ticket, sys_id }) => {
            let what = "the ticket";
            mismatch(&mut p, what, "system", &c.ticket.system, system);
            mismatch(&mut p, what, "number", &c.ticket.number, ticket);
            mismatch(&mut p, what, "sys_id", &c.ticket.sys_id, sys_id);
        }
        _ => p.push("the audit trail does not start with the request's request_received record".into()),
    }

    let recorded = c.decision.as_ref().map(|d| &d.recorded);
    agree("inputs", &c.inputs, &derive_inputs(&records, c.inputs.target.as_deref(), recorded), &mut p);
    agree("checks", &c.checks, &derive_checks(&records, recorded), &mut p);
    agree("decision", &c.decision, &derive_decision(&records, recorded), &mut p);
    match (last_decision_made(&records).map(|r| &r.event), recorded) {
        (Some(AuditEvent::DecisionMade { allow, policy_version, target, level, .. }), Some(d)) => {
            let what = "the decision";
            mismatch(&mut p, what, "allow", d.is_allowed(), *allow);
            mismatch(&mut p, what, "policy_version", &d.policy_version, policy_version);
            mismatch(&mut p, what, "target", c.inputs.target.clone().unwrap_or_default(), target.clone());
            mismatch(&mut p, what, "level", c.inputs.level.clone().unwrap_or_default(), level.clone());
        }
        (Some(_), None) => p.push("the audit trail records a decision that the summary leaves out".into()),
        (None, Some(_)) => p.push("the summary has a decision that the audit trail does not record".into()),
        _ => {}
    }

    check_approvals(c, &records, &mut p);
    agree("refused_approvals", &c.refused_approvals, &derive_refusals(&records), &mut p);
    agree("ticket_updates", &c.ticket_updates, &derive_ticket_updates(&records), &mut p);
    agree("scheduled_removal", &c.scheduled_removal, &derive_scheduled(&records), &mut p);

    match &c.grant {
        Some(g) => {
            agree("grant", g, &derive_grant(&records, &g.receipt, g.read_before.as_ref()), &mut p);
            check_grant_record(&g.receipt, last_grant_record(&records).map(|r| &r.event), &mut p);
        }
        None if last_grant_record(&records).is_some() => {
            p.push("the audit trail records a grant that the summary leaves out".into());
        }
        None => {}
    }
    match &c.removal {
        Some(r) => {
            agree("removal", r, &derive_removal(&records, &r.receipt), &mut p);
            check_removal_record(&r.receipt, last_removal_record(&records).map(|r| &r.event), &mut p);
        }
        None if last_removal_record(&records).is_some() => {
            p.push("the audit trail records a removal that the summary leaves out".into());
        }
        None => {}
    }

    let sha = sha256_tagged(c.policy.text.as_bytes());
    if sha != c.policy.sha256 {
        p.push(format!("the policy text's sha256 is {sha}, not the {} the pack records", c.policy.sha256));
    }
    if c.policy.bytes != c.policy.text.len() as u64 {
        p.push(format!(
            "the policy text has {} bytes, not the {} the pack records",
            c.policy.text.len(),
            c.policy.bytes
        ));
    }
    let matches = recorded.is_some_and(|d| d.policy_version == c.policy.sha256);
    if matches != c.policy.matches_decision {
        p.push(format!(
            "the pack says the policy file {} the decision's policy, but its hash says it {}",
            if c.policy.matches_decision { "is" } else { "is not" },
            if matches { "is" } else { "is not" }
        ));
    }
    p
}

fn chain_words(c: &ChainCheck) -> String {
    match (c.broken_at, &c.reason) {
        (None, _) => format!("intact ({} records)", c.records),
        (Some(i), r) => format!("broken at record {i} ({})", r.clone().unwrap_or_default()),
    }
}

fn verb(approve: bool) -> &'static str {
    if approve { "approved" } else { "rejected" }
}

/// Every approval in the summary has its own `approval_recorded` record (same approver,
/// answer, comment and time, same actor), and every such record is in the summary.
fn check_approvals(c: &Content, records: &[AuditRecord], p: &mut Vec<String>) {
    let events = approval_records(records);
    let mut used = vec![false; events.len()];
    for a in &c.approvals {
        let hit = events.iter().enumerate().position(|(i, (_, approver, approve, comment, at_ms, _))| {
            !used[i] && *approver == a.approver && *approve == a.approve && *comment == a.comment && *at_ms == a.at_ms
        });
        match hit {
            None => p.push(format!(
                "the approval by {} ({}) at {} has no approval_recorded record in the audit trail",
                a.approver,
                verb(a.approve),
                ts(a.at_ms)
            )),
            Some(i) => {
                used[i] = true;
                let actor = events[i].5;
                if a.actor.as_deref() != Some(actor) {
                    p.push(format!(
                        "the approval by {} names actor {:?}; its approval_recorded record says {actor:?}",
                        a.approver, a.actor
                    ));
                }
            }
        }
    }
    for (i, (pos, approver, approve, _, at_ms, _)) in events.iter().enumerate() {
        if !used[i] {
            p.push(format!(
                "the audit trail records an approval by {approver} ({}) at {} that the summary leaves out (trail record {pos})",
                verb(*approve),
                ts(*at_ms)
            ));
        }
    }
}

fn check_grant_record(receipt: &Receipt, event: Option<&AuditEvent>, p: &mut Vec<String>) {
    let what = "the grant";
    match (receipt, event) {
        (_, None) => p.push("the grant receipt has no grant_executed or permission_granted record in the trail".into()),
        (
            Receipt::Group(g),
            Some(AuditEvent::GrantExecuted {
                group_id,
                user_id,
                pre_existing,
                graph_request_id,
                client_request_id,
                ..
            }),
        ) => {
            mismatch(p, what, "group_id", &g.group_id, group_id);
            mismatch(p, what, "user_id", &g.user_id, user_id);
            mismatch(p, what, "pre_existing", g.pre_existing, *pre_existing);
            mismatch(p, what, "upstream request-id", &g.evidence.request_id, graph_request_id);
            mismatch(p, what, "client-request-id", &g.evidence.client_request_id, client_request_id);
        }
        (
            Receipt::Mailbox(m),
            Some(AuditEvent::PermissionGranted {
                mailbox,
                level,
                user_id,
                pre_existing,
                exchange_request_id,
                client_request_id,
                ..
            }),
        ) => {
            mismatch(p, what, "mailbox", &m.mailbox, mailbox);
            mismatch(p, what, "level", &m.level.to_string(), level);
            mismatch(p, what, "user_id", &m.user_id, user_id);
            mismatch(p, what, "pre_existing", m.pre_existing, *pre_existing);
            mismatch(p, what, "upstream request-id", &m.evidence.request_id, exchange_request_id);
            mismatch(p, what, "client-request-id", &m.evidence.client_request_id, client_request_id);
        }
        (_, Some(e)) => p.push(format!("the grant receipt's kind does not match the trail's {} record", e.name())),
    }
}

fn check_removal_record(receipt: &RemovalReceipt, event: Option<&AuditEvent>, p: &mut Vec<String>) {
    let what = "the removal";
    match event {
        None => p.push("the removal receipt has no removal record in the audit trail".into()),
        Some(
            AuditEvent::RemovalExecuted { removed, kept_pre_existing, kept_for, trigger, .. }
            | AuditEvent::PermissionRemoved { removed, kept_pre_existing, kept_for, trigger, .. },
        ) => {
            mismatch(p, what, "removed", receipt.removed, *removed);
            mismatch(p, what, "kept_pre_existing", receipt.kept_pre_existing, *kept_pre_existing);
            mismatch(p, what, "kept_for", &receipt.kept_for, kept_for);
            mismatch(p, what, "trigger", &receipt.trigger, trigger);
        }
        Some(AuditEvent::Compensated { removed, .. }) => {
            mismatch(p, what, "removed", receipt.removed, *removed);
            mismatch(p, what, "trigger", receipt.trigger.as_str(), "compensation");
        }
        Some(e) => p.push(format!("the removal receipt does not match the trail's {} record", e.name())),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading a request, and the commands

/// The request id `request` names: a ticket number (`RITM…`) is looked up, anything else is
/// taken as a request id.
async fn resolve(queue: &Queue, request: &str) -> anyhow::Result<String> {
    if request.to_ascii_uppercase().starts_with("RITM") {
        for number in [request.to_owned(), request.to_ascii_uppercase()] {
            if let Some(id) = grantline_store::by_ticket(queue, "servicenow", &number).await? {
                return Ok(id);
            }
        }
        bail!("no request for ticket {request}");
    }
    Ok(request.to_owned())
}

/// The record and its audit stream as of one moment: read the record, the stream, the record
/// again, until the record did not change in between (a step commits both in one script).
pub async fn snapshot(queue: &Queue, id: &str) -> anyhow::Result<(RequestRecord, Vec<(String, String, String)>)> {
    let mut before = grantline_store::load(queue, id).await?;
    for _ in 0..10 {
        let trail = crate::cli::audit_entries(queue, id).await?;
        let after = grantline_store::load(queue, id).await?;
        if after == before {
            return Ok((after, trail));
        }
        before = after;
    }
    bail!("request {id} kept changing while it was read; try again")
}

fn safe_name(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// The file name stem of a pack: `<ticket>-<request id>`.
pub fn file_stem(content: &Content) -> String {
    format!("{}-{}", safe_name(&content.ticket.number), safe_name(&content.request_id))
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn read_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        eprintln!("warning: {} is readable by others than its owner (chmod 600 it)", path.display());
    }
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    SigningKey::from_pem(&pem).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// `grantline audit evidence REQUEST|TICKET`: writes `<out>/<ticket>-<id>.evidence.json` and
/// `.evidence.html`, signed with the key in `key` (a one-time key when none is given). Exit 1
/// when the request's audit chain is broken (the pack is written, and records it).
pub async fn evidence_cmd(
    queue: &Queue,
    request: &str,
    out: &Path,
    key: Option<&Path>,
    policy: &Path,
) -> anyhow::Result<ExitCode> {
    let key = match key {
        Some(path) => read_signing_key(path)?,
        None => {
            eprintln!(
                "warning: no --key given: the pack is signed with a one-time key that is not kept, so it proves \
                 its integrity but not who made it (create a key with `grantline audit keygen --out FILE`)"
            );
            SigningKey::generate()?
        }
    };
    let policy_text = std::fs::read_to_string(policy).with_context(|| {
        format!("reading the policy file {} (give the one in force with --policy)", policy.display())
    })?;
    let id = resolve(queue, request).await?;
    let (record, trail) = snapshot(queue, &id).await?;
    let now_ms = u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or_default();
    let policy_path = policy.display().to_string();
    let content =
        build(Sources { record: &record, trail: &trail, policy_path: &policy_path, policy_text: &policy_text, now_ms });
    let (json, signature) = seal(&content, &key)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let stem = file_stem(&content);
    let json_path = out.join(format!("{stem}.evidence.json"));
    let html_path = out.join(format!("{stem}.evidence.html"));
    write_file(&json_path, json.as_bytes())?;
    write_file(&html_path, render_html(&content, &signature).as_bytes())?;
    println!("wrote {}", json_path.display());
    println!("wrote {}", html_path.display());
    println!(
        "request {} (ticket {}): {} audit records, {} approvals, signed by {}",
        content.request_id,
        content.ticket.number,
        content.audit.records,
        content.approvals.len(),
        signature.key_id
    );
    if !content.policy.matches_decision {
        println!(
            "note: {} ({}) is not the policy the decision was made under ({})",
            content.policy.path,
            content.policy.sha256,
            content.decision.as_ref().map(|d| d.policy_version.as_str()).unwrap_or("no decision")
        );
    }
    let v = &content.audit.verification;
    match v.broken_at {
        None => {
            println!("audit chain intact, ends at the record's audit head");
            Ok(ExitCode::SUCCESS)
        }
        Some(i) => {
            println!(
                "BROKEN: the audit chain is broken at record {i}: {} (the pack records it)",
                v.reason.clone().unwrap_or_default()
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// `grantline audit verify-evidence FILE`: exit 0 and what the pack proves when it is valid,
/// exit 1 and every reason when it is not.
pub fn verify_cmd(file: &Path, public_key: Option<&Path>) -> anyhow::Result<ExitCode> {
    let given = match public_key {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Some(PublicKey::parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?)
        }
        None => None,
    };
    let text = match std::fs::read(file).map(String::from_utf8) {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => {
            println!("INVALID: {} is not UTF-8 text: {e}", file.display());
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            println!("INVALID: {}: {e}", file.display());
            return Ok(ExitCode::from(1));
        }
    };
    let report = verify_pack(&text, given.as_ref());
    print!("{}", describe(&report));
    Ok(if report.is_valid() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `grantline audit keygen --out FILE`: a new Ed25519 key in FILE (PKCS#8 PEM, mode 0600) and
/// its public key in FILE.pub; prints the public key and its id, never the private key.
pub fn keygen_cmd(out: &Path) -> anyhow::Result<ExitCode> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut public_path = out.as_os_str().to_owned();
    public_path.push(".pub");
    let public_path = PathBuf::from(public_path);
    for p in [out, public_path.as_path()] {
        if p.exists() {
            bail!("{} exists: not overwriting a key", p.display());
        }
    }
    let key = SigningKey::generate()?;
    let public = key.public_key()?;
    let pem = key.to_pkcs8_pem()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    file.write_all(&pem).with_context(|| format!("writing {}", out.display()))?;
    file.sync_all().with_context(|| format!("writing {}", out.display()))?;
    let public_pem = public.to_pem()?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&public_path)
        .and_then(|mut f| f.write_all(public_pem.as_bytes()))
        .with_context(|| format!("writing {}", public_path.display()))?;
    println!("private key: {} (mode 0600; keep it secret, give it to `audit evidence --key`)", out.display());
    println!("public key:  {} (give it to auditors, for `audit verify-evidence --public-key`)", public_path.display());
    println!("key id:      {}", public.key_id()?);
    print!("{public_pem}");
    Ok(ExitCode::SUCCESS)
}

/// A verification report for people: VALID and what the pack proves, or INVALID and why.
pub fn describe(report: &Report) -> String {
    let mut s = String::new();
    if !report.is_valid() {
        let _ = writeln!(s, "INVALID: {}", report.problems[0]);
        for p in &report.problems[1..] {
            let _ = writeln!(s, "  also: {p}");
        }
        return s;
    }
    let Some(c) = &report.content else {
        return "INVALID: no content\n".into();
    };
    let key = report.key_id.clone().unwrap_or_default();
    let _ = writeln!(s, "VALID: evidence pack for ticket {} (request {})", c.ticket.number, c.request_id);
    match report.key_source {
        Some(KeySource::Given) => {
            let _ = writeln!(
                s,
                "signature: {ALG} by key {key}, checked with the given public key: the holder of that key made this \
                 pack, and nothing in it changed since"
            );
        }
        _ => {
            let _ = writeln!(
                s,
                "signature: {ALG} by key {key}, checked with the key embedded in the pack: this proves the content \
                 is unchanged since that key signed it (integrity), not who signed it (origin); give --public-key \
                 to prove origin"
            );
        }
    }
    let _ = writeln!(
        s,
        "audit chain: {} records, intact, ending at the request's audit head {}",
        c.audit.records, c.audit.head
    );
    if !c.audit.unreadable.is_empty() {
        let _ = writeln!(
            s,
            "  (records {:?} are of types this version does not know; they are chained)",
            c.audit.unreadable
        );
    }
    let _ = writeln!(s, "the summary agrees with the trail; the pack proves:");
    let i = &c.inputs;
    let who = c.requester.as_ref().map(|r| r.upn.clone()).or_else(|| i.requested_for.clone()).unwrap_or_default();
    let _ = writeln!(
        s,
        "  asked:     {} -> {} ({}) for {who}, ticket {} opened by {}{}",
        i.catalog_item.as_deref().unwrap_or("?"),
        i.target.as_deref().unwrap_or("?"),
        i.level.as_deref().unwrap_or("?"),
        i.ticket.as_deref().unwrap_or(&c.ticket.number),
        i.opened_by.as_deref().unwrap_or("?"),
        i.justification.as_deref().map(|j| format!(", justification {j:?}")).unwrap_or_default()
    );
    let failed = c.checks.iter().filter(|k| !k.passed).count();
    let _ =
        writeln!(s, "  checks:    {} evaluated, {} passed, {failed} failed", c.checks.len(), c.checks.len() - failed);
    for k in c.checks.iter().filter(|k| !k.passed) {
        let _ = writeln!(s, "             failed {}: {}", k.code, k.reason);
    }
    if let Some(d) = &c.decision {
        let _ = writeln!(
            s,
            "  decision:  {}{} under policy {} at {}",
            d.outcome,
            d.rule.as_deref().map(|r| format!(" by rule {r}")).unwrap_or_default(),
            d.policy_version,
            d.decided_ms.map(ts).unwrap_or_else(|| d.evaluated_at.clone())
        );
    }
    let _ = writeln!(
        s,
        "  policy:    {} has {}: {} the decision's policy",
        c.policy.path,
        c.policy.sha256,
        if c.policy.matches_decision { "it is" } else { "it is NOT" }
    );
    for a in &c.approvals {
        let e = a.entry.as_ref();
        let _ = writeln!(
            s,
            "  approval:  {}{} {} at {}{}{} (recorded by {})",
            a.approver,
            e.and_then(|e| e.approver_id.as_deref()).map(|i| format!(" (id {i})")).unwrap_or_default(),
            verb(a.approve),
            ts(a.at_ms),
            e.and_then(|e| e.stage).map(|st| format!(", stage {st}")).unwrap_or_default(),
            e.and_then(|e| e.via.as_deref()).map(|v| format!(", via {v}")).unwrap_or_default(),
            a.actor.as_deref().unwrap_or("?")
        );
    }
    for r in &c.refused_approvals {
        let _ = writeln!(s, "  refused:   {} at {} ({}: {})", r.approver, ts(r.at_ms), r.event, r.detail);
    }
    if let Some(g) = &c.grant {
        let _ = writeln!(
            s,
            "  grant:     {} at {}; before: {}, after: {}, pre-existing: {}; upstream request-id {}, client-request-id {}",
            g.description,
            ts(g.granted_ms),
            yes_no(g.before),
            yes_no(g.after),
            if g.pre_existing { "yes (never removed by this request)" } else { "no" },
            g.upstream_request_id.as_deref().unwrap_or("none"),
            g.client_request_id
        );
    }
    for u in &c.ticket_updates {
        let _ = writeln!(s, "  ticket:    {} ({}) at {}", u.update, ticket_state(&u.state), ts(u.at_ms));
    }
    if let Some(r) = &c.scheduled_removal {
        let _ = writeln!(s, "  scheduled: removal at {}", ts(r.remove_at_ms));
    }
    if let Some(r) = &c.removal {
        let _ = writeln!(s, "  removal:   {} at {} ({})", removal_words(r), ts(r.at_ms), r.trigger);
    }
    let _ = writeln!(s, "generated {} by {} {}", c.generated_at, c.tool.name, c.tool.version);
    s
}

fn ticket_state(state: &str) -> String {
    if state.is_empty() { "ticket state left as it was".into() } else { format!("ticket state set to {state}") }
}

fn yes_no(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "present",
        Some(false) => "absent",
        None => "unknown",
    }
}

fn removal_words(r: &RemovalEvidence) -> String {
    if r.removed {
        "removed and verified gone".into()
    } else if r.kept_pre_existing {
        "kept (it existed before this request)".into()
    } else if !r.kept_for.is_empty() {
        format!("kept for request(s) {}", r.kept_for.join(", "))
    } else if r.already_gone {
        "already gone".into()
    } else {
        "not removed".into()
    }
}

// ---------------------------------------------------------------------------------------------
// HTML

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn opt(s: Option<&str>) -> String {
    s.map(esc).unwrap_or_else(|| "<span class=\"none\">none</span>".into())
}

fn mono(s: &str) -> String {
    format!("<code>{}</code>", esc(s))
}

/// Rows of (label, already-escaped HTML) as a two-column table.
fn facts(rows: &[(&str, String)]) -> String {
    let mut s = String::from("<table class=\"facts\">");
    for (k, v) in rows {
        let _ = write!(s, "<tr><th>{}</th><td>{v}</td></tr>", esc(k));
    }
    s.push_str("</table>");
    s
}

fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "<p class=\"none\">none</p>".into();
    }
    let mut s = String::from("<table><thead><tr>");
    for h in head {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr></thead><tbody>");
    for row in rows {
        s.push_str("<tr>");
        for cell in row {
            let _ = write!(s, "<td>{cell}</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

fn when(ms: u64) -> String {
    esc(&ts(ms))
}

fn mark(ok: bool, yes: &str, no: &str) -> String {
    if ok {
        format!("<span class=\"pass\">{}</span>", esc(yes))
    } else {
        format!("<span class=\"fail\">{}</span>", esc(no))
    }
}

const STYLE: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#111;background:#fff;\
max-width:64rem;margin:2rem auto;padding:0 1rem}\
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.1rem;border-bottom:2px solid #333;padding-bottom:.15rem;\
margin-top:1.8rem}h3{font-size:1rem;margin-bottom:.3rem}\
table{border-collapse:collapse;width:100%;margin:.4rem 0}th,td{border:1px solid #bbb;padding:.25rem .45rem;\
text-align:left;vertical-align:top}thead th{background:#eee}table.facts th{width:14rem;background:#f6f6f6;\
font-weight:600}code,pre{font-family:ui-monospace,'SFMono-Regular',Menlo,Consolas,monospace;font-size:12px;\
word-break:break-all}pre{white-space:pre-wrap;background:#f7f7f7;border:1px solid #ddd;padding:.5rem}\
.pass{color:#0b6b2e;font-weight:600}.fail{color:#a30000;font-weight:700}.skip,.none{color:#666}\
.lead{color:#333}.trail td{font-size:12px}\
@media print{body{margin:0;max-width:none;font-size:11px}h2{break-after:avoid}tr{break-inside:avoid}\
details>summary{display:none}}";

/// The pack as a self-contained, printable HTML page (no scripts, no external assets).
pub fn render_html(c: &Content, sig: &Signature) -> String {
    let mut s = String::new();
    let title = format!("Evidence pack: ticket {} (request {})", c.ticket.number, c.request_id);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width,initial-scale=1\"><title>{}</title><style>{STYLE}</style></head><body>",
        esc(&title)
    );
    let _ = write!(s, "<h1>{}</h1>", esc(&title));
    let _ = write!(
        s,
        "<p class=\"lead\">Generated {} by {} {}. This page renders the signed JSON pack beside it \
         (<code>{}.evidence.json</code>), which is the record; check it with \
         <code>grantline audit verify-evidence FILE --public-key KEY</code>.</p>",
        esc(&c.generated_at),
        esc(&c.tool.name),
        esc(&c.tool.version),
        esc(&file_stem(c))
    );

    // the request
    let requester = c.requester.as_ref().map(|r| {
        format!(
            "{} ({}){}",
            esc(&r.upn),
            mono(&r.id),
            r.display_name.as_deref().map(|d| format!(", {}", esc(d))).unwrap_or_default()
        )
    });
    let _ = write!(s, "<h2>Request</h2>");
    s.push_str(&facts(&[
        ("Request id", mono(&c.request_id)),
        (
            "Ticket",
            format!(
                "{} {} ({} table {}, sys_id {})",
                esc(&c.ticket.system),
                esc(&c.ticket.number),
                esc(&c.ticket.system),
                esc(&c.ticket.table),
                mono(&c.ticket.sys_id)
            ),
        ),
        ("State", esc(&c.state)),
        ("Reason", opt(c.reason.as_deref())),
        ("Requester", requester.unwrap_or_else(|| opt(None))),
        (
            "Opened by",
            c.opened_by
                .as_ref()
                .map(|p| format!("{} ({})", opt(p.upn.as_deref()), mono(&p.id)))
                .unwrap_or_else(|| "the requester".into()),
        ),
        ("Created", when(c.created_ms)),
        ("Ends", c.end_ms.map(when).unwrap_or_else(|| "no end (permanent) or not granted".into())),
        ("Trace id", mono(&c.trace_id)),
    ]));

    // integrity
    let v = &c.audit.verification;
    let _ = write!(s, "<h2>Integrity</h2>");
    s.push_str(&facts(&[
        (
            "Audit chain",
            if v.intact {
                mark(true, &format!("intact: {} records, ending at the record's audit head", v.records), "")
            } else {
                mark(
                    false,
                    "",
                    &format!(
                        "BROKEN at record {}: {}",
                        v.broken_at.unwrap_or_default(),
                        v.reason.clone().unwrap_or_default()
                    ),
                )
            },
        ),
        ("Audit head", mono(&c.audit.head)),
        (
            "Policy file",
            if c.policy.matches_decision {
                mark(true, "is the policy the decision was made under", "")
            } else {
                mark(false, "", "is NOT the policy the decision was made under")
            },
        ),
        ("Signature", format!("{} over the canonical form {}", esc(&sig.alg), mono(&sig.canonical))),
        ("Signing key id", mono(&sig.key_id)),
        ("Signature value", mono(&sig.value)),
    ]));

    // inputs
    let i = &c.inputs;
    let _ = write!(s, "<h2>What was asked</h2>");
    s.push_str(&facts(&[
        ("Ticket (read back)", opt(i.ticket.as_deref())),
        ("Catalog item", opt(i.catalog_item.as_deref())),
        ("Requested for", opt(i.requested_for.as_deref())),
        ("Opened by", opt(i.opened_by.as_deref())),
        ("Justification", opt(i.justification.as_deref())),
        ("Read at", i.read_ms.map(when).unwrap_or_else(|| opt(None))),
        ("Target", opt(i.target.as_deref())),
        (
            "Target in policy",
            format!(
                "{} ({}) {}",
                opt(i.target_key.as_deref()),
                opt(i.target_kind.as_deref()),
                i.target_id.as_deref().map(mono).unwrap_or_default()
            ),
        ),
        ("Level", opt(i.level.as_deref())),
        ("Duration requested", opt(i.duration_requested.as_deref())),
        ("End requested", opt(i.end_requested.as_deref())),
        ("Duration granted", opt(i.duration_granted.as_deref())),
        ("Ends at (decision)", opt(i.ends_at.as_deref())),
    ]));

    // checks
    let _ = write!(s, "<h2>Policy checks</h2>");
    let rows: Vec<Vec<String>> = c
        .checks
        .iter()
        .map(|k| {
            let status = k.status.clone().unwrap_or_else(|| if k.passed { "pass".into() } else { "fail".into() });
            let class = match status.as_str() {
                "fail" => "fail",
                "skip" => "skip",
                _ => "pass",
            };
            vec![
                mono(&k.code),
                format!("<span class=\"{class}\">{}</span>", esc(&status)),
                esc(&k.reason),
                when(k.at_ms),
                esc(&k.actor),
            ]
        })
        .collect();
    s.push_str(&table(&["Check", "Result", "Reason", "At", "By"], &rows));

    // decision and policy
    let _ = write!(s, "<h2>Decision</h2>");
    match &c.decision {
        Some(d) => s.push_str(&facts(&[
            ("Outcome", mark(d.outcome == "allow", &d.outcome, &d.outcome)),
            ("Rule", opt(d.rule.as_deref())),
            ("Reason", opt(d.reason.as_deref())),
            ("Policy version", mono(&d.policy_version)),
            ("Evaluated at", esc(&d.evaluated_at)),
            ("May execute from", esc(&d.execute_at)),
            ("Recorded", format!("{} by {}", d.decided_ms.map(when).unwrap_or_default(), opt(d.actor.as_deref()))),
        ])),
        None => s.push_str("<p class=\"none\">no decision was made</p>"),
    }
    let _ = write!(s, "<h3>Policy file</h3>");
    s.push_str(&facts(&[
        ("Path", mono(&c.policy.path)),
        ("sha256", mono(&c.policy.sha256)),
        ("Size", format!("{} bytes", c.policy.bytes)),
        ("Matches the decision", mark(c.policy.matches_decision, "yes", "no")),
    ]));
    let _ = write!(s, "<details><summary>Policy text</summary><pre>{}</pre></details>", esc(&c.policy.text));

    // approvals
    let _ = write!(s, "<h2>Approvals</h2>");
    let rows: Vec<Vec<String>> = c
        .approvals
        .iter()
        .map(|a| {
            let e = a.entry.as_ref();
            vec![
                format!(
                    "{}{}",
                    esc(&a.approver),
                    e.and_then(|e| e.approver_id.as_deref()).map(|i| format!(" ({})", mono(i))).unwrap_or_default()
                ),
                mark(a.approve, "approved", "rejected"),
                esc(&a.comment),
                when(a.at_ms),
                e.and_then(|e| e.stage).map(|st| st.to_string()).unwrap_or_default(),
                opt(e.and_then(|e| e.via.as_deref())),
                format!(
                    "{}{}",
                    opt(a.actor.as_deref()),
                    e.and_then(|e| e.recorded_by.as_deref())
                        .map(|r| format!(" on the approver's behalf, by {}", esc(r)))
                        .unwrap_or_default()
                ),
            ]
        })
        .collect();
    s.push_str(&table(&["Approver", "Answer", "Comment", "At", "Stage", "Via", "Recorded by"], &rows));
    if !c.refused_approvals.is_empty() {
        let rows: Vec<Vec<String>> = c
            .refused_approvals
            .iter()
            .map(|r| vec![esc(&r.approver), esc(&r.event), mono(&r.detail.to_string()), when(r.at_ms), esc(&r.actor)])
            .collect();
        let _ = write!(s, "<h3>Answers that did not count</h3>");
        s.push_str(&table(&["Who", "Refusal", "Details", "At", "Recorded by"], &rows));
    }

    // grant
    let _ = write!(s, "<h2>Grant</h2>");
    match &c.grant {
        Some(g) => s.push_str(&facts(&[
            ("What", esc(&g.description)),
            ("Kind", esc(&g.kind)),
            ("Person", format!("{} ({})", esc(&g.user_upn), mono(&g.user_id))),
            ("Target", format!("{} ({})", esc(&g.target_name), mono(&g.target_id))),
            ("Level", opt(g.level.as_deref())),
            ("Before", esc(yes_no(g.before))),
            ("After", esc(yes_no(g.after))),
            ("Pre-existing", if g.pre_existing { "yes: never removed by this request".into() } else { "no".into() }),
            ("Granted at", when(g.granted_ms)),
            ("Upstream request-id", opt(g.upstream_request_id.as_deref())),
            ("client-request-id", mono(&g.client_request_id)),
            ("Call made at", when(g.call_ms)),
            (
                "Read before",
                g.read_before
                    .as_ref()
                    .map(|r| {
                        format!(
                            "{} (request-id {}, at {})",
                            if r.present { "present" } else { "absent" },
                            opt(r.evidence.request_id.as_deref()),
                            when(r.evidence.at_ms)
                        )
                    })
                    .unwrap_or_else(|| opt(None)),
            ),
            ("Recorded", format!("{} by {}", g.audited_ms.map(when).unwrap_or_default(), opt(g.actor.as_deref()))),
        ])),
        None => s.push_str("<p class=\"none\">nothing was granted</p>"),
    }

    // ticket updates
    let _ = write!(s, "<h2>Ticket updates</h2>");
    let rows: Vec<Vec<String>> = c
        .ticket_updates
        .iter()
        .map(|u| vec![esc(&u.update), esc(&ticket_state(&u.state)), when(u.at_ms), esc(&u.actor)])
        .collect();
    s.push_str(&table(&["Update", "Ticket state", "At", "By"], &rows));

    // removal
    let _ = write!(s, "<h2>Removal</h2>");
    if let Some(r) = &c.scheduled_removal {
        let _ = write!(
            s,
            "<p>Scheduled for {} (recorded {} by {}).</p>",
            when(r.remove_at_ms),
            when(r.at_ms),
            esc(&r.actor)
        );
    }
    match &c.removal {
        Some(r) => s.push_str(&facts(&[
            ("Outcome", esc(&removal_words(r))),
            ("Trigger", esc(&r.trigger)),
            ("At", when(r.at_ms)),
            ("Upstream request-id", opt(r.upstream_request_id.as_deref())),
            ("client-request-id", opt(r.client_request_id.as_deref())),
            ("Recorded", format!("{} by {}", r.audited_ms.map(when).unwrap_or_default(), opt(r.actor.as_deref()))),
        ])),
        None => s.push_str("<p class=\"none\">not removed (yet)</p>"),
    }

    // the trail
    let _ = write!(
        s,
        "<h2>Audit trail</h2><p>Every record as stored; each hash is sha256(previous hash, a newline, the \
         record's JSON text).</p>"
    );
    let rows: Vec<Vec<String>> = c
        .audit
        .trail
        .iter()
        .enumerate()
        .map(|(n, e)| match serde_json::from_str::<AuditRecord>(&e.record) {
            Ok(r) => {
                let mut detail = serde_json::to_value(&r.event).unwrap_or(Value::Null);
                if let Some(m) = detail.as_object_mut() {
                    m.remove("type");
                }
                vec![
                    n.to_string(),
                    when(r.at_ms),
                    esc(r.event.name()),
                    esc(&r.actor),
                    mono(&detail.to_string()),
                    format!("{}<br>prev {}", mono(&e.hash), mono(&e.prev)),
                ]
            }
            Err(_) => vec![
                n.to_string(),
                String::new(),
                "<span class=\"skip\">unknown</span>".into(),
                String::new(),
                mono(&e.record),
                format!("{}<br>prev {}", mono(&e.hash), mono(&e.prev)),
            ],
        })
        .collect();
    s.push_str("<div class=\"trail\">");
    s.push_str(&table(&["#", "At", "Event", "Actor", "Details", "Hash"], &rows));
    s.push_str("</div></body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use grantline_shared::receipt::{Evidence, GroupReceipt};
    use grantline_shared::request::RequestState;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn canon(text: &str) -> String {
        String::from_utf8(canonical_bytes(&serde_json::from_str(text).unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn canonical_form_sorts_keys_by_bytes_and_drops_whitespace() {
        let text =
            "{ \"b\": 1, \"a\": [true, null, \"x\\\"\\n\\u0001\u{e9}/\"],\n \"A\": {\"z\": -3, \"y\": {}}, \"\": [],
                     \"\u{e9}\": 0, \"z\": 18446744073709551615 }";
        assert_eq!(
            canon(text),
            "{\"\":[],\"A\":{\"y\":{},\"z\":-3},\"a\":[true,null,\"x\\\"\\n\\u0001\u{e9}/\"],\"b\":1,\
             \"z\":18446744073709551615,\"\u{e9}\":0}"
        );
    }

    #[test]
    fn canonical_form_escapes_exactly_the_control_characters() {
        let v = Value::String("\u{8}\t\n\u{c}\r\u{1f}\u{7f}\"\\\u{1f600}".into());
        assert_eq!(
            String::from_utf8(canonical_bytes(&v).unwrap()).unwrap(),
            "\"\\b\\t\\n\\f\\r\\u001f\u{7f}\\\"\\\\\u{1f600}\""
        );
    }

    #[test]
    fn canonical_form_ignores_layout_and_order_and_reads_back_as_the_same_value() {
        let a = "{\"k\":{\"y\":[1,2],\"x\":\"s\"},\"j\":false}";
        let b = "{\n  \"j\" : false,\n  \"k\" : { \"x\" : \"s\", \"y\" : [ 1, 2 ] }\n}\n";
        assert_eq!(canon(a), canon(b));
        let back: Value = serde_json::from_str(&canon(a)).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(a).unwrap());
    }

    #[test]
    fn fractional_numbers_have_no_canonical_form() {
        let v: Value = serde_json::from_str("{\"a\":[1.5]}").unwrap();
        assert!(matches!(canonical_bytes(&v), Err(EvidenceError::Canonical(_))));
        let v: Value = serde_json::from_str("{\"a\":1e3}").unwrap();
        assert!(canonical_bytes(&v).is_err(), "an exponent is not an integer's canonical spelling");
    }

    #[test]
    fn ed25519_matches_the_rfc_8032_vectors() {
        let cases = [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
        ];
        for (seed, public, message, signature) in cases {
            let key = SigningKey::from_raw(&unhex(seed)).unwrap();
            let public_key = key.public_key().unwrap();
            assert_eq!(hex(&public_key.raw().unwrap()), public);
            let sig = key.sign_bytes(&unhex(message)).unwrap();
            assert_eq!(hex(&sig), signature);
            assert!(public_key.verify_bytes(&unhex(message), &sig).unwrap());
            assert!(!public_key.verify_bytes(b"other", &sig).unwrap());
            assert_eq!(public_key.key_id().unwrap(), format!("sha256:{}", hex(&openssl::sha::sha256(&unhex(public)))));
        }
    }

    #[test]
    fn a_signature_covers_the_canonical_content_and_nothing_else() {
        let key = SigningKey::generate().unwrap();
        let public = key.public_key().unwrap();
        let content: Value = serde_json::from_str("{\"b\":\"two\",\"a\":1}").unwrap();
        let sig = sign(&content, &key).unwrap();
        assert_eq!((sig.alg.as_str(), sig.canonical.as_str()), (ALG, CANONICAL));
        assert_eq!(sig.key_id, public.key_id().unwrap());
        assert!(sig.public_key.starts_with("-----BEGIN PUBLIC KEY-----"));
        // the signed bytes are exactly the canonical form
        let raw = openssl::base64::decode_block(&sig.value).unwrap();
        assert!(public.verify_bytes(b"{\"a\":1,\"b\":\"two\"}", &raw).unwrap());
        assert!(signature_holds(&content, &sig, &public).unwrap());
        // the same content laid out otherwise still verifies; other content does not
        let relaid: Value = serde_json::from_str("{ \"a\" : 1 , \"b\" : \"two\" }").unwrap();
        assert!(signature_holds(&relaid, &sig, &public).unwrap());
        let changed: Value = serde_json::from_str("{\"a\":1,\"b\":\"twO\"}").unwrap();
        assert!(!signature_holds(&changed, &sig, &public).unwrap());
        // nor does another key, or a mangled signature
        let other = SigningKey::generate().unwrap().public_key().unwrap();
        assert!(!signature_holds(&content, &sig, &other).unwrap());
        let mangled = Signature { value: "AAAA".into(), ..sig.clone() };
        assert!(!signature_holds(&content, &mangled, &public).unwrap());
        // Ed25519 is deterministic: the same content and key sign the same
        assert_eq!(sign(&content, &key).unwrap(), sig);
    }

    #[test]
    fn keys_round_trip_through_their_files_and_the_private_one_is_never_shown() {
        let key = SigningKey::generate().unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        let text = String::from_utf8(pem.clone()).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
        let again = SigningKey::from_pem(&pem).unwrap();
        let public = key.public_key().unwrap();
        assert_eq!(again.public_key().unwrap().raw().unwrap(), public.raw().unwrap());
        let from_pem = PublicKey::parse(&public.to_pem().unwrap()).unwrap();
        let from_b64 = PublicKey::parse(&openssl::base64::encode_block(&public.raw().unwrap())).unwrap();
        assert_eq!(from_pem.key_id().unwrap(), public.key_id().unwrap());
        assert_eq!(from_b64.key_id().unwrap(), public.key_id().unwrap());
        assert!(matches!(PublicKey::parse(&text), Err(EvidenceError::Key(_))), "a private key is not a public one");
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let rsa_pem = PKey::from_rsa(rsa).unwrap().private_key_to_pem_pkcs8().unwrap();
        assert!(matches!(SigningKey::from_pem(&rsa_pem), Err(EvidenceError::Key(_))), "Ed25519 only");
        let shown = format!("{key:?}");
        assert!(shown.contains("sha256:") && !shown.contains("PRIVATE"), "{shown}");
    }

    const POLICY: &str = "schema_version = 1\n# the policy\n";

    fn decision(version: &str) -> Decision {
        serde_json::from_value(serde_json::json!({
            "outcome": "allow",
            "policy_version": version,
            "evaluated_at": "2026-03-02T10:00:00Z",
            "checks": [
                {"code": "catalog.item", "status": "pass", "reason": "declared"},
                {"code": "window.open", "status": "skip", "reason": "no window"}
            ],
            "level": "member",
            "rule": "data-owner",
            "execute_at": "2026-03-02T10:00:00Z"
        }))
        .unwrap()
    }

    /// A granted and removed request with one human approval, and its chained trail.
    fn fixture() -> (RequestRecord, Vec<(String, String, String)>) {
        let ticket = TicketRef {
            system: "servicenow".into(),
            table: "sc_req_item".into(),
            sys_id: "a".repeat(32),
            number: "RITM0010001".into(),
        };
        let events: Vec<(u64, &str, AuditEvent)> = vec![
            (
                1,
                "ingest",
                AuditEvent::RequestReceived {
                    system: "servicenow".into(),
                    ticket: "RITM0010001".into(),
                    sys_id: "a".repeat(32),
                },
            ),
            (
                2,
                "grantline:validate",
                AuditEvent::TicketRead {
                    ticket: "RITM0010001".into(),
                    catalog_item: "Access to Finance BI".into(),
                    requested_for: "Alex Wilber".into(),
                    opened_by: "Alex Wilber".into(),
                    justification: Some("quarter close".into()),
                },
            ),
            (
                2,
                "grantline:validate",
                AuditEvent::CheckEvaluated { code: "catalog.item".into(), passed: true, reason: "declared".into() },
            ),
            (
                2,
                "grantline:validate",
                AuditEvent::CheckEvaluated { code: "window.open".into(), passed: true, reason: "no window".into() },
            ),
            (
                2,
                "grantline:validate",
                AuditEvent::DecisionMade {
                    allow: true,
                    policy_version: sha256_tagged(POLICY.as_bytes()),
                    target: "Finance BI Readers".into(),
                    level: "member".into(),
                    reason: "allowed by rule data-owner".into(),
                },
            ),
            (
                3,
                "operator:e2e",
                AuditEvent::ApprovalRecorded { approver: "patti@x".into(), approve: true, comment: "ok".into() },
            ),
            (
                4,
                "grantline:execute-grant",
                AuditEvent::GrantExecuted {
                    group_id: "G1".into(),
                    user_id: "U1".into(),
                    before_member: false,
                    after_member: true,
                    pre_existing: false,
                    graph_request_id: Some("graph-1".into()),
                    client_request_id: "client-1".into(),
                },
            ),
            (5, "grantline:update-ticket", AuditEvent::TicketUpdated { update: "granted".into(), state: "3".into() }),
            (6, "grantline:schedule-removal", AuditEvent::RemovalScheduled { remove_at_ms: 9 }),
            (
                9,
                "grantline:remove-access",
                AuditEvent::RemovalExecuted {
                    group_id: "G1".into(),
                    user_id: "U1".into(),
                    removed: true,
                    kept_pre_existing: false,
                    kept_for: vec![],
                    trigger: "expiry".into(),
                },
            ),
        ];
        let mut head = audit::GENESIS.to_owned();
        let mut trail = Vec::new();
        for (at_ms, actor, event) in events {
            let r = AuditRecord { request_id: "r1".into(), at_ms, actor: actor.into(), trace_id: "t1".into(), event };
            let (fields, next) = audit::entry(&head, &r).unwrap();
            trail.push((fields[0].1.clone(), fields[1].1.clone(), fields[2].1.clone()));
            head = next;
        }
        let mut rec = RequestRecord::received("r1", ticket, "00-tp-01", "t1", 1, &head);
        rec.state = RequestState::Removed;
        rec.target = Some("Finance BI Readers".into());
        rec.decision = Some(decision(&sha256_tagged(POLICY.as_bytes())));
        let entry: ApprovalEntry = serde_json::from_value(serde_json::json!({
            "approver": "patti@x", "approve": true, "comment": "ok", "at_ms": 3, "stage": 0, "via": "e2e"
        }))
        .unwrap();
        rec.approvals = vec![entry];
        let evidence = Evidence { request_id: Some("graph-1".into()), client_request_id: "client-1".into(), at_ms: 4 };
        rec.grant = Some(Receipt::Group(GroupReceipt {
            group_id: "G1".into(),
            group_name: "Finance BI Readers".into(),
            user_id: "U1".into(),
            user_upn: "alex@x".into(),
            pre_existing: false,
            granted_ms: 4,
            evidence,
            batched: false,
        }));
        rec.removal = Some(RemovalReceipt {
            removed: true,
            kept_pre_existing: false,
            kept_for: vec![],
            already_gone: false,
            evidence: None,
            trigger: "expiry".into(),
            at_ms: 9,
        });
        rec.end_ms = Some(9);
        (rec, trail)
    }

    fn content() -> Content {
        let (rec, trail) = fixture();
        build(Sources { record: &rec, trail: &trail, policy_path: "policy.toml", policy_text: POLICY, now_ms: 10 })
    }

    fn pack_text(content: Value, key: &SigningKey) -> String {
        serde_json::to_string_pretty(&reseal(content, key).unwrap()).unwrap()
    }

    #[test]
    fn a_pack_holds_the_summary_derived_from_the_record_and_its_trail() {
        let c = content();
        assert!(c.audit.verification.intact, "{:?}", c.audit.verification);
        assert_eq!(c.audit.records, 10);
        assert_eq!(c.inputs.justification.as_deref(), Some("quarter close"));
        assert_eq!(c.inputs.catalog_item.as_deref(), Some("Access to Finance BI"));
        assert_eq!(c.checks.len(), 2);
        assert_eq!(c.checks[1].status.as_deref(), Some("skip"), "the decision's own status is kept beside passed");
        assert!(c.policy.matches_decision);
        assert_eq!(c.approvals.len(), 1);
        assert_eq!((c.approvals[0].actor.as_deref(), c.approvals[0].source.as_str()), (Some("operator:e2e"), "record"));
        let g = c.grant.as_ref().unwrap();
        assert_eq!((g.before, g.after, g.upstream_request_id.as_deref()), (Some(false), Some(true), Some("graph-1")));
        assert_eq!(c.ticket_updates.len(), 1);
        assert_eq!(c.removal.as_ref().map(|r| r.removed), Some(true));
        assert!(check_content(&c).is_empty(), "{:?}", check_content(&c));
        let html =
            render_html(&c, &sign(&serde_json::to_value(&c).unwrap(), &SigningKey::generate().unwrap()).unwrap());
        assert!(html.contains("patti@x") && html.contains("quarter close") && !html.contains("<script"));
    }

    #[test]
    fn a_sealed_pack_verifies_with_its_key_and_names_which_key() {
        let key = SigningKey::generate().unwrap();
        let (text, _) = seal(&content(), &key).unwrap();
        let given = verify_pack(&text, Some(&key.public_key().unwrap()));
        assert!(given.is_valid(), "{:?}", given.problems);
        assert_eq!(given.key_source, Some(KeySource::Given));
        assert!(describe(&given).contains("the holder of that key made this pack"));
        let embedded = verify_pack(&text, None);
        assert!(embedded.is_valid(), "{:?}", embedded.problems);
        assert!(describe(&embedded).contains("integrity"), "{}", describe(&embedded));
        let other = SigningKey::generate().unwrap().public_key().unwrap();
        let wrong = verify_pack(&text, Some(&other));
        assert!(wrong.problems[0].contains("not by the given public key"), "{:?}", wrong.problems);
    }

    #[test]
    fn any_change_to_the_content_breaks_the_signature() {
        let key = SigningKey::generate().unwrap();
        let (text, _) = seal(&content(), &key).unwrap();
        let flipped = text.replacen("quarter close", "quarter closf", 1);
        let r = verify_pack(&flipped, None);
        assert!(r.problems[0].contains("signature does not verify"), "{:?}", r.problems);
        assert!(describe(&r).starts_with("INVALID: "));
    }

    #[test]
    fn a_re_signed_forgery_is_caught_by_the_trail() {
        let forger = SigningKey::generate().unwrap();
        let base = serde_json::to_value(content()).unwrap();

        let mut v = base.clone();
        v["approvals"][0]["approver"] = "mallory@x".into();
        let r = verify_pack(&pack_text(v, &forger), None);
        assert!(r.problems.iter().any(|p| p.contains("approval by mallory@x") && p.contains("no approval_recorded")));
        assert!(r.problems.iter().any(|p| p.contains("approval by patti@x") && p.contains("leaves out")));

        let mut v = base.clone();
        v["audit"]["trail"].as_array_mut().unwrap().remove(5);
        let r = verify_pack(&pack_text(v, &forger), None);
        assert!(r.problems[0].contains("audit chain is broken at record 5"), "{:?}", r.problems);

        let mut v = base.clone();
        v["grant"]["pre_existing"] = true.into();
        let r = verify_pack(&pack_text(v, &forger), None);
        assert!(r.problems.iter().any(|p| p.contains("grant.pre_existing")), "{:?}", r.problems);

        let mut v = base.clone();
        v["policy"]["text"] = "schema_version = 1\n# another policy\n".into();
        let r = verify_pack(&pack_text(v, &forger), None);
        assert!(r.problems.iter().any(|p| p.contains("policy text's sha256")), "{:?}", r.problems);

        let mut v = base;
        v["checks"][0]["passed"] = false.into();
        let r = verify_pack(&pack_text(v, &forger), None);
        assert!(r.problems.iter().any(|p| p.contains("checks[0].passed")), "{:?}", r.problems);
    }

    #[test]
    fn a_key_named_twice_is_refused_whatever_it_names() {
        let key = SigningKey::generate().unwrap();
        let (text, _) = seal(&content(), &key).unwrap();
        // a second `state` member after the first: a lenient reader would take either
        let doubled = text.replacen("\"state\": \"removed\",", "\"state\": \"removed\", \"state\": \"active\",", 1);
        assert_ne!(doubled, text);
        let r = verify_pack(&doubled, None);
        assert!(r.problems[0].contains("the key \"state\" appears twice"), "{:?}", r.problems);
    }

    #[test]
    fn what_is_not_a_pack_says_why() {
        assert!(verify_pack("{", None).problems[0].contains("not JSON"));
        assert!(verify_pack("[]", None).problems[0].contains("not a JSON object"));
        assert!(verify_pack("{\"format\":\"x/9\"}", None).problems[0].contains("unknown format"));
        let unsigned = serde_json::json!({"format": FORMAT, "content": serde_json::to_value(content()).unwrap()});
        let r = verify_pack(&unsigned.to_string(), None);
        assert_eq!(r.problems, ["the pack is not signed (no `signature` member)"]);
    }

    #[test]
    fn a_broken_chain_is_recorded_when_the_pack_is_made() {
        let (rec, mut trail) = fixture();
        trail[3].0 = trail[3].0.replace("no window", "no windoW");
        let c = build(Sources { record: &rec, trail: &trail, policy_path: "p", policy_text: POLICY, now_ms: 10 });
        assert_eq!(c.audit.verification.broken_at, Some(3));
        let problems = check_content(&c);
        assert!(problems[0].contains("broken at record 3"), "{problems:?}");
    }
}

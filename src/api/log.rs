//! `/v1/log`: the log's checkpoints, its verifier key and proofs against
//! them, and `/v1/events/{seq}/bundle` and `/v1/payments/{id}/bundle`:
//! what an auditor checks offline (README, "Proving a payment to an
//! auditor"). Reads the log file; a payment's revisions come from the
//! projection store.
//!
//! Proofs are made only for sizes a checkpoint has been made at or below:
//! an auditor holds a signed root for those, and for no later size. A size
//! past the newest checkpoint is a 400 whose code is
//! [`crate::http::error::BEYOND_CHECKPOINT`]; it cannot be a bound in the document, which is
//! static, so the document says it in words.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::events::EventSeq;
use super::openapi::ErrorAnswer;
use super::payments::PaymentId;
use crate::http::params::{rfc3339_micros, seq_param, NoParams, Params, Seq};
use crate::http::{ApiError, AppState};
use crate::log::bundle::{self, Bundle};
use crate::log::checkpoints::{self, Signing};
use crate::log::tree;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(newest_checkpoint))
        .routes(routes!(list_checkpoints))
        .routes(routes!(verifier_key))
        .routes(routes!(inclusion_proof))
        .routes(routes!(consistency_proof))
        .routes(routes!(event_bundle))
        .routes(routes!(payment_bundle))
}

/// A proof refused: the sizes asked for are the client's fault; a store
/// that cannot answer is ours.
fn base64s(hashes: &[[u8; 32]]) -> Vec<String> {
    hashes.iter().map(|h| BASE64.encode(h)).collect()
}

/// A note or a key, as `text/plain`.
fn plain(text: String) -> axum::response::Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// The newest checkpoint
///
/// The newest checkpoint as a C2SP signed note, exactly as stored and
/// published: origin line, tree size, base64 root, a blank line and the
/// signature line (README, "The Merkle tree and signed checkpoints"). An
/// unsigned server serves the checkpoint's three lines alone.
#[utoipa::path(get, path = "/v1/log/checkpoint", tag = "audit",
    responses(
        (status = 200, description = "The note", content_type = "text/plain", body = String),
        (status = 400, description = "A query parameter was given (none is taken)", body = ErrorAnswer),
        (status = 404, description = "No checkpoint has been made yet (the first is made within --checkpoint-interval-secs of the start)", body = ErrorAnswer),
    ))]
pub async fn newest_checkpoint(
    State(app): State<AppState>,
    Params(NoParams {}): Params<NoParams>,
) -> Result<axum::response::Response, ApiError> {
    app.log
        .run(|conn| {
            let newest = checkpoints::newest(conn)?
                .ok_or_else(|| ApiError::NotFound("no checkpoint has been made yet".into()))?;
            Ok(plain(newest.note))
        })
        .await
}

/// One checkpoint as listed.
#[derive(Serialize, ToSchema)]
#[schema(as = Checkpoint)]
pub struct CheckpointView {
    /// The tree size: the log's head seq when it was made.
    pub size: u64,
    /// The tree's root, base64.
    pub root: String,
    /// The note, exactly as `GET /v1/log/checkpoint` served it then.
    pub note: String,
    #[schema(format = DateTime)]
    pub made_at: String,
    /// Whether the note carries the server's signature.
    pub signed: bool,
}

/// Checkpoints, oldest first.
#[derive(Serialize, ToSchema)]
pub struct Checkpoints {
    /// At most 1000; ask again with the last size as after_size for more.
    pub checkpoints: Vec<CheckpointView>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CheckpointsQuery {
    /// Only checkpoints of larger sizes; absent: every checkpoint, the
    /// size-0 one included.
    #[param(inline, value_type = Option<Seq>)]
    after_size: Option<u64>,
}

/// The checkpoints made after a size
///
/// Every checkpoint of a size past after_size, oldest first, at most 1000.
#[utoipa::path(get, path = "/v1/log/checkpoints", tag = "audit",
    params(CheckpointsQuery),
    responses(
        (status = 200, description = "The checkpoints", body = Checkpoints),
        (status = 400, description = "A parameter is unknown or does not parse", body = ErrorAnswer),
    ))]
pub async fn list_checkpoints(
    State(app): State<AppState>,
    Params(q): Params<CheckpointsQuery>,
) -> Result<Json<Checkpoints>, ApiError> {
    let after = q
        .after_size
        .map(|s| seq_param("after_size", s))
        .transpose()?;
    app.log
        .run(move |conn| {
            let rows = match after {
                Some(size) => checkpoints::after(conn, size as u64, checkpoints::MAX_LISTED)?,
                None => checkpoints::from_size(conn, 0, checkpoints::MAX_LISTED)?,
            };
            let checkpoints = rows
                .into_iter()
                .map(|c| CheckpointView {
                    size: c.size,
                    root: BASE64.encode(c.root),
                    note: c.note,
                    made_at: rfc3339_micros(c.made_at),
                    signed: c.signed,
                })
                .collect();
            Ok(Json(Checkpoints { checkpoints }))
        })
        .await
}

/// The verifier key
///
/// The key that checks the checkpoints' signatures, in note format
/// (`name+keyid+base64`), as `registrar key generate` printed it.
#[utoipa::path(get, path = "/v1/log/key", tag = "audit",
    responses(
        (status = 200, description = "The verifier key", content_type = "text/plain", body = String),
        (status = 400, description = "A query parameter was given (none is taken)", body = ErrorAnswer),
        (status = 404, description = "The server has no signing key: its checkpoints are not signed", body = ErrorAnswer),
    ))]
pub async fn verifier_key(
    State(app): State<AppState>,
    Params(NoParams {}): Params<NoParams>,
) -> Result<axum::response::Response, ApiError> {
    match app.config.signing() {
        Signing::Signed { verifier } => Ok(plain(format!("{verifier}\n"))),
        Signing::Unsigned => Err(ApiError::NotFound(
            "the server has no signing key: its checkpoints are not signed".into(),
        )),
    }
}

/// An inclusion proof.
#[derive(Serialize, ToSchema)]
#[schema(as = InclusionProof)]
pub struct InclusionView {
    pub seq: u64,
    /// seq - 1.
    pub leaf_index: u64,
    pub tree_size: u64,
    /// SHA-256(0x00 || entry), base64.
    pub leaf_hash: String,
    /// Base64 hashes in RFC 9162 order: the leaf's sibling first, up to
    /// the root's child.
    pub hashes: Vec<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    /// The event's seq: 1 to tree_size (else 400).
    #[param(inline, value_type = Seq)]
    seq: u64,
    /// The tree size to prove against: at most the newest checkpoint's
    /// size (else 400 with code beyond_checkpoint).
    #[param(inline, value_type = Seq)]
    tree_size: u64,
}

/// An inclusion proof
///
/// The proof that the event with this seq is in the tree of tree_size
/// leaves (RFC 9162 §2.1.3).
#[utoipa::path(get, path = "/v1/log/proof/inclusion", tag = "audit",
    params(InclusionQuery),
    responses(
        (status = 200, description = "The proof", body = InclusionView),
        (status = 400, description = "A parameter is missing, unknown or does not parse; seq is 0 or past tree_size; or tree_size is past the newest checkpoint's (code beyond_checkpoint)", body = ErrorAnswer),
    ))]
pub async fn inclusion_proof(
    State(app): State<AppState>,
    Params(q): Params<InclusionQuery>,
) -> Result<Json<InclusionView>, ApiError> {
    let cache = app.log.tree();
    app.log
        .run(move |conn| {
            let p = tree::inclusion(conn, cache, q.seq, q.tree_size).map_err(ApiError::from)?;
            Ok(Json(InclusionView {
                seq: p.seq,
                leaf_index: p.leaf_index,
                tree_size: p.tree_size,
                leaf_hash: BASE64.encode(p.leaf_hash),
                hashes: base64s(&p.hashes),
            }))
        })
        .await
}

/// A consistency proof.
#[derive(Serialize, ToSchema)]
#[schema(as = ConsistencyProof)]
pub struct ConsistencyView {
    pub from: u64,
    pub to: u64,
    /// Base64 hashes in RFC 9162 order (§2.1.4); empty when from is 0 or
    /// from = to.
    pub hashes: Vec<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    /// The older tree size: at most to (else 400).
    #[param(inline, value_type = Seq)]
    from: u64,
    /// The newer tree size: at most the newest checkpoint's size (else 400
    /// with code beyond_checkpoint).
    #[param(inline, value_type = Seq)]
    to: u64,
}

/// A consistency proof
///
/// The proof that the tree of `from` leaves is a prefix of the tree of
/// `to` leaves (RFC 9162 §2.1.4): an auditor holding an older checkpoint
/// checks that the log was only appended to since.
#[utoipa::path(get, path = "/v1/log/proof/consistency", tag = "audit",
    params(ConsistencyQuery),
    responses(
        (status = 200, description = "The proof", body = ConsistencyView),
        (status = 400, description = "A parameter is missing, unknown or does not parse; from is past to; or to is past the newest checkpoint's size (code beyond_checkpoint)", body = ErrorAnswer),
    ))]
pub async fn consistency_proof(
    State(app): State<AppState>,
    Params(q): Params<ConsistencyQuery>,
) -> Result<Json<ConsistencyView>, ApiError> {
    let cache = app.log.tree();
    app.log
        .run(move |conn| {
            let hashes = tree::consistency(conn, cache, q.from, q.to).map_err(ApiError::from)?;
            Ok(Json(ConsistencyView {
                from: q.from,
                to: q.to,
                hashes: base64s(&hashes),
            }))
        })
        .await
}

/// One delivery's proof, checked offline by `registrar proof check`.
#[derive(Serialize, ToSchema)]
#[schema(as = Bundle)]
pub struct BundleView {
    pub seq: u64,
    /// The body's exact bytes, base64.
    pub body: String,
    /// blake3 of the body, hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub body_hash: String,
    /// The leaf's entry bytes (leaf encoding v1), base64.
    pub entry: String,
    /// seq - 1.
    pub leaf_index: u64,
    /// The checkpoint's size.
    pub tree_size: u64,
    /// The inclusion proof: base64 hashes in RFC 9162 order.
    pub inclusion: Vec<String>,
    /// The newest checkpoint's note, exactly as served.
    pub checkpoint: String,
    /// Whether the body was removed (its leaf stays).
    pub redacted: bool,
}

impl From<Bundle> for BundleView {
    fn from(b: Bundle) -> Self {
        BundleView {
            seq: b.seq,
            body: b.body,
            body_hash: b.body_hash,
            entry: b.entry,
            leaf_index: b.leaf_index,
            tree_size: b.tree_size,
            inclusion: b.inclusion,
            checkpoint: b.checkpoint,
            redacted: b.redacted,
        }
    }
}

/// An event's bundle
///
/// One document that proves one delivery offline: its body, its leaf, the
/// inclusion proof and the newest checkpoint, which covers it.
#[utoipa::path(get, path = "/v1/events/{seq}/bundle", tag = "audit",
    params(EventSeq),
    responses(
        (status = 200, description = "The bundle", body = BundleView),
        (status = 400, description = "The seq is not a number, or a query parameter was given", body = ErrorAnswer),
        (status = 404, description = "No event has this seq, or no checkpoint covers it yet (the next is made within --checkpoint-interval-secs)", body = ErrorAnswer),
    ))]
pub async fn event_bundle(
    State(app): State<AppState>,
    Path(seq): Path<String>,
    Params(NoParams {}): Params<NoParams>,
) -> Result<Json<BundleView>, ApiError> {
    let seq = crate::http::params::seq_path(&seq)?;
    let cache = app.log.tree();
    app.log
        .run(move |conn| {
            let b = bundle::of_event(conn, cache, seq).map_err(ApiError::from)?;
            Ok(Json(BundleView::from(b)))
        })
        .await
}

/// Every revision of a payment, proven.
#[derive(Serialize, ToSchema)]
pub struct PaymentBundle {
    pub payment_id: String,
    /// One bundle per revision, oldest first, each against the newest
    /// checkpoint.
    pub revisions: Vec<BundleView>,
}

/// A payment's bundle
///
/// The bundle of every event that made a revision of the payment.
#[utoipa::path(get, path = "/v1/payments/{payment_id}/bundle", tag = "payments",
    params(PaymentId),
    responses(
        (status = 200, description = "Every revision's bundle", body = PaymentBundle),
        (status = 400, description = "A query parameter was given (none is taken)", body = ErrorAnswer),
        (status = 404, description = "No such payment, or a revision is not covered by a checkpoint yet (the next is made within --checkpoint-interval-secs)", body = ErrorAnswer),
    ))]
pub async fn payment_bundle(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Params(NoParams {}): Params<NoParams>,
) -> Result<Json<PaymentBundle>, ApiError> {
    let revisions = app.payment_bundles(id.clone()).await?;
    Ok(Json(PaymentBundle {
        payment_id: id,
        revisions: revisions.into_iter().map(BundleView::from).collect(),
    }))
}

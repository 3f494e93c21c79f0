//! `GET /openapi.json`.

use axum::Json;
use serde_json::{json, Value};

pub async fn document() -> Json<Value> {
    Json(
        json!({"openapi": "3.0.3", "info": {"title": "registrar", "version": env!("CARGO_PKG_VERSION")}, "paths": {}}),
    )
}

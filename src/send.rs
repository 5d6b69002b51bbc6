//! `ember-ci send URL FILE`: replays a delivery saved in smee.io's JSON form
//! (lower-case headers beside `body`), the replacement for `pysmee send`.
//!
//! Reading the file and posting it is all it does; the format itself
//! (headers, body bytes, re-signing) is `relay::saved`, shared with the
//! smee relay.

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

pub use crate::relay::saved::BodyEncoding;
use crate::relay::saved::{prepare_saved_text, SavedDeliveryError};

/// How long a replay waits for the CI's answer; the intake answers at once,
/// so this only bounds a hung server.
const SEND_TIMEOUT_SECS: u64 = 30;

/// The CI's answer to a replayed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReport {
    pub status: u16,
    pub response: String,
}

#[derive(Debug, Error)]
pub enum SendError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not UTF-8 text", path.display())]
    NotText { path: PathBuf },
    #[error(transparent)]
    Saved(#[from] SavedDeliveryError),
    #[error("posting the delivery to {url}: {source}")]
    Post { url: String, source: reqwest::Error },
}

/// GitHub's header naming one delivery; receivers deduplicate on it.
const DELIVERY_ID_HEADER: &str = "x-github-delivery";

/// Whether a replay keeps the saved delivery id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryId {
    /// A fresh id per send, as GitHub's "Redeliver" does: a file sent twice
    /// is two deliveries, not a duplicate the CI drops.
    Fresh,
    /// The saved id (to test deduplication).
    Keep,
}

/// Reads a smee-form delivery from `file` and POSTs it to `url`, its body
/// byte for byte as saved (`encoding` [`BodyEncoding::Form`] posts it
/// form-encoded instead); with `secret`, re-signs it so a CI with that
/// webhook secret accepts it. `id` says whether the saved delivery id goes
/// out again.
pub async fn send_saved_delivery(
    url: &str,
    file: &Path,
    secret: Option<&str>,
    encoding: BodyEncoding,
    id: DeliveryId,
) -> Result<SendReport, SendError> {
    let text = tokio::fs::read(file)
        .await
        .map_err(|source| SendError::Read {
            path: file.to_path_buf(),
            source,
        })?;
    let text = String::from_utf8(text).map_err(|_| SendError::NotText {
        path: file.to_path_buf(),
    })?;
    let mut prepared = prepare_saved_text(&text, secret, encoding)?;
    if id == DeliveryId::Fresh {
        // Not signed, so the signature stays valid.
        let fresh = uuid::Uuid::new_v4().to_string();
        prepared
            .headers
            .retain(|(name, _)| name != DELIVERY_ID_HEADER);
        prepared
            .headers
            .push((DELIVERY_ID_HEADER.to_string(), fresh));
    }

    let post_error = |source| SendError::Post {
        url: url.to_string(),
        source,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(SEND_TIMEOUT_SECS))
        .build()
        .map_err(post_error)?;
    let mut request = client.post(url).body(prepared.body);
    for (name, value) in prepared.headers {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(post_error)?;
    let status = response.status().as_u16();
    let response = response.text().await.map_err(post_error)?;
    Ok(SendReport { status, response })
}

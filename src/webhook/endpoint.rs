//! The warp side of the intake: `POST /change_hook/github`, the body cap,
//! deadline and shared budget (`limits`), and plain-text replies for
//! requests that never reach the intake.
//!
//! Nothing here judges a delivery; it only turns HTTP into
//! [`DeliveryHeaders`] + bytes and the [`IntakeReply`] back into HTTP.

use std::fmt::Display;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use warp::http::{HeaderMap, StatusCode};
use warp::reject::{MethodNotAllowed, PayloadTooLarge, Reject};
use warp::{Filter, Rejection, Reply};

use super::intake::{Intake, IntakeReply};
use super::limits::{self, Allowance, BodyLimits};
use super::{DeliveryHeaders, MAX_BODY_BYTES};

/// Why a request body was not read.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("request body could not be read: {0}")]
    Unreadable(String),
    #[error("request body not received within {} s", limits::BODY_DEADLINE.as_secs())]
    TooSlow,
    #[error("too many deliveries being received; send it again later")]
    Busy,
}

impl Reject for BodyError {}

/// `POST /change_hook/github`: every delivery goes through `intake`.
///
/// The path is matched before the method so that an unknown path is a 404,
/// not a 405 (warp reports the first filter that failed).
pub fn routes(
    intake: Arc<Intake>,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("change_hook" / "github")
        .and(warp::post())
        .and(warp::header::headers_cloned().map(|headers: HeaderMap| delivery_headers(&headers)))
        .and(capped_body(MAX_BODY_BYTES, BodyLimits::default()))
        .then(move |headers: DeliveryHeaders, body: Bytes| {
            let intake = Arc::clone(&intake);
            async move { into_response(intake.handle(&headers, &body).await) }
        })
}

/// Plain-text answers for requests the routes refused. Apply it once, on
/// the server's combined filter. Unknown rejections keep warp's default reply.
pub async fn recover(rejection: Rejection) -> Result<impl Reply, Rejection> {
    let (status, message) = if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "not found".to_string())
    } else if let Some(error) = rejection.find::<BodyError>() {
        let status = match error {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Unreadable(_) => StatusCode::BAD_REQUEST,
            BodyError::TooSlow => StatusCode::REQUEST_TIMEOUT,
            BodyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, error.to_string())
    } else if rejection.find::<PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large".to_string(),
        )
    } else if rejection.find::<MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed".to_string(),
        )
    } else {
        return Err(rejection);
    };
    Ok(warp::reply::with_status(message, status))
}

fn delivery_headers(headers: &HeaderMap) -> DeliveryHeaders {
    // Lossy on purpose: a non-UTF-8 signature then fails as malformed
    // instead of looking absent.
    DeliveryHeaders::from_pairs(headers.iter().map(|(name, value)| {
        (
            name.as_str(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        )
    }))
}

fn into_response(reply: IntakeReply) -> warp::reply::Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    warp::reply::with_status(reply.message, status).into_response()
}

/// The whole body, refused as soon as it exceeds `limit`: up front when
/// Content-Length says so, otherwise (chunked bodies) while reading; also
/// refused when it takes longer than the body deadline, or when the
/// deliveries being read already hold the shared budget.
fn capped_body(
    limit: u64,
    shared: BodyLimits,
) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and_then(move |declared: Option<u64>| async move {
            match declared {
                Some(length) if length > limit => {
                    Err(warp::reject::custom(BodyError::TooLarge { limit }))
                }
                _ => Ok(()),
            }
        })
        .untuple_one()
        .and(warp::body::stream())
        .and_then(move |body| {
            let shared = shared.clone();
            async move {
                let mut allowance = shared.allowance();
                let read = collect_capped(body, limit, &mut allowance);
                let body = tokio::time::timeout(limits::BODY_DEADLINE, read)
                    .await
                    .map_err(|_| BodyError::TooSlow)
                    .and_then(|read| read)
                    .map_err(warp::reject::custom)?;
                // The budget covers bodies being read; the intake handles
                // this one at once.
                Ok::<_, Rejection>(body)
            }
        })
}

async fn collect_capped<S, B, E>(
    body: S,
    limit: u64,
    allowance: &mut Allowance,
) -> Result<Bytes, BodyError>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
    E: Display,
{
    let mut body = std::pin::pin!(body);
    let mut collected = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|error| BodyError::Unreadable(error.to_string()))?;
        if collected.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(BodyError::TooLarge { limit });
        }
        if !allowance.take(chunk.remaining() as u64) {
            return Err(BodyError::Busy);
        }
        collected.put(chunk);
    }
    Ok(collected.freeze())
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    fn chunks(sizes: &[usize]) -> impl Stream<Item = Result<Bytes, Infallible>> {
        let chunks: Vec<_> = sizes
            .iter()
            .map(|&n| Ok(Bytes::from(vec![b'x'; n])))
            .collect();
        futures_util::stream::iter(chunks)
    }

    #[tokio::test]
    async fn body_at_the_limit_is_read_whole() {
        let body = collect_capped(
            chunks(&[3, 4, 3]),
            10,
            &mut BodyLimits::new(100, 1, 100).allowance(),
        )
        .await
        .expect("within the cap");
        assert_eq!(body.len(), 10);
    }

    #[tokio::test]
    async fn body_over_the_limit_is_refused_while_streaming() {
        let result = collect_capped(
            chunks(&[6, 6]),
            10,
            &mut BodyLimits::new(100, 1, 100).allowance(),
        )
        .await;
        assert!(
            matches!(result, Err(BodyError::TooLarge { limit: 10 })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn bodies_beyond_the_shared_budget_are_refused_as_busy() {
        let shared = BodyLimits::new(2, 2, 10);
        let mut held = shared.allowance();
        assert!(held.take(9));
        let result = collect_capped(chunks(&[3, 3]), 100, &mut shared.allowance()).await;
        assert!(matches!(result, Err(BodyError::Busy)), "{result:?}");
        drop(held);
        assert_eq!(
            shared.budget().free(),
            10,
            "a refused body gives its bytes back"
        );
    }

    #[tokio::test]
    async fn read_errors_are_reported() {
        let failing =
            futures_util::stream::iter([Ok(Bytes::from_static(b"ab")), Err("connection reset")]);
        let result =
            collect_capped(failing, 10, &mut BodyLimits::new(100, 1, 100).allowance()).await;
        assert!(matches!(result, Err(BodyError::Unreadable(ref why)) if why == "connection reset"));
    }
}

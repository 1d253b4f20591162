//! The router as an AWS Lambda handler behind API Gateway (HTTP API v2 or REST v1) or an ALB.
//! lambda_http keeps a named stage in the path (`/prod/tiles/…`); the stage is taken off before
//! routing. The URLs the API hands out come from `ETL_TILES_PUBLIC_URL` (required: auth is always
//! on here), which names the stage when there is one (`https://…amazonaws.com/prod`).

use axum::Router;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use tower::ServiceExt;

use crate::app::BasePath;

/// The stage prefix of a request (`/prod`), or `None` for the `$default` stage and for
/// sources without stages.
pub fn stage_prefix(req: &Request) -> Option<String> {
    let stage = match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(c) => c.stage.clone(),
        RequestContext::ApiGatewayV1(c) => c.stage.clone(),
        _ => None,
    }?;
    if stage.is_empty() || stage == "$default" {
        return None;
    }
    let prefix = format!("/{stage}");
    let path = req.uri().path();
    (path == prefix || path.starts_with(&format!("{prefix}/"))).then_some(prefix)
}

/// Takes the stage off the path and records it as the base path.
pub fn unstage(mut req: Request) -> Request {
    let Some(prefix) = stage_prefix(&req) else {
        return req;
    };
    let uri = req.uri();
    let rest = &uri.path()[prefix.len()..];
    let path = if rest.is_empty() { "/" } else { rest };
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(new) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = new;
            req.extensions_mut().insert(BasePath(prefix));
        }
    }
    req
}

/// Runs the Lambda runtime loop until the runtime stops it.
pub async fn run(router: Router) -> Result<(), lambda_http::Error> {
    lambda_http::run(tower::service_fn(move |req: Request| {
        let router = router.clone();
        async move { router.oneshot(unstage(req)).await }
    }))
    .await
}

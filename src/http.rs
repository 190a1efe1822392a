//! `GET /metrics` (Prometheus text), `GET /healthz` (the process is alive), `GET /readyz` (200
//! only once partitions are assigned and their state is ready, 503 before).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::runtime::Health;

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn handle(
    req: &Request<Incoming>,
    metrics: &PrometheusHandle,
    health: &Health,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
    }
    match req.uri().path() {
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics.render(),
        ),
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => {
            if health.is_ready() {
                respond(StatusCode::OK, "text/plain", "ready\n")
            } else if health.ready.load(Ordering::Acquire) {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready: restoring state from the changelog\n",
                )
            } else {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready: no partitions assigned yet\n",
                )
            }
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// Binds `listen` (so a port conflict fails the start), then serves until `shutdown`.
pub async fn bind(listen: &str) -> anyhow::Result<TcpListener> {
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("http.listen {listen:?} is not an address like 0.0.0.0:9464"))?;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding http.listen {addr}"))
}

pub async fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    health: Health,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    continue;
                }
            },
        };
        let (metrics, health) = (metrics.clone(), health.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let r = handle(&req, &metrics, &health);
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

//! The admin HTTP server of a running host: `/healthz`, `/readyz`, `/metrics` (Prometheus
//! text), `/status` (JSON), and `POST /transforms/check`, which asks the version watcher to
//! look at the registry now. Calls that change anything need the bearer token.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::config::AdminConfig;
use crate::telemetry::Telemetry;

/// What the handlers share.
#[derive(Clone)]
pub struct Admin {
    pub telemetry: Arc<Telemetry>,
    pub check_now: Arc<Notify>,
    /// The bearer token for state-changing calls; without one they are refused.
    pub token: Option<String>,
}

impl Admin {
    /// Binds `config.listen`, then serves in the background until `stop` turns true; the
    /// token comes from the variable `config.token-env` names.
    pub async fn start(
        config: &AdminConfig,
        telemetry: Arc<Telemetry>,
        check_now: Arc<Notify>,
        stop: watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let listener = TcpListener::bind(&config.listen).await?;
        let server = Admin {
            telemetry,
            check_now,
            token: std::env::var(&config.token_env)
                .ok()
                .filter(|t| !t.is_empty()),
        };
        tokio::spawn(server.serve(listener, stop));
        Ok(())
    }

    /// Serves on `listener` until `stop` turns true.
    async fn serve(self, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        let app = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .route("/status", get(status))
            .route("/transforms/check", post(check))
            .with_state(self);
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!("the admin server stopped: {e}");
        }
    }

    fn authorised(&self, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
        let Some(token) = &self.token else {
            return Err((
                StatusCode::FORBIDDEN,
                "state-changing calls are disabled: set the token in the variable \
                 `admin.token-env` names (WRT_ADMIN_TOKEN by default) on the host\n",
            ));
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        // Comparing digests keeps the comparison's time independent of the token.
        if Sha256::digest(given.as_bytes()) == Sha256::digest(token.as_bytes()) {
            Ok(())
        } else {
            Err((
                StatusCode::UNAUTHORIZED,
                "missing or wrong `Authorization: Bearer <token>`\n",
            ))
        }
    }
}

async fn readyz(State(admin): State<Admin>) -> Response {
    match admin.telemetry.status().not_ready {
        None => "ready\n".into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(admin): State<Admin>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        admin.telemetry.encode(),
    )
        .into_response()
}

async fn status(State(admin): State<Admin>) -> Response {
    axum::Json(admin.telemetry.status()).into_response()
}

async fn check(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if let Err(refused) = admin.authorised(&headers) {
        return refused.into_response();
    }
    admin.check_now.notify_one();
    (
        StatusCode::ACCEPTED,
        "checking for a new version; see /status\n",
    )
        .into_response()
}

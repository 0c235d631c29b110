//! The emulator's listener: one port, TLS or plain HTTP per connection (sniffed from the first
//! byte), requests routed by host to the emulated services, and the [`Emulator`] handle that
//! starts and stops it (and, for Blob Storage, the Azurite it forwards to).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::azurite::{Azurite, AzuriteAccount, AzuriteError, AzuriteOptions};
use crate::client::EmulatorInfo;
use crate::error::json_response;
use crate::providers::cognitive_services::{self, DataPlaneHost};
use crate::request::host;
use crate::seed::{Seed, SeedError};
use crate::storage::StorageUpstream;
use crate::tls::{Pki, TlsError};
use crate::token::TokenIssuer;
use crate::world::{Ctx, Identity, Shared, random_bytes, random_guid, random_hex};
use crate::{arm, control, identity, keyvault, storage};

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// State to seed before the first request.
    pub seed: Option<Seed>,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: None,
        }
    }
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the seed is invalid: {0}")]
    Seed(#[from] SeedError),
}

/// Why the storage upstream could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StorageStartError {
    #[error(transparent)]
    Azurite(#[from] AzuriteError),
    #[error("building the client for the storage upstream failed: {0}")]
    Client(#[from] reqwest::Error),
}

/// A running emulator; dropping it stops the listener.
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    ca_pem: String,
    upstream_cert_pem: String,
    upstream_key_pem: String,
    ctx: Ctx,
    stop: watch::Sender<bool>,
}

/// Which emulated service a request is for.
#[derive(Debug, PartialEq, Eq)]
enum Destination {
    KeyVault(String),
    ResourceManager,
    DataPlane(DataPlaneHost, String),
    Storage(String),
    Local,
    Unknown,
}

fn destination(host: &str) -> Destination {
    if let Some(vault) = host.strip_suffix(keyvault::HOST_SUFFIX)
        && !vault.is_empty()
        && !vault.contains('.')
    {
        return Destination::KeyVault(vault.to_string());
    }
    if host == arm::HOST {
        return Destination::ResourceManager;
    }
    if let Some(account) = storage::account_of(host) {
        return Destination::Storage(account);
    }
    if let Some((family, sub)) = DataPlaneHost::classify(host) {
        return Destination::DataPlane(family, sub);
    }
    match host {
        "127.0.0.1" | "localhost" | "::1" => Destination::Local,
        _ => Destination::Unknown,
    }
}

/// Whether the connection a request came on was TLS.
#[derive(Debug, Clone, Copy)]
struct OverTls(bool);

impl Emulator {
    /// Generates the CA, binds, seeds and starts serving.
    pub async fn start(options: EmulatorOptions) -> Result<Self, StartError> {
        let pki = Pki::generate()?;
        let tokens = TokenIssuer::new(&random_bytes(32), random_guid());
        let system_identity = Identity {
            client_id: random_guid(),
            principal_id: random_guid(),
        };
        let ctx: Ctx = Arc::new(Shared::new(tokens, random_hex(32), system_identity));
        if let Some(seed) = options.seed {
            seed.apply(&mut ctx.world())?;
        }
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: options.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: options.listen,
            source,
        })?;
        let (stop, stopped) = watch::channel(false);
        let app = app(ctx.clone());
        let acceptor = TlsAcceptor::from(pki.server_config.clone());
        tokio::spawn(accept_loop(listener, acceptor, app, stopped));
        tracing::info!(%addr, "emulator listening");
        Ok(Self {
            addr,
            ca_pem: pki.ca_pem,
            upstream_cert_pem: pki.upstream_cert_pem,
            upstream_key_pem: pki.upstream_key_pem,
            ctx,
            stop,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate (PEM) clients must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The certificate (PEM) the CA signed for `127.0.0.1`/`localhost`, for the storage upstream.
    pub fn upstream_cert_pem(&self) -> &str {
        &self.upstream_cert_pem
    }

    /// That certificate's private key (PEM).
    pub fn upstream_key_pem(&self) -> &str {
        &self.upstream_key_pem
    }

    /// Forwards `*.blob.core.windows.net` calls to the Azurite at `addr` (HTTPS, with the
    /// certificate of [`Self::upstream_cert_pem`]).
    pub fn set_storage_upstream(&self, addr: SocketAddr) -> Result<(), reqwest::Error> {
        let upstream = StorageUpstream::new(addr, &self.ca_pem)?;
        self.ctx.set_storage_upstream(Some(upstream));
        Ok(())
    }

    /// Starts an Azurite with the upstream certificate and the given extra accounts, and
    /// forwards storage calls to it; keep the returned handle as long as the emulator.
    pub fn start_azurite(&self, accounts: Vec<AzuriteAccount>) -> Result<Azurite, StorageStartError> {
        let mut options = AzuriteOptions::from_pki(&self.upstream_cert_pem, &self.upstream_key_pem);
        options.accounts = accounts;
        let azurite = Azurite::start(&options)?;
        self.set_storage_upstream(azurite.address())?;
        Ok(azurite)
    }

    /// What a client needs to use this emulator; `ca_file` is where the CA was written, if it was.
    pub fn info(&self, ca_file: Option<String>) -> EmulatorInfo {
        let base = format!("http://{}", self.addr);
        EmulatorInfo {
            address: self.addr,
            identity_endpoint: format!("{base}{}", identity::PATH),
            identity_header: self.ctx.identity_header.clone(),
            control_url: format!("{base}/control"),
            ca_file,
            ca_pem: self.ca_pem.clone(),
            tenant_id: self.ctx.tokens.tenant_id().to_string(),
            system_identity: self.ctx.system_identity.clone(),
            connect_to: format!(
                "*.vault.azure.net={a},management.azure.com={a},*.openai.azure.com={a},*.cognitiveservices.azure.com={a},*.services.ai.azure.com={a},*.blob.core.windows.net={a}",
                a = self.addr
            ),
            upstream_cert_file: None,
            upstream_key_file: None,
        }
    }

    /// Stops accepting connections.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn app(ctx: Ctx) -> Router {
    let local: Router = control::router()
        .route(identity::PATH, get(identity::token))
        .with_state(ctx.clone());
    Router::new().fallback(move |req: Request| dispatch(ctx.clone(), local.clone(), req))
}

async fn dispatch(ctx: Ctx, local: Router, req: Request) -> Response {
    let over_tls = req.extensions().get::<OverTls>().is_some_and(|t| t.0);
    let host = host(&req);
    let destination = destination(&host);
    if !over_tls && !matches!(destination, Destination::Local | Destination::Unknown) {
        return misdirected(&format!("{host} is served over HTTPS only."));
    }
    match destination {
        Destination::KeyVault(vault) => keyvault::handle(ctx, vault, format!("https://{host}"), req).await,
        Destination::ResourceManager => arm::handle(ctx, req).await,
        Destination::DataPlane(family, sub) => {
            cognitive_services::handle_data_plane(ctx, family, sub, req).await
        }
        Destination::Storage(account) => storage::handle(ctx, account, req).await,
        Destination::Local => match local.oneshot(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        Destination::Unknown => misdirected(&format!(
            "The emulator serves no host named '{host}'. It serves <vault>.vault.azure.net, management.azure.com, <account>.openai.azure.com, <account>.cognitiveservices.azure.com, <account>.services.ai.azure.com, <account>.blob.core.windows.net, and 127.0.0.1 (managed identity, control API)."
        )),
    }
}

fn misdirected(message: &str) -> Response {
    json_response(
        StatusCode::MISDIRECTED_REQUEST,
        &json!({ "error": { "code": "MisdirectedRequest", "message": message } }),
    )
    .into_response()
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // As Azure's front ends do: without it, a new connection's first HTTP/2
                    // frames can wait ~40 ms for the client's delayed ACK (Nagle).
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::warn!(error = %e, "setting TCP_NODELAY failed");
                    }
                    tokio::spawn(serve_connection(stream, acceptor.clone(), app.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            _ = stopped.changed() => break,
        }
    }
}

async fn serve_connection(stream: TcpStream, acceptor: TlsAcceptor, app: Router) {
    let mut first = [0u8; 1];
    let is_tls = matches!(stream.peek(&mut first).await, Ok(1) if first[0] == 0x16);
    if is_tls {
        match acceptor.accept(stream).await {
            Ok(tls) => serve_http(TokioIo::new(tls), app, true).await,
            Err(e) => tracing::debug!(error = %e, "TLS handshake failed"),
        }
    } else {
        serve_http(TokioIo::new(stream), app, false).await;
    }
}

async fn serve_http<I>(io: I, app: Router, over_tls: bool)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(OverTls(over_tls));
        app.clone().oneshot(req.map(Body::new))
    });
    if let Err(e) = auto::Builder::new(TokioExecutor::new())
        .serve_connection(io, service)
        .await
    {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_route_to_their_service() {
        assert_eq!(
            destination("kv1.vault.azure.net"),
            Destination::KeyVault("kv1".into())
        );
        assert_eq!(destination("a.b.vault.azure.net"), Destination::Unknown);
        assert_eq!(destination("management.azure.com"), Destination::ResourceManager);
        assert_eq!(
            destination("acct.cognitiveservices.azure.com"),
            Destination::DataPlane(DataPlaneHost::CognitiveServices, "acct".into())
        );
        assert_eq!(
            destination("acct.blob.core.windows.net"),
            Destination::Storage("acct".into())
        );
        assert_eq!(destination("localhost"), Destination::Local);
        assert_eq!(destination("example.com"), Destination::Unknown);
    }
}

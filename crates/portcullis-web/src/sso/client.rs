//! The relying party's side of OpenID Connect, over `openidconnect`: discovery (cached, and
//! fetched again when a token names a key the cached set lacks: key rotation), the
//! authorization URL with PKCE and a nonce, the code exchange and the ID token's checks (issuer,
//! audience, signature, expiry, nonce), and the provider's sign-out URL.
//!
//! Every request goes through [`Http`]: no redirect followed, https only (http to a loopback
//! address allowed), 10 s per request, at most [`MAX_RESPONSE`] bytes read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreIdToken};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    LogoutRequest, Nonce, PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl,
    ProviderMetadataWithLogout, RedirectUrl, Scope, SignatureVerificationError, TokenResponse as _,
};
use portcullis_secrets::Secret;

use super::{allowed_url, StoredProvider};

/// Largest response read from a provider (a discovery document, a key set, a token response).
pub(crate) const MAX_RESPONSE: usize = 512 * 1024;
/// How long a provider's discovery document and keys are used before they are fetched again.
const FRESH_FOR: Duration = Duration::from_secs(15 * 60);
/// Longest an ID token may be (kept with the login, for the provider's sign-out).
const MAX_ID_TOKEN: usize = 16 * 1024;
/// A discovery that failed is not tried again for this long (a provider down is not asked by
/// every sign-in page opened meanwhile).
const FAILED_FOR: Duration = Duration::from_secs(5);
/// The most an ID token's issue time may be off the gateway's clock (either way).
const IAT_SKEW_SECS: i64 = 10 * 60;
/// Most groups taken from a token.
const MAX_GROUPS: usize = 256;
/// Longest group name taken from a token.
const MAX_GROUP_LEN: usize = 256;

/// What went wrong talking to a provider, in words for the audit trail and the user.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SsoError {
    /// The provider could not be reached or answered something unusable.
    #[error("the identity provider could not be used: {0}")]
    Provider(String),
    /// The ID token failed a check (a forged, replayed, expired or misdirected token).
    #[error("the identity provider's answer was refused: {0}")]
    Token(String),
}

/// The HTTP client for providers.
#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
}

/// An error of [`Http`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct HttpError(String);

impl Http {
    pub(crate) fn new() -> Result<Http, String> {
        // The gateway's TLS provider (as `serve` installs it): reqwest's rustls takes the
        // process's default.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .use_rustls_tls()
            .build()
            .map_err(|e| format!("cannot build the HTTP client for identity providers: {e}"))?;
        Ok(Http { client })
    }

    /// One request, checked and bounded.
    async fn send(
        &self,
        request: openidconnect::HttpRequest,
    ) -> Result<openidconnect::HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let url = url::Url::parse(&parts.uri.to_string())
            .map_err(|e| HttpError(format!("bad URL: {e}")))?;
        if !allowed_url(&url) {
            return Err(HttpError(format!(
                "{url} is neither https nor http on a loopback address"
            )));
        }
        let mut out = self
            .client
            .request(parts.method, url.as_str())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|e| HttpError(format!("{url}: {e}")))?;
        let mut response = openidconnect::http::Response::builder().status(out.status());
        for (k, v) in out.headers() {
            response = response.header(k, v);
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = out
            .chunk()
            .await
            .map_err(|e| HttpError(format!("{url}: {e}")))?
        {
            if bytes.len() + chunk.len() > MAX_RESPONSE {
                return Err(HttpError(format!(
                    "{url}: the answer is over {MAX_RESPONSE} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        response
            .body(bytes)
            .map_err(|e| HttpError(format!("{url}: {e}")))
    }
}

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<openidconnect::HttpResponse, HttpError>>
                + Send
                + 'c,
        >,
    >;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

impl Http {
    /// POSTs `body` (JSON) to `url` with `headers`, checked like every request; the answer's
    /// status (its body is read, bounded, and dropped).
    pub(crate) async fn post_json(
        &self,
        url: &str,
        body: &str,
        headers: &[(&str, String)],
    ) -> Result<u16, String> {
        let mut request = openidconnect::http::Request::builder()
            .method(openidconnect::http::Method::POST)
            .uri(url)
            .header("content-type", "application/json");
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        let request = request
            .body(body.as_bytes().to_vec())
            .map_err(|e| e.to_string())?;
        self.send(request)
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    }
}

/// The client made from a discovery document: authorization and (maybe) token endpoints set.
type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// A provider's discovery document (with its keys), as last fetched.
struct Discovered {
    /// The issuer it was fetched for (settings may change the issuer).
    issuer: String,
    metadata: ProviderMetadataWithLogout,
    fetched: Instant,
}

/// The providers' discovery documents, cached. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Discovery {
    cached: Arc<Mutex<HashMap<String, Arc<Discovered>>>>,
    /// The last failed discovery of each provider: when, and why.
    failed: Arc<Mutex<HashMap<String, (Instant, String)>>>,
    http: Option<Http>,
}

/// A sign-in under way, as its start leaves it for the callback.
pub(crate) struct Started {
    /// Where to send the browser.
    pub(crate) url: String,
    /// The `state` parameter (the pending sign-in's key).
    pub(crate) state: String,
    pub(crate) nonce: String,
    pub(crate) pkce_verifier: String,
}

/// What a checked ID token says.
#[derive(Debug)]
pub(crate) struct Identity {
    /// `sub`.
    pub(crate) subject: String,
    /// The configured user name claim (a string), if present.
    pub(crate) username: Option<String>,
    /// The configured groups claim (strings only; bounded).
    pub(crate) groups: Vec<String>,
    /// `email`, if present.
    pub(crate) email: Option<String>,
    /// The token itself, for the provider's sign-out (`None` when over [`MAX_ID_TOKEN`]).
    pub(crate) id_token: Option<String>,
}

impl Discovery {
    pub(crate) fn new() -> Result<Discovery, String> {
        Ok(Discovery {
            cached: Arc::default(),
            failed: Arc::default(),
            http: Some(Http::new()?),
        })
    }

    fn http(&self) -> Result<&Http, SsoError> {
        self.http
            .as_ref()
            .ok_or_else(|| SsoError::Provider("no HTTP client".into()))
    }

    /// The provider's discovery document: the cached one while fresh and fetched after
    /// `newer_than` (when given: an unknown key in a token received then is worth fetching the
    /// keys again for, once; not for each such token of a burst).
    async fn metadata(
        &self,
        provider: &StoredProvider,
        newer_than: Option<Instant>,
    ) -> Result<Arc<Discovered>, SsoError> {
        let id = &provider.settings.id;
        let issuer = &provider.settings.issuer;
        let cached = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned();
        if let Some(c) = &cached {
            let usable = c.issuer == *issuer
                && c.fetched.elapsed() < FRESH_FOR
                && newer_than.is_none_or(|t| c.fetched > t);
            if usable {
                return Ok(Arc::clone(c));
            }
        }
        let recent_failure = self
            .failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .filter(|(when, _)| when.elapsed() < FAILED_FOR)
            .map(|(_, why)| why.clone());
        if let Some(why) = recent_failure {
            return Err(SsoError::Provider(why));
        }
        let fetched = self.discover(issuer).await;
        let metadata = match fetched {
            Ok(m) => m,
            Err(e) => {
                self.failed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(id.clone(), (Instant::now(), e.to_string()));
                return Err(e);
            }
        };
        let fresh = Arc::new(Discovered {
            issuer: issuer.clone(),
            metadata,
            fetched: Instant::now(),
        });
        self.cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone(), Arc::clone(&fresh));
        Ok(fresh)
    }

    /// Fetches and checks the discovery document of `issuer`.
    async fn discover(&self, issuer: &str) -> Result<ProviderMetadataWithLogout, SsoError> {
        let http = self.http()?;
        let issuer_url = IssuerUrl::new(issuer.to_owned())
            .map_err(|e| SsoError::Provider(format!("issuer: {e}")))?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer_url, http)
            .await
            .map_err(|e| SsoError::Provider(describe(&e)))?;
        // Every endpoint the browser or the gateway will use must be as safe as the issuer.
        let endpoints = [
            Some(metadata.authorization_endpoint().url()),
            metadata.token_endpoint().map(|u| u.url()),
            Some(metadata.jwks_uri().url()),
            metadata
                .additional_metadata()
                .end_session_endpoint
                .as_ref()
                .map(|u| u.url()),
        ];
        for url in endpoints.into_iter().flatten() {
            if !allowed_url(url) {
                return Err(SsoError::Provider(format!(
                    "the discovery document names {url}: neither https nor http on a loopback address"
                )));
            }
        }
        if metadata.token_endpoint().is_none() {
            return Err(SsoError::Provider(
                "the discovery document names no token endpoint".into(),
            ));
        }
        Ok(metadata)
    }

    /// Forgets a provider's document (its settings changed or it was removed).
    pub(crate) fn forget(&self, id: &str) {
        self.cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
        self.failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }

    fn client(
        discovered: &Discovered,
        provider: &StoredProvider,
        secret: &Secret,
        redirect: &str,
    ) -> Result<Client, SsoError> {
        let redirect = RedirectUrl::new(redirect.to_owned())
            .map_err(|e| SsoError::Provider(format!("the gateway's return address: {e}")))?;
        Ok(CoreClient::from_provider_metadata(
            discovered.metadata.clone(),
            ClientId::new(provider.settings.client_id.clone()),
            Some(ClientSecret::new(secret.expose().to_owned())),
        )
        .set_redirect_uri(redirect))
    }

    /// Where to send a browser to sign in at `provider`, and what its return must match.
    pub(crate) async fn start(
        &self,
        provider: &StoredProvider,
        secret: &Secret,
        redirect: &str,
    ) -> Result<Started, SsoError> {
        let discovered = self.metadata(provider, None).await?;
        let client = Self::client(&discovered, provider, secret, redirect)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in &provider.settings.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(Started {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges `code` for tokens and checks the ID token (`nonce` and `pkce_verifier` from
    /// the sign-in's start). A token signed with a key the cached set lacks gets the keys
    /// fetched again once (the provider rotated them).
    pub(crate) async fn finish(
        &self,
        provider: &StoredProvider,
        secret: &Secret,
        redirect: &str,
        code: &str,
        nonce: &str,
        pkce_verifier: &str,
    ) -> Result<Identity, SsoError> {
        let http = self.http()?;
        let discovered = self.metadata(provider, None).await?;
        let client = Self::client(&discovered, provider, secret, redirect)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| SsoError::Provider(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(http)
            .await
            .map_err(|e| {
                SsoError::Provider(format!("the code exchange failed: {}", describe(&e)))
            })?;
        let received = Instant::now();
        let id_token = response
            .id_token()
            .ok_or_else(|| SsoError::Token("the provider sent no ID token".into()))?;
        let nonce = Nonce::new(nonce.to_owned());
        let verified = {
            let verifier = verifier(&client);
            match id_token.claims(&verifier, &nonce) {
                Ok(claims) => Ok(claims.subject().to_string()),
                Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )) => Err(()),
                Err(e) => return Err(SsoError::Token(e.to_string())),
            }
        };
        let subject = match verified {
            Ok(subject) => subject,
            Err(()) => {
                // An unknown key: maybe rotated since the keys were fetched.
                let again = self.metadata(provider, Some(received)).await?;
                let client = Self::client(&again, provider, secret, redirect)?;
                let verifier = verifier(&client);
                id_token
                    .claims(&verifier, &nonce)
                    .map_err(|e| SsoError::Token(e.to_string()))?
                    .subject()
                    .to_string()
            }
        };
        identity(provider, id_token, subject)
    }

    /// The provider's sign-out address for a login that came with `id_token`, returning the
    /// browser to `back`; `None` when the provider has no sign-out endpoint.
    pub(crate) async fn logout_url(
        &self,
        provider: &StoredProvider,
        id_token: &str,
        back: &str,
    ) -> Option<String> {
        let discovered = self.metadata(provider, None).await.ok()?;
        let end = discovered
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        let mut request = LogoutRequest::from(end)
            .set_client_id(ClientId::new(provider.settings.client_id.clone()));
        if let Ok(token) = id_token.parse::<CoreIdToken>() {
            request = request.set_id_token_hint(&token);
        }
        if let Ok(back) = PostLogoutRedirectUrl::new(back.to_owned()) {
            request = request.set_post_logout_redirect_uri(back);
        }
        Some(request.http_get_url().to_string())
    }
}

/// The ID token checks of `client`, narrowed: asymmetric signatures only (never one keyed by
/// the client secret, never none, whatever the discovery document offers), and an issue time
/// within [`IAT_SKEW_SECS`] of the gateway's clock.
fn verifier<'a>(client: &'a Client) -> openidconnect::core::CoreIdTokenVerifier<'a> {
    use openidconnect::core::CoreJwsSigningAlgorithm as Alg;
    client
        .id_token_verifier()
        .set_allowed_algs([
            Alg::RsaSsaPkcs1V15Sha256,
            Alg::RsaSsaPkcs1V15Sha384,
            Alg::RsaSsaPkcs1V15Sha512,
            Alg::RsaSsaPssSha256,
            Alg::RsaSsaPssSha384,
            Alg::RsaSsaPssSha512,
            Alg::EcdsaP256Sha256,
            Alg::EcdsaP384Sha384,
            Alg::EdDsa,
        ])
        .set_issue_time_verifier_fn(|iat| {
            let now = crate::ops::now_unix();
            let off = (iat.timestamp() - now).abs();
            if off > IAT_SKEW_SECS {
                Err(format!("issued {off} s away from the gateway's clock"))
            } else {
                Ok(())
            }
        })
}

/// The claims the gateway uses, read from the token's payload once its checks passed
/// (`openidconnect` parses only the standard ones; the user name and groups claims are the
/// administrator's choice).
fn identity(
    provider: &StoredProvider,
    id_token: &CoreIdToken,
    subject: String,
) -> Result<Identity, SsoError> {
    use base64::Engine as _;
    let text = id_token.to_string();
    let payload = text
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .ok_or_else(|| SsoError::Token("the ID token's claims cannot be read".into()))?;
    let string = |name: &str| {
        payload
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let groups = match payload.get(&provider.settings.groups_claim) {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(items)) => {
            if items.len() > MAX_GROUPS {
                return Err(SsoError::Token(format!(
                    "the token lists {} groups: at most {MAX_GROUPS} are taken",
                    items.len()
                )));
            }
            items
                .iter()
                .filter_map(|v| v.as_str())
                .filter(|g| !g.is_empty() && g.len() <= MAX_GROUP_LEN)
                .map(str::to_owned)
                .collect()
        }
        Some(serde_json::Value::String(one)) if one.len() <= MAX_GROUP_LEN => vec![one.clone()],
        Some(_) => {
            return Err(SsoError::Token(format!(
                "the {:?} claim is not a list of group names",
                provider.settings.groups_claim
            )))
        }
    };
    Ok(Identity {
        subject,
        username: string(&provider.settings.username_claim),
        groups,
        email: string("email"),
        id_token: (text.len() <= MAX_ID_TOKEN).then_some(text),
    })
}

/// An error with its causes, on one line.
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use base64::Engine as _;

    use super::*;
    use crate::sso::{ProviderSettings, StoredProvider};

    fn provider() -> StoredProvider {
        StoredProvider {
            settings: serde_json::from_value::<ProviderSettings>(serde_json::json!({
                "id": "corp", "display_name": "Corp", "issuer": "https://idp.example",
                "client_id": "gw", "username_claim": "upn", "groups_claim": "roles",
                "default_role": "user"
            }))
            .unwrap(),
            sealed_client_secret: Vec::new(),
        }
    }

    /// A token of these claims (the signature is not looked at here: `identity` reads a token
    /// whose checks passed).
    fn token(claims: serde_json::Value) -> CoreIdToken {
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let mut claims = claims;
        for (k, v) in [
            ("iss", serde_json::json!("https://idp.example")),
            ("aud", serde_json::json!("gw")),
            ("sub", serde_json::json!("s-1")),
            ("exp", serde_json::json!(4_000_000_000_i64)),
            ("iat", serde_json::json!(1_700_000_000_i64)),
        ] {
            claims[k] = v;
        }
        format!(
            "{}.{}.c2ln",
            b64(&serde_json::json!({"alg": "RS256"})),
            b64(&claims)
        )
        .parse()
        .unwrap()
    }

    #[test]
    fn the_configured_claims_are_read_and_bounded() {
        let p = provider();
        let id = identity(
            &p,
            &token(serde_json::json!({"upn": "ann", "roles": ["a", "", 7, "b"], "email": "a@x"})),
            "s-1".into(),
        )
        .unwrap();
        assert_eq!(id.username.as_deref(), Some("ann"));
        assert_eq!(
            id.groups,
            ["a", "b"],
            "empty and non-string groups are left out"
        );
        assert_eq!(id.email.as_deref(), Some("a@x"));
        assert!(id.id_token.is_some());
        // One group as a plain string; none at all.
        let one = identity(&p, &token(serde_json::json!({"roles": "ops"})), "s".into()).unwrap();
        assert_eq!((one.groups, one.username), (vec!["ops".to_owned()], None));
        let none = identity(&p, &token(serde_json::json!({})), "s".into()).unwrap();
        assert!(none.groups.is_empty());
        // Too many groups, or a claim of another shape: refused, not guessed at.
        let many: Vec<String> = (0..=MAX_GROUPS).map(|i| format!("g{i}")).collect();
        assert!(identity(&p, &token(serde_json::json!({"roles": many})), "s".into()).is_err());
        assert!(identity(
            &p,
            &token(serde_json::json!({"roles": {"a": 1}})),
            "s".into()
        )
        .is_err());
        // A huge token is not kept for the sign-out.
        let big = identity(
            &p,
            &token(serde_json::json!({"pad": "x".repeat(MAX_ID_TOKEN)})),
            "s".into(),
        )
        .unwrap();
        assert!(big.id_token.is_none());
    }
}

//! The one JSON-over-HTTP client: the CLI's commands and the node's discovery client
//! both talk through it, with the same timeouts, the same cap on the size of an answer
//! read, and the same wording for the same failure.

use super::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// Largest answer read (a discovery table of 10,000 members is about 1 MB).
pub const MAX_ANSWER_BYTES: u64 = 16 * 1024 * 1024;

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// No answer: connection refused, timed out, bad URL.
    Unreachable { url: String, reason: String },
    /// The server answered with an error status and (if it sent one) its `error` text.
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    /// The server answered something that is not the expected JSON, or too much of it.
    BadAnswer { url: String, reason: String },
}

/// A client for one server; `what` names the server in messages ("the node").
#[derive(Clone)]
pub struct JsonClient {
    base: String,
    what: &'static str,
    agent: ureq::Agent,
    /// Sent as `Authorization: Bearer TOKEN` on every request.
    token: Option<String>,
}

/// What a client proves to a server and whom it trusts: an API token, if the server
/// needs one, and the TLS roots for `https://` (the public web's roots without them).
#[derive(Clone, Default)]
pub struct Credentials {
    pub token: Option<String>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for Credentials {
    /// Never the token itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = self.token.as_ref().map(|_| "<hidden>");
        f.debug_struct("Credentials")
            .field("token", &token)
            .field("own_ca", &self.tls.is_some())
            .finish()
    }
}

/// Connect and whole-request timeouts.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub total: Duration,
}

impl JsonClient {
    /// A client for the server at `url` (`HOST:PORT`, or with an `http://` scheme).
    pub fn new(
        url: &str,
        what: &'static str,
        timeouts: Timeouts,
        credentials: &Credentials,
    ) -> JsonClient {
        let mut agent = ureq::AgentBuilder::new()
            .timeout_connect(timeouts.connect)
            .timeout(timeouts.total);
        if let Some(tls) = &credentials.tls {
            agent = agent.tls_config(tls.clone());
        }
        let agent = agent.build();
        JsonClient {
            base: base_url(url),
            what,
            agent,
            token: credentials.token.clone(),
        }
    }

    /// A client like this one (timeouts, token, TLS) for another server: `url` with
    /// this client's scheme when it has none.
    pub fn at(&self, url: &str) -> JsonClient {
        let scheme = if self.base.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        JsonClient {
            base: base_url_with(url, scheme),
            ..self.clone()
        }
    }

    /// The server's base URL, with its scheme and without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, HttpError> {
        self.answer(self.request("GET", path).call())
    }

    /// A POST without a body, with the extra `headers` (name, value).
    pub fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<T, HttpError> {
        let request = headers
            .iter()
            .fold(self.request("POST", path), |r, (name, value)| {
                r.set(name, value)
            });
        self.answer(request.call())
    }

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, HttpError> {
        self.answer(self.request("DELETE", path).call())
    }

    pub fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, HttpError> {
        self.answer(self.request("POST", path).send_json(body))
    }

    /// A request for `path`, with the token if there is one.
    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let request = self.agent.request(method, &format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.set("Authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    fn answer<T: DeserializeOwned>(
        &self,
        result: Result<ureq::Response, ureq::Error>,
    ) -> Result<T, HttpError> {
        let url = || format!("{} at {}", self.what, self.base);
        match result {
            Ok(response) => {
                read_json(response).map_err(|reason| HttpError::BadAnswer { url: url(), reason })
            }
            Err(ureq::Error::Status(status, response)) => Err(HttpError::Refused {
                url: url(),
                status,
                message: read_json::<ErrorBody>(response)
                    .map(|e| e.error)
                    .unwrap_or_else(|_| "no reason given".into()),
            }),
            Err(e) => Err(HttpError::Unreachable {
                url: url(),
                reason: transport_failure(&self.base, &e),
            }),
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Unreachable { url, reason } => write!(f, "cannot reach {url}: {reason}"),
            HttpError::Refused {
                url,
                status,
                message,
            } => write!(f, "{url} refused (HTTP {status}): {message}"),
            HttpError::BadAnswer { url, reason } => {
                write!(f, "{url} sent an unexpected answer: {reason}")
            }
        }
    }
}

impl std::error::Error for HttpError {}

/// Why no answer came, with what to do about an untrusted certificate or an HTTPS
/// server asked in plain HTTP (it answers with a TLS alert record: 21, 3, ...).
fn transport_failure(base: &str, e: &ureq::Error) -> String {
    let reason = e.to_string();
    if reason.contains("invalid peer certificate") {
        format!(
            "{reason}: the server's TLS certificate is not signed by a trusted CA (give its \
             CA certificate with --ca FILE)"
        )
    } else if base.starts_with("http://") && reason.contains("[21, 3, ") {
        format!("{reason}: the server speaks HTTPS; use an https:// address")
    } else {
        reason
    }
}

fn read_json<T: DeserializeOwned>(response: ureq::Response) -> Result<T, String> {
    let mut body = Vec::new();
    response
        .into_reader()
        .take(MAX_ANSWER_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    if body.len() as u64 > MAX_ANSWER_BYTES {
        return Err(format!("the answer is over {MAX_ANSWER_BYTES} bytes"));
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

/// `url` with an `http://` scheme when it has none, without surrounding blanks or
/// trailing slashes.
pub fn base_url(url: &str) -> String {
    base_url_with(url, "http")
}

/// `url` with `scheme` when it has none, without surrounding blanks or trailing slashes.
fn base_url_with(url: &str, scheme: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.starts_with("http://") || url.starts_with("https://") {
        url.to_owned()
    } else {
        format!("{scheme}://{url}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_adds_a_scheme_and_drops_trailing_slashes() {
        assert_eq!(base_url("127.0.0.1:8000"), "http://127.0.0.1:8000");
        assert_eq!(base_url("http://h:1/"), "http://h:1");
        assert_eq!(base_url(" https://h:1 "), "https://h:1");
    }

    #[test]
    fn a_client_for_another_server_keeps_the_scheme() {
        let timeouts = Timeouts {
            connect: std::time::Duration::from_secs(1),
            total: std::time::Duration::from_secs(1),
        };
        let tls = JsonClient::new("https://a:1", "the node", timeouts, &Credentials::default());
        assert_eq!(tls.at("b:2").base(), "https://b:2");
        assert_eq!(tls.at("http://c:3").base(), "http://c:3");
        let plain = JsonClient::new("a:1", "the node", timeouts, &Credentials::default());
        assert_eq!(plain.at("b:2").base(), "http://b:2");
    }

    #[test]
    fn failures_name_the_server() {
        let e = HttpError::Refused {
            url: "the node at http://h:1".into(),
            status: 400,
            message: "bad".into(),
        };
        assert_eq!(
            e.to_string(),
            "the node at http://h:1 refused (HTTP 400): bad"
        );
    }
}

//! HTTPS end to end with real processes: a discovery server and two nodes serving TLS
//! (certificates from a CA made here with rcgen) and requiring API tokens; the nodes
//! register over HTTPS with `--discovery-ca` and form a cluster; the CLI increments and
//! reads over `https://` with `--ca`, directly and through `--node`; a client trusting
//! another CA, or the public roots, is refused with a clear error; plain HTTP to a TLS
//! port is refused with a hint to use https://; bad certificate flags stop the server
//! naming the file.

mod common;

use common::{free_addr, gctr_bin, run_gctr, stderr, stdout, wait_until, Proc};
use gctr::http::tls::client_trusting;
use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const RW: &str = "rw-token-0123456789abcdef";
const RO: &str = "ro-token-0123456789abcdef";

/// A CA: its certificate and key.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn make_ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    Ca {
        cert: params.self_signed(&key).unwrap(),
        key,
    }
}

/// The files a test needs: CA certificates, the servers' certificate and key, tokens.
struct Files {
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    tokens: PathBuf,
    node_token: PathBuf,
}

fn write_files(dir: &Path) -> Files {
    let ca = make_ca("gctr test CA");
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Files {
        ca: write("ca.pem", ca.cert.pem()),
        other_ca: write("other-ca.pem", make_ca("another CA").cert.pem()),
        cert: write("cert.pem", cert.pem()),
        key: write("key.pem", key.serialize_pem()),
        tokens: write("tokens", format!("rw {RW}\nro {RO}\n")),
        node_token: write("node-token", format!("{RW}\n")),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Whether `GET https://addr/health` answers 200 through a client trusting `ca`.
fn healthy(addr: &str, ca: &Path) -> bool {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(2))
        .tls_config(client_trusting(ca).unwrap())
        .build();
    agent
        .get(&format!("https://{addr}/health"))
        .call()
        .is_ok_and(|r| r.status() == 200)
}

fn start(dir: &Path, name: &str, args: &[&str], addr: &str, ca: &Path) -> Proc {
    let proc = Proc::spawn(name, args, Some(&dir.join(format!("{name}.log"))));
    wait_until(
        &format!("{name} to answer over HTTPS"),
        Duration::from_secs(10),
        || healthy(addr, ca),
    );
    proc
}

fn start_node(dir: &Path, f: &Files, name: &str, discovery: &str) -> (Proc, String) {
    let (gossip, http) = (free_addr().to_string(), free_addr().to_string());
    let url = format!("https://{discovery}");
    let args = [
        "node",
        "--addr",
        &gossip,
        "--http",
        &http,
        "--name",
        name,
        "--log-level",
        "debug",
        "--tls-cert",
        s(&f.cert),
        "--tls-key",
        s(&f.key),
        "--api-token-file",
        s(&f.tokens),
        "--discovery",
        &url,
        "--discovery-ca",
        s(&f.ca),
        "--discovery-token-file",
        s(&f.node_token),
    ];
    (start(dir, name, &args, &http, &f.ca), http)
}

/// `gctr ARGS` with no `GCTR_TOKEN` from the environment running the tests.
fn gctr(args: &[&str]) -> Output {
    Command::new(gctr_bin())
        .args(args)
        .stdin(Stdio::null())
        .env_remove("GCTR_TOKEN")
        .output()
        .expect("run gctr")
}

#[test]
fn https_end_to_end_with_tokens_discovery_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let f = write_files(dir.path());
    let discovery = free_addr().to_string();
    let port = free_addr_port(&discovery);
    let args = [
        "discovery",
        "--port",
        &port,
        "--tls-cert",
        s(&f.cert),
        "--tls-key",
        s(&f.key),
        "--api-token-file",
        s(&f.tokens),
    ];
    let _discovery = start(dir.path(), "discovery", &args, &discovery, &f.ca);
    let (_a, a_http) = start_node(dir.path(), &f, "a", &discovery);
    let (_b, _b_http) = start_node(dir.path(), &f, "b", &discovery);
    let a_url = format!("https://{a_http}");
    let d_url = format!("https://{discovery}");

    let o = gctr(&[
        "inc",
        "hits",
        "--by",
        "3",
        "--http",
        &a_url,
        "--ca",
        s(&f.ca),
        "--token",
        RW,
    ]);
    assert_eq!(
        (o.status.code(), stdout(&o).trim()),
        (Some(0), "3"),
        "{}",
        stderr(&o)
    );
    wait_until(
        "a and b to form a cluster and agree",
        Duration::from_secs(15),
        || {
            let o = gctr(&[
                "get",
                "hits",
                "--all",
                "--node",
                "b",
                "--discovery",
                &d_url,
                "--ca",
                s(&f.ca),
                "--token",
                RO,
            ]);
            o.status.success() && stdout(&o).contains("all 2 nodes agree")
        },
    );
    let o = gctr(&[
        "inc",
        "hits",
        "--node",
        "b",
        "--discovery",
        &d_url,
        "--ca",
        s(&f.ca),
    ]);
    assert_eq!(o.status.code(), Some(1), "no token, yet: {}", stdout(&o));
    assert!(stderr(&o).contains("HTTP 401"), "{}", stderr(&o));

    for ca in [Some(&f.other_ca), None] {
        let mut args = vec!["get", "hits", "--http", &a_url, "--token", RO];
        if let Some(ca) = ca {
            args.extend(["--ca", s(ca)]);
        }
        let o = gctr(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stdout(&o));
        let e = stderr(&o);
        assert!(
            e.contains("not signed by a trusted CA") && e.contains("--ca FILE"),
            "{e}"
        );
    }
    let o = gctr(&["health", "--http", &a_url, "--ca", s(&f.ca)]);
    assert_eq!(
        (o.status.code(), stdout(&o).trim()),
        (Some(0), "ok"),
        "gctr health over HTTPS needs no token: {}",
        stderr(&o)
    );
    let o = gctr(&["health", "--http", &a_url, "--ca", s(&f.other_ca)]);
    assert_eq!(o.status.code(), Some(1), "health trusting another CA");
    let o = run_gctr(&["get", "hits", "--http", &a_http, "--token", RO]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "plain HTTP to a TLS port: {}",
        stdout(&o)
    );
}

fn free_addr_port(addr: &str) -> String {
    addr.rsplit(':').next().unwrap().to_owned()
}

#[test]
fn bad_certificate_flags_stop_the_server_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = write_files(dir.path());
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "junk\n").unwrap();
    let addr = free_addr().to_string();
    let o = run_gctr(&[
        "node",
        "--addr",
        &addr,
        "--tls-cert",
        s(&junk),
        "--tls-key",
        s(&f.key),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("TLS certificate {}", s(&junk))),
        "{}",
        stderr(&o)
    );
    let o = run_gctr(&[
        "node",
        "--addr",
        &addr,
        "--tls-cert",
        s(&f.cert),
        "--tls-key",
        s(&junk),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("TLS key {}", s(&junk))),
        "{}",
        stderr(&o)
    );
    let o = run_gctr(&["discovery", "--port", "0", "--tls-cert", s(&f.cert)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--tls-cert and --tls-key go together"),
        "{}",
        stderr(&o)
    );
}

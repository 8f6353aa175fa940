//! `rediss://` against a throwaway `redis-server` listening with TLS, its certificate signed by a
//! certificate authority the test makes. Runs with `--features tls`.

#![cfg(feature = "tls")]

mod common;

use std::path::Path;

use cache_core::{Backend, Bytes, Condition, Error};
use cache_redis::RedisBackend;
use common::{ThrowawayRedis, free_port};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Writes `ca.crt`, and `server.crt` with `server.key`: a certificate for `localhost` and
/// 127.0.0.1 that the CA signed.
fn make_certificates(dir: &Path) {
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "cachette test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("a self-signed CA");
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate().expect("a server key");
    let mut server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("server parameters");
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server
        .signed_by(&server_key, &issuer)
        .expect("a certificate the CA signed");

    for (name, pem) in [
        ("ca.crt", ca_cert.pem()),
        ("server.crt", server_cert.pem()),
        ("server.key", server_key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), pem).expect("write a PEM file");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_urls_speak_tls_and_verify_the_server() {
    let certificates = tempfile::tempdir().expect("a temporary directory");
    let dir = certificates.path();
    make_certificates(dir);
    let tls_port = free_port().to_string();
    let file = |name: &str| dir.join(name).display().to_string();
    let (cert, key, ca) = (file("server.crt"), file("server.key"), file("ca.crt"));
    let _server = ThrowawayRedis::start(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-auth-clients",
        "no",
    ])
    .await;

    // Trusting the test's CA, the connection is made and used.
    let store = RedisBackend::open(&format!("rediss://localhost:{tls_port}/0?tls_ca={ca}"))
        .await
        .expect("connects over TLS");
    store
        .set("secure", Bytes::from("yes"), None, Condition::Always)
        .await
        .expect("set over TLS");
    assert_eq!(
        store.get("secure").await.expect("get over TLS"),
        Some(Bytes::from("yes"))
    );

    // With the system's roots only, the server's certificate is refused.
    match RedisBackend::open(&format!(
        "rediss://localhost:{tls_port}/0?connect_timeout=500ms"
    ))
    .await
    {
        Err(Error::Backend { .. }) => {}
        other => panic!("a certificate from an unknown CA must be refused, got {other:?}"),
    }

    // A CA file that is not there is a configuration error.
    let missing = format!(
        "rediss://localhost:{tls_port}/0?tls_ca={}",
        file("nope.crt")
    );
    assert!(matches!(
        RedisBackend::open(&missing).await,
        Err(Error::Config { .. })
    ));
}

//! TLS over loopback with certificates made at run time (rcgen): a round trip, mutual TLS,
//! a client certificate from an untrusted CA refused by the server, a server certificate
//! from an untrusted CA (or for another name) refused by the client, and the PEM loaders'
//! errors naming the file.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pki::Ca;
use common::{init_tracing, request, response_to, ToyCorrelator};
use isoswitch_net::tls::{load_certs, load_private_key, load_roots};
use isoswitch_net::{
    Client, ClientConfig, ClientTls, CloseReason, Frame, Framing, NetError, Request, RequestError,
    Server, ServerConfig, ServerTls, TlsConnector, TlsError, TlsInfo,
};
use tokio::sync::{mpsc, oneshot};

const LONG: Duration = Duration::from_secs(30);

fn client_config() -> ClientConfig {
    let mut c = ClientConfig::new(Framing::Len2);
    c.reconnect = None;
    c.connect_timeout = LONG;
    c
}

type Seen = Arc<Mutex<Vec<Option<Arc<TlsInfo>>>>>;

/// Starts an echo server over TLS; returns its address, what each handled request saw of
/// the TLS session, a channel of close reasons and the stop switch.
async fn start(
    tls: ServerTls,
) -> (
    String,
    Seen,
    mpsc::UnboundedReceiver<CloseReason>,
    oneshot::Sender<()>,
) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let handler = move |req: Request| {
        s.lock().unwrap().push(req.conn.tls.clone());
        async move { Some(Frame::new(response_to(req.payload()))) }
    };
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let server = Server::bind_tls(
        "127.0.0.1:0",
        Framing::Len2,
        ServerConfig::default(),
        tls,
        handler,
    )
    .await
    .unwrap()
    .on_connection_closed(move |_, reason| {
        let _ = closed_tx.send(reason);
    });
    let addr = server.local_addr().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    (addr, seen, closed, stop)
}

#[tokio::test]
async fn tls_round_trip_checks_the_server_certificate() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("switch CA");
    let ca_file = ca.write(dir.path(), "ca");
    let server = ca.server(dir.path(), "switch");
    let tls = ServerTls::from_pem_files(&server.cert, &server.key, None).unwrap();
    assert!(!tls.is_mutual());
    let (addr, seen, _closed, _stop) = start(tls).await;

    let client_tls = ClientTls::from_pem_files(&ca_file, None).unwrap();
    let connector = TlsConnector::new(addr, "127.0.0.1", &client_tls).unwrap();
    let client = Client::builder(client_config(), ToyCorrelator)
        .connect(connector)
        .await
        .unwrap();
    for n in 0..20 {
        let req = request(n, b"over tls");
        assert_eq!(
            client.request(req.clone(), LONG).await.unwrap(),
            response_to(&req)
        );
    }
    client.close(LONG).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 20);
    let info = seen[0].as_ref().expect("the connection is TLS");
    assert!(info.protocol.starts_with("TLS"), "{info:?}");
    assert!(
        info.peer_certificates.is_empty(),
        "no client certificate asked for"
    );
}

#[tokio::test]
async fn mutual_tls_round_trip_hands_the_client_certificate_to_the_handler() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("switch CA");
    let terminal_ca = Ca::new("terminal CA");
    let server_ca_file = server_ca.write(dir.path(), "server-ca");
    let terminal_ca_file = terminal_ca.write(dir.path(), "terminal-ca");
    let server = server_ca.server(dir.path(), "switch");
    let terminal = terminal_ca.client(dir.path(), "T0000001");
    let tls =
        ServerTls::from_pem_files(&server.cert, &server.key, Some(&terminal_ca_file)).unwrap();
    assert!(tls.is_mutual());
    let (addr, seen, _closed, _stop) = start(tls).await;

    let client_tls =
        ClientTls::from_pem_files(&server_ca_file, Some((&terminal.cert, &terminal.key))).unwrap();
    let client = Client::builder(client_config(), ToyCorrelator)
        .connect(TlsConnector::new(addr, "localhost", &client_tls).unwrap())
        .await
        .unwrap();
    let req = request(7, b"mutual");
    assert_eq!(
        client.request(req.clone(), LONG).await.unwrap(),
        response_to(&req)
    );
    client.close(LONG).await;
    let seen = seen.lock().unwrap();
    let info = seen[0].as_ref().expect("TLS");
    let presented = load_certs(&terminal.cert).unwrap();
    assert_eq!(info.peer_certificates, presented);
}

/// Under mutual TLS, a client whose certificate does not chain to the server's client CA
/// (or that has none) never reaches the handler.
#[tokio::test]
async fn client_with_an_untrusted_certificate_is_refused() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("switch CA");
    let terminal_ca = Ca::new("terminal CA");
    let rogue_ca = Ca::new("rogue CA");
    let server_ca_file = server_ca.write(dir.path(), "server-ca");
    let terminal_ca_file = terminal_ca.write(dir.path(), "terminal-ca");
    let server = server_ca.server(dir.path(), "switch");
    let rogue = rogue_ca.client(dir.path(), "ROGUE001");
    let tls =
        ServerTls::from_pem_files(&server.cert, &server.key, Some(&terminal_ca_file)).unwrap();
    let (addr, seen, mut closed, _stop) = start(tls).await;

    let identities = [Some((rogue.cert.as_path(), rogue.key.as_path())), None];
    for identity in identities {
        let client_tls = ClientTls::from_pem_files(&server_ca_file, identity).unwrap();
        let connector = TlsConnector::new(addr.clone(), "127.0.0.1", &client_tls).unwrap();
        // With TLS 1.3 the client may finish its side of the handshake before the server
        // has checked its certificate: then the refusal shows on the first request.
        match Client::builder(client_config(), ToyCorrelator)
            .connect(connector)
            .await
        {
            Err(NetError::Io(_)) => {}
            Err(other) => panic!("unexpected error {other:?}"),
            Ok(client) => {
                let outcome = client.request(request(1, b"rogue"), LONG).await;
                assert!(
                    matches!(
                        outcome,
                        Err(RequestError::ConnectionLost | RequestError::Rejected(_))
                    ),
                    "{outcome:?}"
                );
                client.close(LONG).await;
            }
        }
        let reason = tokio::time::timeout(LONG, closed.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(reason, CloseReason::Error(NetError::TlsHandshake(_))),
            "{reason}"
        );
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "the handler was never called"
    );
}

/// A client refuses a server whose certificate does not chain to its roots, and one whose
/// certificate names another host.
#[tokio::test]
async fn client_refuses_an_untrusted_or_misnamed_server() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let trusted = Ca::new("trusted CA");
    let other = Ca::new("other CA");
    let trusted_file = trusted.write(dir.path(), "trusted");
    let client_tls = ClientTls::from_pem_files(&trusted_file, None).unwrap();

    let untrusted = other.server(dir.path(), "impostor");
    let misnamed = trusted.server_for(dir.path(), "elsewhere", &["host.example"]);
    for leaf in [untrusted, misnamed] {
        let tls = ServerTls::from_pem_files(&leaf.cert, &leaf.key, None).unwrap();
        let (addr, seen, _closed, _stop) = start(tls).await;
        let connector = TlsConnector::new(addr, "127.0.0.1", &client_tls).unwrap();
        let err = Client::builder(client_config(), ToyCorrelator)
            .connect(connector)
            .await
            .expect_err("the client must refuse the server");
        match err {
            NetError::Io(e) => {
                let text = e.to_string().to_lowercase();
                assert!(text.contains("certificate"), "{text}");
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert!(seen.lock().unwrap().is_empty());
    }
}

#[test]
fn pem_loading_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = load_certs(&missing).unwrap_err();
    assert!(matches!(err, TlsError::Read { ref path, .. } if *path == missing));
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no PEM here\n").unwrap();
    let err = load_certs(&empty).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
    assert!(err.to_string().contains("empty.pem"));
    let err = load_private_key(&empty).unwrap_err();
    assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err:?}");
    assert!(err.to_string().contains("empty.pem"));
    assert!(matches!(
        load_roots(&empty),
        Err(TlsError::NoCertificate { .. })
    ));

    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = load_certs(&broken).unwrap_err();
    assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");
    assert!(err.to_string().contains("broken.pem"));

    // A key that does not belong to the certificate.
    let ca = Ca::new("CA");
    let a = ca.server(dir.path(), "a");
    let b = ca.server(dir.path(), "b");
    let err = ServerTls::from_pem_files(&a.cert, &b.key, None).unwrap_err();
    assert!(matches!(err, TlsError::Rustls(_)), "{err:?}");

    let tls = ClientTls::from_pem_files(ca.write(dir.path(), "ca"), None).unwrap();
    assert!(matches!(
        TlsConnector::new("127.0.0.1:1", "not a name!", &tls),
        Err(TlsError::InvalidServerName { .. })
    ));
}

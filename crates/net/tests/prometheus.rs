//! The wiring a program does, checked end to end: `metrics-exporter-prometheus` installed
//! as the recorder, its `PrometheusHandle::render` as the admin endpoint's `/metrics`;
//! after traffic over a client and a server, `GET /metrics` shows `isoswitch_` metrics with
//! the `link`, `direction`, `mti` and `rc` labels in the Prometheus text format.

use std::time::Duration;

use isoswitch_codec::{Dialect, Message};
use isoswitch_net::admin::{AdminConfig, AdminServer};
use isoswitch_net::{
    Client, ClientConfig, DialectCorrelator, Frame, Framing, Request, Server, ServerConfig,
    TcpConnector,
};
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_renders_isoswitch_metrics_after_traffic() {
    // As a program does: the recorder first, then the links.
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder of this binary");
    let dialect = Dialect::builtin("iso87-binary").unwrap();
    let handler = |req: Request| async move {
        let request = req.into_message()?.ok()?;
        let mut response = Message::response_to(&request).ok()?;
        response.set(39, "00").ok()?;
        Some(Frame::new(response.to_bytes().ok()?))
    };
    let config = ServerConfig {
        link: "terminals".into(),
        ..ServerConfig::default()
    };
    let server = Server::bind("127.0.0.1:0", Framing::Len2, config, handler)
        .await
        .unwrap()
        .with_dialect(dialect.clone());
    let addr = server.local_addr();
    tokio::spawn(server.serve(std::future::pending()));
    let mut config = ClientConfig::new(Framing::Len2);
    config.link = "host".into();
    let client = Client::builder(config, DialectCorrelator::new(dialect.clone()))
        .connect(TcpConnector::new(addr.to_string()))
        .await
        .unwrap();
    for stan in 1..=3u32 {
        let mut m = Message::new(&dialect, "0200".parse().unwrap());
        m.set(3, "000000").unwrap();
        m.set(11, format!("{stan:06}")).unwrap();
        m.set(41, "TERM0001").unwrap();
        client.request(m.to_bytes().unwrap(), LONG).await.unwrap();
    }

    let admin = AdminServer::bind("127.0.0.1:0", AdminConfig::default())
        .await
        .unwrap()
        .metrics(move || handle.render());
    let admin_addr = admin.local_addr();
    tokio::spawn(admin.serve(std::future::pending()));
    let mut s = TcpStream::connect(admin_addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(LONG, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("Content-Type: text/plain; version=0.0.4"));
    let body = out.split_once("\r\n\r\n").unwrap().1;
    let sample = |needle: &str| {
        body.lines()
            .find(|l| !l.starts_with('#') && l.contains(needle))
            .unwrap_or_else(|| panic!("no sample with {needle} in:\n{body}"))
            .to_owned()
    };
    let line = sample("isoswitch_messages_total{");
    assert!(line.starts_with("isoswitch_messages_total{"));
    for labels in [
        r#"link="host",direction="out",mti="0200""#,
        r#"link="host",direction="in",mti="0210""#,
        r#"link="terminals",direction="in",mti="0200""#,
    ] {
        let l = sample(labels);
        assert!(l.ends_with(" 3"), "{l}");
    }
    assert!(
        sample(r#"isoswitch_responses_total{link="terminals",direction="out",rc="00"}"#)
            .ends_with(" 3")
    );
    assert!(
        sample(r#"isoswitch_responses_total{link="host",direction="in",rc="00"}"#).ends_with(" 3")
    );
    sample("isoswitch_request_duration_seconds");
    assert!(sample(r#"isoswitch_link_up{link="host"}"#).ends_with(" 1"));
    for l in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(l.starts_with("isoswitch_"), "{l}");
    }
    client.close(LONG).await;
}

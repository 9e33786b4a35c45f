//! With a dialect, each inbound message's tracing span names its MTI, STAN and terminal ID
//! and shows the PAN masked, never in clear.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use isoswitch_codec::{Dialect, Message};
use isoswitch_net::{Frame, Framing, Request, Server, ServerConfig};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::ErrorKind::Other)?
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn message_spans_carry_mti_stan_tid_and_a_masked_pan() {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dialect = Dialect::builtin("iso87-binary").unwrap();
    let server = Server::bind(
        "127.0.0.1:0",
        Framing::Len2,
        ServerConfig::default(),
        |req: Request| async move {
            tracing::info!("handled");
            Some(Frame::new(req.frame.payload))
        },
    )
    .await
    .unwrap()
    .with_dialect(dialect.clone());
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));

    let mut m = Message::new(&dialect, "0200".parse().unwrap());
    m.set(2, "4761739001010119")
        .unwrap()
        .set(3, "000000")
        .unwrap()
        .set(11, "000042")
        .unwrap()
        .set(41, "TERM0001")
        .unwrap();
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut framed = Framed::new(stream, Framing::Len2.codec(8192));
    framed
        .send(Frame::new(m.to_bytes().unwrap()))
        .await
        .unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(10), framed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed.payload, m.to_bytes().unwrap());
    drop(framed);
    let _ = stop.send(());
    let _ = task.await;

    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let line = out
        .lines()
        .find(|l| l.contains("handled"))
        .expect("handler event logged");
    assert!(line.contains("mti=0200"), "{line}");
    assert!(line.contains("stan=000042"), "{line}");
    assert!(line.contains("tid=TERM0001"), "{line}");
    assert!(line.contains("pan=476173******0119"), "{line}");
    assert!(!out.contains("4761739001010119"), "{out}");
}

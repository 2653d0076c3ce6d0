//! Mutual TLS between hosts and for TCP clients: real hosts on loopback,
//! certificates made here with rcgen (a CA, host certificates with an IP
//! SAN for 127.0.0.1).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hostmux_host::{
    BlockingClient, FrontendKind, HostConfig, HostError, PlainTcp, ServeHandle, TlsConfig,
};
use hostmux_wire::{Addr, FrameKind, UndeliverableReason};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

use crate::support::{echo_proc, every_frontend, free_port, serve_at, Client, TestHost, WAIT};

/// A certificate authority and the folder its files are written to.
struct Pki {
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: tempfile::TempDir,
}

/// The three PEM files a host serves with.
struct HostFiles {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki {
            cert,
            key,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A host certificate signed by this CA for `sans` (IP addresses become
    /// IP SANs, names DNS SANs), written with this CA's certificate.
    fn issue(&self, file_name: &str, sans: &[&str]) -> HostFiles {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, file_name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let write = |suffix: &str, text: String| {
            let path = self.dir.path().join(format!("{file_name}.{suffix}"));
            std::fs::write(&path, text).unwrap();
            path
        };
        HostFiles {
            cert: write("crt", cert.pem()),
            key: write("key", key.serialize_pem()),
            ca: write("ca", self.cert.pem()),
        }
    }

    fn tls(&self, file_name: &str, sans: &[&str]) -> TlsConfig {
        let files = self.issue(file_name, sans);
        TlsConfig::from_pem_files(&files.cert, &files.key, &files.ca).unwrap()
    }
}

/// A host config with one peer and the peer token, and `tls` if given.
fn linked(peer: &Addr, tls: Option<TlsConfig>) -> HostConfig {
    HostConfig {
        peers: vec![peer.clone()],
        peer_token: Some("shared-by-peers".to_owned()),
        tls,
        ..HostConfig::default()
    }
}

/// Two hosts that are each other's peer, with echo on B; returns both and
/// B's address text.
async fn two_hosts(
    kind: FrontendKind,
    tls_a: Option<TlsConfig>,
    tls_b: Option<TlsConfig>,
) -> ((TestHost, TestHost), String, (ServeHandle, ServeHandle)) {
    let a_addr = Addr::tcp("127.0.0.1", free_port()).unwrap();
    let b_addr = Addr::tcp("127.0.0.1", free_port()).unwrap();
    let (a, serving_a) = serve_at(kind, a_addr.clone(), linked(&b_addr, tls_a)).await;
    let (b, serving_b) = serve_at(kind, b_addr.clone(), linked(&a_addr, tls_b)).await;
    b.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let b_text = b.addr().to_string();
    ((a, b), b_text, (serving_a, serving_b))
}

/// A client of `host` over TLS (with `tls`'s certificate) sends `payload`
/// to echo at `dest` and returns the answer's kind, id and payload.
async fn tls_round_trip(
    host: &TestHost,
    tls: Arc<rustls::ClientConfig>,
    dest: &str,
    id: u64,
) -> Result<(FrameKind, u64, Vec<u8>), HostError> {
    let answers = tls_round_trips(host, tls, dest, &[(id, b"over tls".to_vec())]).await?;
    Ok(answers.into_iter().next().expect("one answer"))
}

/// One TLS client of `host` sends every `(id, payload)` to echo at `dest`
/// in one write, then reads as many answers.
async fn tls_round_trips(
    host: &TestHost,
    tls: Arc<rustls::ClientConfig>,
    dest: &str,
    frames: &[(u64, Vec<u8>)],
) -> Result<Vec<(FrameKind, u64, Vec<u8>)>, HostError> {
    let addr = host.addr().clone();
    let dest = dest.to_owned();
    let frames = frames.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut client =
            BlockingClient::connect_tls(&addr, "tls-client", b"", "service", WAIT, tls)?;
        client.set_read_timeout(Some(WAIT))?;
        for (id, payload) in &frames {
            client.queue_frame(
                &hostmux_wire::FrameHeader {
                    dest_addr: &dest,
                    sender: hostmux_wire::Sender::Client { name: "tls-client" },
                    ..hostmux_wire::FrameHeader::data("echo", *id)
                },
                payload,
            )?;
        }
        client.flush()?;
        let mut answers = Vec::new();
        for _ in &frames {
            let frame = client.recv()?.expect("an answer");
            answers.push((frame.kind, frame.message_id, frame.payload));
        }
        Ok(answers)
    })
    .await
    .unwrap()
}

async fn mutual_tls_link_carries_a_round_trip(kind: FrontendKind) {
    let pki = Pki::new("cluster CA");
    // Neither host serves plain TCP at all, loopback included: the link
    // (and the reply link) can only be TLS.
    let tls_a = pki
        .tls("a", &["127.0.0.1"])
        .with_plain_tcp(PlainTcp::Refused);
    let tls_b = pki
        .tls("b", &["127.0.0.1"])
        .with_plain_tcp(PlainTcp::Refused);
    let client_tls = tls_a.client_config().clone();
    let ((a, b), b_addr, _guard) = two_hosts(kind, Some(tls_a), Some(tls_b)).await;
    for id in 1..=3 {
        let (kind, message_id, payload) = tls_round_trip(&a, client_tls.clone(), &b_addr, id)
            .await
            .unwrap();
        assert_eq!((kind, message_id), (FrameKind::Data, id));
        assert_eq!(payload, b"over tls");
    }
    // Many records each way: 40 frames of 4 KiB and two of 300 KiB in one
    // write, through the client's session and both links' sessions.
    let frames: Vec<(u64, Vec<u8>)> = (10..50)
        .map(|id| (id, vec![id as u8; 4096]))
        .chain([(50, vec![0xA5; 300 << 10]), (51, vec![0x5A; 300 << 10])])
        .collect();
    let answers = tls_round_trips(&a, client_tls.clone(), &b_addr, &frames)
        .await
        .unwrap();
    for ((kind, id, payload), (sent_id, sent)) in answers.iter().zip(&frames) {
        assert_eq!((*kind, *id), (FrameKind::Data, *sent_id));
        assert!(payload == sent, "payload of {id} changed");
    }
    let stats = a.stats().await.unwrap();
    let link = stats.conn(&b_addr).expect("a link to B");
    assert_eq!(link.frames_out, 3 + frames.len() as u64);
    // A plain client is refused by A (PlainTcp::Refused): the link above was TLS.
    let plain = Client::connect_with_token(&a, "plain", b"").await;
    assert!(plain.is_none(), "a plain client was served");
    drop(b);
}
every_frontend!(mutual_tls_link_carries_a_round_trip);

/// Sends three frames from a plain client of A to echo at `b_addr` and
/// checks each comes back `PeerRefused`.
async fn frames_come_back_peer_refused(a: &TestHost, b_addr: &str) {
    let mut client = Client::connect(a, "hopeful").await;
    for id in 0..3 {
        client.send_to("echo", b_addr, id, b"let me in").await;
    }
    let mut ids = Vec::new();
    for _ in 0..3 {
        let notice = client.recv().await;
        assert_eq!(notice.kind, FrameKind::Undeliverable, "{notice:?}");
        assert_eq!(
            notice.undeliverable().reason,
            UndeliverableReason::PeerRefused,
            "{notice:?}"
        );
        ids.push(notice.message_id);
    }
    ids.sort_unstable();
    assert_eq!(ids, [0, 1, 2]);
}

async fn a_peer_certified_by_another_ca_is_refused(kind: FrontendKind) {
    let ours = Pki::new("our CA");
    let theirs = Pki::new("another CA");
    // B's server certificate comes from another CA: A refuses B.
    {
        let tls_a = ours.tls("a", &["127.0.0.1"]);
        let tls_b = theirs.tls("b", &["127.0.0.1"]);
        let ((a, _b), b_addr, _guard) = two_hosts(kind, Some(tls_a), Some(tls_b)).await;
        frames_come_back_peer_refused(&a, &b_addr).await;
    }
    // A's client certificate comes from another CA (though A trusts B's):
    // B refuses A.
    {
        let a_files = theirs.issue("a-foreign", &["127.0.0.1"]);
        let ca = ours.issue("unused", &["127.0.0.1"]).ca;
        let tls_a = TlsConfig::from_pem_files(&a_files.cert, &a_files.key, &ca).unwrap();
        let tls_b = ours.tls("b", &["127.0.0.1"]);
        let ((a, _b), b_addr, _guard) = two_hosts(kind, Some(tls_a), Some(tls_b)).await;
        frames_come_back_peer_refused(&a, &b_addr).await;
    }
}
every_frontend!(a_peer_certified_by_another_ca_is_refused);

/// The far host takes plain clients, but a connection presenting the peer
/// token must come with a certificate naming a peer: a plain link, and a
/// TLS link whose certificate names another address, are refused with a
/// hello refusal, which the dialling host reports as `PeerRefused`.
async fn a_link_without_a_peer_certificate_is_refused(kind: FrontendKind) {
    let pki = Pki::new("cluster CA");
    {
        let ((a, _b), b_addr, _guard) =
            two_hosts(kind, None, Some(pki.tls("b", &["127.0.0.1"]))).await;
        frames_come_back_peer_refused(&a, &b_addr).await;
    }
    {
        // A's certificate chains to the CA but names 127.0.0.2, not the
        // address B knows A by.
        let tls_a = pki.tls("a-elsewhere", &["127.0.0.2"]);
        let tls_b = pki.tls("b", &["127.0.0.1"]);
        let ((a, _b), b_addr, _guard) = two_hosts(kind, Some(tls_a), Some(tls_b)).await;
        frames_come_back_peer_refused(&a, &b_addr).await;
    }
}
every_frontend!(a_link_without_a_peer_certificate_is_refused);

/// A TLS client without a certificate, trusting `pki`'s CA.
fn anonymous_client(pki: &Pki) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.cert.der().clone()).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

async fn tls_and_plain_clients_share_the_tcp_frontend(kind: FrontendKind) {
    let pki = Pki::new("cluster CA");
    let cases = [
        (PlainTcp::Allowed, true),
        (PlainTcp::LoopbackOnly, true),
        // The loopback exemption switched off: plain TCP refused here too.
        (PlainTcp::Refused, false),
    ];
    for (plain_tcp, plain_served) in cases {
        let tls = pki.tls("h", &["127.0.0.1"]).with_plain_tcp(plain_tcp);
        let config = HostConfig {
            tls: Some(tls),
            ..HostConfig::default()
        };
        let addr = Addr::tcp("127.0.0.1", 0).unwrap();
        let (host, _serving) = serve_at(kind, addr, config).await;
        host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
        // A TLS client without a certificate of its own.
        let (answer, id, _) = tls_round_trip(&host, anonymous_client(&pki), "", 7)
            .await
            .unwrap();
        assert_eq!((answer, id), (FrameKind::Data, 7), "{plain_tcp:?}");
        let plain = Client::connect_with_token(&host, "plain", b"").await;
        assert_eq!(plain.is_some(), plain_served, "{plain_tcp:?}");
        if let Some(mut plain) = plain {
            plain.send("echo", 8, b"plain").await;
            assert_eq!(plain.recv().await.payload, b"plain");
        }
        // A client that does not trust the host's CA gets no session.
        let stranger = Pki::new("stranger CA");
        let refused = tls_round_trip(&host, anonymous_client(&stranger), "", 9).await;
        assert!(refused.is_err(), "{refused:?}");
    }
}
every_frontend!(tls_and_plain_clients_share_the_tcp_frontend);

/// Every way a TLS file can be wrong is reported with the file's path and
/// what is wrong with it.
#[test]
fn config_errors_name_the_file() {
    let pki = Pki::new("cluster CA");
    let good = pki.issue("good", &["127.0.0.1"]);
    let other = pki.issue("other", &["127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").unwrap();
    let check = |cert: &Path, key: &Path, ca: &Path, file: &Path, role: &str, what: &str| {
        let error = TlsConfig::from_pem_files(cert, key, ca).unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(&error, HostError::TlsFile { path, role: r, .. } if path == file && *r == role),
            "{error:?}"
        );
        assert!(text.contains(&file.display().to_string()), "{text}");
        assert!(text.contains(what), "{text}");
    };
    check(
        &missing,
        &good.key,
        &good.ca,
        &missing,
        "certificate",
        "cannot read",
    );
    check(
        &good.cert,
        &missing,
        &good.ca,
        &missing,
        "private key",
        "cannot read",
    );
    check(
        &good.cert,
        &good.key,
        &missing,
        &missing,
        "CA certificate",
        "cannot read",
    );
    check(
        &garbage,
        &good.key,
        &good.ca,
        &garbage,
        "certificate",
        "no PEM certificate",
    );
    check(
        &good.cert,
        &garbage,
        &good.ca,
        &garbage,
        "private key",
        "no PEM private key",
    );
    check(
        &good.cert,
        &good.key,
        &garbage,
        &garbage,
        "CA certificate",
        "no PEM certificate",
    );
    // A key file holding a certificate, and a key of another certificate.
    check(
        &good.cert,
        &good.ca,
        &good.ca,
        &good.ca,
        "private key",
        "no PEM private key",
    );
    check(
        &good.cert,
        &other.key,
        &good.ca,
        &other.key,
        "private key",
        "does not belong",
    );
    assert!(TlsConfig::from_pem_files(&good.cert, &good.key, &good.ca).is_ok());
}

/// rcgen's PEM output round-trips through `from_pem` too.
#[test]
fn pem_text_in_memory_builds_a_config() {
    let pki = Pki::new("cluster CA");
    let files = pki.issue("mem", &["127.0.0.1", "host.example"]);
    let read = |p: &Path| std::fs::read(p).unwrap();
    let config =
        TlsConfig::from_pem(&read(&files.cert), &read(&files.key), &read(&files.ca)).unwrap();
    assert_eq!(config.plain_tcp, PlainTcp::Allowed);
}

/// TLS clients of a host with two I/O threads: the one that accepts hands
/// the undecided socket to the other, whose adoption starts the session.
async fn tls_clients_are_served_on_both_io_threads(kind: FrontendKind) {
    use hostmux_host::{Host, LocalProc};
    use hostmux_proc::ProcError;

    let pki = Pki::new("cluster CA");
    let config = HostConfig {
        frontend: kind,
        io_threads: 2,
        tls: Some(pki.tls("h", &["127.0.0.1"])),
        ..HostConfig::default()
    };
    let (host, _serving) = Host::serve(
        hostmux_lifecycle::LocalProcManager::new(),
        Addr::tcp("127.0.0.1", 0).unwrap(),
        config,
    )
    .await
    .unwrap();
    // A proc on `hostmux-proc`, which serves every lane.
    let echo = LocalProc::booted(|mut proc| {
        proc.serve(|mut message| {
            if message.kind() != FrameKind::Data {
                return Ok(());
            }
            let payload = message.payload();
            match message.reply(payload) {
                Err(ProcError::NoReplyAddress { .. }) => Ok(()),
                other => other,
            }
        })
    });
    host.spawn("echo", echo).await.unwrap();
    for id in [1, 2] {
        let (answer, got, payload) = tls_round_trip(&host, anonymous_client(&pki), "", id)
            .await
            .unwrap();
        assert_eq!(
            (answer, got, payload.as_slice()),
            (FrameKind::Data, id, &b"over tls"[..])
        );
    }
    let stats = host.stats().await.unwrap();
    // Closed by now, or still closing.
    let mut threads: Vec<u32> = stats
        .closed_conns
        .iter()
        .chain(&stats.conns)
        .filter(|c| c.name == "tls-client")
        .map(|c| c.io_thread)
        .collect();
    threads.sort();
    assert_eq!(threads, [0, 1], "one TLS client on each thread");
}
every_frontend!(tls_clients_are_served_on_both_io_threads);

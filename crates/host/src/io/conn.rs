//! One connection: its hello, then its reader and writer tasks.

use std::rc::Rc;

use hostmux_wire::{
    hello_limits, LentChunk, Limits, UndeliverableReason, WireError, DEFAULT_READ_CHUNK,
    MAX_HELLO_LEN,
};
use tokio::sync::Notify;

use super::budget::{charge_for_lend_of, charge_for_read, charge_to, Charge, Closed, ConnBudget};
use super::shell::ConnWakes;
use super::zero_copy::Direct;
use super::*;
use crate::dataplane::Heartbeat;
use crate::frontend::Next;

/// Returns once `awaiting` (a connection still waiting to say hello) is
/// evicted; never without one.
async fn evicted(awaiting: Option<&super::budget::AwaitingHello>) {
    match awaiting {
        Some(awaiting) => awaiting.evicted().await,
        None => std::future::pending().await,
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn connection<F: Frontend>(
    mut reader: F::Reader,
    writer: F::Writer,
    dataplane: Shared,
    cfg: Arc<HostConfig>,
    service_name: ProcName,
    budget: Rc<ConnBudget>,
    // Held until the connection ends: its place under the cap.
    mut door: Door,
    span: tracing::Span,
) {
    let (token, peer_token) = match &door {
        Door::Frontend { .. } => (
            cfg.token.as_deref().map(str::as_bytes),
            cfg.peer_token.as_deref().map(str::as_bytes),
        ),
        Door::ControlSocket => (None, None),
    };
    let limits = cfg.limits;
    let mut charge = budget.charge();
    // The hello: the first frame, within a bounded time and size; unless,
    // at the cap, a newer connection takes this one's place first.
    let deadline = Instant::now() + cfg.hello_timeout;
    let awaiting_hello = match &door {
        Door::Frontend { place, .. } => place.awaiting_hello(),
        Door::ControlSocket => None,
    };
    let hello = tokio::select! {
        biased;
        () = evicted(awaiting_hello.as_deref()) => {
            reader.shutdown();
            // Logged per connection at debug only: a flood makes many (the
            // cap's own line, once a second, counts them).
            tracing::debug!(
                parent: &span,
                peer = door.peer(),
                "closing connection: no hello yet, and the connection cap is reached (its place went to a newer connection)"
            );
            return;
        }
        hello = tokio::time::timeout_at(
            deadline.into(),
            read_hello::<F>(
                &mut reader,
                &mut charge,
                deadline,
                service_name.as_str(),
                (token, peer_token),
                limits,
            ),
        ) => hello,
    };
    drop(awaiting_hello);
    if let (Ok(Ok(_)), Door::Frontend { place, .. }) = (&hello, &mut door) {
        if !place.hello_done() {
            reader.shutdown();
            return;
        }
    }
    let (client, mut decoder, is_peer) = match hello {
        Ok(Ok(hello)) => hello,
        Ok(Err(HelloFailure { reason, refused })) => {
            tracing::warn!(parent: &span, peer = door.peer(), %reason, "closing connection");
            // A hello with the wrong token is told so before the close: a
            // host dialling with a wrong peer token reports `PeerRefused`
            // instead of guessing (a client learns only that its token was
            // wrong, which the close said anyway).
            if let Some(name) = refused {
                let mut refusal = vec![0; 512];
                if let Ok(len) = hostmux_wire::encode_hello_refusal(
                    &mut refusal,
                    service_name.as_str(),
                    &name,
                    UndeliverableReason::PeerRefused,
                    &limits,
                ) {
                    refusal.truncate(len);
                    let mut writer = writer;
                    let _ = tokio::time::timeout(Duration::from_secs(1), writer.write_all(refusal))
                        .await;
                }
            }
            return;
        }
        Err(_) => {
            reader.shutdown();
            budget.count_closed(Closed::HelloTimeout);
            tracing::warn!(
                parent: &span,
                peer = door.peer(),
                hello_timeout = ?cfg.hello_timeout,
                "closing connection: no hello in time"
            );
            return;
        }
    };
    // With TLS, a link must have come with a peer's certificate (io::tls).
    if is_peer {
        if let Err(reason) = super::tls::admit_peer_link(&cfg, reader.peer_certificate()) {
            let (service, peer) = (service_name.as_str(), door.peer());
            super::tls::refuse_peer_link(writer, service, &client, &limits, peer, &reason, &span)
                .await;
            return;
        }
    }
    // From here on, frames up to the full limit, read a chunk at a time.
    decoder.set_limits(limits, DEFAULT_READ_CHUNK);
    let Ok(name) = ProcName::with_max_len(&client, limits.max_name_len) else {
        tracing::warn!(parent: &span, client, "closing connection: invalid client name");
        return;
    };
    let key = {
        let mut dp = dataplane.borrow_mut();
        let Some(key) = dp.add_conn(name.clone()) else {
            budget.count_closed(Closed::NameTaken);
            tracing::warn!(parent: &span, client, "closing connection: name already bound");
            return;
        };
        // The token was checked by the hello; the control socket's peer by
        // its credentials. A host that presented the peer token is a link:
        // it may relay its procs, but it has no control-plane privilege.
        if is_peer {
            // Which configured peer dialled, from its hello name (else
            // learned from the first frame it relays).
            let peer = crate::identity::peer_for_hello_name(&cfg.peers, name.as_str())
                .and_then(|addr| cfg.peers.iter().position(|p| p == addr));
            dp.set_peer_link(key, peer);
        } else if matches!(door, Door::ControlSocket) || cfg.token.is_some() {
            dp.set_privileged(key);
        }
        let mut ack = vec![0; 256];
        match hostmux_wire::encode_hello_ack(
            &mut ack,
            service_name.as_str(),
            name.as_str(),
            &limits,
        ) {
            Ok(len) => dp.queue_raw(key, &ack[..len]),
            Err(e) => tracing::warn!(parent: &span, error = %e, "cannot encode hello ack"),
        }
        key
    };
    tracing::info!(parent: &span, client, "client connected");
    serve_conn::<F>(
        reader,
        writer,
        (decoder, charge),
        &dataplane,
        key,
        dataplane.conn_wakes(key),
        &cfg,
        &span,
    )
    .await;
    if let Door::Frontend { place, .. } = door {
        drop(place);
    }
}

/// Why a hello was not taken.
struct HelloFailure {
    reason: String,
    /// It presented a wrong token, under this name: it is told so.
    refused: Option<String>,
}

impl HelloFailure {
    fn closing(reason: String) -> Self {
        HelloFailure {
            reason,
            refused: None,
        }
    }
}

/// Reads a connection's hello into a [`MAX_HELLO_LEN`] buffer charged to
/// the budget, under [`hello_limits`]: a prefix announcing more fails at
/// once. Returns the client's name, the decoder (which may hold the first
/// frames after the hello) and whether it presented the peer token (another
/// host's link) rather than the client token, or why the connection closes.
async fn read_hello<F: Frontend>(
    reader: &mut F::Reader,
    charge: &mut Charge,
    deadline: Instant,
    service_name: &str,
    (token, peer_token): (Option<&[u8]>, Option<&[u8]>),
    limits: Limits,
) -> Result<(String, FrameDecoder, bool), HelloFailure> {
    charge_to(charge, MAX_HELLO_LEN, deadline)
        .await
        .map_err(HelloFailure::closing)?;
    let mut decoder = FrameDecoder::with_read_chunk(hello_limits(&limits), MAX_HELLO_LEN);
    loop {
        let (result, back) = reader.read_into(decoder).await;
        decoder = back;
        match result {
            Ok(0) => {
                return Err(HelloFailure::closing(
                    "connection closed before its hello".to_owned(),
                ))
            }
            // TLS refusals and failed handshakes say why (io::tls).
            Err(e) => {
                return Err(HelloFailure::closing(format!(
                    "connection closed before its hello: {e}"
                )))
            }
            Ok(_) => {}
        }
        let (client, is_peer) = match decoder.next_frame() {
            // The peer token first: a host without a client token takes
            // any client hello, and a peer's must not pass for a client's.
            Ok(Some(frame)) => match peer_token
                .and_then(|peer| hostmux_wire::check_hello(&frame, service_name, Some(peer)).ok())
            {
                Some(host) => (host.to_owned(), true),
                None => match hostmux_wire::check_hello(&frame, service_name, token) {
                    Ok(client) => (client.to_owned(), false),
                    Err(refusal) => {
                        charge.budget().count_closed(Closed::HelloRefused);
                        let refused = (refusal == hostmux_wire::HelloRefusal::BadToken)
                            .then(|| frame.sender().name().to_owned());
                        return Err(HelloFailure {
                            reason: format!("hello refused: {refusal:?}"),
                            refused,
                        });
                    }
                },
            },
            Ok(None) => continue,
            Err(WireError::FrameTooLong { len, max }) => {
                charge.budget().count_closed(Closed::HelloTooLarge);
                return Err(HelloFailure::closing(format!(
                    "hello announces {len} bytes, over the hello limit of {max}"
                )));
            }
            Err(e) => {
                charge.budget().count_closed(Closed::HelloRefused);
                return Err(HelloFailure::closing(format!("malformed hello: {e}")));
            }
        };
        return Ok((client, decoder, is_peer));
    }
}

/// Runs an established connection (accepted, or dialled to another host)
/// until it closes, then forgets it.
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve_conn<F: Frontend>(
    mut reader: F::Reader,
    writer: F::Writer,
    (decoder, charge): (FrameDecoder, Charge),
    dataplane: &Shared,
    key: ConnKey,
    wakes: ConnWakes,
    cfg: &HostConfig,
    span: &tracing::Span,
) {
    let mut writer_task = tokio::task::spawn_local(write_loop::<F>(
        writer,
        dataplane.clone(),
        key,
        wakes.writer.clone(),
    ));
    let wake_reader = wakes.reader;
    let is_link = dataplane.borrow().is_link(key);
    // A link also ends when the far host falls silent: nothing (frame,
    // acknowledgement, heartbeat) for the link timeout. A client has no
    // heartbeat: its silence is waited out forever.
    let ended = {
        let read = read_loop::<F>(
            &mut reader,
            (decoder, charge),
            dataplane,
            key,
            &wake_reader,
            cfg,
        );
        tokio::pin!(read);
        // The writer ends first only if a write failed (the peer is gone):
        // the reader may be paused then (a full reply queue waits for the
        // writer), so it is stopped here rather than left waiting forever.
        tokio::select! {
            outcome = &mut read => Ended::Read(outcome),
            silent = heartbeat(dataplane, key, cfg), if is_link => Ended::Silent(silent),
            written = &mut writer_task => Ended::Writer(written),
        }
    };
    // The writer ended first (a write failed): nothing can reach the peer.
    let mut write_failed = false;
    let outcome = match ended {
        Ended::Read(Ok(())) if is_link => Err(crate::dataplane::CLOSED_BY_PEER.to_owned()),
        Ended::Read(outcome) => outcome,
        Ended::Silent(silent) => {
            reader.shutdown();
            Err(format!(
                "nothing received for {silent:?}, over the link timeout of {:?} (serve --link-timeout): the other host is down or unreachable",
                cfg.link_timeout
            ))
        }
        Ended::Writer(written) => {
            reader.shutdown();
            write_failed = true;
            Err(match written {
                Ok(Err(reason)) => reason,
                Ok(Ok(())) => "the writer stopped before the reader".to_owned(),
                Err(e) => format!("the writer task ended: {e}"),
            })
        }
    };
    match &outcome {
        Ok(()) => {
            // A half-close: answer what was accepted before it (for at most
            // the linger), then close.
            linger(dataplane, key, &wake_reader, cfg, span).await;
            tracing::info!(parent: span, "connection closed by peer");
        }
        Err(reason) if is_link => {
            tracing::debug!(parent: span, %reason, "link connection ending");
            // Frames awaiting answers through it are answered
            // `LinkFailed` when it is removed (see `Dataplane::remove_conn`).
            dataplane.borrow_mut().link_failed(
                key,
                UndeliverableReason::LinkFailed,
                reason,
                Instant::now(),
            );
        }
        // Nothing can reach the peer any more: no notice is queued.
        Err(reason) if write_failed => {
            tracing::info!(parent: span, %reason, "connection lost");
        }
        Err(reason) => {
            tracing::warn!(parent: span, %reason, "closing connection");
            dataplane.borrow_mut().fail_conn(key);
        }
    }
    dataplane.borrow_mut().close_conn(key);
    // Let the writer send what is queued (the error notice included), but
    // not wait forever on a peer that does not read.
    if !write_failed {
        let abort = writer_task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(1), writer_task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    if is_link {
        tracing::debug!(parent: span, "link writer done");
    }
    dataplane.borrow_mut().remove_conn(key);
    if is_link {
        tracing::debug!(parent: span, "link connection removed");
    }
}

/// Sends a link's heartbeats (a status with a ping every quarter of the
/// link timeout); returns how long the far host has been silent once that
/// is over the timeout.
async fn heartbeat(dataplane: &Shared, key: ConnKey, cfg: &HostConfig) -> Duration {
    let interval = (cfg.link_timeout / 4).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(interval).await;
        let beat = dataplane.borrow_mut().link_heartbeat(key, Instant::now());
        match beat {
            Heartbeat::Sent => {}
            Heartbeat::Silent(silent) => return silent,
            Heartbeat::Gone => std::future::pending::<()>().await,
        }
    }
}

/// After a client's end of stream: keeps its connection (and its name
/// bound) until every frame it sent that was delivered and may be answered
/// has been answered, or `half_close_linger` ran out.
async fn linger(
    dataplane: &Shared,
    key: ConnKey,
    wake: &Notify,
    cfg: &HostConfig,
    span: &tracing::Span,
) {
    if !dataplane.borrow_mut().half_close(key) {
        return;
    }
    let deadline = tokio::time::Instant::now() + cfg.half_close_linger;
    loop {
        if tokio::time::timeout_at(deadline, wake.notified())
            .await
            .is_err()
        {
            tracing::info!(parent: span, linger = ?cfg.half_close_linger, "half-closed connection: answers still awaited when the linger ran out");
            return;
        }
        if !dataplane.borrow_mut().awaits_answers(key) {
            return;
        }
    }
}

/// Writes the connection's outbox until the connection closes (`Ok`) or
/// a write fails (the reason: the reader is then stopped, see
/// [`serve_conn`]).
async fn write_loop<F: Frontend>(
    mut writer: F::Writer,
    dataplane: Shared,
    key: ConnKey,
    wake: Rc<Notify>,
) -> Result<(), String> {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let state = dataplane
            .borrow_mut()
            .take_outbox(key, &mut buf, Instant::now());
        match state {
            Outbox::Closed => {
                writer.close().await;
                return Ok(());
            }
            Outbox::Empty => wake.notified().await,
            Outbox::Later(at) => {
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep_until(at.into()) => {}
                }
            }
            Outbox::Bytes => {
                let (result, back) = writer.write_all(buf).await;
                buf = back;
                buf.clear();
                if let Err(e) = result {
                    return Err(format!("write failed: {e}"));
                }
            }
        }
    }
}

/// Routes every whole frame of a chunk lent to the decoder (as the read
/// loop routes the decoder's own), waiting (unread: the reader is paused)
/// while one is blocked on a full ring or link. `now` is re-read after a
/// wait.
async fn route_frames<R: ConnReader>(
    frames: &mut LentChunk<'_, '_>,
    reader: &mut R,
    (dataplane, key, wake, cfg): (&Shared, ConnKey, &Notify, &HostConfig),
    stash: &mut AlignedVec<FRAME_ALIGN>,
    now: &mut Instant,
) -> Result<(), String> {
    loop {
        let blocked = {
            let mut dp = dataplane.borrow_mut();
            // Runs of frames that repeat the previous header go straight
            // to the same proc, without a frame view; anything else (and
            // a repeat the fast path declines) goes through `next`.
            dp.deliver_repeats(key, frames);
            match frames.next_frame() {
                Ok(Some(frame)) => match dp.handle_conn_frame(key, &frame, true, None, *now) {
                    Delivery::Done => None,
                    Delivery::Blocked(on, deadline) => {
                        stash.clear();
                        stash.extend_from_slice(frame.as_bytes());
                        Some((on, deadline))
                    }
                },
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("malformed frame: {e}")),
            }
        };
        if let Some((on, deadline)) = blocked {
            reader.pause();
            wait_for_room(dataplane, key, wake, cfg, stash, on, deadline).await;
            *now = Instant::now();
        }
    }
}

/// The read after a frame read straight into a ring: enough for the next
/// frame's header (and small frames), little of a large one's payload.
const HEAD_READ: usize = 4096;

/// How the serving of a connection ended.
enum Ended {
    /// The read loop ended: end of stream (`Ok`) or the reason.
    Read(Result<(), String>),
    /// A link heard nothing for this long (over the link timeout).
    Silent(Duration),
    /// The writer ended first: a write failed.
    Writer(Result<Result<(), String>, tokio::task::JoinError>),
}

/// Reads and routes a connection's frames until end of stream (`Ok`) or
/// an error (the reason). Each read is first charged to the connection
/// memory budget (waiting, unread, for room), and a partial frame must
/// complete within the frame timeout.
///
/// A reader that lends chunks (multishot receive) has each decoded in
/// place ([`FrameDecoder::lend`]); its frames are routed before the next
/// chunk is taken, and a large frame's payload is left in the chunk for
/// the zero-copy path to read from it ([`ConnReader::keep`]).
async fn read_loop<F: Frontend>(
    reader: &mut F::Reader,
    (mut decoder, mut charge): (FrameDecoder, Charge),
    dataplane: &Shared,
    key: ConnKey,
    wake: &Notify,
    cfg: &HostConfig,
) -> Result<(), String> {
    let mut stash: AlignedVec<FRAME_ALIGN> = AlignedVec::new();
    // The partial frame at the front: its stream position, and when it
    // must be complete.
    let mut partial: Option<(u64, Instant)> = None;
    // The stream position of a frame taken for zero-copy receive and moved
    // back: it is not taken again.
    let mut moved_back: Option<u64> = None;
    // Frames this large stop a lent chunk at their header (for zero-copy).
    let large = if cfg.zero_copy_threshold == 0 || !reader.reads_direct() {
        usize::MAX
    } else {
        cfg.zero_copy_threshold
    };
    let env = (dataplane, key, wake, cfg);
    loop {
        // Frames left over from the read that carried the hello, or from the
        // last read, first; then more bytes. One clock read per socket read,
        // not per frame: `now` only starts a full ring's overload wait, and a
        // batch is routed in microseconds (it is re-read after a wait).
        let mut now = Instant::now();
        // The decoder's frames, routed inline (not through `route_frames`:
        // measured, the epoll frontend's forwarding lane paid about 30
        // instructions a frame more through the shared async function).
        loop {
            let blocked = {
                let mut dp = dataplane.borrow_mut();
                // Runs of frames that repeat the previous header go straight
                // to the same proc, without a frame view; anything else (and
                // a repeat the fast path declines) goes through `next_frame`.
                dp.deliver_repeats(key, &mut decoder);
                match decoder.next_frame() {
                    Ok(Some(frame)) => match dp.handle_conn_frame(key, &frame, true, None, now) {
                        Delivery::Done => None,
                        Delivery::Blocked(on, deadline) => {
                            stash.clear();
                            stash.extend_from_slice(frame.as_bytes());
                            Some((on, deadline))
                        }
                    },
                    Ok(None) => break,
                    Err(e) => return Err(format!("malformed frame: {e}")),
                }
            };
            if let Some((on, deadline)) = blocked {
                reader.pause();
                wait_for_room(dataplane, key, wake, cfg, &stash, on, deadline).await;
                now = Instant::now();
            }
        }
        dataplane.borrow_mut().flush();
        // Backpressure from a client that does not read its replies. The
        // host is not reading meanwhile: that time does not count against
        // a partial frame.
        if dataplane.borrow_mut().outbox_full(key) {
            reader.pause();
            while dataplane.borrow_mut().outbox_full(key) {
                wake.notified().await;
            }
            let waited = now.elapsed();
            if let Some((_, due)) = &mut partial {
                *due += waited;
            }
            now = Instant::now();
        }
        // A large frame whose header is in may be read straight into its
        // proc's ring (once: a frame moved back is read the copied way).
        if moved_back != Some(decoder.consumed_len()) {
            let direct = super::zero_copy::receive_direct::<F>(
                reader,
                &mut decoder,
                &mut stash,
                dataplane,
                key,
                cfg,
            )
            .await;
            match direct {
                Direct::NotTaken => {}
                Direct::Delivered => {
                    // The next frame's head is read alone: were it large
                    // too, a full read would bring much of its payload into
                    // the decoder, to be copied into the ring from there.
                    decoder.cap_next_read(HEAD_READ);
                    continue;
                }
                Direct::MovedBack => {
                    moved_back = Some(decoder.consumed_len());
                    continue;
                }
            }
        }
        // A partial frame must complete in time: the clock starts when its
        // first byte is seen and stops when it is consumed.
        let due = if decoder.buffered_len() == 0 {
            partial = None;
            None
        } else {
            let at = decoder.consumed_len();
            match partial {
                Some((pos, due)) if pos == at => Some(due),
                _ => {
                    let due = now + cfg.frame_timeout;
                    partial = Some((at, due));
                    Some(due)
                }
            }
        };
        let deadline = due.unwrap_or(now + cfg.frame_timeout);
        charge_for_read(&mut charge, &mut decoder, deadline).await?;
        if reader.lends_chunks() {
            let next = match within(due, reader.next_chunk()).await {
                Some(next) => next,
                None => return Err(frame_timed_out(reader, &charge, cfg)),
            };
            match next {
                Ok(Next::Chunk(chunk)) => {
                    // The clock of these frames is when they arrived: the
                    // wait for the chunk may have been long (an idle link
                    // between heartbeats), and `now` dates from before it
                    // (a pong dated so measured a round trip of 0, and a
                    // full ring's overload wait would start in the past).
                    now = Instant::now();
                    let deadline = due.unwrap_or(now + cfg.frame_timeout);
                    // The decoder may grow while a chunk completes a large
                    // frame: charged before (its whole length, as a read
                    // would charge it) and after (whatever it grew to).
                    let need = charge_for_lend_of(&decoder);
                    if need > charge.bytes() {
                        charge_to(&mut charge, need, deadline).await?;
                    }
                    let mut lent = decoder.lend(&chunk, large);
                    route_frames(&mut lent, reader, env, &mut stash, &mut now).await?;
                    let used = lent.finish();
                    if used < chunk.len() {
                        reader.keep(chunk, used);
                    }
                    if decoder.buffer_capacity() > charge.bytes() {
                        charge_to(&mut charge, decoder.buffer_capacity(), deadline).await?;
                    }
                    continue;
                }
                Ok(Next::Eof) => {
                    return decoder
                        .finish()
                        .map_err(|e| format!("stream ended mid-frame: {e}"))
                }
                Ok(Next::Read) => {}
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
        let (result, back) = match within(due, reader.read_into(decoder)).await {
            Some(read) => read,
            None => return Err(frame_timed_out(reader, &charge, cfg)),
        };
        decoder = back;
        debug_assert!(decoder.buffer_capacity() <= charge.bytes());
        match result {
            Ok(0) => {
                return decoder
                    .finish()
                    .map_err(|e| format!("stream ended mid-frame: {e}"))
            }
            Ok(_) => {}
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
}

/// `read`'s output, or `None` if `due` came first.
async fn within<T>(due: Option<Instant>, read: impl std::future::Future<Output = T>) -> Option<T> {
    match due {
        None => Some(read.await),
        Some(due) => tokio::time::timeout_at(due.into(), read).await.ok(),
    }
}

/// A partial frame outlived the frame timeout: the read side is shut and
/// the reason returned.
fn frame_timed_out(reader: &impl ConnReader, charge: &Charge, cfg: &HostConfig) -> String {
    reader.shutdown();
    charge.budget().count_closed(Closed::FrameTimeout);
    format!(
        "a partial frame did not complete within the frame timeout of {:?} (serve --frame-timeout)",
        cfg.frame_timeout
    )
}

/// Holds a frame for a full ring or link: retries on each wake-up, gives up with
/// `Overloaded` after the configured wait.
async fn wait_for_room(
    dataplane: &Shared,
    key: ConnKey,
    wake: &Notify,
    cfg: &HostConfig,
    stash: &[u8],
    mut on: Blocker,
    deadline: Instant,
) {
    let limits = cfg.limits;
    loop {
        dataplane.borrow_mut().flush();
        let timed_out = tokio::time::timeout_at(deadline.into(), wake.notified())
            .await
            .is_err();
        let Ok(frame) = decode_frame(stash, &limits) else {
            return;
        };
        let mut dp = dataplane.borrow_mut();
        match dp.handle_conn_frame(key, &frame, false, on.ring(), Instant::now()) {
            Delivery::Done => return,
            Delivery::Blocked(..) if timed_out => {
                dp.give_up_conn_frame(key, &frame, on);
                return;
            }
            Delivery::Blocked(next, _) => on = next,
        }
    }
}

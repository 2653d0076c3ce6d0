//! One connection: its hello, then its reader and writer tasks.

use std::rc::Rc;

use tokio::sync::Notify;

use super::shell::ConnWakes;
use super::*;

pub(super) async fn connection<F: Frontend>(
    mut reader: F::Reader,
    writer: F::Writer,
    dataplane: Shared,
    cfg: Arc<HostConfig>,
    service_name: ProcName,
    door: Door,
    span: tracing::Span,
) {
    let token = match door {
        Door::Frontend => cfg.token.as_deref().map(str::as_bytes),
        Door::ControlSocket => None,
    };
    let limits = cfg.limits;
    let mut decoder = FrameDecoder::new(limits);
    // The hello: the first frame, within a bounded time.
    let hello = tokio::time::timeout(Duration::from_secs(10), async {
        let outcome = loop {
            let (result, back) = reader.read_into(decoder).await;
            decoder = back;
            match result {
                Ok(0) | Err(_) => break Err("connection closed before its hello".to_owned()),
                Ok(_) => {}
            }
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    break hostmux_wire::check_hello(&frame, service_name.as_str(), token)
                        .map(str::to_owned)
                        .map_err(|refusal| format!("hello refused: {refusal:?}"));
                }
                Ok(None) => continue,
                Err(e) => break Err(format!("malformed hello: {e}")),
            }
        };
        (outcome, decoder)
    })
    .await;
    let (hello, decoder) = match hello {
        Ok((outcome, decoder)) => (Ok(outcome), decoder),
        Err(elapsed) => (Err(elapsed), FrameDecoder::new(limits)),
    };
    let client = match hello {
        Ok(Ok(name)) => name,
        Ok(Err(reason)) => {
            tracing::warn!(parent: &span, %reason, "closing connection");
            return;
        }
        Err(_) => {
            tracing::warn!(parent: &span, "closing connection: no hello within 10s");
            return;
        }
    };
    let Ok(name) = ProcName::with_max_len(&client, limits.max_name_len) else {
        tracing::warn!(parent: &span, client, "closing connection: invalid client name");
        return;
    };
    let key = {
        let mut dp = dataplane.borrow_mut();
        let Some(key) = dp.add_conn(name.clone()) else {
            tracing::warn!(parent: &span, client, "closing connection: name already bound");
            return;
        };
        // The token was checked by the hello; the control socket's peer by
        // its credentials.
        if door == Door::ControlSocket || cfg.token.is_some() {
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
        decoder,
        &dataplane,
        key,
        dataplane.conn_wakes(key),
        &cfg,
        &span,
    )
    .await;
}

/// Runs an established connection (accepted, or dialled to another host)
/// until it closes, then forgets it.
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve_conn<F: Frontend>(
    mut reader: F::Reader,
    writer: F::Writer,
    decoder: FrameDecoder,
    dataplane: &Shared,
    key: ConnKey,
    wakes: ConnWakes,
    cfg: &HostConfig,
    span: &tracing::Span,
) {
    let writer_task = tokio::task::spawn_local(write_loop::<F>(
        writer,
        dataplane.clone(),
        key,
        wakes.writer.clone(),
    ));
    let wake_reader = wakes.reader;
    let outcome = read_loop::<F>(&mut reader, decoder, dataplane, key, &wake_reader, cfg).await;
    match &outcome {
        Ok(()) => {
            // A half-close: answer what was accepted before it (for at most
            // the linger), then close.
            linger(dataplane, key, &wake_reader, cfg, span).await;
            tracing::info!(parent: span, "connection closed by peer");
        }
        Err(reason) => {
            tracing::warn!(parent: span, %reason, "closing connection");
            dataplane.borrow_mut().fail_conn(key);
        }
    }
    dataplane.borrow_mut().close_conn(key);
    // Let the writer send what is queued (the error notice included), but
    // not wait forever on a peer that does not read.
    let abort = writer_task.abort_handle();
    if tokio::time::timeout(Duration::from_secs(1), writer_task)
        .await
        .is_err()
    {
        abort.abort();
    }
    dataplane.borrow_mut().remove_conn(key);
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

async fn write_loop<F: Frontend>(
    mut writer: F::Writer,
    dataplane: Shared,
    key: ConnKey,
    wake: Rc<Notify>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let state = dataplane.borrow_mut().take_outbox(key, &mut buf);
        match state {
            Outbox::Closed => return,
            Outbox::Empty => wake.notified().await,
            Outbox::Bytes => {
                let (result, back) = writer.write_all(buf).await;
                buf = back;
                buf.clear();
                if result.is_err() {
                    return;
                }
            }
        }
    }
}

async fn read_loop<F: Frontend>(
    reader: &mut F::Reader,
    mut decoder: FrameDecoder,
    dataplane: &Shared,
    key: ConnKey,
    wake: &Notify,
    cfg: &HostConfig,
) -> Result<(), String> {
    let mut stash: AlignedVec<FRAME_ALIGN> = AlignedVec::new();
    loop {
        // Frames left over from the read that carried the hello, or from the
        // last read, first; then more bytes. One clock read per socket read,
        // not per frame: `now` only starts a full ring's overload wait, and a
        // batch is routed in microseconds (it is re-read after a wait).
        let mut now = Instant::now();
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
                wait_for_room(dataplane, key, wake, cfg, &stash, on, deadline).await;
                now = Instant::now();
            }
        }
        dataplane.borrow_mut().flush();
        // Backpressure from a client that does not read its replies.
        while dataplane.borrow_mut().outbox_full(key) {
            wake.notified().await;
        }
        let (result, back) = reader.read_into(decoder).await;
        decoder = back;
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

/// Holds a frame for a full ring: retries on each wake-up, gives up with
/// `Overloaded` after the configured wait.
async fn wait_for_room(
    dataplane: &Shared,
    key: ConnKey,
    wake: &Notify,
    cfg: &HostConfig,
    stash: &[u8],
    mut on: ProcKey,
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
        match dp.handle_conn_frame(key, &frame, false, Some(on), Instant::now()) {
            Delivery::Done => return,
            Delivery::Blocked(..) if timed_out => {
                dp.give_up_conn_frame(key, &frame, on);
                return;
            }
            Delivery::Blocked(next, _) => on = next,
        }
    }
}

//! OpenAI's `/v1/embeddings` and `/v1/chat/completions`, and the event streams they pass
//! through.

use bytes::Bytes;
use futures_util::Stream;
use x402_proto::{Usage, UsageMeter};

use super::*;
use crate::backend::chat_stream::{CompletionCounter, SseFilter};

/// The upstream's event stream for `prepared`, passed through and metered as it goes: the
/// response carries a [`UsageMeter`] that the paywall settles under `upto` once the stream is
/// over (ended, or cut off by the client).
pub(super) fn event_stream(
    state: &Arc<AppState>,
    prepared: &Prepared,
    answer: ChatAnswer,
) -> Response {
    let ChatAnswer::Stream(stream) = answer else {
        return backend_error(&BackendError::Failed("expected a stream".into()));
    };
    let (mut passed_on, meter) = match chat_meter(state, prepared) {
        Some((meter, passed_on)) => (Some(passed_on), Some(meter)),
        None => (None, None),
    };
    let stream = stream.map(move |chunk| {
        if let (Ok(bytes), Some(passed_on)) = (&chunk, passed_on.as_mut()) {
            passed_on(&bytes[..]);
        }
        chunk.map_err(std::io::Error::other)
    });
    let body = match prepared.task.as_ref() {
        task::Task::Chat(job) if !job.usage_to_client => {
            Body::from_stream(without_usage_chunk(stream))
        }
        _ => Body::from_stream(stream),
    };
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    if let Some(meter) = meter {
        response.extensions_mut().insert(meter);
    }
    response
}

/// `stream` without the upstream's usage-only chunk, for a client that did not ask for it (the
/// meter has read it before): see [`SseFilter`]. What is held of an event not yet ended goes
/// on when the stream ends or breaks.
fn without_usage_chunk(
    stream: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    stream
        .map(Some)
        .chain(futures_util::stream::once(std::future::ready(None)))
        .scan(SseFilter::default(), |filter, chunk| {
            let out = match chunk {
                Some(Ok(bytes)) => vec![Ok(filter.pass(&bytes))],
                Some(Err(error)) => vec![Ok(filter.finish()), Err(error)],
                None => vec![Ok(filter.finish())],
            };
            std::future::ready(Some(futures_util::stream::iter(out)))
        })
        .flatten()
        .filter(|out| std::future::ready(out.as_ref().map_or(true, |bytes| !bytes.is_empty())))
        .map(|out| out.map(Bytes::from))
}

/// The meter of a streamed chat answer, and what to call with each chunk read from the
/// upstream (before [`without_usage_chunk`] drops any): it reads the prompt's cost at first,
/// then the cost of the tokens the chunks read so far used (the upstream's count once it comes,
/// else the conservative count of [`CompletionCounter::tokens`]), never more than the tokens
/// paid for. `None` when the service's price does not convert (the price paid is then settled).
fn chat_meter(
    state: &Arc<AppState>,
    prepared: &Prepared,
) -> Option<(UsageMeter, impl FnMut(&[u8]) + Send + 'static)> {
    let task::Task::Chat(job) = prepared.task.as_ref() else {
        return None;
    };
    let (prompt, paid_for) = (job.prompt_tokens(), job.tokens);
    let cost = {
        let (state, service) = (state.clone(), prepared.service);
        move |tokens: u64| {
            let offered = state.registry.get(service)?;
            pricing::cost_atomic(offered, tokens.min(paid_for).max(1), state.decimals)
        }
    };
    cost(paid_for)?;
    let meter = UsageMeter::starting_at(Usage::Atomic(cost(prompt)?));
    let recorder = meter.clone();
    let mut counter = CompletionCounter::default();
    let passed_on = move |bytes: &[u8]| {
        counter.feed(bytes);
        if let Some(used) = cost(counter.tokens(prompt)) {
            recorder.record(Usage::Atomic(used));
        }
    };
    Some((meter, passed_on))
}

pub(super) async fn openai_embeddings(
    State(state): State<Arc<AppState>>,
    Extension(prepared): Extension<Prepared>,
) -> Response {
    match task::run(prepared.task.clone(), &state.backends).await {
        Ok(Output::Embeddings(embeddings)) => {
            let data: Vec<Value> = embeddings
                .vectors
                .into_iter()
                .enumerate()
                .map(|(index, embedding)| json!({"object": "embedding", "index": index, "embedding": embedding}))
                .collect();
            Json(json!({
                "object": "list",
                "data": data,
                "model": MODEL_NAME,
                "usage": {"prompt_tokens": prepared.units, "total_tokens": prepared.units},
            }))
            .into_response()
        }
        Ok(_) => backend_error(&BackendError::Failed("unexpected output".into())),
        Err(error) => backend_error(&error),
    }
}

pub(super) async fn openai_chat(
    State(state): State<Arc<AppState>>,
    Extension(prepared): Extension<Prepared>,
) -> Response {
    match task::run(prepared.task.clone(), &state.backends).await {
        Ok(output) => {
            let usage = metered_usage(&state, &prepared, &output);
            let mut response = match output {
                Output::Chat(completion) => Json(completion).into_response(),
                Output::Stream(answer) => event_stream(&state, &prepared, answer),
                _ => backend_error(&BackendError::Failed("unexpected output".into())),
            };
            report_usage(&mut response, usage);
            response
        }
        Err(error) => backend_error(&error),
    }
}

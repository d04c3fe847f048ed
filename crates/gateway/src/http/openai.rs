//! OpenAI's `/v1/embeddings` and `/v1/chat/completions`, and the event streams they pass
//! through.

use super::*;

pub(super) fn event_stream(answer: ChatAnswer) -> Response {
    let ChatAnswer::Stream(stream) = answer else {
        return backend_error(&BackendError::Failed("expected a stream".into()));
    };
    let body = Body::from_stream(stream.map(|chunk| chunk.map_err(std::io::Error::other)));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
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
                Output::Stream(answer) => event_stream(answer),
                _ => backend_error(&BackendError::Failed("unexpected output".into())),
            };
            report_usage(&mut response, usage);
            response
        }
        Err(error) => backend_error(&error),
    }
}

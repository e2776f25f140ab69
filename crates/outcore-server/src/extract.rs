//! `ApiJson<T>`: a JSON body extractor whose rejections are OpenAI error bodies naming the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            let status = rej.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::bad_request("Request body is too large")
                    .with_status(status)
                    .with_code("body_too_large")
            } else {
                ApiError::bad_request(format!(
                    "Could not read the request body: {}",
                    rej.body_text()
                ))
                .with_status(status)
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Deserializes `bytes`; a type error names the JSON path of the field (`messages[0].content`).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    if result.is_ok() {
        de.end().map_err(|e| {
            ApiError::bad_request(format!(
                "We could not parse the JSON body of your request: {e}"
            ))
            .with_code("invalid_json")
        })?;
    }
    result.map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io => ApiError::bad_request(format!(
                "We could not parse the JSON body of your request: {inner}"
            ))
            .with_code("invalid_json"),
            serde_json::error::Category::Data => {
                let msg = inner.to_string();
                let param = if msg.starts_with("missing field") {
                    field_in_message(&msg, &path)
                } else if path == "." {
                    None
                } else {
                    Some(path)
                };
                match param {
                    Some(p) => {
                        ApiError::invalid(p.clone(), format!("Invalid value for '{p}': {msg}"))
                    }
                    None => ApiError::bad_request(format!("Invalid request body: {msg}")),
                }
            }
        }
    })
}

/// serde reports a missing field at the parent's path; the field name is in the message.
fn field_in_message(msg: &str, path: &str) -> Option<String> {
    let start = msg.find("field `")? + "field `".len();
    let end = start + msg[start..].find('`')?;
    let field = &msg[start..end];
    Some(if path == "." || path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Req {
        model: String,
        temperature: Option<f32>,
        messages: Option<Vec<Msg>>,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Msg {
        role: String,
    }

    #[test]
    fn names_fields() {
        let e = parse::<Req>(br#"{"model":"m","temperature":"hot"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        assert!(e.message.contains("invalid type"), "{}", e.message);
        let e = parse::<Req>(br#"{"temperature":1}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e =
            parse::<Req>(br#"{"model":"m","messages":[{"role":"user"},{"role":3}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[1].role"));
        let e = parse::<Req>(br#"{"model":"m","messages":[{}]}"#).unwrap_err();
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].role"),
            "{}",
            e.message
        );
        let e = parse::<Req>(br#"{"model":"m""#).unwrap_err();
        assert_eq!(e.param, None);
        assert_eq!(e.code, Some("invalid_json"));
        let e = parse::<Req>(br#"{"model":"m"} trailing"#).unwrap_err();
        assert_eq!(e.code, Some("invalid_json"));
        assert!(parse::<Req>(br#"{"model":"m","extra":1}"#).is_ok());
    }
}

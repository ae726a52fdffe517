//! `POST /v1/embeddings`: validated request → deterministic vectors → JSON (float or base64). This is where
//! the wire format ([`crate::openai::embeddings`]) meets the embedding model ([`crate::models::embed`]).

use crate::http::Responder;
use crate::models::{embed, tokens};
use crate::openai::embeddings::{self, EmbeddingRequest, Input, Usage};
use crate::openai::ApiError;

/// Answers one embeddings request; `check_model` applies the server's model policy.
pub fn serve(
    body: &[u8],
    max_depth: usize,
    check_model: &dyn Fn(&str) -> Result<(), ApiError>,
    res: &mut Responder<'_>,
) -> Result<(), ApiError> {
    let req = embeddings::parse(body, max_depth)?;
    check_model(&req.model)?;
    write(&req, res.body());
    res.send(200, "application/json", &[]);
    Ok(())
}

/// Usage by the shared token rule: a text counts its tokens, a token array its length.
pub fn usage(req: &EmbeddingRequest<'_>) -> Usage {
    let prompt_tokens: usize = req
        .inputs
        .iter()
        .map(|input| match input {
            Input::Text(text) => tokens::count(text),
            Input::Tokens(ids) => ids.len(),
        })
        .sum();
    Usage::new(prompt_tokens as u64)
}

/// Appends the `CreateEmbeddingResponse` for `req` to `out`.
pub fn write(req: &EmbeddingRequest<'_>, out: &mut Vec<u8>) {
    let dimensions = req.dimensions as usize;
    embeddings::write_response(
        out,
        &req.model,
        req.inputs.len(),
        req.encoding,
        usage(req),
        |index, vector| match &req.inputs[index] {
            Input::Text(text) => embed::text(text, dimensions, vector),
            Input::Tokens(ids) => embed::tokens(ids, dimensions, vector),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(body: &str) -> serde_json::Value {
        let req = embeddings::parse(body.as_bytes(), 64).unwrap();
        let mut out = Vec::new();
        write(&req, &mut out);
        serde_json::from_slice(&out).unwrap()
    }

    fn floats(value: &serde_json::Value) -> Vec<f64> {
        let list = value.as_array().unwrap();
        list.iter().map(|x| x.as_f64().unwrap()).collect()
    }

    #[test]
    fn one_text_gives_one_unit_vector() {
        let v = reply(r#"{"model":"text-embedding-3-small","input":"Hello world"}"#);
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "text-embedding-3-small");
        assert_eq!(
            v["usage"],
            serde_json::json!({"prompt_tokens": 2, "total_tokens": 2})
        );
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 1);
        assert_eq!(
            (&data[0]["object"], &data[0]["index"]),
            (&"embedding".into(), &0.into())
        );
        let vector = floats(&data[0]["embedding"]);
        assert_eq!(vector.len(), 1536);
        let norm = vector.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }

    #[test]
    fn inputs_keep_their_order_and_equal_inputs_match() {
        let v = reply(r#"{"model":"m","input":["a","b c","a"],"dimensions":16}"#);
        let data = v["data"].as_array().unwrap();
        let indexes: Vec<_> = data.iter().map(|d| d["index"].as_u64().unwrap()).collect();
        assert_eq!(indexes, vec![0, 1, 2]);
        let vectors: Vec<_> = data.iter().map(|d| floats(&d["embedding"])).collect();
        assert_eq!(vectors[0], vectors[2]);
        assert_ne!(vectors[0], vectors[1]);
        assert!(vectors.iter().all(|v| v.len() == 16));
        assert_eq!(v["usage"]["prompt_tokens"], 4);
        // The same text alone gives the same vector as in a list.
        let alone = reply(r#"{"model":"m","input":"b c","dimensions":16}"#);
        assert_eq!(floats(&alone["data"][0]["embedding"]), vectors[1]);
    }

    #[test]
    fn token_arrays_count_their_length() {
        let v = reply(r#"{"model":"m","input":[[1,2,3],[4]],"dimensions":4}"#);
        assert_eq!(v["usage"]["total_tokens"], 4);
        let flat = reply(r#"{"model":"m","input":[1,2,3],"dimensions":4}"#);
        assert_eq!(flat["usage"]["prompt_tokens"], 3);
        assert_eq!(flat["data"][0]["embedding"], v["data"][0]["embedding"]);
    }

    #[test]
    fn base64_carries_the_same_floats() {
        let float = reply(r#"{"model":"m","input":"x","dimensions":5}"#);
        let b64 = reply(r#"{"model":"m","input":"x","dimensions":5,"encoding_format":"base64"}"#);
        let mut expected = String::new();
        let vector: Vec<f32> = floats(&float["data"][0]["embedding"])
            .into_iter()
            .map(|x| x as f32)
            .collect();
        embeddings::write_base64_f32(&vector, &mut expected);
        assert_eq!(b64["data"][0]["embedding"], expected.as_str());
    }
}

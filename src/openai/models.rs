//! `/v1/models` bodies: the `list` of `Model` objects and a single `Model`.

use serde::ser::{Serialize, SerializeSeq, Serializer};

/// Who `owned_by` says serves the models.
pub const OWNED_BY: &str = "standin";

#[derive(serde::Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

struct Models<'a> {
    ids: &'a [String],
    created: u64,
}

impl Serialize for Models<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.ids.len()))?;
        for id in self.ids {
            seq.serialize_element(&Model {
                id,
                object: "model",
                created: self.created,
                owned_by: OWNED_BY,
            })?;
        }
        seq.end()
    }
}

#[derive(serde::Serialize)]
struct List<'a> {
    object: &'static str,
    data: Models<'a>,
}

/// Appends `{"object":"list","data":[…]}`.
pub fn write_list(out: &mut Vec<u8>, ids: &[String], created: u64) {
    let _ = serde_json::to_writer(
        out,
        &List {
            object: "list",
            data: Models { ids, created },
        },
    );
}

/// Appends one model object.
pub fn write_model(out: &mut Vec<u8>, id: &str, created: u64) {
    let _ = serde_json::to_writer(
        out,
        &Model {
            id,
            object: "model",
            created,
            owned_by: OWNED_BY,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_and_model() {
        let mut out = Vec::new();
        write_list(&mut out, &["a".to_string(), "b".to_string()], 5);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"object":"list","data":[
            {"id":"a","object":"model","created":5,"owned_by":"standin"},
            {"id":"b","object":"model","created":5,"owned_by":"standin"}]})
        );
        out.clear();
        write_model(&mut out, "x", 1);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&out).unwrap()["id"],
            "x"
        );
    }
}

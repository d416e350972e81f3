//! Shared by the fake-server tests: comparing a fake's JSON with a recorded payload.
#![allow(dead_code)]

use serde_json::Value;

pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every field of `fake` is in `recorded` with the same type, and `required` fields are in both.
pub fn same_shape(what: &str, fake: &Value, recorded: &Value, required: &[&str]) {
    let (Value::Object(fake), Value::Object(recorded)) = (fake, recorded) else {
        panic!("{what}: not objects");
    };
    for (key, value) in fake {
        let recorded_value = recorded
            .get(key)
            .unwrap_or_else(|| panic!("{what}: field {key:?} is not in the recording"));
        assert_eq!(
            json_type(value),
            json_type(recorded_value),
            "{what}: type of {key:?}"
        );
    }
    for key in required {
        assert!(
            recorded.contains_key(*key),
            "{what}: the recording lacks {key:?}"
        );
        assert!(fake.contains_key(*key), "{what}: the fake lacks {key:?}");
    }
}

//! Values as Python source: a JSON value written as the Python literal
//! that evaluates to it (`None`, `True`, numbers, strings, lists, dicts),
//! one item a line, so a changed value is a changed line.

use serde_json::Value;

/// `value` as a Python expression, nested lines indented from `indent`.
pub(super) fn literal(value: &Value, indent: usize) -> String {
    let mut out = String::new();
    write(&mut out, value, indent);
    out
}

fn write(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => out.push_str(&n.to_string()),
        // JSON's string escapes are Python's, and serde_json writes no `\/`.
        Value::String(s) => out.push_str(&Value::String(s.clone()).to_string()),
        Value::Array(items) if items.iter().all(is_scalar) => {
            let items: Vec<String> = items.iter().map(|v| literal(v, indent)).collect();
            out.push('[');
            out.push_str(&items.join(", "));
            out.push(']');
        }
        Value::Array(items) => block(out, '[', ']', indent, items.iter().map(|v| (None, v))),
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => block(out, '{', '}', indent, map.iter().map(|(k, v)| (Some(k), v))),
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// Items one a line, each followed by a comma.
fn block<'a>(
    out: &mut String,
    open: char,
    close: char,
    indent: usize,
    items: impl Iterator<Item = (Option<&'a String>, &'a Value)>,
) {
    let pad = " ".repeat(indent + 4);
    out.push(open);
    out.push('\n');
    for (key, value) in items {
        out.push_str(&pad);
        if let Some(key) = key {
            out.push_str(&Value::String(key.clone()).to_string());
            out.push_str(": ");
        }
        write(out, value, indent + 4);
        out.push_str(",\n");
    }
    out.push_str(&" ".repeat(indent));
    out.push(close);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn writes_python_not_json() {
        let v = json!({"a": null, "b": [true, false], "c": {"d": "x\"y\n"}, "e": {}});
        assert_eq!(
            literal(&v, 0),
            "{\n    \"a\": None,\n    \"b\": [True, False],\n    \"c\": {\n        \"d\": \"x\\\"y\\n\",\n    },\n    \"e\": {},\n}"
        );
        assert_eq!(
            literal(&json!([{"a": 1}]), 0),
            "[\n    {\n        \"a\": 1,\n    },\n]"
        );
        assert_eq!(literal(&json!(1.5), 0), "1.5");
    }
}

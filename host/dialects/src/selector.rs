//! Label maps and Kubernetes label selectors.

use palisade_model::policy::{LabelSelector, Labels, Requirement, SelectorOp};
use serde_json::Value;

use crate::error::{DialectError, Problem};
use crate::field::{get, index, join, opt_list, opt_map, Ctx};

/// A label map (`{key: value}`, values strings).
pub(crate) fn labels(ctx: &Ctx<'_>, value: &Value, path: &str) -> Result<Labels, DialectError> {
    let map = ctx.map(value, path)?;
    let mut out = Labels::new();
    for (key, v) in map {
        let v = ctx.str(v, &join(path, key))?;
        out.insert(key.clone(), v.to_string());
    }
    Ok(out)
}

/// A selector written as a plain label map (the 2016 proposal's form).
pub(crate) fn label_map_selector(
    ctx: &Ctx<'_>,
    value: &Value,
    path: &str,
) -> Result<LabelSelector, DialectError> {
    Ok(LabelSelector { match_labels: labels(ctx, value, path)?, match_expressions: Vec::new() })
}

/// A Kubernetes `LabelSelector`: `matchLabels` and `matchExpressions`.
/// `{}` selects everything.
pub(crate) fn label_selector(
    ctx: &Ctx<'_>,
    value: &Value,
    path: &str,
) -> Result<LabelSelector, DialectError> {
    let map = ctx.map(value, path)?;
    let match_labels = match get(map, "matchLabels") {
        Some(v) => labels(ctx, v, &join(path, "matchLabels"))?,
        None => Labels::new(),
    };
    let mut match_expressions = Vec::new();
    let exprs_path = join(path, "matchExpressions");
    for (i, expr) in
        opt_list(ctx, map, "matchExpressions", path)?.unwrap_or_default().iter().enumerate()
    {
        match_expressions.push(requirement(ctx, expr, &index(&exprs_path, i))?);
    }
    Ok(LabelSelector { match_labels, match_expressions })
}

fn requirement(ctx: &Ctx<'_>, value: &Value, path: &str) -> Result<Requirement, DialectError> {
    let map = ctx.map(value, path)?;
    let key = match get(map, "key") {
        Some(v) => ctx.str(v, &join(path, "key"))?,
        None => return Err(ctx.invalid(&join(path, "key"), Problem::Missing)),
    };
    if key.is_empty() {
        return Err(ctx.invalid(&join(path, "key"), Problem::Missing));
    }
    let op_path = join(path, "operator");
    let op = match get(map, "operator") {
        Some(v) => ctx.str(v, &op_path)?,
        None => return Err(ctx.invalid(&op_path, Problem::Missing)),
    };
    let (op, op_name) = match op {
        "In" => (SelectorOp::In, "In"),
        "NotIn" => (SelectorOp::NotIn, "NotIn"),
        "Exists" => (SelectorOp::Exists, "Exists"),
        "DoesNotExist" => (SelectorOp::DoesNotExist, "DoesNotExist"),
        other => return Err(ctx.invalid(&op_path, Problem::Operator(other.to_string()))),
    };
    let values_path = join(path, "values");
    let mut values = Vec::new();
    for (i, v) in opt_list(ctx, map, "values", path)?.unwrap_or_default().iter().enumerate() {
        values.push(ctx.str(v, &index(&values_path, i))?.to_string());
    }
    match op {
        SelectorOp::In | SelectorOp::NotIn if values.is_empty() => {
            Err(ctx.invalid(&values_path, Problem::ValuesRequired(op_name)))
        }
        SelectorOp::Exists | SelectorOp::DoesNotExist if !values.is_empty() => {
            Err(ctx.invalid(&values_path, Problem::ValuesForbidden(op_name)))
        }
        _ => Ok(Requirement { key: key.to_string(), op, values }),
    }
}

/// `metadata.labels` of an object (empty if absent).
pub(crate) fn object_labels(
    ctx: &Ctx<'_>,
    object: &serde_json::Map<String, Value>,
) -> Result<Labels, DialectError> {
    let Some(meta) = opt_map(ctx, object, "metadata", "")? else { return Ok(Labels::new()) };
    match get(meta, "labels") {
        Some(v) => labels(ctx, v, "metadata.labels"),
        None => Ok(Labels::new()),
    }
}

#[cfg(test)]
mod tests {
    use palisade_store::ObjectKey;
    use serde_json::json;

    use super::*;

    fn key() -> ObjectKey {
        ObjectKey::new("networking.k8s.io", "NetworkPolicy", Some("ns"), "p")
    }

    #[test]
    fn selectors_parse_labels_and_expressions() {
        let k = key();
        let ctx = Ctx::new(&k);
        let sel = label_selector(
            &ctx,
            &json!({"matchLabels": {"a": "b"}, "matchExpressions": [
                {"key": "t", "operator": "In", "values": ["x", "y"]},
                {"key": "u", "operator": "DoesNotExist"}]}),
            "spec.podSelector",
        )
        .unwrap();
        assert_eq!(sel.match_labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(sel.match_expressions.len(), 2);
        assert_eq!(sel.match_expressions[0].op, SelectorOp::In);
        assert!(label_selector(&ctx, &json!({}), "s").unwrap().is_everything());
    }

    #[test]
    fn bad_selectors_name_the_field() {
        let k = key();
        let ctx = Ctx::new(&k);
        // (selector, expected field path, expected problem)
        let cases = [
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}),
                "sel.matchExpressions[0].operator",
                Problem::Operator("Equals".into()),
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
                "sel.matchExpressions[0].values",
                Problem::ValuesRequired("In"),
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "NotIn"}]}),
                "sel.matchExpressions[0].values",
                Problem::ValuesRequired("NotIn"),
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]},
                                            {"key": "b", "operator": "Exists", "values": ["x"]}]}),
                "sel.matchExpressions[1].values",
                Problem::ValuesForbidden("Exists"),
            ),
            (
                json!({"matchExpressions": [{"operator": "Exists"}]}),
                "sel.matchExpressions[0].key",
                Problem::Missing,
            ),
            (
                json!({"matchLabels": {"a": 1}}),
                "sel.matchLabels.a",
                Problem::WrongType { expected: "a string", found: "number" },
            ),
            (json!("app=web"), "sel", Problem::WrongType { expected: "a map", found: "string" }),
            (
                json!({"matchExpressions": {"key": "a"}}),
                "sel.matchExpressions",
                Problem::WrongType { expected: "a list", found: "map" },
            ),
        ];
        for (value, field, problem) in cases {
            let err = label_selector(&ctx, &value, "sel").unwrap_err();
            assert_eq!(err.field(), Some(field), "{value}");
            assert!(
                matches!(&err, DialectError::Invalid { problem: p, .. } if *p == problem),
                "{err}"
            );
            assert!(err.to_string().contains(field), "{err}");
        }
    }
}

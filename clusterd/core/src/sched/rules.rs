//! Location rules over node attributes (Pacemaker Explained, "Rules": node attribute
//! expressions with `lt gt lte gte eq ne defined not_defined` and string/integer/number/version
//! comparison).

use crate::cib::{BoolOp, ExprOp, Expression, Rule, RuleScore, ValueType};
use crate::score::Score;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The score a rule gives a node with these attributes, or `None` when the rule does not match.
pub fn rule_score(rule: &Rule, attrs: &BTreeMap<String, String>) -> Option<Score> {
    let matches = |e: &Expression| expr_matches(e, attrs);
    let ok = match rule.boolean_op {
        BoolOp::And => rule.expressions.iter().all(matches),
        BoolOp::Or => rule.expressions.iter().any(matches),
    };
    if !ok {
        return None;
    }
    match &rule.score {
        RuleScore::Value(s) => Some(*s),
        // An unset or unparsable score-attribute contributes nothing (Pacemaker: score 0).
        RuleScore::Attribute(a) => Some(
            attrs
                .get(a)
                .and_then(|v| Score::parse(v))
                .unwrap_or(Score::ZERO),
        ),
    }
}

fn compare(a: &str, b: &str, t: ValueType) -> Option<Ordering> {
    match t {
        ValueType::String => Some(a.cmp(b)),
        ValueType::Integer => Some(
            a.trim()
                .parse::<i64>()
                .ok()?
                .cmp(&b.trim().parse::<i64>().ok()?),
        ),
        ValueType::Number => a
            .trim()
            .parse::<f64>()
            .ok()?
            .partial_cmp(&b.trim().parse::<f64>().ok()?),
        ValueType::Version => {
            let parse = |s: &str| {
                s.split('.')
                    .map(|p| p.parse::<u64>().unwrap_or(0))
                    .collect::<Vec<_>>()
            };
            let (mut x, mut y) = (parse(a), parse(b));
            let n = x.len().max(y.len());
            x.resize(n, 0);
            y.resize(n, 0);
            Some(x.cmp(&y))
        }
    }
}

/// Evaluates one expression against a node's attributes.
pub fn expr_matches(e: &Expression, attrs: &BTreeMap<String, String>) -> bool {
    let have = attrs.get(&e.attribute);
    match e.op {
        ExprOp::Defined => have.is_some(),
        ExprOp::NotDefined => have.is_none(),
        op => {
            let (Some(have), Some(want)) = (have, e.value.as_ref()) else {
                return op == ExprOp::Ne && have.is_none();
            };
            let Some(ord) = compare(have, want, e.value_type) else {
                return false;
            };
            match op {
                ExprOp::Lt => ord == Ordering::Less,
                ExprOp::Gt => ord == Ordering::Greater,
                ExprOp::Lte => ord != Ordering::Greater,
                ExprOp::Gte => ord != Ordering::Less,
                ExprOp::Eq => ord == Ordering::Equal,
                ExprOp::Ne => ord != Ordering::Equal,
                ExprOp::Defined | ExprOp::NotDefined => unreachable!("handled above"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expressions() {
        let a = attrs(&[("#uname", "n1"), ("cores", "8"), ("ver", "1.10")]);
        let e = |attr: &str, op, v: Option<&str>, t| Expression {
            attribute: attr.into(),
            op,
            value: v.map(String::from),
            value_type: t,
        };
        assert!(expr_matches(
            &e("#uname", ExprOp::Eq, Some("n1"), ValueType::String),
            &a
        ));
        assert!(expr_matches(
            &e("cores", ExprOp::Gt, Some("4"), ValueType::Integer),
            &a
        ));
        assert!(!expr_matches(
            &e("cores", ExprOp::Gt, Some("40"), ValueType::Integer),
            &a
        ));
        // As strings "8" > "40".
        assert!(expr_matches(
            &e("cores", ExprOp::Gt, Some("40"), ValueType::String),
            &a
        ));
        assert!(expr_matches(
            &e("ver", ExprOp::Gt, Some("1.9"), ValueType::Version),
            &a
        ));
        assert!(expr_matches(
            &e("ssd", ExprOp::NotDefined, None, ValueType::String),
            &a
        ));
        assert!(!expr_matches(
            &e("ssd", ExprOp::Defined, None, ValueType::String),
            &a
        ));
        let rule = Rule {
            id: "r".into(),
            score: RuleScore::Attribute("cores".into()),
            boolean_op: BoolOp::Or,
            role: None,
            expressions: vec![
                e("ssd", ExprOp::Defined, None, ValueType::String),
                e("cores", ExprOp::Gte, Some("8"), ValueType::Integer),
            ],
        };
        assert_eq!(rule_score(&rule, &a), Some(Score::new(8)));
    }
}

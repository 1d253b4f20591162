use serde_json::json;

use super::*;

fn feature(props: serde_json::Value) -> Feature {
    Feature {
        properties: props.as_object().cloned().unwrap_or_default(),
        ..Feature::default()
    }
}

fn keeps(filter: &str, props: serde_json::Value) -> bool {
    Filter::parse(filter)
        .unwrap_or_else(|e| panic!("{filter}: {e}"))
        .matches(&feature(props))
}

#[test]
fn comparisons_follow_sql() {
    let p =
        json!({"name": "Wellington", "pop": 215400, "capital": true, "code": "042", "none": null});
    assert!(keeps("pop > 200000", p.clone()));
    assert!(keeps("pop >= 215400 AND pop <= 215400", p.clone()));
    assert!(!keeps("pop <> 215400", p.clone()));
    assert!(keeps("name = 'Wellington'", p.clone()));
    assert!(keeps("name != 'Auckland' and capital", p.clone()));
    assert!(keeps("capital = TRUE", p.clone()));
    assert!(!keeps("NOT capital", p.clone()));
    // Text holding a number compares with a number as a number.
    assert!(keeps("code = 42", p.clone()));
    assert!(keeps("code < 100", p.clone()));
    // NULL: unknown, so neither the test nor its negation keeps the feature.
    assert!(!keeps("missing = 1", p.clone()));
    assert!(!keeps("NOT (missing = 1)", p.clone()));
    assert!(!keeps("none <> 1", p.clone()));
    assert!(keeps(
        "missing IS NULL AND none IS NULL AND pop IS NOT NULL",
        p.clone()
    ));
    // OR with one true term is true even when the other is unknown; AND with a false is false.
    assert!(keeps("missing = 1 OR pop > 0", p.clone()));
    assert!(!keeps("missing = 1 AND pop > 0", p.clone()));
    assert!(keeps("NOT (missing = 1 AND pop < 0)", p.clone()));
}

#[test]
fn names_match_regardless_of_case_and_only_plain_text_is_a_number() {
    let p = json!({"Name": "x", "name2": "y", "a": "inf", "b": "NaN", "c": " 12 "});
    assert!(keeps("NAME = 'x' AND Name2 = 'y'", p.clone()));
    assert!(!keeps("a > 1000", p.clone()));
    assert!(!keeps("b = 0 OR b <> 0", p.clone()));
    assert!(keeps("c = 12", p.clone()));
}

#[test]
fn in_between_like() {
    let p = json!({"kind": "river", "len": 12.5, "name": "Waikato River"});
    assert!(keeps("kind IN ('lake', 'river')", p.clone()));
    assert!(keeps("kind NOT IN ('lake')", p.clone()));
    assert!(!keeps("kind IN ('lake', NULL)", p.clone()));
    assert!(!keeps("kind NOT IN ('lake', NULL)", p.clone()));
    assert!(keeps("len BETWEEN 10 AND 20 AND kind = 'river'", p.clone()));
    assert!(keeps("len NOT BETWEEN 13 AND 20", p.clone()));
    assert!(keeps("name LIKE 'Wai%'", p.clone()));
    assert!(keeps("name LIKE '%R_ver'", p.clone()));
    assert!(!keeps("name LIKE 'wai%'", p.clone()));
    assert!(keeps("name ILIKE 'wai%river'", p.clone()));
    assert!(keeps("name NOT LIKE '%Lake%'", p.clone()));
}

#[test]
fn quoted_names_and_strings() {
    let p = json!({"AND": 1, "two words": "it's", "x": 1});
    assert!(keeps("\"AND\" = 1", p.clone()));
    assert!(keeps("\"two words\" = 'it''s'", p.clone()));
    assert!(keeps("x == 1.0 and x = 1e0 and x > -1", p.clone()));
}

#[test]
fn like_is_linear_on_hostile_patterns() {
    let text = "a".repeat(5000);
    let pattern = format!("{}b", "%a".repeat(2000));
    assert!(!eval::like_for_tests(&text, &pattern, false));
    assert!(eval::like_for_tests("ÄBC", "äb_", true));
    assert!(eval::like_for_tests("", "%", false));
    assert!(!eval::like_for_tests("", "_", false));
}

#[test]
fn errors_say_where() {
    for (text, expected) in [
        ("", "empty filter"),
        (
            "pop >",
            "at character 6: expected a value or a property name, found the end",
        ),
        (
            "pop > 1 pop",
            "at character 9: expected AND, OR or the end, found \"pop\"",
        ),
        ("name = 'open", "at character 8: unterminated quoted text"),
        ("(a = 1", "expected ')'"),
        ("a NOT = 1", "expected LIKE, ILIKE, IN or BETWEEN after NOT"),
        ("a IS 1", "expected NULL"),
        ("a LIKE b", "expected a quoted pattern"),
        ("a = 1e999", "not a finite number"),
        ("a ~ 1", "unexpected '~'"),
    ] {
        let err = Filter::parse(text).unwrap_err().to_string();
        assert!(err.contains(expected), "{text:?}: {err}");
    }
}

#[test]
fn hostile_nesting_and_length_are_refused_not_overflowed() {
    let deep = format!("{}a = 1{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(
        Filter::parse(&deep)
            .unwrap_err()
            .0
            .contains("nested deeper")
    );
    let nots = format!("{}a", "NOT ".repeat(10_000));
    assert!(
        Filter::parse(&nots)
            .unwrap_err()
            .0
            .contains("nested deeper")
    );
    // A long flat chain is fine (no recursion per term).
    let chain = vec!["a = 1"; 5000].join(" AND ");
    assert!(keeps(&chain, json!({"a": 1})));
    let long = "a".repeat(parse::MAX_TEXT + 1);
    assert!(Filter::parse(&long).unwrap_err().0.contains("bytes long"));
}

//! The pcs commands an operator uses every day, beyond the thesis's: operations added and
//! removed, manage/unmanage, failcounts, `constraint ref`, defaults shown rather than emptied.

mod common;

use clusterd_core::cib::Resource;
use clusterd_core::pcs::{self, Command, Edit};
use clusterd_core::report::{constraint_ref_text, failcounts_text};
use clusterd_core::status::ClusterStatus;

fn p(line: &str) -> Result<Command, pcs::ParseError> {
    pcs::parse(
        &line
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>(),
    )
}

fn apply(cib: &mut clusterd_core::Cib, line: &str) -> Result<(), String> {
    let Command::Edit(e) = p(line).map_err(|e| e.to_string())? else {
        return Err(format!("{line}: not an edit"));
    };
    pcs::apply(cib, &e, &|_| None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn ops(cib: &clusterd_core::Cib, id: &str) -> Vec<String> {
    cib.primitives()
        .into_iter()
        .find(|x| x.primitive.id == id)
        .unwrap()
        .primitive
        .ops
        .iter()
        .map(|o| format!("{} {} {:?}", o.name, o.interval_ms, o.timeout_ms))
        .collect()
}

#[test]
fn op_add_and_remove() {
    let mut cib = common::cib(&["n1"], "resource create A ocf:heartbeat:Dummy");
    assert_eq!(ops(&cib, "A"), vec!["monitor 10000 Some(20000)"]);
    apply(
        &mut cib,
        "resource op add A monitor interval=60s timeout=30s OCF_CHECK_LEVEL=10",
    )
    .unwrap();
    apply(&mut cib, "resource op add A start timeout=120s").unwrap();
    assert_eq!(
        ops(&cib, "A"),
        vec![
            "monitor 10000 Some(20000)",
            "monitor 60000 Some(30000)",
            "start 0 Some(120000)"
        ]
    );
    let dup = apply(&mut cib, "resource op add A monitor interval=60s").unwrap_err();
    assert!(dup.contains("already has a monitor operation"), "{dup}");
    // By attributes, then by id (pcs's `resource op remove OP_ID`).
    apply(&mut cib, "resource op remove A monitor interval=60s").unwrap();
    apply(&mut cib, "resource op delete A-start-interval-0s").unwrap();
    assert_eq!(ops(&cib, "A"), vec!["monitor 10000 Some(20000)"]);
    let none = apply(&mut cib, "resource op remove A monitor interval=5s").unwrap_err();
    assert!(none.contains("no matching monitor"), "{none}");
    assert!(apply(&mut cib, "resource op add A monitor interval=soon").is_err());
    assert!(
        apply(&mut cib, "resource op add Nope monitor interval=5s")
            .unwrap_err()
            .contains("'Nope' does not exist")
    );
}

#[test]
fn manage_unmanage_and_defaults_listing() {
    let mut cib = common::cib(&["n1"], "resource create A ocf:heartbeat:Dummy --group G");
    apply(&mut cib, "resource unmanage G").unwrap();
    let managed = |cib: &clusterd_core::Cib| {
        let g = cib.find("A").unwrap();
        cib.is_managed(&g)
    };
    assert!(!managed(&cib));
    apply(&mut cib, "resource manage G").unwrap();
    assert!(managed(&cib));
    let Resource::Group(g) = &cib.resources[0] else {
        panic!()
    };
    assert!(g.meta.is_empty(), "{:?}", g.meta);
    // Bare `resource op defaults` and `resource defaults` show, they do not edit.
    assert_eq!(p("resource op defaults"), Ok(Command::Properties));
    assert_eq!(p("resource defaults"), Ok(Command::Properties));
    assert!(matches!(
        p("resource op defaults timeout=30s"),
        Ok(Command::Edit(e)) if matches!(&e[0], Edit::OpDefault { name, .. } if name == "timeout")
    ));
}

#[test]
fn failcounts_and_constraint_ref() {
    let cib = common::cib(
        &["n1", "n2"],
        "resource create A ocf:heartbeat:Dummy
         resource create B ocf:heartbeat:Dummy
         constraint colocation add B with A
         constraint order start A then start B",
    );
    let mut st = ClusterStatus::all_online(&["n1", "n2"]);
    assert_eq!(
        failcounts_text(&cib, &st, None, None, 100),
        "No failcounts\n"
    );
    st.record_failure("n1", "A", "monitor", 10_000, 90, false);
    st.record_failure("n1", "A", "monitor", 10_000, 95, false);
    assert_eq!(
        failcounts_text(&cib, &st, Some("A"), None, 100),
        "Failcounts for resource 'A'\n  n1: 2\n    monitor 10s: 2\n"
    );
    assert_eq!(
        failcounts_text(&cib, &st, Some("A"), Some("n2"), 100),
        "No failcounts for resource 'A'\n"
    );
    assert_eq!(
        p("resource failcount show A node=n1"),
        Ok(Command::FailCounts {
            resource: Some("A".into()),
            node: Some("n1".into())
        })
    );
    assert_eq!(
        constraint_ref_text(&cib, &["A".into(), "C".into()]),
        "Resource: A\n  colocation-B-A-INFINITY\n  order-A-B-mandatory\nResource: C\n  No matches found\n"
    );
    assert_eq!(
        p("resource restart A --wait=2min"),
        Ok(Command::Restart {
            resource: "A".into(),
            wait_s: 120
        })
    );
    assert!(
        p("resource restart A n1")
            .unwrap_err()
            .message
            .contains("'n1'")
    );
}

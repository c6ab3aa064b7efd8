//! Golden scheduler cases in the style of Pacemaker's cts/scheduler: a configuration and a
//! status in, the exact transition summary, placement and action order out. (Scenarios checked
//! against crm_simulate itself are in `oracle_cases.rs` and `differential.rs`.)

mod common;
use clusterd_core::cib::Role;
use clusterd_core::sched::schedule;
use clusterd_core::status::rc;
use common::*;

const T: u64 = 10_000;

fn summary(cib: &clusterd_core::Cib, st: &clusterd_core::ClusterStatus) -> Vec<String> {
    schedule(cib, st, T)
        .summary()
        .into_iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn two_resources_spread_over_two_nodes() {
    let c = cib(
        &["n1", "n2"],
        "resource create A ocf:heartbeat:Dummy\nresource create B ocf:heartbeat:Dummy",
    );
    let mut st = online(&["n1", "n2"]);
    probed(&mut st, &c);
    assert_eq!(summary(&c, &st), ["* Start A ( n1 )", "* Start B ( n2 )"]);
}

#[test]
fn location_prefers_and_avoids() {
    let c = cib(
        &["n1", "n2", "n3"],
        "resource create A ocf:heartbeat:Dummy\nconstraint location A prefers n2=50\nresource create B ocf:heartbeat:Dummy\nconstraint location B avoids n1 n2",
    );
    let mut st = online(&["n1", "n2", "n3"]);
    probed(&mut st, &c);
    assert_eq!(
        placement(&schedule(&c, &st, T)),
        ["A=n2:Started", "B=n3:Started"]
    );
}

#[test]
fn stickiness_keeps_a_resource_unless_preference_is_stronger() {
    let c = cib(
        &["n1", "n2"],
        "resource create A ocf:heartbeat:Dummy\nconstraint location A prefers n1=50",
    );
    let mut st = online(&["n1", "n2"]);
    running(&mut st, "A", "n2", Role::Started);
    probed(&mut st, &c);
    // pcs's resource-stickiness=1 loses against 50.
    assert_eq!(summary(&c, &st), ["* Move A ( n2 -> n1 )"]);
    let c = cib(
        &["n1", "n2"],
        "resource create A ocf:heartbeat:Dummy\nconstraint location A prefers n1=50\nresource defaults resource-stickiness=100",
    );
    assert!(summary(&c, &st).is_empty());
}

#[test]
fn colocation_infinity_and_minus_infinity() {
    let c = cib(
        &["n1", "n2", "n3"],
        "resource create A ocf:heartbeat:Dummy\nresource create B ocf:heartbeat:Dummy\nresource create C ocf:heartbeat:Dummy\nconstraint location A prefers n3=10\nconstraint colocation add B with A INFINITY\nconstraint colocation add C with A -INFINITY",
    );
    let mut st = online(&["n1", "n2", "n3"]);
    probed(&mut st, &c);
    let p = placement(&schedule(&c, &st, T));
    assert_eq!(p[0], "A=n3:Started");
    assert_eq!(p[1], "B=n3:Started");
    assert_ne!(p[2], "C=n3:Started");
    assert_ne!(p[2], "C=-");
}

#[test]
fn dependent_preference_pulls_its_primary() {
    // B must run with A; B prefers n2, so A (with no preference of its own) goes to n2.
    let c = cib(
        &["n1", "n2"],
        "resource create A ocf:heartbeat:Dummy\nresource create B ocf:heartbeat:Dummy\nconstraint colocation add B with A INFINITY\nconstraint location B prefers n2=20",
    );
    let mut st = online(&["n1", "n2"]);
    probed(&mut st, &c);
    assert_eq!(
        placement(&schedule(&c, &st, T)),
        ["A=n2:Started", "B=n2:Started"]
    );
}

#[test]
fn group_starts_in_order_and_stops_in_reverse() {
    let c = cib(
        &["n1", "n2"],
        "resource create A ocf:heartbeat:Dummy --group G\nresource create B ocf:heartbeat:Dummy --group G\nresource create C ocf:heartbeat:Dummy --group G",
    );
    let mut st = online(&["n1", "n2"]);
    probed(&mut st, &c);
    let t = schedule(&c, &st, T);
    assert_eq!(
        placement(&t),
        ["A=n1:Started", "B=n1:Started", "C=n1:Started"]
    );
    assert!(pos(&t, "A_start_0 n1") < pos(&t, "B_start_0 n1"));
    assert!(pos(&t, "B_start_0 n1") < pos(&t, "C_start_0 n1"));
    for r in ["A", "B", "C"] {
        running(&mut st, r, "n1", Role::Started);
    }
    let c2 = cib(
        &["n1", "n2"],
        "resource create A ocf:heartbeat:Dummy --group G\nresource create B ocf:heartbeat:Dummy --group G\nresource create C ocf:heartbeat:Dummy --group G\nnode standby n1",
    );
    let t = schedule(&c2, &st, T);
    assert_eq!(
        summary(&c2, &st),
        [
            "* Move A ( n1 -> n2 )",
            "* Move B ( n1 -> n2 )",
            "* Move C ( n1 -> n2 )"
        ]
    );
    assert!(pos(&t, "C_stop_0 n1") < pos(&t, "B_stop_0 n1"));
    assert!(pos(&t, "B_stop_0 n1") < pos(&t, "A_stop_0 n1"));
    assert!(pos(&t, "A_stop_0 n1") < pos(&t, "A_start_0 n2"));
    assert!(pos(&t, "A_start_0 n2") < pos(&t, "B_start_0 n2"));
}

#[test]
fn group_moves_as_a_whole_when_a_member_is_banned() {
    let c = cib(
        &["n1", "n2"],
        "resource create A ocf:heartbeat:Dummy --group G\nresource create B ocf:heartbeat:Dummy --group G\nconstraint location B avoids n1",
    );
    let mut st = online(&["n1", "n2"]);
    probed(&mut st, &c);
    assert_eq!(
        placement(&schedule(&c, &st, T)),
        ["A=n2:Started", "B=n2:Started"]
    );
}

#[test]
fn mandatory_order_blocks_then_when_first_cannot_run() {
    let c = cib(
        &["n1", "n2"],
        "resource create A ocf:heartbeat:Dummy --disabled\nresource create B ocf:heartbeat:Dummy\nconstraint order start A then start B",
    );
    let mut st = online(&["n1", "n2"]);
    running(&mut st, "B", "n1", Role::Started);
    probed(&mut st, &c);
    assert_eq!(summary(&c, &st), ["* Stop B ( n1 )"]);
    let c = cib(
        &["n1", "n2"],
        "resource create A ocf:heartbeat:Dummy --disabled\nresource create B ocf:heartbeat:Dummy\nconstraint order start A then start B kind=Optional",
    );
    assert!(summary(&c, &st).is_empty());
}

#[test]
fn restart_of_first_restarts_then() {
    let c = cib(
        &["n1"],
        "resource create A ocf:heartbeat:Dummy\nresource create B ocf:heartbeat:Dummy\nconstraint order start A then start B",
    );
    let mut st = online(&["n1"]);
    running(&mut st, "A", "n1", Role::Started);
    running(&mut st, "B", "n1", Role::Started);
    let call = st.next_call_id("n1");
    st.record("A", "n1", op("monitor", 10_000, call, rc::NOT_RUNNING, 200));
    let t = schedule(&c, &st, T);
    assert_eq!(
        summary(&c, &st),
        ["* Recover A ( n1 )", "* Restart B ( n1 )"]
    );
    assert!(pos(&t, "B_stop_0 n1") < pos(&t, "A_stop_0 n1"));
    assert!(pos(&t, "A_start_0 n1") < pos(&t, "B_start_0 n1"));
}

#[test]
fn promotable_clone_promotes_highest_score() {
    let c = cib(
        &["n1", "n2"],
        "resource create S ocf:pacemaker:Stateful\nresource promotable S S-clone promoted-max=1 notify=true",
    );
    let mut st = online(&["n1", "n2"]);
    probed(&mut st, &c);
    st.nodes
        .get_mut("n1")
        .unwrap()
        .attributes
        .insert("master-S".into(), "5".into());
    st.nodes
        .get_mut("n2")
        .unwrap()
        .attributes
        .insert("master-S".into(), "10".into());
    let t = schedule(&c, &st, T);
    let p = placement(&t);
    assert!(
        p.contains(&"S:0=n1:Unpromoted".to_string())
            || p.contains(&"S:1=n1:Unpromoted".to_string()),
        "{p:?}"
    );
    assert!(p.iter().any(|x| x.ends_with("=n2:Promoted")), "{p:?}");
    // Notifications: post-start to both, pre/post-promote.
    assert!(
        t.actions
            .iter()
            .any(|a| a.key().contains("post_notify_start"))
    );
    assert!(
        t.actions
            .iter()
            .any(|a| a.key().contains("pre_notify_promote"))
    );
}

#[test]
fn no_promotion_score_means_no_promotion() {
    let c = cib(
        &["n1", "n2"],
        "resource create S ocf:pacemaker:Stateful\nresource promotable S",
    );
    let mut st = online(&["n1", "n2"]);
    probed(&mut st, &c);
    let p = placement(&schedule(&c, &st, T));
    assert!(p.iter().all(|x| x.ends_with(":Unpromoted")), "{p:?}");
}

/// The thesis's stack (chapters 5.4 and 6.2), with the mistakes fixed by the linter's advice
/// in the second half.
#[test]
fn thesis_stack_follows_the_promoted_instance() {
    let base = "resource create ClusterIP ocf:heartbeat:IPaddr2 ip=10.131.210.50 cidr_netmask=24 op monitor interval=30s
        resource create mailData ocf:tandem:replicator drbd_resource=zimbradata op monitor interval=60s
        resource master mailDataClone mailData master-max=1 master-node-max=1 clone-max=2 clone-node-max=1 notify=true
        resource create ZimbraFS ocf:tandem:Filesystem device=/dev/drbd1 directory=/opt/zimbra fstype=xfs
        constraint colocation add ZimbraFS with mailDataClone INFINITY with-rsc-role=Master
        constraint order promote mailDataClone then start ZimbraFS
        constraint colocation add ClusterIP with ZimbraFS INFINITY
        resource create ZimbraService ocf:tandem:mail op monitor interval=2min timeout=40s
        constraint colocation add ZimbraService with ZimbraFS INFINITY";
    let c = cib(&["mercurio", "hermes"], base);
    let mut st = online(&["mercurio", "hermes"]);
    probed(&mut st, &c);
    st.nodes
        .get_mut("hermes")
        .unwrap()
        .attributes
        .insert("master-mailData".into(), "10000".into());
    st.nodes
        .get_mut("mercurio")
        .unwrap()
        .attributes
        .insert("master-mailData".into(), "1000".into());
    let t = schedule(&c, &st, T);
    let p = placement(&t);
    assert!(p.contains(&"ClusterIP=hermes:Started".to_string()), "{p:?}");
    assert!(p.contains(&"ZimbraFS=hermes:Started".to_string()), "{p:?}");
    assert!(
        p.contains(&"ZimbraService=hermes:Started".to_string()),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|x| x.starts_with("mailData:") && x.ends_with("hermes:Promoted")),
        "{p:?}"
    );
    let promote = t
        .actions
        .iter()
        .position(|a| a.key().starts_with("mailData:") && a.key().contains("_promote_0 hermes"))
        .expect("promote");
    assert!(promote < pos(&t, "ZimbraFS_start_0 hermes"));
    // Without any promotion score, nothing is promoted and ZimbraFS (ordered after promote) cannot start.
    let mut st2 = online(&["mercurio", "hermes"]);
    probed(&mut st2, &c);
    let p = placement(&schedule(&c, &st2, T));
    assert!(
        p.contains(&"ZimbraFS=-".to_string()) && p.contains(&"ClusterIP=-".to_string()),
        "{p:?}"
    );
}

#[test]
fn migration_threshold_bans_and_failure_timeout_expires() {
    let c = cib(
        &["n1", "n2"],
        "resource create A ocf:heartbeat:Dummy meta migration-threshold=3 failure-timeout=60s",
    );
    let mut st = online(&["n1", "n2"]);
    running(&mut st, "A", "n1", Role::Started);
    probed(&mut st, &c);
    for k in 0..3 {
        st.record_failure("n1", "A", "monitor", 10_000, T - 10 + k, false);
    }
    assert_eq!(summary(&c, &st), ["* Move A ( n1 -> n2 )"]);
    // 60 s later the failures have expired.
    assert!(schedule(&c, &st, T + 60).summary().is_empty());
}

#[test]
fn failed_monitor_recovers_in_place() {
    let c = cib(&["n1", "n2"], "resource create A ocf:heartbeat:Dummy");
    let mut st = online(&["n1", "n2"]);
    running(&mut st, "A", "n1", Role::Started);
    probed(&mut st, &c);
    let call = st.next_call_id("n1");
    st.record("A", "n1", op("monitor", 10_000, call, rc::ERR_GENERIC, 300));
    let t = schedule(&c, &st, T);
    assert_eq!(summary(&c, &st), ["* Recover A ( n1 )"]);
    assert!(pos(&t, "A_stop_0 n1") < pos(&t, "A_start_0 n1"));
    assert!(pos(&t, "A_start_0 n1") < pos(&t, "A_monitor_10000 n1"));
}

#[test]
fn hard_error_bans_the_node() {
    let c = cib(&["n1", "n2"], "resource create A ocf:heartbeat:Dummy");
    let mut st = online(&["n1", "n2"]);
    probed(&mut st, &c);
    let call = st.next_call_id("n1");
    st.record("A", "n1", op("start", 0, call, rc::ERR_INSTALLED, 300));
    assert_eq!(placement(&schedule(&c, &st, T)), ["A=n2:Started"]);
}

#[test]
fn maintenance_node_is_left_alone() {
    let c = cib(
        &["n1", "n2"],
        "resource create A ocf:heartbeat:Dummy\nconstraint location A prefers n2=100\nnode maintenance n1",
    );
    let mut st = online(&["n1", "n2"]);
    running(&mut st, "A", "n1", Role::Started);
    probed(&mut st, &c);
    let t = schedule(&c, &st, T);
    assert!(
        t.actions.is_empty(),
        "{:?}",
        t.actions.iter().map(|a| a.key()).collect::<Vec<_>>()
    );
    assert_eq!(placement(&t), ["A=n1:Started"]);
}

#[test]
fn asymmetric_cluster_needs_opt_in() {
    let c = cib(
        &["n1", "n2"],
        "property set symmetric-cluster=false\nresource create A ocf:heartbeat:Dummy\nresource create B ocf:heartbeat:Dummy\nconstraint location B prefers n2=0",
    );
    let mut st = online(&["n1", "n2"]);
    probed(&mut st, &c);
    assert_eq!(placement(&schedule(&c, &st, T)), ["A=-", "B=n2:Started"]);
}

#[test]
fn no_quorum_stops_everything_unless_ignored() {
    let c = cib(&["n1", "n2"], "resource create A ocf:heartbeat:Dummy");
    let mut st = online(&["n1", "n2"]);
    running(&mut st, "A", "n1", Role::Started);
    probed(&mut st, &c);
    st.has_quorum = false;
    assert_eq!(summary(&c, &st), ["* Stop A ( n1 )"]);
    let c = cib(
        &["n1", "n2"],
        "resource create A ocf:heartbeat:Dummy\nproperty set no-quorum-policy=ignore",
    );
    assert!(summary(&c, &st).is_empty());
}

#[test]
fn stonith_enabled_without_device_does_nothing() {
    let c = cib(
        &["n1"],
        "resource create A ocf:heartbeat:Dummy\nproperty set stonith-enabled=true",
    );
    let mut st = online(&["n1"]);
    probed(&mut st, &c);
    assert!(schedule(&c, &st, T).actions.is_empty());
}

#[test]
fn rule_location_on_node_attribute() {
    let c = cib(
        &["n1", "n2"],
        "resource create A ocf:heartbeat:Dummy\nnode attribute n2 ssd=yes\nconstraint location A rule score=100 ssd defined",
    );
    let mut st = online(&["n1", "n2"]);
    probed(&mut st, &c);
    assert_eq!(placement(&schedule(&c, &st, T)), ["A=n2:Started"]);
}

#[test]
fn probes_come_before_starts() {
    let c = cib(&["n1", "n2"], "resource create A ocf:heartbeat:Dummy");
    let st = online(&["n1", "n2"]);
    let t = schedule(&c, &st, T);
    assert!(pos(&t, "A_monitor_0 n1") < pos(&t, "A_start_0 n1"));
    assert!(pos(&t, "A_monitor_0 n2") < pos(&t, "A_start_0 n1"));
}

#[test]
fn clone_runs_once_per_node_and_respects_clone_max() {
    let c = cib(
        &["n1", "n2", "n3"],
        "resource create D ocf:heartbeat:Dummy clone clone-max=2",
    );
    let mut st = online(&["n1", "n2", "n3"]);
    probed(&mut st, &c);
    let p = placement(&schedule(&c, &st, T));
    assert_eq!(p.len(), 2);
    assert_ne!(p[0].split('=').nth(1), p[1].split('=').nth(1));
}

#[test]
fn role_location_drives_promotion() {
    let c = cib(
        &["n1", "n2"],
        "resource create S ocf:pacemaker:Stateful\nresource promotable S S-clone\nconstraint location S-clone rule role=Promoted score=100 #uname eq n1",
    );
    let mut st = online(&["n1", "n2"]);
    probed(&mut st, &c);
    for n in ["n1", "n2"] {
        st.nodes
            .get_mut(n)
            .unwrap()
            .attributes
            .insert("master-S".into(), "5".into());
    }
    let p = placement(&schedule(&c, &st, T));
    assert!(p.iter().any(|x| x.ends_with("=n1:Promoted")), "{p:?}");
}

#[test]
fn more_than_one_instance_per_node_is_refused() {
    let mut c = cib(&["n1"], "resource create D ocf:heartbeat:Dummy clone");
    let args: Vec<String> = "resource meta D-clone clone-node-max=2"
        .split_whitespace()
        .map(String::from)
        .collect();
    let clusterd_core::pcs::Command::Edit(e) = clusterd_core::pcs::parse(&args).unwrap() else {
        panic!()
    };
    let err = clusterd_core::pcs::apply(&mut c, &e, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("clone-node-max"), "{err}");
}

/// The thesis's verbatim `order promote ZimbraFS then start ZimbraService`: ZimbraFS is never
/// promoted, so (as in Pacemaker 2.1) ZimbraService never starts — which the linter says.
#[test]
fn order_on_a_promotion_that_never_happens_blocks_then() {
    let c = cib(
        &["n1"],
        "resource create FS ocf:heartbeat:Dummy\nresource create SVC ocf:heartbeat:Dummy\nconstraint order promote FS then start SVC",
    );
    let mut st = online(&["n1"]);
    probed(&mut st, &c);
    assert_eq!(placement(&schedule(&c, &st, T)), ["FS=n1:Started", "SVC=-"]);
    let w = clusterd_core::lint::lint(&c);
    assert!(
        w.iter().any(|w| w.code == "order-action-never-happens"
            && w.message.contains("'SVC' will never start")),
        "{w:?}"
    );
}

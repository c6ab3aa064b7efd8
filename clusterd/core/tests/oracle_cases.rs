//! Named scenarios, each checked against Pacemaker's own scheduler (`crm_simulate`): the
//! thesis's stack through failover, promotion changes, clone limits, failures and operator
//! commands. Placement and roles must agree.

mod common;
use clusterd_core::cib::Role::{Promoted, Started, Unpromoted};
use common::oracle::{Case, check};

const THESIS: &str = "
    property set stonith-enabled=false
    resource create ClusterIP ocf:heartbeat:IPaddr2 ip=10.131.210.50 cidr_netmask=24 op monitor interval=30s
    resource create mailData ocf:pacemaker:Stateful op monitor interval=60s
    resource master mailDataClone mailData master-max=1 master-node-max=1 clone-max=2 clone-node-max=1 notify=true
    resource create ZimbraFS ocf:heartbeat:Dummy
    constraint colocation add ZimbraFS with mailDataClone INFINITY with-rsc-role=Master
    constraint order promote mailDataClone then start ZimbraFS
    constraint colocation add ClusterIP with ZimbraFS INFINITY
    resource create ZimbraService ocf:heartbeat:Dummy op monitor interval=2min timeout=40s
    constraint colocation add ZimbraService with ZimbraFS INFINITY with-rsc-role=Master
    constraint order promote ZimbraFS then start ZimbraService";

fn agree(name: &str, case: Case) {
    let dir = tempfile::tempdir().unwrap();
    if let Err(e) = check(&case, 0, dir.path()) {
        panic!("{name}: {e}");
    }
}

fn thesis_running(c: Case, primary: &str, secondary: &str) -> Case {
    c.run("mailData:0", primary, Promoted)
        .run("mailData:1", secondary, Unpromoted)
        .run("ZimbraFS", primary, Started)
        .run("ClusterIP", primary, Started)
        .run("ZimbraService", primary, Started)
        .master("mailData", primary, 10000)
        .master("mailData", secondary, 10000)
}

#[test]
fn thesis_fresh_start() {
    agree(
        "fresh",
        Case::new(&["mercurio", "hermes"], THESIS)
            .master("mailData", "hermes", 10000)
            .master("mailData", "mercurio", 1000),
    );
}

#[test]
fn thesis_steady_state() {
    agree(
        "steady",
        thesis_running(
            Case::new(&["mercurio", "hermes"], THESIS),
            "hermes",
            "mercurio",
        ),
    );
}

#[test]
fn thesis_standby_of_the_active_node() {
    let cmds = format!("{THESIS}\ncluster standby hermes");
    agree(
        "standby",
        thesis_running(
            Case::new(&["mercurio", "hermes"], &cmds),
            "hermes",
            "mercurio",
        ),
    );
}

#[test]
fn thesis_unstandby_does_not_fail_back() {
    agree(
        "unstandby",
        thesis_running(
            Case::new(&["mercurio", "hermes"], THESIS),
            "mercurio",
            "hermes",
        ),
    );
}

#[test]
fn thesis_service_failure_reaches_threshold() {
    let cmds = format!("{THESIS}\nresource meta ZimbraService migration-threshold=1");
    agree(
        "threshold",
        thesis_running(
            Case::new(&["mercurio", "hermes"], &cmds),
            "hermes",
            "mercurio",
        )
        .fail("ZimbraService", "hermes", 1),
    );
}

#[test]
fn promotion_moves_to_the_higher_score() {
    let cmds = "property set stonith-enabled=false\nresource create S ocf:pacemaker:Stateful\nresource promotable S S-clone";
    agree(
        "promotion",
        Case::new(&["n1", "n2"], cmds)
            .run("S:0", "n1", Promoted)
            .run("S:1", "n2", Unpromoted)
            .master("S", "n1", 5)
            .master("S", "n2", 100),
    );
}

#[test]
fn promoted_max_two_on_three_nodes() {
    let cmds = "property set stonith-enabled=false\nresource create S ocf:pacemaker:Stateful\nresource promotable S S-clone promoted-max=2";
    agree(
        "promoted-max",
        Case::new(&["n1", "n2", "n3"], cmds)
            .master("S", "n1", 5)
            .master("S", "n2", 50)
            .master("S", "n3", 20),
    );
}

#[test]
fn target_role_unpromoted_prevents_promotion() {
    let cmds = "property set stonith-enabled=false\nresource create S ocf:pacemaker:Stateful\nresource promotable S S-clone\nresource meta S-clone target-role=Unpromoted";
    agree(
        "unpromoted",
        Case::new(&["n1", "n2"], cmds)
            .run("S:0", "n1", Promoted)
            .master("S", "n1", 5),
    );
}

#[test]
fn clone_max_lowered_stops_an_instance() {
    let cmds = "property set stonith-enabled=false\nresource create D ocf:heartbeat:Dummy clone clone-max=1";
    agree(
        "clone-max",
        Case::new(&["n1", "n2"], cmds)
            .run("D:0", "n1", Started)
            .run("D:1", "n2", Started),
    );
}

#[test]
fn group_with_clone_dependency() {
    let cmds = "property set stonith-enabled=false
        resource create D ocf:heartbeat:Dummy clone
        resource create A ocf:heartbeat:Dummy --group G
        resource create B ocf:heartbeat:Dummy --group G
        constraint colocation add G with D-clone INFINITY
        constraint order start D-clone then start G
        constraint location G prefers n2=100";
    agree(
        "group-clone",
        Case::new(&["n1", "n2", "n3"], cmds)
            .run("D:0", "n1", Started)
            .run("A", "n1", Started)
            .run("B", "n1", Started),
    );
}

#[test]
fn move_ban_and_clear() {
    let base = "property set stonith-enabled=false\nresource create A ocf:heartbeat:Dummy";
    agree(
        "move",
        Case::new(&["n1", "n2", "n3"], &format!("{base}\nresource move A n3"))
            .run("A", "n1", Started),
    );
    agree(
        "ban",
        Case::new(&["n1", "n2", "n3"], &format!("{base}\nresource ban A n1"))
            .run("A", "n1", Started),
    );
    agree(
        "clear",
        Case::new(
            &["n1", "n2", "n3"],
            &format!("{base}\nresource ban A n1\nresource clear A"),
        )
        .run("A", "n1", Started),
    );
}

#[test]
fn maintenance_mode_freezes_everything() {
    let cmds = "property set stonith-enabled=false\nproperty set maintenance-mode=true\nresource create A ocf:heartbeat:Dummy\nresource create B ocf:heartbeat:Dummy";
    agree(
        "maintenance-mode",
        Case::new(&["n1", "n2"], cmds).run("A", "n1", Started),
    );
}

#[test]
fn rules_on_node_attributes() {
    let cmds = "property set stonith-enabled=false
        node attribute n2 disk=ssd
        node attribute n3 cores=16
        resource create A ocf:heartbeat:Dummy
        constraint location A rule score=50 disk eq ssd
        resource create B ocf:heartbeat:Dummy
        constraint location B rule score=200 cores gt 8
        resource create C ocf:heartbeat:Dummy
        constraint location C rule score=-INFINITY disk not_defined";
    agree("rules", Case::new(&["n1", "n2", "n3"], cmds));
}

#[test]
fn mandatory_chain_of_orders_without_colocation() {
    let cmds = "property set stonith-enabled=false
        resource create A ocf:heartbeat:Dummy
        resource create B ocf:heartbeat:Dummy
        resource create C ocf:heartbeat:Dummy
        constraint order start A then start B
        constraint order start B then start C
        constraint location A avoids n1 n2";
    agree(
        "chain",
        Case::new(&["n1", "n2"], cmds)
            .run("B", "n1", Started)
            .run("C", "n2", Started),
    );
}

#[test]
fn anti_colocation_spreads_and_stickiness_holds() {
    let cmds = "property set stonith-enabled=false
        resource defaults resource-stickiness=100
        resource create A ocf:heartbeat:Dummy
        resource create B ocf:heartbeat:Dummy
        constraint colocation add B with A -INFINITY
        constraint location A prefers n2=50";
    agree(
        "anti",
        Case::new(&["n1", "n2"], cmds)
            .run("A", "n1", Started)
            .run("B", "n2", Started),
    );
}

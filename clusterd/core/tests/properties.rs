//! Property tests of the scheduler against simple oracles: INFINITY colocations are never
//! violated, -INFINITY locations never used, unavailable nodes never chosen, output deterministic.

mod common;
use clusterd_core::sched::schedule;
use proptest::prelude::*;

fn config(
    n_nodes: usize,
    locs: &[(usize, usize, i32)],
    colocs: &[(usize, usize, bool)],
) -> (clusterd_core::Cib, Vec<String>) {
    let nodes: Vec<String> = (1..=n_nodes).map(|k| format!("n{k}")).collect();
    let mut cmds = String::new();
    for r in 0..4 {
        cmds.push_str(&format!("resource create r{r} ocf:heartbeat:Dummy\n"));
    }
    for &(r, n, s) in locs {
        let score = match s {
            0 => "-INFINITY".to_string(),
            1 => "INFINITY".to_string(),
            v => v.to_string(),
        };
        cmds.push_str(&format!(
            "constraint location r{r} prefers n{}={score}\n",
            n % n_nodes + 1
        ));
    }
    for &(a, b, plus) in colocs {
        if a > b {
            cmds.push_str(&format!(
                "constraint colocation add r{a} with r{b} {}\n",
                if plus { "INFINITY" } else { "-INFINITY" }
            ));
        }
    }
    let refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
    (common::cib(&refs, &cmds), nodes)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn hard_constraints_hold(
        n_nodes in 1usize..5,
        locs in proptest::collection::vec((0usize..4, 0usize..4, prop_oneof![Just(0), Just(1), -100i32..100]), 0..6),
        colocs in proptest::collection::vec((0usize..4, 0usize..4, any::<bool>()), 0..4),
        standby in proptest::option::of(0usize..4),
    ) {
        let (mut cib, nodes) = config(n_nodes, &locs, &colocs);
        if let Some(s) = standby {
            let n = &nodes[s % n_nodes];
            cib.node_mut(n).attributes.insert("standby".into(), "on".into());
        }
        let mut st = common::online(&nodes.iter().map(String::as_str).collect::<Vec<_>>());
        common::probed(&mut st, &cib);
        let t = schedule(&cib, &st, 0);
        let t2 = schedule(&cib, &st, 0);
        prop_assert_eq!(&t, &t2, "not deterministic");
        prop_assert!(t.is_topologically_ordered());
        let at = |r: &str| t.placements.iter().find(|p| p.resource == r).and_then(|p| p.node.clone());
        // pcs replaces an earlier location of a resource on the same node: the last one counts.
        let mut last = std::collections::BTreeMap::new();
        for &(r, n, s) in &locs {
            last.insert((r, n % n_nodes), s);
        }
        for (&(r, n), &s) in &last {
            if s == 0 {
                let node = &nodes[n % n_nodes];
                prop_assert_ne!(at(&format!("r{r}")), Some(node.clone()), "-INFINITY location used");
            }
        }
        for &(a, b, plus) in &colocs {
            if a <= b { continue; }
            let (ra, rb) = (at(&format!("r{a}")), at(&format!("r{b}")));
            if plus {
                if ra.is_some() { prop_assert_eq!(&ra, &rb, "INFINITY colocation violated"); }
            } else if ra.is_some() {
                prop_assert_ne!(&ra, &rb, "-INFINITY colocation violated");
            }
        }
        for p in &t.placements {
            if let Some(n) = &p.node {
                prop_assert!(cib.node(n).is_none_or(|x| !x.attributes.contains_key("standby")), "standby node used");
            }
        }
    }

    #[test]
    fn pacemaker_xml_round_trips(n_nodes in 1usize..4, locs in proptest::collection::vec((0usize..4, 0usize..4, -100i32..100), 0..5)) {
        let (cib, _) = config(n_nodes, &locs, &[]);
        let back = clusterd_core::xml::import(&clusterd_core::xml::export(&cib, None)).expect("import our own export");
        prop_assert_eq!(&back.cib.constraints, &cib.constraints);
        prop_assert_eq!(&back.cib.rsc_defaults, &cib.rsc_defaults);
        prop_assert_eq!(back.cib.nodes.len(), cib.nodes.len());
        let native = clusterd_core::Cib::from_file_bytes(&cib.to_file_bytes()).expect("native round trip");
        prop_assert_eq!(native, cib);
    }
}

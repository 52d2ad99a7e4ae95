//! `ops/`: the alert rules and the dashboard name only metrics the engine records, so a
//! renamed metric cannot silently blind an alert.

#[test]
fn alerts_and_dashboard_name_only_metrics_that_exist() {
    let known: Vec<&str> = protopay::metrics::DESCRIPTIONS
        .iter()
        .map(|(name, _, _)| *name)
        .collect();
    let ops = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops");
    for file in ["alerts.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(ops.join(file)).unwrap();
        let mut named = 0;
        for (at, _) in text.match_indices("protopay_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            assert!(
                known.contains(&name.as_str()),
                "{file} names {name}, which the engine does not record"
            );
            named += 1;
        }
        assert!(named >= 5, "{file} names {named} metrics");
    }
}

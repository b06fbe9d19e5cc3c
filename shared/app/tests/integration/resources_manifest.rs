//! The code's configuration agrees with `infra/resources.json`, the one list of AWS resources
//! that the template and `localstack/` follow: every environment variable the manifest names
//! for a built consumer is one the registry reads, and the AWS defaults are LocalStack's names.

use clap::CommandFactory;
use registry_app::ServerConfig;
use serde_json::Value;

fn manifest() -> Value {
    serde_json::from_str(include_str!("../../../../infra/resources.json"))
        .expect("resources.json is JSON")
}

/// The environment variables `ServerConfig` reads, with their defaults.
fn config_env() -> Vec<(String, Option<String>)> {
    ServerConfig::command()
        .get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_str()?.to_owned();
            let default = a
                .get_default_values()
                .first()
                .and_then(|d| d.to_str())
                .map(str::to_owned);
            Some((env, default))
        })
        .collect()
}

fn localstack_name(m: &Value, pattern: &Value) -> String {
    let naming = &m["localstack"];
    let mut name = pattern.as_str().expect("a name pattern").to_owned();
    for key in ["stack", "account", "region"] {
        name = name.replace(
            &format!("{{{key}}}"),
            naming[key].as_str().expect("naming value"),
        );
    }
    name
}

#[test]
fn every_variable_the_manifest_names_is_read_by_the_configuration() {
    let m = manifest();
    let env = config_env();
    let reads = |name: &str| env.iter().any(|(e, _)| e == name);
    let mut wanted = vec![
        m["bucket"]["env"].as_str().unwrap().to_owned(),
        m["table"]["env"].as_str().unwrap().to_owned(),
    ];
    for q in m["queues"].as_array().unwrap() {
        // A queue without a consumer yet (proxy-fill, issue 8) is created ahead of its code.
        if q["consumer"].is_null() {
            continue;
        }
        for key in ["env", "dlqEnv", "maxReceivesEnv"] {
            wanted.push(q[key].as_str().unwrap().to_owned());
        }
    }
    let missing: Vec<_> = wanted.iter().filter(|w| !reads(w)).collect();
    assert!(missing.is_empty(), "not read by ServerConfig: {missing:?}");
}

#[test]
fn the_aws_defaults_are_the_localstack_names() {
    let m = manifest();
    let env = config_env();
    let default_of = |name: &str| {
        env.iter()
            .find(|(e, _)| e == name)
            .and_then(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("{name} has no default"))
    };
    for resource in ["bucket", "table"] {
        let r = &m[resource];
        assert_eq!(
            default_of(r["env"].as_str().unwrap()),
            localstack_name(&m, &r["name"]),
            "default of {resource}"
        );
    }
}

#[test]
fn the_worker_retry_limits_default_to_the_queues_max_receive_count() {
    let m = manifest();
    let env = config_env();
    for q in m["queues"].as_array().unwrap() {
        let Some(var) = q["maxReceivesEnv"].as_str() else {
            continue;
        };
        let default = env
            .iter()
            .find(|(e, _)| e == var)
            .and_then(|(_, d)| d.clone());
        assert_eq!(
            default.as_deref(),
            Some(q["maxReceiveCount"].to_string().as_str()),
            "{var} must equal the redrive maxReceiveCount, so the last try is known"
        );
    }
}

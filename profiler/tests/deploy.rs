//! The deployment files: manifests valid (kubernetes-validate) and as documented, the alert
//! rules valid and unit-tested (promtool), the PrometheusRule in step with the rules file, and
//! the ConfigMap's config accepted by the daemon.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_yaml::Value;
use sha2::{Digest, Sha256};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn yaml(rel: &str) -> Value {
    let path = deploy().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn configmap_config() -> String {
    yaml("kubernetes/configmap.yaml")["data"]["gprof.yaml"]
        .as_str()
        .expect("data.gprof.yaml")
        .to_string()
}

#[test]
fn prometheus_rule_matches_the_rules_file() {
    let rules = yaml("prometheus/gprof-rules.yaml");
    let crd = yaml("kubernetes/prometheusrule.yaml");
    assert_eq!(crd["kind"], "PrometheusRule");
    assert_eq!(crd["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        crd["spec"]["groups"], rules["groups"],
        "run `cargo xtask generate`"
    );
    let alerts: Vec<&str> = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for name in [
        "GprofGoroutineLeak",
        "GprofGCPauseHigh",
        "GprofFreeGPoolLarge",
        "GprofHealthScoreLow",
    ] {
        assert!(alerts.contains(&name), "{name} missing from the rules");
    }
}

#[test]
fn daemonset_is_as_documented() {
    let ds = yaml("kubernetes/daemonset.yaml");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["tolerations"][0]["operator"], "Exists");
    assert_eq!(pod["automountServiceAccountToken"], false);
    let c = &pod["containers"][0];
    let caps = &c["securityContext"]["capabilities"];
    assert_eq!(caps["drop"][0], "ALL");
    let added: Vec<&str> = caps["add"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(added, ["SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"]);
    assert!(
        c["securityContext"].get("privileged").is_none(),
        "privileged must stay an opt-in comment"
    );
    // Non-root, with the capabilities as file capabilities (the Dockerfile's setcap).
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["runAsUser"], 65534);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], true);
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    let setcap = dockerfile
        .lines()
        .find(|l| l.contains("setcap "))
        .expect("the Dockerfile sets the file capabilities");
    for cap in &added {
        assert!(
            setcap.contains(&format!("cap_{}", cap.to_lowercase())),
            "the image lacks CAP_{cap}: {setcap}"
        );
    }
    assert!(dockerfile.contains("USER 65534"));
    let text = std::fs::read_to_string(deploy().join("kubernetes/daemonset.yaml")).unwrap();
    assert!(
        text.contains("# privileged: true"),
        "the privileged opt-in is documented"
    );
    for cap in ["SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("- {cap} ")))
            .unwrap();
        assert!(line.contains('#'), "{cap} is not explained: {line}");
    }
    let node = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "NODE_NAME")
        .unwrap();
    assert_eq!(node["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    // The config checksum rolls the pods when the ConfigMap changes.
    let checksum = ds["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        .as_str()
        .unwrap();
    let want = format!("sha256:{:x}", Sha256::digest(configmap_config().as_bytes()));
    assert_eq!(checksum, want, "run `cargo xtask generate`");
    let mount = &c["volumeMounts"][0];
    assert_eq!(mount["mountPath"], "/etc/gprof");
    assert_eq!(c["args"][2], "/etc/gprof/gprof.yaml");
    // The kubelet's pod directories, read-only, where the config's pods_dir says.
    let pods = &c["volumeMounts"][1];
    assert_eq!(pods["readOnly"], true);
    let config: Value = serde_yaml::from_str(&configmap_config()).unwrap();
    assert_eq!(pods["mountPath"], config["tenants"]["pods_dir"]);
    assert_eq!(pod["volumes"][1]["hostPath"]["path"], "/var/log/pods");
    assert_eq!(
        config["tenants"]["from"],
        serde_yaml::from_str::<Value>("[rules, namespace, env]").unwrap(),
        "the environment (forgeable) comes last"
    );
}

#[test]
fn service_and_servicemonitor_select_the_daemon() {
    let ds = yaml("kubernetes/daemonset.yaml");
    let svc = yaml("kubernetes/service.yaml");
    let sm = yaml("kubernetes/servicemonitor.yaml");
    let pod_labels = &ds["spec"]["template"]["metadata"]["labels"];
    assert_eq!(svc["spec"]["clusterIP"], "None");
    for (k, v) in svc["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(&pod_labels[k.as_str().unwrap()], v);
    }
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(&svc["metadata"]["labels"][k.as_str().unwrap()], v);
    }
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        svc["spec"]["ports"][0]["name"]
    );
    assert_eq!(
        svc["spec"]["ports"][0]["port"],
        ds["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    );
}

#[test]
fn configmap_config_passes_dry_run() {
    let path = std::env::temp_dir().join(format!("gprof-configmap-{}.yaml", std::process::id()));
    std::fs::write(&path, configmap_config()).unwrap();
    let out = Command::new(gprof())
        .args(["daemon", "--dry-run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kubernetes_validate() {
    let Some(tool) = which("kubernetes-validate") else {
        skip(
            "kubernetes_validate",
            "kubernetes-validate is not installed (cargo xtask setup installs it)",
        );
        return;
    };
    let dir = deploy().join("kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let out = Command::new(tool)
        .arg("--strict")
        .args(&files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for kind in [
        "configmap",
        "daemonset",
        "namespace",
        "service",
        "serviceaccount",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}/")),
            "{kind} not validated:\n{text}"
        );
    }
    // Only the kinds outside core Kubernetes lack a schema (their structure is tested above).
    for line in text.lines().filter(|l| l.contains("WARN")) {
        assert!(
            ["PrometheusRule", "ServiceMonitor", "Kustomization"]
                .iter()
                .any(|k| line.contains(k)),
            "{line}"
        );
    }
    assert!(
        !text.contains("ERROR") && !text.contains("failed"),
        "{text}"
    );
}

#[test]
fn promtool_checks_and_tests_the_rules() {
    let Some(promtool) = which("promtool") else {
        skip(
            "promtool_checks_and_tests_the_rules",
            "promtool is not installed (Debian package prometheus)",
        );
        return;
    };
    let dir = deploy().join("prometheus");
    for args in [
        ["check", "rules", "gprof-rules.yaml"],
        ["test", "rules", "gprof-rules.test.yaml"],
    ] {
        let out = Command::new(&promtool)
            .current_dir(&dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

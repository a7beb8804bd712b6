//! Whose process is it. The tenant comes from the configured sources in order (operator
//! rules; the pod's Kubernetes namespace; the process's own environment variable), the first
//! valid one winning; for Kubernetes pods, the pod UID and container ID come from the cgroup
//! path. Everything here is read from the workload, so it is validated and bounded before it
//! reaches a label or a log line.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::label::check_label_value;
use crate::config::{OTHER_TENANT, TenantSource, Tenants};

/// Labels that place a process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attribution {
    pub tenant: String,
    pub pod_uid: Option<String>,
    pub container_id: Option<String>,
    /// `namespace/pod`, when the kubelet's directories name the pod.
    pub pod: Option<String>,
}

/// A value from the workload, safe to log: escaped, at most 64 characters shown.
pub fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(64)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().nth(64).is_some() {
        out.push_str(&format!("...({} bytes)", value.len()));
    }
    format!("\"{out}\"")
}
/// One variable of a NUL-separated environment block (as in /proc/PID/environ).
pub fn env_var(environ: &[u8], name: &str) -> Option<String> {
    environ
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(name.as_bytes())?.strip_prefix(b"="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The cgroup path that places a process: the first (v2 first, then the v1 hierarchies in
/// order) that names a Kubernetes pod, else the v2 path, else the first v1 path. On hybrid
/// nodes the kubelet may place pods in v1 hierarchies only.
pub fn cgroup_path(cgroup_file: &str) -> Option<String> {
    let mut v2 = None;
    let mut v1 = Vec::new();
    for line in cgroup_file.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(_controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" {
            v2 = Some(path);
        } else {
            v1.push(path);
        }
    }
    v2.iter()
        .chain(&v1)
        .find(|p| pod_and_container(p).0.is_some())
        .or(v2.as_ref())
        .or(v1.first())
        .map(|p| p.to_string())
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_pod_uid(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// Pod UID and container ID from a Kubernetes cgroup path, in the systemd layout
/// (`kubepods-burstable-pod<UID_with_underscores>.slice/cri-containerd-<ID>.scope`) or the
/// cgroupfs layout (`/kubepods/burstable/pod<UID>/<ID>`). The outermost match wins: a
/// workload allowed to make cgroups can only nest them below its own.
pub fn pod_and_container(cgroup: &str) -> (Option<String>, Option<String>) {
    let mut pod = None;
    let mut container = None;
    for segment in cgroup.split('/') {
        if let Some(slice) = segment.strip_suffix(".slice")
            && let Some(at) = slice.rfind("-pod")
        {
            let uid = slice[at + 4..].replace('_', "-");
            if pod.is_none() && is_pod_uid(&uid) {
                pod = Some(uid);
            }
        } else if let Some(uid) = segment.strip_prefix("pod")
            && is_pod_uid(uid)
        {
            pod.get_or_insert_with(|| uid.to_string());
        } else if let Some(scope) = segment.strip_suffix(".scope") {
            // cri-containerd-<id>, crio-<id>, docker-<id>
            if let Some(id) = scope.rsplit('-').next()
                && is_container_id(id)
            {
                container.get_or_insert_with(|| id.to_string());
            }
        } else if is_container_id(segment) {
            container.get_or_insert_with(|| segment.to_string());
        }
    }
    (pod, container)
}

/// What the tenant sources look at.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// The environment variable's value, unchecked (None when absent or not read).
    pub env_tenant: Option<String>,
    pub cgroup: String,
    pub exe: String,
    pub comm: String,
}

impl Facts {
    /// Reads the facts of a live process (missing pieces stay empty); the environment only
    /// when `env_var` is given.
    pub fn read(pid: u32, env_var: Option<&str>, comm: &str) -> Self {
        let proc = Path::new("/proc").join(pid.to_string());
        let env_tenant = env_var.and_then(|name| {
            std::fs::read(proc.join("environ"))
                .ok()
                .and_then(|e| self::env_var(&e, name))
        });
        let cgroup = std::fs::read_to_string(proc.join("cgroup"))
            .ok()
            .and_then(|c| cgroup_path(&c))
            .unwrap_or_default();
        let exe = std::fs::read_link(proc.join("exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        Self {
            env_tenant,
            cgroup,
            exe,
            comm: comm.to_string(),
        }
    }
}

/// A pod named by the kubelet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

/// Pod UIDs to namespaces, from the kubelet's `<namespace>_<pod>_<uid>` directories (it
/// creates one per pod before the pod's containers start). Listed again on a miss, at most
/// once a second.
struct PodIndex {
    dir: PathBuf,
    by_uid: HashMap<String, PodRef>,
    listed: Option<Instant>,
}

/// Pod directories read at most per listing (a node runs a few hundred pods).
const MAX_POD_DIRS: usize = 100_000;
const RELIST_AFTER: Duration = Duration::from_secs(1);

/// `<namespace>_<pod>_<uid>`: none of the three contains `_`.
pub fn parse_pod_dir(name: &str) -> Option<(String, PodRef)> {
    let mut parts = name.split('_');
    let (namespace, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || !is_pod_uid(uid)
        || check_label_value(namespace).is_err()
        || pod.is_empty()
        || pod.len() > 253
    {
        return None;
    }
    Some((
        uid.to_string(),
        PodRef {
            namespace: namespace.to_string(),
            name: pod.to_string(),
        },
    ))
}

impl PodIndex {
    fn lookup(&mut self, uid: &str) -> Option<PodRef> {
        if let Some(p) = self.by_uid.get(uid) {
            return Some(p.clone());
        }
        if self.listed.is_some_and(|t| t.elapsed() < RELIST_AFTER) {
            return None;
        }
        self.listed = Some(Instant::now());
        self.by_uid = std::fs::read_dir(&self.dir)
            .map(|dir| {
                dir.flatten()
                    .take(MAX_POD_DIRS)
                    .filter_map(|e| parse_pod_dir(e.file_name().to_str()?))
                    .collect()
            })
            .unwrap_or_default();
        self.by_uid.get(uid).cloned()
    }
}

/// Refused claims remembered (so that each is logged once) before the set is cleared.
const MAX_REFUSALS_REMEMBERED: usize = 4096;

/// Assigns tenants.
pub struct Tenancy {
    config: Tenants,
    pods: PodIndex,
    refused: HashSet<u64>,
}

impl Tenancy {
    pub fn new(config: Tenants) -> Self {
        let pods = PodIndex {
            dir: config.pods_dir.clone(),
            by_uid: HashMap::new(),
            listed: None,
        };
        Self {
            config,
            pods,
            refused: HashSet::new(),
        }
    }

    /// The environment variable to read, if the environment is a source.
    pub fn env_var(&self) -> Option<&str> {
        self.config
            .from
            .contains(&TenantSource::Env)
            .then_some(self.config.env_var.as_str())
    }

    /// Places a process: the first source with a valid tenant, else the default; a tenant
    /// not yet `in_use` when `max_tenants` are becomes `other`.
    pub fn attribute(&mut self, pid: u32, facts: &Facts, in_use: &HashSet<&str>) -> Attribution {
        let (pod_uid, container_id) = pod_and_container(&facts.cgroup);
        let pod = pod_uid.as_deref().and_then(|uid| self.pods.lookup(uid));
        let mut tenant = None;
        for source in self.config.from.clone() {
            let claim = match source {
                TenantSource::Rules => self.by_rules(facts),
                TenantSource::Namespace => pod.as_ref().map(|p| p.namespace.clone()),
                TenantSource::Env => facts.env_tenant.clone().filter(|t| !t.is_empty()),
            };
            let Some(claim) = claim else { continue };
            match check_label_value(&claim) {
                Ok(()) => {
                    tenant = Some(claim);
                    break;
                }
                Err(why) => self.refuse(pid, facts, source, &claim, why),
            }
        }
        let mut tenant = tenant.unwrap_or_else(|| self.config.default.clone());
        let reserved = tenant == self.config.default || tenant == OTHER_TENANT;
        let in_use_counted = in_use
            .iter()
            .filter(|t| **t != self.config.default && **t != OTHER_TENANT)
            .count();
        if !reserved
            && !in_use.contains(tenant.as_str())
            && in_use_counted >= self.config.max_tenants
        {
            tenant = OTHER_TENANT.to_string();
        }
        Attribution {
            tenant,
            pod_uid,
            container_id,
            pod: pod.map(|p| format!("{}/{}", p.namespace, p.name)),
        }
    }

    fn by_rules(&self, facts: &Facts) -> Option<String> {
        self.config
            .rules
            .iter()
            .find(|r| {
                [
                    (&r.cgroup, &facts.cgroup),
                    (&r.exe, &facts.exe),
                    (&r.comm, &facts.comm),
                ]
                .iter()
                .all(|(pattern, value)| pattern.as_ref().is_none_or(|p| p.0.is_match(value)))
            })
            .map(|r| r.tenant.clone())
    }

    /// Logs a refused claim once per (source, value).
    fn refuse(&mut self, pid: u32, facts: &Facts, source: TenantSource, claim: &str, why: &str) {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (source as u8, claim).hash(&mut h);
        if self.refused.len() >= MAX_REFUSALS_REMEMBERED {
            self.refused.clear();
        }
        if self.refused.insert(h.finish()) {
            log::warn!(
                "pid={pid} comm={}: tenant {} from {source} is not a valid label value ({why}); trying the next source (said once per value)",
                facts.comm,
                shown(claim),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const POD: &str = "1c2d3e4f-aaaa-bbbb-cccc-0123456789ab";
    const CID: &str = "4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a";

    #[test]
    fn reads_one_variable_only() {
        let env = b"PATH=/bin\0GPROF_TENANT=insure-prod\0SECRET=x\0GPROF_TENANT_X=no\0";
        assert_eq!(env_var(env, "GPROF_TENANT").as_deref(), Some("insure-prod"));
        assert_eq!(env_var(env, "GPROF"), None);
        assert_eq!(env_var(b"", "GPROF_TENANT"), None);
    }

    #[test]
    fn cgroup_v2_and_v1() {
        assert_eq!(
            cgroup_path("0::/system.slice/app.service\n").as_deref(),
            Some("/system.slice/app.service")
        );
        let v1 = "12:memory:/kubepods/pod1\n11:cpu,cpuacct:/kubepods/pod1\n";
        assert_eq!(cgroup_path(v1).as_deref(), Some("/kubepods/pod1"));
        // Hybrid: the pod is in the v1 hierarchies only.
        let hybrid = format!("4:memory:/kubepods/burstable/pod{POD}/{CID}\n1:cpu:/\n0::/\n");
        assert_eq!(
            cgroup_path(&hybrid),
            Some(format!("/kubepods/burstable/pod{POD}/{CID}"))
        );
        assert_eq!(cgroup_path("garbage\n"), None);
    }

    #[test]
    fn pods_in_both_layouts() {
        let systemd = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CID}.scope",
            POD.replace('-', "_")
        );
        assert_eq!(
            pod_and_container(&systemd),
            (Some(POD.into()), Some(CID.into()))
        );
        let guaranteed = format!(
            "/kubepods.slice/kubepods-pod{}.slice/crio-{CID}.scope",
            POD.replace('-', "_")
        );
        assert_eq!(
            pod_and_container(&guaranteed),
            (Some(POD.into()), Some(CID.into()))
        );
        let cgroupfs = format!("/kubepods/besteffort/pod{POD}/{CID}");
        assert_eq!(
            pod_and_container(&cgroupfs),
            (Some(POD.into()), Some(CID.into()))
        );
        assert_eq!(
            pod_and_container("/user.slice/user-0.slice/session-1.scope"),
            (None, None)
        );
        assert_eq!(pod_and_container(""), (None, None));
    }

    fn facts(env: Option<&str>, comm: &str, exe: &str, cgroup: &str) -> Facts {
        Facts {
            env_tenant: env.map(String::from),
            comm: comm.into(),
            exe: exe.into(),
            cgroup: cgroup.into(),
        }
    }

    #[test]
    fn rules_then_environment_then_default() {
        let c = Config::parse(
            "t",
            "tenants:\n  default: nobody\n  rules:\n    - tenant: billing\n      comm: '^bill'\n      exe: '/srv/'\n    - tenant: pods\n      cgroup: kubepods\n",
        )
        .unwrap();
        let mut tenancy = Tenancy::new(c.tenants);
        let mut t = |f: &Facts| tenancy.attribute(1, f, &HashSet::new()).tenant;
        assert_eq!(
            t(&facts(Some("insure-prod"), "billd", "/srv/billd", "")),
            "billing",
            "the operator's rules before the workload's claim"
        );
        assert_eq!(t(&facts(Some("insure-prod"), "x", "/x", "")), "insure-prod");
        assert_eq!(t(&facts(None, "billd", "/srv/billd", "")), "billing");
        assert_eq!(
            t(&facts(None, "billd", "/usr/bin/billd", "")),
            "nobody",
            "all patterns must match"
        );
        let pod = format!("/kubepods/pod{POD}/{CID}");
        assert_eq!(t(&facts(None, "x", "/x", &pod)), "pods");
        assert_eq!(t(&facts(None, "x", "/x", "/")), "nobody");
        let p = tenancy.attribute(1, &facts(None, "x", "/x", &pod), &HashSet::new());
        assert_eq!(p.pod_uid.as_deref(), Some(POD));
    }

    #[test]
    fn label_values() {
        for ok in ["a", "insure-prod", "A.b_c-9", &"x".repeat(63)] {
            assert_eq!(check_label_value(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "../../etc",
            "a b",
            "-lead",
            "trail-",
            "a\"b",
            "line\nbreak",
            "caf\u{e9}",
            &"x".repeat(64),
            &"y".repeat(5000),
        ] {
            assert!(check_label_value(bad).is_err(), "{bad:?}");
        }
        assert_eq!(shown("a\"b\n"), r#""a\"b\n""#);
        let long = shown(&"z".repeat(5000));
        assert!(
            long.len() < 100 && long.ends_with("...(5000 bytes)\""),
            "{long}"
        );
    }

    #[test]
    fn invalid_claims_fall_to_the_next_source() {
        let c = Config::parse(
            "t",
            "tenants:\n  from: [env, rules]\n  rules:\n    - tenant: r\n      comm: x\n",
        )
        .unwrap();
        let mut tenancy = Tenancy::new(c.tenants);
        let none = HashSet::new();
        assert_eq!(
            tenancy
                .attribute(1, &facts(Some("a b"), "x", "", ""), &none)
                .tenant,
            "r"
        );
        assert_eq!(
            tenancy
                .attribute(1, &facts(Some("ok"), "x", "", ""), &none)
                .tenant,
            "ok"
        );
        assert_eq!(
            tenancy
                .attribute(1, &facts(Some("-lead"), "y", "", ""), &none)
                .tenant,
            "unassigned"
        );
        assert_eq!(
            tenancy
                .attribute(1, &facts(Some(""), "y", "", ""), &none)
                .tenant,
            "unassigned"
        );
    }

    #[test]
    fn tenants_beyond_the_limit_count_as_other() {
        let c = Config::parse("t", "tenants:\n  max_tenants: 2\n").unwrap();
        let mut tenancy = Tenancy::new(c.tenants);
        let in_use: HashSet<&str> = ["a", "b", "unassigned", "other"].into();
        let mut t = |env: Option<&str>| {
            tenancy
                .attribute(1, &facts(env, "", "", ""), &in_use)
                .tenant
        };
        assert_eq!(t(Some("a")), "a", "a tenant in use stays");
        assert_eq!(t(Some("c")), "other");
        assert_eq!(t(None), "unassigned", "the default is not counted");
        let in_use: HashSet<&str> = ["a", "unassigned"].into();
        assert_eq!(
            tenancy
                .attribute(1, &facts(Some("c"), "", "", ""), &in_use)
                .tenant,
            "c"
        );
    }

    #[test]
    fn namespaces_from_the_kubelet_pod_directories() {
        let dir = std::env::temp_dir().join(format!("gprof-pods-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(format!("payments_api-7d9f_{POD}"))).unwrap();
        std::fs::create_dir_all(dir.join("junk_dir")).unwrap();
        let c = Config::parse(
            "t",
            &format!(
                "tenants:\n  from: [namespace, env]\n  pods_dir: {}\n",
                dir.display()
            ),
        )
        .unwrap();
        let mut tenancy = Tenancy::new(c.tenants);
        let cgroup = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CID}.scope",
            POD.replace('-', "_")
        );
        let p = tenancy.attribute(
            1,
            &facts(Some("billing"), "x", "", &cgroup),
            &HashSet::new(),
        );
        assert_eq!(p.tenant, "payments", "the namespace, not the claim");
        assert_eq!(p.pod.as_deref(), Some("payments/api-7d9f"));
        // A nested cgroup naming another pod, below the real one, changes nothing.
        let nested = format!(
            "{cgroup}/kubepods-pod{}.slice",
            "9".repeat(8) + "-9999-9999-9999-999999999999"
        );
        assert_eq!(pod_and_container(&nested).0.as_deref(), Some(POD));
        // Outside a pod: the next source.
        let p = tenancy.attribute(
            1,
            &facts(Some("billing"), "x", "", "/system.slice/a.service"),
            &HashSet::new(),
        );
        assert_eq!(p.tenant, "billing");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            parse_pod_dir(&format!("ns_pod_{POD}")).map(|(_, p)| p.namespace),
            Some("ns".into())
        );
        assert_eq!(parse_pod_dir(&format!("a_b_c_{POD}")), None);
        assert_eq!(parse_pod_dir(&format!("-ns_pod_{POD}")), None);
    }
}

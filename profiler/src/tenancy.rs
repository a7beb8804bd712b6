//! Whose process is it: the tenant (from one environment variable, else the configured rules,
//! else the default) and, for Kubernetes pods, the pod UID and container ID from the cgroup
//! path. Only the one configured variable is ever read from a process's environment.

use std::path::Path;

use crate::config::Tenants;

/// Labels that place a process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    pub tenant: String,
    pub pod_uid: Option<String>,
    pub container_id: Option<String>,
}

/// One variable of a NUL-separated environment block (as in /proc/PID/environ).
pub fn env_var(environ: &[u8], name: &str) -> Option<String> {
    environ
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(name.as_bytes())?.strip_prefix(b"="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The cgroup v2 path of a process (the `0::` line), else the first v1 hierarchy's path.
pub fn cgroup_path(cgroup_file: &str) -> Option<String> {
    let mut first = None;
    for line in cgroup_file.lines() {
        let mut parts = line.splitn(3, ':');
        let (id, _controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if id == "0" {
            return Some(path.to_string());
        }
        first.get_or_insert_with(|| path.to_string());
    }
    first
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_pod_uid(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// Pod UID and container ID from a Kubernetes cgroup path, in the systemd layout
/// (`kubepods-burstable-pod<UID_with_underscores>.slice/cri-containerd-<ID>.scope`) or the
/// cgroupfs layout (`/kubepods/burstable/pod<UID>/<ID>`).
pub fn pod_and_container(cgroup: &str) -> (Option<String>, Option<String>) {
    let mut pod = None;
    let mut container = None;
    for segment in cgroup.split('/') {
        if let Some(slice) = segment.strip_suffix(".slice")
            && let Some(at) = slice.rfind("-pod")
        {
            let uid = slice[at + 4..].replace('_', "-");
            if is_pod_uid(&uid) {
                pod = Some(uid);
            }
        } else if let Some(uid) = segment.strip_prefix("pod")
            && is_pod_uid(uid)
        {
            pod = Some(uid.to_string());
        } else if let Some(scope) = segment.strip_suffix(".scope") {
            // cri-containerd-<id>, crio-<id>, docker-<id>
            if let Some(id) = scope.rsplit('-').next()
                && is_container_id(id)
            {
                container = Some(id.to_string());
            }
        } else if is_container_id(segment) {
            container = Some(segment.to_string());
        }
    }
    (pod, container)
}

/// What the tenant rules look at.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub env_tenant: Option<String>,
    pub cgroup: String,
    pub exe: String,
    pub comm: String,
}

impl Facts {
    /// Reads the facts of a live process (missing pieces stay empty).
    pub fn read(pid: u32, env_var_name: &str, comm: &str) -> Self {
        let proc = Path::new("/proc").join(pid.to_string());
        let env_tenant = std::fs::read(proc.join("environ"))
            .ok()
            .and_then(|e| env_var(&e, env_var_name))
            .filter(|t| !t.is_empty());
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

/// Assigns tenants: environment variable, then the first matching rule, then the default.
pub fn place(tenants: &Tenants, facts: &Facts) -> Placement {
    let tenant = facts.env_tenant.clone().unwrap_or_else(|| {
        tenants
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
            .map_or_else(|| tenants.default.clone(), |r| r.tenant.clone())
    });
    let (pod_uid, container_id) = pod_and_container(&facts.cgroup);
    Placement {
        tenant,
        pod_uid,
        container_id,
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

    #[test]
    fn environment_then_rules_then_default() {
        let c = Config::parse(
            "t",
            "tenants:\n  default: nobody\n  rules:\n    - tenant: billing\n      comm: '^bill'\n      exe: '/srv/'\n    - tenant: pods\n      cgroup: kubepods\n",
        )
        .unwrap();
        let facts = |env: Option<&str>, comm: &str, exe: &str, cgroup: &str| Facts {
            env_tenant: env.map(String::from),
            comm: comm.into(),
            exe: exe.into(),
            cgroup: cgroup.into(),
        };
        let t = |f: &Facts| place(&c.tenants, f).tenant;
        assert_eq!(
            t(&facts(Some("insure-prod"), "billd", "/srv/billd", "")),
            "insure-prod"
        );
        assert_eq!(t(&facts(None, "billd", "/srv/billd", "")), "billing");
        assert_eq!(
            t(&facts(None, "billd", "/usr/bin/billd", "")),
            "nobody",
            "all patterns must match"
        );
        assert_eq!(
            t(&facts(
                None,
                "x",
                "/x",
                &format!("/kubepods/pod{POD}/{CID}")
            )),
            "pods"
        );
        let p = place(
            &c.tenants,
            &facts(None, "x", "/x", &format!("/kubepods/pod{POD}/{CID}")),
        );
        assert_eq!(p.pod_uid.as_deref(), Some(POD));
        assert_eq!(t(&facts(None, "x", "/x", "/")), "nobody");
    }
}

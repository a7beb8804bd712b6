//! `gprof daemon`: discovery of Go processes, tenants, the alert engine, Alertmanager
//! delivery and the HTTP endpoint.

pub mod alerts;
pub mod daemon;
pub mod discovery;
pub mod http;
pub mod notify;
pub mod tenancy;

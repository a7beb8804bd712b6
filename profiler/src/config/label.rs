//! Values that become Prometheus labels and alert labels.

/// Whether `s` may be a tenant: a Kubernetes label value, non-empty (at most 63 characters
/// of `[A-Za-z0-9._-]`, alphanumeric at both ends).
pub fn check_label_value(s: &str) -> Result<(), &'static str> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Err("empty");
    }
    if b.len() > 63 {
        return Err("longer than 63 characters");
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
    {
        return Err("characters other than A-Z a-z 0-9 . _ -");
    }
    if !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return Err("must begin and end with a letter or digit");
    }
    Ok(())
}

//! Command-line flags of the floor servers: `--flag value` or `--flag=value`, each of a known set.

/// The flags in `args` as (flag, value) pairs, in order; `Ok(None)` means `--help` (or `-h`).
pub fn pairs(
    args: impl IntoIterator<Item = String>,
    known: &[&str],
) -> Result<Option<Vec<(String, String)>>, String> {
    let mut args = args.into_iter();
    let mut out = Vec::new();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (arg, None),
        };
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        if !known.contains(&flag.as_str()) {
            return Err(format!("unknown flag `{flag}` (see --help)"));
        }
        let Some(value) = inline.or_else(|| args.next()) else {
            return Err(format!("`{flag}` needs a value"));
        };
        out.push((flag, value));
    }
    Ok(Some(out))
}

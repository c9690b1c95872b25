//! Field validation shared by the dialects: CIDRs, ports, port names,
//! protocols.

use palisade_model::net::{Cidr, Protocol};
use serde_json::Value;

use crate::error::{DialectError, Problem};
use crate::field::Ctx;

/// A CIDR written as `address/length` (host bits allowed and cleared, as
/// the API server accepts them; a bare address is rejected).
pub(crate) fn cidr(ctx: &Ctx<'_>, value: &Value, path: &str) -> Result<Cidr, DialectError> {
    let text = ctx.str(value, path)?;
    let bad =
        |reason: String| ctx.invalid(path, Problem::BadCidr { value: text.to_string(), reason });
    if !text.contains('/') {
        return Err(bad("a prefix length (`/n`) is required".into()));
    }
    text.parse::<Cidr>().map_err(|e| bad(e.to_string()))
}

/// An except entry of an ipBlock: a CIDR strictly inside `block`.
pub(crate) fn except(
    ctx: &Ctx<'_>,
    value: &Value,
    path: &str,
    block: Cidr,
    block_text: &str,
) -> Result<Cidr, DialectError> {
    let hole = cidr(ctx, value, path)?;
    if block.covers(&hole) && hole.prefix_len() > block.prefix_len() {
        Ok(hole)
    } else {
        Err(ctx.invalid(
            path,
            Problem::ExceptOutsideCidr {
                except: value.as_str().unwrap_or_default().to_string(),
                cidr: block_text.to_string(),
            },
        ))
    }
}

/// A port number, 1–65535.
pub(crate) fn port_number(ctx: &Ctx<'_>, value: &Value, path: &str) -> Result<u16, DialectError> {
    let n = ctx.int(value, path)?;
    match u16::try_from(n) {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(ctx.invalid(path, Problem::PortOutOfRange(n.to_string()))),
    }
}

/// Checks a port name against the IANA service name rules Kubernetes
/// applies (`IANA_SVC_NAME`): 1–15 characters, lower-case letters, digits
/// and `-`, at least one letter, no `-` at either end, no `--`.
pub(crate) fn port_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 15 {
        return Some("must be 1 to 15 characters long");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Some("may contain only lower-case letters, digits and '-'");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        return Some("must contain at least one letter");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("must not begin or end with '-'");
    }
    if name.contains("--") {
        return Some("must not contain '--'");
    }
    None
}

/// A valid port name.
pub(crate) fn port_name<'v>(
    ctx: &Ctx<'_>,
    value: &'v Value,
    path: &str,
) -> Result<&'v str, DialectError> {
    let name = ctx.str(value, path)?;
    match port_name_problem(name) {
        None => Ok(name),
        Some(reason) => {
            Err(ctx.invalid(path, Problem::PortName { name: name.to_string(), reason }))
        }
    }
}

/// How a dialect accepts protocol names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtocolSpelling {
    /// Only `TCP`, `UDP`, `SCTP` (networking.k8s.io/v1, core objects).
    Exact,
    /// Any letter case, with a warning for non-canonical spellings
    /// (extensions/v1beta1 and the 2016 proposal, whose documents wrote `tcp`).
    AnyCase,
}

/// A protocol name.
pub(crate) fn protocol(
    ctx: &mut Ctx<'_>,
    value: &Value,
    path: &str,
    spelling: ProtocolSpelling,
) -> Result<Protocol, DialectError> {
    let text = ctx.str(value, path)?;
    if let Some(p) = Protocol::parse_exact(text) {
        return Ok(p);
    }
    match (spelling, Protocol::parse_any_case(text)) {
        (ProtocolSpelling::AnyCase, Some(p)) => {
            ctx.warn(path, format!("protocol `{text}` read as `{p}`; write it in upper case"));
            Ok(p)
        }
        _ => Err(ctx.invalid(path, Problem::Protocol(text.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use palisade_store::ObjectKey;
    use serde_json::json;

    use super::*;

    #[test]
    fn iana_service_names() {
        // (name, valid)
        let cases = [
            ("http", true),
            ("serve-80-tcp", true),
            ("a", true),
            ("h2c", true),
            ("abcdefghijklmno", true),
            ("abcdefghijklmnop", false), // 16 characters
            ("", false),
            ("80", false),    // no letter
            ("1-2", false),   // no letter
            ("Http", false),  // upper case
            ("-http", false), // leading '-'
            ("http-", false), // trailing '-'
            ("ht--tp", false),
            ("ht_tp", false),
            ("ht.tp", false),
        ];
        for (name, valid) in cases {
            assert_eq!(port_name_problem(name).is_none(), valid, "{name:?}");
        }
    }

    #[test]
    fn cidrs_and_excepts() {
        let k = ObjectKey::new("networking.k8s.io", "NetworkPolicy", Some("ns"), "p");
        let ctx = Ctx::new(&k);
        let block = cidr(&ctx, &json!("10.0.0.0/16"), "c").unwrap();
        assert_eq!(cidr(&ctx, &json!("10.0.0.1/24"), "c").unwrap().to_string(), "10.0.0.0/24");
        for bad in [json!("10.0.0.1"), json!("10.0.0.0/33"), json!("nonsense/8"), json!(8)] {
            assert!(cidr(&ctx, &bad, "c").is_err(), "{bad}");
        }
        assert!(except(&ctx, &json!("10.0.1.0/24"), "e", block, "10.0.0.0/16").is_ok());
        assert!(except(&ctx, &json!("10.0.0.0/32"), "e", block, "10.0.0.0/16").is_ok());
        // (except, why it is refused)
        for (bad, _why) in [
            ("10.0.0.0/16", "equal: not a strict subnet"),
            ("10.0.0.0/8", "wider than the block"),
            ("10.1.0.0/24", "outside the block"),
            ("fd00::/64", "other address family"),
        ] {
            let err = except(&ctx, &json!(bad), "e[0]", block, "10.0.0.0/16").unwrap_err();
            assert!(matches!(
                err,
                DialectError::Invalid { problem: Problem::ExceptOutsideCidr { .. }, .. }
            ));
        }
    }

    #[test]
    fn port_numbers_and_protocols() {
        let k = ObjectKey::new("extensions", "NetworkPolicy", Some("ns"), "p");
        let mut ctx = Ctx::new(&k);
        assert_eq!(port_number(&ctx, &json!(1), "p").unwrap(), 1);
        assert_eq!(port_number(&ctx, &json!(65535), "p").unwrap(), 65535);
        for bad in [json!(0), json!(65536), json!(-1), json!(80.5), json!("80")] {
            assert!(port_number(&ctx, &bad, "p").is_err(), "{bad}");
        }
        assert_eq!(
            protocol(&mut ctx, &json!("SCTP"), "x", ProtocolSpelling::Exact).unwrap(),
            Protocol::Sctp
        );
        assert!(protocol(&mut ctx, &json!("tcp"), "x", ProtocolSpelling::Exact).is_err());
        assert!(ctx.warnings.is_empty());
        assert_eq!(
            protocol(&mut ctx, &json!("tcp"), "x", ProtocolSpelling::AnyCase).unwrap(),
            Protocol::Tcp
        );
        assert_eq!(ctx.warnings.len(), 1);
        assert!(protocol(&mut ctx, &json!("ICMP"), "x", ProtocolSpelling::AnyCase).is_err());
    }
}

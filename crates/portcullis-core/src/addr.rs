//! Host names and addresses as users write them in configuration and browsers send them.

/// Splits `host` or `host:port` (an IPv6 host in brackets) and checks the host is a plain DNS
/// name or address, nothing that could smuggle another line or setting into an `.rdp` file.
pub fn parse_host_port(text: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let ok = !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        if !ok {
            return None;
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{inner}]"), port)
    } else {
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        };
        let ok = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !ok {
            return None;
        }
        (host.to_owned(), port)
    };
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_are_checked() {
        assert_eq!(parse_host_port("gw"), Some(("gw".into(), None)));
        assert_eq!(parse_host_port("gw:3390"), Some(("gw".into(), Some(3390))));
        assert_eq!(
            parse_host_port("[fe80::1]:3390"),
            Some(("[fe80::1]".into(), Some(3390)))
        );
        for bad in [
            "", ":3389", "gw:0", "gw:99999", "gw:x", "[]", "[zz]", "[::1]x", "g w", "a;b",
            "fe80::1",
        ] {
            assert_eq!(parse_host_port(bad), None, "{bad:?}");
        }
    }
}

//! /proc/net/dev: traffic counters per network interface (of Sonde's network namespace).

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetDev {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Two header lines, then `name: rx(8 columns) tx(8 columns)`. Old kernels print no
/// space after the colon (`eth0:1234`), so the name is split at the colon, the last
/// one (numbers never hold one).
pub fn parse(text: &str) -> Vec<NetDev> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.rsplit_once(':')?;
            let f: Vec<u64> = rest
                .split_ascii_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            if f.len() < 12 {
                return None;
            }
            Some(NetDev {
                name: name.trim().to_owned(),
                rx_bytes: f[0],
                rx_packets: f[1],
                rx_errors: f[2],
                rx_dropped: f[3],
                tx_bytes: f[8],
                tx_packets: f[9],
                tx_errors: f[10],
                tx_dropped: f[11],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_interfaces_including_old_format() {
        let d = parse(
            "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
             lo: 1234567    8901    0    0    0     0          0         0  1234567    8901    0    0    0     0       0          0\n  \
             eth0:987 65 1 2 0 0 0 3 4321 43 5 6 0 0 0 0\n  \
             bad: 1 2 x\n",
        );
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "lo");
        assert_eq!(
            (d[0].rx_bytes, d[0].tx_bytes, d[0].rx_packets),
            (1234567, 1234567, 8901)
        );
        assert_eq!(
            d[1],
            NetDev {
                name: "eth0".into(),
                rx_bytes: 987,
                rx_packets: 65,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 4321,
                tx_packets: 43,
                tx_errors: 5,
                tx_dropped: 6
            }
        );
    }
}

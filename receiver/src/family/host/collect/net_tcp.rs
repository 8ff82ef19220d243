//! /proc/net/tcp and /proc/net/tcp6: TCP sockets by state.

/// The kernel's TCP states (include/net/tcp_states.h), 1..=11, indexed by number - 1.
pub const STATES: usize = 11;

/// Sockets per state: index `state - 1` (1 ESTABLISHED ... 11 CLOSING; 12 NEW_SYN_RECV
/// is a request socket, never listed).
pub type TcpStates = [u64; STATES];

/// Counts the `st` column (hex) of every socket line; the header and malformed lines
/// are skipped.
pub fn parse(text: &str) -> TcpStates {
    let mut counts = [0u64; STATES];
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        // sl local_address rem_address st ...
        let (Some(sl), Some(_), Some(_), Some(st)) = (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if !sl.ends_with(':') {
            continue;
        }
        if let Ok(s) = u8::from_str_radix(st, 16) {
            if (1..=STATES as u8).contains(&s) {
                counts[usize::from(s) - 1] += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_states_of_v4_and_v6_tables() {
        let v4 = parse(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
             0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000 100 0 0 10 0\n   \
             1: 0100007F:0CEA 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000 20 4 30 10 -1\n   \
             2: 0100007F:0CEA 0100007F:A1B4 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000 20 4 30 10 -1\n   \
             3: 0100007F:A1B6 0100007F:0CEA 06 00000000:00000000 03:00000AAA 00000000     0        0 0 3 0000\n",
        );
        assert_eq!(v4[0], 2, "ESTABLISHED");
        assert_eq!(v4[9], 1, "LISTEN");
        assert_eq!(v4[5], 1, "TIME_WAIT");
        assert_eq!(v4.iter().sum::<u64>(), 4);
        let v6 = parse(
            "  sl  local_address                         remote_address                        st\n   \
             0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 0:0 00:0 0 0 0 1\n   \
             1: broken\n   \
             2: 0:0 0:0 0C 0\n",
        );
        assert_eq!(v6[9], 1);
        assert_eq!(
            v6.iter().sum::<u64>(),
            1,
            "state 0x0C (NEW_SYN_RECV) and junk ignored"
        );
    }
}

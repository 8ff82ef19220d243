//! What a program needs of the kernel beyond its family's baseline, and what Sonde loads
//! where the kernel lacks it.
//!
//! A family declares its programs' needs (`Family::needs`): a feature some kernels lack
//! (a helper its program type may call only on newer kernels, a tracepoint) and what runs
//! without it: another program of the same object that does without, or nothing. The
//! loader finds a missing feature before loading where it can (tracefs lists tracepoints),
//! else from the verifier's refusal naming the helper, then loads the variant and reports
//! the probe as degraded with what is lost and why (`sonde check` prints it). Fields that
//! moved between kernels need no variant: the programs pick them at load with CO-RE
//! (`bpf_core_field_exists`).
//!
//! `SONDE_KERNEL_FEATURES_OFF` (comma-separated feature ids) makes the loader treat
//! features as missing, so every variant can be loaded and tested on a kernel that has
//! everything.

/// The environment variable listing features to treat as missing.
pub const FEATURES_OFF_ENV: &str = "SONDE_KERNEL_FEATURES_OFF";

/// A kernel feature some kernels lack.
#[derive(Debug)]
pub struct Feature {
    /// Its name in `SONDE_KERNEL_FEATURES_OFF` and in `sonde check`.
    pub id: &'static str,
    /// What it is, with the first kernel release that has it.
    pub what: &'static str,
    pub kind: FeatureKind,
}

#[derive(Debug)]
pub enum FeatureKind {
    /// A helper the program's type may call only on newer kernels. Only the verifier knows
    /// whether this kernel allows it: a refusal that names the helper means it does not.
    Helper { name: &'static str },
    /// Classic tracepoints (category, name): tracefs says whether they exist.
    TracePoints(&'static [(&'static str, &'static str)]),
}

/// What runs where a feature is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Without {
    /// This program of the same object, which does without the feature.
    Program(&'static str),
    /// No program: the probe is left out and the rest of the family covers what it can.
    Nothing,
}

/// One probe's need of one feature.
#[derive(Debug)]
pub struct Need {
    /// The probe (`ProgramSpec::probe`) that needs it.
    pub probe: &'static str,
    pub feature: &'static Feature,
    pub without: Without,
    /// What is lost without it, as `sonde check` says it.
    pub lost: &'static str,
}

/// The feature ids `SONDE_KERNEL_FEATURES_OFF` lists.
pub fn features_off() -> Vec<String> {
    std::env::var(FEATURES_OFF_ENV)
        .map(|v| parse_off(&v))
        .unwrap_or_default()
}

fn parse_off(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Why a need is missing before anything is loaded: switched off, or a tracepoint this
/// kernel lacks (`tracepoint_exists`: `None` when tracefs cannot say).
pub fn missing_before_load(
    need: &Need,
    off: &[String],
    tracepoint_exists: impl Fn(&str, &str) -> Option<bool>,
) -> Option<String> {
    if off.iter().any(|o| o == need.feature.id) {
        return Some(format!("switched off by {FEATURES_OFF_ENV}"));
    }
    if let FeatureKind::TracePoints(tps) = need.feature.kind {
        for (category, name) in tps {
            if tracepoint_exists(category, name) == Some(false) {
                return Some(format!("this kernel has no tracepoint {category}:{name}"));
            }
        }
    }
    None
}

/// The need (index into `needs`) whose helper a verifier refusal names, among those not
/// yet known missing.
pub fn refused_helper(
    needs: &[&Need],
    missing: &[(usize, String)],
    refusal: &str,
) -> Option<usize> {
    needs.iter().enumerate().position(|(i, n)| {
        !missing.iter().any(|(m, _)| *m == i)
            && matches!(n.feature.kind, FeatureKind::Helper { name } if refusal.contains(name))
    })
}

/// What to load for a probe whose program is `program`, given its needs (in declared
/// order) and those missing (index, why): each missing need replaces the program with its
/// `without`, the later need's choice winning, so needs are declared from the one whose
/// loss costs least. Returns the program (`None`: nothing) and, when anything is missing,
/// what is lost and why.
pub fn choose(
    program: &'static str,
    needs: &[&Need],
    missing: &[(usize, String)],
) -> (Option<&'static str>, Option<String>) {
    let mut chosen = Some(program);
    let mut said = Vec::new();
    for (i, n) in needs.iter().enumerate() {
        if let Some((_, why)) = missing.iter().find(|(m, _)| *m == i) {
            chosen = match n.without {
                Without::Program(p) => Some(p),
                Without::Nothing => None,
            };
            said.push(format!("{} (needs {}: {why})", n.lost, n.feature.what));
        }
    }
    let degraded = (!said.is_empty()).then(|| said.join("; "));
    (chosen, degraded)
}

#[cfg(test)]
mod tests {
    use super::*;

    static PID: Feature = Feature {
        id: "t.pid",
        what: "helper bpf_get_current_pid_tgid (6.10)",
        kind: FeatureKind::Helper {
            name: "bpf_get_current_pid_tgid",
        },
    };
    static COMM: Feature = Feature {
        id: "t.comm",
        what: "helper bpf_get_current_comm (6.16)",
        kind: FeatureKind::Helper {
            name: "bpf_get_current_comm",
        },
    };
    static TP: Feature = Feature {
        id: "t.tp",
        what: "tracepoint sock:sock_send_length (6.3)",
        kind: FeatureKind::TracePoints(&[("sock", "sock_send_length")]),
    };
    static NEEDS: [Need; 3] = [
        Need {
            probe: "x.egress",
            feature: &COMM,
            without: Without::Program("pid_only"),
            lost: "no names",
        },
        Need {
            probe: "x.egress",
            feature: &PID,
            without: Without::Program("anon"),
            lost: "no pids",
        },
        Need {
            probe: "x.send",
            feature: &TP,
            without: Without::Nothing,
            lost: "bytes at close only",
        },
    ];

    #[test]
    fn the_later_missing_need_decides_and_every_loss_is_said() {
        let egress: Vec<&Need> = NEEDS[..2].iter().collect();
        assert_eq!(choose("full", &egress, &[]), (Some("full"), None));
        let (p, why) = choose("full", &egress, &[(0, "off".into())]);
        assert_eq!(p, Some("pid_only"));
        assert_eq!(
            why.as_deref(),
            Some("no names (needs helper bpf_get_current_comm (6.16): off)")
        );
        let (p, why) = choose("full", &egress, &[(1, "refused".into()), (0, "off".into())]);
        assert_eq!(p, Some("anon"));
        assert!(why.expect("degraded").contains("no pids"));
        let send: Vec<&Need> = NEEDS[2..].iter().collect();
        assert_eq!(choose("send", &send, &[(0, "gone".into())]).0, None);
    }

    #[test]
    fn missing_features_are_found_by_switch_tracefs_or_the_verifiers_words() {
        let off = parse_off(" t.comm, ,t.other");
        assert_eq!(off, ["t.comm", "t.other"]);
        let none = |_: &str, _: &str| Some(true);
        assert!(missing_before_load(&NEEDS[0], &off, none)
            .expect("switched off")
            .contains(FEATURES_OFF_ENV));
        assert_eq!(missing_before_load(&NEEDS[1], &off, none), None);
        assert_eq!(
            missing_before_load(&NEEDS[2], &[], |c, n| Some(
                !(c == "sock" && n == "sock_send_length")
            )),
            Some("this kernel has no tracepoint sock:sock_send_length".into())
        );
        assert_eq!(
            missing_before_load(&NEEDS[2], &[], |_, _| None),
            None,
            "tracefs cannot say"
        );

        let egress: Vec<&Need> = NEEDS[..2].iter().collect();
        let refusal = "program of this type cannot use helper bpf_get_current_pid_tgid#14";
        assert_eq!(refused_helper(&egress, &[], refusal), Some(1));
        assert_eq!(
            refused_helper(&egress, &[(1, String::new())], refusal),
            None
        );
        assert_eq!(refused_helper(&egress, &[], "R1 invalid mem access"), None);
    }
}

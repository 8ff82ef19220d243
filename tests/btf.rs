//! The kernel BTF cut down for each probe object (probe::btf) relocates every object
//! exactly as the kernel's whole BTF does: every instruction of every function the same,
//! with aya's own relocation code (aya-obj) run against both. And it is small.
//!
//! Reads /sys/kernel/btf/vmlinux (no root needed).

use aya_obj::btf::Btf;
use aya_obj::Object;

/// An instruction's fields: opcode, destination and source registers, offset, immediate.
type Insn = (u8, u8, u8, i16, i32);

/// Every function of the object (name, instructions) after relocation against `btf`.
fn relocated(object: &[u8], btf: &Btf) -> Vec<(String, Vec<Insn>)> {
    let mut obj = Object::parse(object).expect("the embedded object parses");
    obj.relocate_btf(btf).expect("relocation succeeds");
    obj.functions
        .values()
        .map(|f| {
            let insns = f
                .instructions
                .iter()
                .map(|i| (i.code, i.dst_reg(), i.src_reg(), i.off, i.imm))
                .collect();
            (f.name.clone(), insns)
        })
        .collect()
}

#[test]
fn the_cut_down_btf_relocates_every_object_as_the_whole_one_does() {
    let whole = Btf::from_sys_fs().expect("this kernel has BTF");
    // Not vacuous: without the kernel's types the programs come out otherwise.
    let tcp = sonde_probes::Family::Tcp.object();
    assert_ne!(relocated(tcp, &whole), relocated(tcp, &Btf::new()));
    let whole_size = whole.to_bytes().len();
    for family in sonde_probes::Family::ALL {
        let cut = sonde::probe::btf::for_object(family.object())
            .unwrap_or_else(|e| panic!("{}: {e}", family.name()))
            .unwrap_or_else(|| panic!("{}: the object has CO-RE relocations", family.name()));
        let cut_size = cut.to_bytes().len();
        assert!(
            cut_size * 20 < whole_size,
            "{}: the cut-down BTF is {cut_size} bytes of the whole {whole_size}",
            family.name()
        );
        let (a, b) = (
            relocated(family.object(), &whole),
            relocated(family.object(), &cut),
        );
        assert_eq!(a.len(), b.len());
        for ((name, want), (_, got)) in a.iter().zip(&b) {
            assert_eq!(
                want,
                got,
                "{}: function {name} relocates differently",
                family.name()
            );
        }
        eprintln!(
            "{}: {cut_size} bytes of BTF instead of {whole_size}",
            family.name()
        );
    }
}

/// Raw tracepoint arguments are read from the kernel BTF's `btf_trace_*` typedefs, so a
/// program that reads its arguments in another order or of another type than this
/// kernel passes them is refused before it loads.
#[test]
fn raw_tracepoint_arguments_come_from_the_kernel_btf_and_a_mismatch_is_refused() {
    use sonde::probe::btf::{check_raw_args, raw_tracepoint_args, KernelArg, RawArg};
    let got = raw_tracepoint_args(&[
        "sock_send_length",
        "inet_sock_set_state",
        "tcp_retransmit_skb",
        "sonde_no_such_tracepoint",
    ])
    .expect("the kernel BTF reads");
    let sock = || KernelArg::Ptr("sock".into());
    assert_eq!(
        got[0],
        Some(vec![sock(), KernelArg::Int(4), KernelArg::Int(4)]),
        "sock_send_length(struct sock *sk, int ret, int flags)"
    );
    assert_eq!(
        got[1],
        Some(vec![sock(), KernelArg::Int(4), KernelArg::Int(4)]),
        "inet_sock_set_state(const struct sock *sk, const int oldstate, const int newstate)"
    );
    let retransmit = got[2].as_ref().expect("tcp_retransmit_skb");
    assert_eq!(retransmit[..2], [sock(), KernelArg::Ptr("sk_buff".into())]);
    assert_eq!(got[3], None, "no typedef, no arguments");

    let have = got[0].as_ref().expect("sock_send_length");
    let sock_length = [RawArg::Ptr("sock"), RawArg::Int(4), RawArg::Int(4)];
    assert_eq!(
        check_raw_args("sock_send_length", &sock_length, have),
        Ok(())
    );
    let swapped = [RawArg::Int(4), RawArg::Ptr("sock")];
    let why = check_raw_args("sock_send_length", &swapped, have).expect_err("refused");
    assert!(
        why.contains("argument 1") && why.contains("struct sock *"),
        "{why}"
    );
}

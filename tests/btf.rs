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

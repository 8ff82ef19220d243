//! Compiles the C probes (CO-RE) with clang into OUT_DIR and derives the Rust mirror of
//! `include/sonde_abi.h` with bindgen. Embedding happens in `src/lib.rs`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

#[path = "src/grid.rs"]
#[expect(
    dead_code,
    reason = "build.rs uses only the header generator of the shared grid"
)]
mod grid;

/// Probe families: each is one C file and one object, so one that fails to load or
/// attach leaves the others running.
const FAMILIES: &[&str] = &["process", "fileio", "tcp", "dns", "netio"];

fn main() -> Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let include = manifest.join("include");

    println!("cargo:rerun-if-changed=include");
    println!("cargo:rerun-if-changed=src/bpf");
    println!("cargo:rerun-if-env-changed=SONDE_CLANG");
    println!("cargo:rerun-if-env-changed=SONDE_LLVM_STRIP");

    let clang = env::var("SONDE_CLANG").unwrap_or_else(|_| "clang".to_owned());
    check_clang(&clang)?;
    check_libbpf_headers(&clang)?;
    let strip = env::var("SONDE_LLVM_STRIP").unwrap_or_else(|_| "llvm-strip".to_owned());

    // The histogram grid's constants and tables, from the one Rust definition.
    println!("cargo:rerun-if-changed=src/grid.rs");
    std::fs::write(out.join("sonde_grid.h"), grid::c_header())
        .with_context(|| format!("writing {}", out.join("sonde_grid.h").display()))?;

    for family in FAMILIES {
        let src = manifest.join("src/bpf").join(format!("{family}.bpf.c"));
        let obj = out.join(format!("{family}.bpf.o"));
        compile(&clang, &[&include, &out], &src, &obj)?;
        strip_dwarf(&strip, &obj)?;
    }

    generate_abi(&include.join("sonde_abi.h"), &out, &out.join("abi.rs"))
}

fn check_clang(clang: &str) -> Result<()> {
    match Command::new(clang).arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => bail!(
            "`{clang}` was not found: Sonde's eBPF probes are C compiled by clang.\n\
             Install it with `sudo apt-get install clang libbpf-dev` (Debian/Ubuntu), \
             or point SONDE_CLANG at a clang binary."
        ),
    }
}

fn check_libbpf_headers(clang: &str) -> Result<()> {
    // Ask the compiler where it would find the header rather than guessing paths.
    let probe = Command::new(clang)
        .args(["-target", "bpf", "-E", "-x", "c", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            if let Some(stdin) = child.stdin.as_mut() {
                stdin.write_all(b"#include <bpf/bpf_helpers.h>\n")?;
            }
            child.wait()
        });
    match probe {
        Ok(s) if s.success() => Ok(()),
        _ => bail!(
            "libbpf headers (<bpf/bpf_helpers.h>) were not found: install them with \
             `sudo apt-get install libbpf-dev` (Debian/Ubuntu)."
        ),
    }
}

/// Drops the DWARF sections `-g` adds beside the BTF: CO-RE and the verifier read .BTF and
/// .BTF.ext (which keeps the line info), nothing reads DWARF, and it is four fifths of each
/// object, embedded in the binary and resident once loaded (3.0 MB of objects -> 0.5 MB).
fn strip_dwarf(strip: &str, obj: &Path) -> Result<()> {
    let status = Command::new(strip)
        .arg("--strip-debug")
        .arg(obj)
        .status()
        .with_context(|| {
            format!(
                "running `{strip}` on {}: install it with `sudo apt-get install llvm` \
                 (Debian/Ubuntu), or point SONDE_LLVM_STRIP at an llvm-strip binary",
                obj.display()
            )
        })?;
    if !status.success() {
        bail!("{strip} failed on {} (see the errors above)", obj.display());
    }
    Ok(())
}

fn compile(clang: &str, includes: &[&Path], src: &Path, obj: &Path) -> Result<()> {
    let arch = match env::var("CARGO_CFG_TARGET_ARCH")?.as_str() {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        other => bail!("no eBPF target arch mapping for {other}: add one in probes/build.rs"),
    };
    let mut cmd = Command::new(clang);
    // The instruction set is pinned, not left to clang's default (which changes between
    // releases): v3 (32-bit jumps and subregisters) is verified by every kernel since
    // 5.1, below the 5.8 that the ring buffer needs. Atomics whose result is used would
    // need 5.12: the probes only add.
    cmd.args([
        "-target", "bpf", "-mcpu=v3", "-O2", "-g", "-Wall", "-Werror",
    ])
    .arg(format!("-D__TARGET_ARCH_{arch}"));
    for include in includes {
        cmd.arg("-I").arg(include);
    }
    let status = cmd
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(obj)
        .status()
        .with_context(|| format!("running {clang} on {}", src.display()))?;
    if !status.success() {
        bail!(
            "clang failed to compile {} (see the errors above)",
            src.display()
        );
    }
    Ok(())
}

fn generate_abi(header: &Path, generated: &Path, out: &Path) -> Result<()> {
    let bindings = bindgen::Builder::default()
        .header(header.to_string_lossy())
        .clang_arg(format!("-I{}", generated.display()))
        .allowlist_type("sonde_.*")
        .allowlist_var("SONDE_.*")
        .rustified_enum("sonde_.*")
        .derive_default(true)
        .derive_debug(true)
        .layout_tests(true)
        .use_core()
        .generate()
        .map_err(|e| {
            anyhow::anyhow!(
                "bindgen could not read {}: {e}. It needs libclang: \
                 `sudo apt-get install libclang-dev` (Debian/Ubuntu).",
                header.display()
            )
        })?;
    bindings
        .write_to_file(out)
        .with_context(|| format!("writing {}", out.display()))
}

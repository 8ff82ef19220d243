# Sonde's container image. Build: docker build -t sonde .
# Stage 1 builds with the pinned Rust toolchain (rust-version in Cargo.toml) and the probe
# toolchain (clang, libbpf headers, libclang for bindgen); stage 2 is a slim Debian with the
# binary, a non-root user and file capabilities, so no root is needed at run time.
FROM rust:1.95.0-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm libbpf-dev libclang-dev libc6-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sonde \
 && install -m 0755 target/release/sonde /usr/local/bin/sonde

FROM debian:12.8-slim
# The capabilities `sonde check` lists for the default config (see examples/sonde.service):
# BPF + PERFMON load and attach, NET_ADMIN attaches the DNS probe, DAC_READ_SEARCH +
# SYS_PTRACE read other users' /proc, SETPCAP shrinks the bounding set, SYS_RESOURCE for
# kernels before 5.11. As file capabilities they work for a non-root user; the runtime must
# grant the same set (cap_add) and allow privilege escalation (file capabilities need it).
COPY --from=build /usr/local/bin/sonde /usr/local/bin/sonde
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin \
 && setcap cap_bpf,cap_perfmon,cap_net_admin,cap_dac_read_search,cap_sys_ptrace,cap_setpcap,cap_sys_resource+ep /usr/local/bin/sonde \
 && apt-get purge -y libcap2-bin && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin sonde \
 && install -d -o sonde -g sonde /var/lib/sonde /var/lib/sonde/queue
COPY deploy/sonde.yaml /etc/sonde/sonde.yaml
USER sonde
# 9464: Prometheus endpoint; 13133: /healthz and /readyz (deploy/sonde.yaml).
EXPOSE 9464 13133
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/13133 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/sonde"]
CMD ["run", "--config", "/etc/sonde/sonde.yaml"]

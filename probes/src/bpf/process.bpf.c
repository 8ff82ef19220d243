// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Process lifecycle: creation, exec and exit, from scheduler tracepoints.
 *
 * Counts are kept in a per-CPU array (no locking, read once per tick by userspace);
 * only exec events go through the ring buffer, because userspace needs the executable
 * name and the rate of execs is low.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "sonde_abi.h"
#include "sonde_ring.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SONDE_PROC_COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} process_counters SEC(".maps");

#define PROCESS_RING_BYTES (256 * 1024)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PROCESS_RING_BYTES);
} process_events SEC(".maps");

/* Per-executable totals: CPU of threads that ended, OOM kills. Userspace deletes idle keys. */
#define PROCESS_TOTALS_MAX 10240

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PROCESS_TOTALS_MAX);
	__type(key, struct sonde_proc_total_key);
	__type(value, struct sonde_proc_total);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} process_totals SEC(".maps");

/* What found `process_totals` full: exported as the overflow series, so sums stay exact. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sonde_proc_total);
} process_totals_overflow SEC(".maps");

#define PROCESS_EXITS_BYTES (64 * 1024)

/* Processes worth a span (failed, killed, long-running): low rate, read by userspace. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PROCESS_EXITS_BYTES);
} process_exits SEC(".maps");

/*
 * The last exec of each live process, while process spans are on: where its span starts
 * ("from exec to exit"). Keyed by thread-group id, checked against the leader's start
 * time (a reused pid is another process), deleted at the group's exit. A plain hash
 * rather than task storage keeps the family on 5.8 kernels; not preallocated, so it pins
 * memory only for processes that exec'd while spans were on. When full, an exec is not
 * remembered (counted) and that process's span starts at its fork.
 */
#define PROCESS_EXECS_MAX 16384

struct exec_start {
	__u64 leader_start_ns; /* the group leader's start_time when it exec'd */
	__u64 exec_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PROCESS_EXECS_MAX);
	__type(key, __u32);
	__type(value, struct exec_start);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} process_execs SEC(".maps");

/* Set by userspace at load: 1 = write `process_exits` (process spans are on). */
const volatile __u32 sonde_exit_spans = 0;
/* With spans on: processes that ran longer than this (ms) qualify too; 0 = off. */
const volatile __u32 sonde_exit_span_min_ms = 0;

static __always_inline void bump(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&process_counters, &slot);
	if (v)
		*v += 1; /* per-CPU slot: no other writer */
}

/*
 * Raw tracepoint, because only it hands us the child task: the classic tracepoint
 * carries the child's tid but not whether it is a thread or a new process.
 * args: (struct task_struct *parent, struct task_struct *child)
 */
SEC("raw_tracepoint/sched_process_fork")
int sonde_process_fork(__u64 *ctx)
{
	struct task_struct *child = (struct task_struct *)ctx[1];
	pid_t pid = BPF_CORE_READ(child, pid);
	pid_t tgid = BPF_CORE_READ(child, tgid);

	if (pid == tgid)
		bump(SONDE_PROC_CREATED);
	return 0;
}

SEC("tracepoint/sched/sched_process_exec")
int sonde_process_exec(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct sonde_exec_event *e;

	bump(SONDE_PROC_EXEC);

	if (sonde_exit_spans) {
		/* By this tracepoint de_thread() has made the exec'ing thread the leader, with the
		 * group's tgid and start_time. */
		struct exec_start s = {
			.leader_start_ns = BPF_CORE_READ(task, start_time),
			.exec_ns = bpf_ktime_get_ns(),
		};
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;

		if (bpf_map_update_elem(&process_execs, &tgid, &s, BPF_ANY))
			bump(SONDE_PROC_LOST_EXEC_STARTS);
	}

	e = bpf_ringbuf_reserve(&process_events, sizeof(*e), 0);
	if (!e) {
		bump(SONDE_PROC_LOST_RINGBUF);
		return 0;
	}
	e->ktime_ns = bpf_ktime_get_ns();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	/* By this tracepoint the kernel has set comm to the new executable's basename. */
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->cgroup_id = bpf_get_current_cgroup_id();
	/* Userspace drains at every snapshot and on a short timer: wake it only per quarter
	 * of the ring, so that a burst cannot overflow it (sonde_ring.h). */
	sonde_ring_submit(&process_events, e, sizeof(*e), PROCESS_RING_BYTES / 4);
	return 0;
}

#define SIGNAL_GROUP_EXIT 0x00000004 /* include/linux/sched/signal.h */

/*
 * The system part of a task's precise run time, split as cputime_adjust()
 * (kernel/sched/cputime.c) splits it for getrusage(2) and /proc: run time (ns, exact)
 * in the ratio of the tick samples of user and system time; all user when no tick saw
 * the task in the kernel. stime * rtime / total without 128-bit arithmetic: a 20-bit
 * fraction (error below 1e-6 of rtime).
 */
static __always_inline __u64 system_share(__u64 stime, __u64 utime, __u64 rtime)
{
	__u64 total = stime + utime, frac;

	if (stime == 0)
		return 0;
	if (utime == 0)
		return rtime;
	/* Keep stime << 20 within 64 bits. */
	for (int i = 0; i < 21 && (total >> 43); i++) {
		total >>= 1;
		stime >>= 1;
	}
	if (total == 0)
		return 0;
	frac = (stime << 20) / total;
	return (rtime >> 20) * frac + (((rtime & ((1ULL << 20) - 1)) * frac) >> 20);
}

/* The executable a task's thread group runs: its leader's comm (threads may rename). */
static __always_inline void leader_comm(struct task_struct *task, struct sonde_proc_total_key *key)
{
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);

	__builtin_memset(key, 0, sizeof(*key));
	bpf_probe_read_kernel_str(key->comm, sizeof(key->comm), &leader->comm);
}

/* Adds to the executable's totals, or to the overflow slot when the hash is full. */
static __always_inline void add_totals(struct sonde_proc_total_key *key, __u64 user_ns,
				       __u64 system_ns, __u64 oom_kills)
{
	struct sonde_proc_total *t = bpf_map_lookup_elem(&process_totals, key);

	if (!t) {
		struct sonde_proc_total zero = {};
		__u32 slot = 0;

		/* BPF_NOEXIST: two CPUs adding the first exit of a name both end up adding below. */
		bpf_map_update_elem(&process_totals, key, &zero, BPF_NOEXIST);
		t = bpf_map_lookup_elem(&process_totals, key);
		if (!t) {
			/* Full: per-CPU slot, no other writer. */
			t = bpf_map_lookup_elem(&process_totals_overflow, &slot);
			if (t) {
				t->user_ns += user_ns;
				t->system_ns += system_ns;
				t->oom_kills += oom_kills;
			}
			return;
		}
	}
	if (user_ns)
		__sync_fetch_and_add(&t->user_ns, user_ns);
	if (system_ns)
		__sync_fetch_and_add(&t->system_ns, system_ns);
	if (oom_kills)
		__sync_fetch_and_add(&t->oom_kills, oom_kills);
}

/*
 * Each thread adds its own CPU at its own exit, so a process's whole CPU is counted once
 * its last thread has ended, even if no /proc reading ever saw it. Reading the signal
 * struct's totals at the group's end instead would miss threads that are still between
 * their exit and their release at that instant (exit_group kills them all at once).
 * What the scheduler has not yet added to sum_exec_runtime (at most one tick of a task
 * that ran up to here) and the rest of the exit path are not counted.
 */
static __always_inline void add_thread_cpu(struct task_struct *task)
{
	struct sonde_proc_total_key key;
	__u64 utime = BPF_CORE_READ(task, utime);
	__u64 stime = BPF_CORE_READ(task, stime);
	__u64 rtime = BPF_CORE_READ(task, se.sum_exec_runtime);
	__u64 sys = system_share(stime, utime, rtime);

	if (rtime == 0)
		return;
	leader_comm(task, &key);
	/* The exiting task is current, still in its cgroup (cgroup_exit comes later). */
	key.cgroup_id = bpf_get_current_cgroup_id();
	add_totals(&key, rtime - sys, sys, 0);
}

/*
 * A span candidate: failed, killed, or (when configured) long-running, timed from its
 * last exec (else from its fork). Every group exit forgets the group's exec.
 */
static __always_inline void emit_exit(struct task_struct *task, int code)
{
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);
	__u64 start = BPF_CORE_READ(leader, start_time);
	__u64 now = bpf_ktime_get_ns();
	__u32 tgid = BPF_CORE_READ(task, tgid);
	__u32 started = SONDE_EXIT_FROM_FORK;
	struct sonde_exit_event *e;
	struct exec_start *x = bpf_map_lookup_elem(&process_execs, &tgid);

	if (x) {
		if (x->leader_start_ns == start) {
			start = x->exec_ns;
			started = SONDE_EXIT_FROM_EXEC;
		}
		bpf_map_delete_elem(&process_execs, &tgid);
	}
	if (code == 0 && (sonde_exit_span_min_ms == 0 ||
			  now - start <= (__u64)sonde_exit_span_min_ms * 1000000ULL))
		return;
	e = bpf_ringbuf_reserve(&process_exits, sizeof(*e), 0);
	if (!e) {
		bump(SONDE_PROC_LOST_EXITS);
		return;
	}
	e->start_ns = start;
	e->end_ns = now;
	/* The exiting task is current, still in its cgroup (cgroup_exit comes later). */
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->pid = tgid;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->status = code;
	e->started = started;
	__builtin_memset(e->comm, 0, sizeof(e->comm));
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), &leader->comm);
	/* Low rate, and the reader drains on a timer: wake it only when a burst fills it. */
	sonde_ring_submit(&process_exits, e, sizeof(*e), PROCESS_EXITS_BYTES / 4);
}

/*
 * Fires in the context of the exiting task, once per thread. A process ends when its last
 * thread does, not when its leader does: a leader can pthread_exit while the others run
 * on, and exec from another thread kills the old leader without ending the process. The
 * tracepoint says whether this thread was the group's last (`group_dead`, newer kernels);
 * older kernels lack it, and then the thread that finds no live thread left counts, which
 * can count twice if the last two threads exit at the same instant.
 */
SEC("tracepoint/sched/sched_process_exit")
int sonde_process_exit(struct trace_event_raw_sched_process_exit *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct signal_struct *sig = BPF_CORE_READ(task, signal);
	int code;

	add_thread_cpu(task);

	if (bpf_core_field_exists(ctx->group_dead)) {
		if (!ctx->group_dead)
			return 0;
	} else if (BPF_CORE_READ(sig, live.counter) != 0) {
		return 0;
	}

	/* The status wait(2) reports for the process (wait_task_zombie): the group's exit
	 * code after exit_group(2) or a fatal signal, else its leader's own exit code.
	 * Layout: low 7 bits = terminating signal, bits 8..15 = exit status. */
	if (BPF_CORE_READ(sig, flags) & SIGNAL_GROUP_EXIT)
		code = BPF_CORE_READ(sig, group_exit_code);
	else
		code = BPF_CORE_READ(task, group_leader, exit_code);
	if (code & 0x7f)
		bump(SONDE_PROC_EXIT_SIGNAL);
	else if ((code >> 8) & 0xff)
		bump(SONDE_PROC_EXIT_FAILURE);
	else
		bump(SONDE_PROC_EXIT_SUCCESS);
	if (sonde_exit_spans)
		emit_exit(task, code);
	return 0;
}

/*
 * The OOM killer chose a victim (once per victim: the kernel marks it once). Newer
 * kernels (6.8+) pass the victim task, older ones only its pid: there the kill is counted
 * under an unknown name.
 */
SEC("raw_tracepoint/mark_victim")
int sonde_process_oom(__u64 *ctx)
{
	struct sonde_proc_total_key key = {};

	if (bpf_core_field_exists(((struct trace_event_raw_mark_victim *)0)->__data_loc_comm)) {
		struct task_struct *victim = (struct task_struct *)ctx[0];

		leader_comm(victim, &key);
		/* The victim's cgroup v2 (the default hierarchy's) id, as the other probes record. */
		key.cgroup_id = BPF_CORE_READ(victim, cgroups, dfl_cgrp, kn, id);
	}
	add_totals(&key, 0, 0, 1);
	return 0;
}

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
	/*
	 * Waking the reader for every record cost ~40 us of agent CPU per exec (a context
	 * switch each). Userspace drains at every snapshot and on a short timer anyway, so
	 * wake it only when the ring is a quarter full and a burst could otherwise overflow.
	 */
	bpf_ringbuf_submit(e, bpf_ringbuf_query(&process_events, BPF_RB_AVAIL_DATA) >
					  PROCESS_RING_BYTES / 4
				      ? BPF_RB_FORCE_WAKEUP
				      : BPF_RB_NO_WAKEUP);
	return 0;
}

#define SIGNAL_GROUP_EXIT 0x00000004 /* include/linux/sched/signal.h */

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
	return 0;
}

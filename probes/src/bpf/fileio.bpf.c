// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * File and block I/O.
 *
 * File I/O: read, write, pread64, pwrite64, readv and writev, from their syscall
 * tracepoints. These are the highest-rate events Sonde watches, so everything is
 * aggregated here, in per-CPU maps that userspace reads once per tick:
 *   - the start of each call lives in task storage (cheaper than a hash keyed by
 *     pid_tgid: no hashing, no bucket lock, freed with the task), and in a per-CPU
 *     copy that the exit takes instead when the task never left the CPU (`cpu_call`);
 *   - whether the fd is a regular file is decided at entry, walking
 *     task->files->fdt->fd[fd]->f_inode->{i_mode, i_sb->s_dev}: the first hops are
 *     direct BTF loads (no helper call), the rest CO-RE probe reads, and the answer is
 *     remembered per task for its last fd in each direction (see `struct fd_memo`), so
 *     a loop on one fd pays two probe reads per call. Calls on pipes, sockets, ttys and
 *     every other non-regular fd cost nothing at exit but the per-CPU slot check;
 *   - completed calls add to a latency histogram (the grid of sonde_hist.h), an op and a byte counter per
 *     (file system, direction), and a byte counter per (process, file system, direction).
 *     A file system's counters sit in arrays at a number it is given once (see
 *     `fs_number`), remembered with the fd, so the hot path does no hash lookup for them
 *     and its op, byte and time counters are per-CPU (no atomic add, no cache line
 *     shared between CPUs); only the histogram bucket is a shared atomic add.
 *
 * Block I/O: block_rq_issue / block_rq_complete raw tracepoints (they hand us the
 * request itself, so issue and completion are paired by its address). Per device and
 * direction: latency histogram, bytes, ops, busy time. Per process: bytes by the
 * task that issued the request, when that is a user task (see the attribution note at
 * `sonde_block_issue`).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "sonde_abi.h"
#include "sonde_hist.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define S_IFMT 00170000
#define S_IFREG 0100000
#define PF_KTHREAD 0x00200000
#define REQ_OP_MASK 0xff
#define REQ_OP_READ 0
#define REQ_OP_WRITE 1
#define MINORBITS 20

/* Super block magics of the pseudo file systems left out by default: their "files" are
 * kernel state rendered on read (procfs, sysfs, cgroup v1 and v2, tracefs, debugfs), so
 * their reads are the cost of monitoring, not storage I/O, and a busy agent would
 * dominate the figures. */
#define PROC_SUPER_MAGIC 0x9fa0
#define SYSFS_MAGIC 0x62656572
#define CGROUP_SUPER_MAGIC 0x27e0eb
#define CGROUP2_SUPER_MAGIC 0x63677270
#define TRACEFS_MAGIC 0x74726163
#define DEBUGFS_MAGIC 0x64626720

/* 1: count file I/O on the pseudo file systems above too (probes.fileio.pseudo_filesystems).
 * Set by userspace before load. */
const volatile __u32 sonde_fileio_pseudo_fs = 0;

/*
 * Kernel memory: per-CPU values are allocated on every possible CPU (64 on a large
 * node), so only the hottest, smallest maps are per-CPU, and the sparse ones are not
 * preallocated: they pin memory for the entries they hold, not for all they could.
 */

/* File systems doing file I/O (each container's overlay is one), by dev_t: their number
 * (sonde_abi.h, SONDE_FILEIO_FS_MAX). Userspace takes a number back once its file system
 * has been idle for the series TTL (a container's overlay after the container is gone):
 * it deletes the entry here, bumps `fileio_fs_gen`, zeroes the number's totals and
 * histograms and only then frees the number in `fileio_fs_taken`. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SONDE_FILEIO_FS_MAX);
	__type(key, __u32);
	__type(value, __u32);
} fileio_fs SEC(".maps");

/* The numbers handed out, each to its dev_t: inserting with BPF_NOEXIST is how a CPU
 * takes a number without another taking it too (no compare-and-swap before 5.12). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SONDE_FILEIO_FS_MAX);
	__type(key, __u32);
	__type(value, __u32);
} fileio_fs_taken SEC(".maps");

/* The generation of the numbering: userspace moves it each time it takes numbers back,
 * so that no task's fd memo keeps a number that now belongs to another file system. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} fileio_fs_gen SEC(".maps");

/* Ops, bytes and time per (file system number, direction): per-CPU, 24 bytes a value. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * SONDE_FILEIO_FS_MAX);
	__type(key, __u32);
	__type(value, struct sonde_io_totals);
} fileio_totals SEC(".maps");

/* The latency histogram per (file system number, direction). Shared, with atomic adds,
 * not per-CPU: a value is a whole histogram on the grid (2 KiB), and 64 per-CPU copies
 * of 256 of them would pin 32 MiB. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * SONDE_FILEIO_FS_MAX);
	__type(key, __u32);
	__type(value, struct sonde_io_hist);
} fileio_hists SEC(".maps");

/* Userspace deletes the entries of exited processes each tick, so this bounds live ones.
 * Shared, with atomic adds: a process's entry is written by its own threads only, so
 * contention is low, and per-CPU copies of 16384 entries would pin 64 times the memory. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sonde_io_proc_key);
	__type(value, struct sonde_io_proc_value);
} fileio_procs SEC(".maps");

/* One entry per block device (disk or partition) and direction: 64 devices. Shared,
 * with atomic adds, as fileio_hists. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sonde_io_key);
	__type(value, struct sonde_io_stats);
} block_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sonde_io_proc_key);
	__type(value, struct sonde_io_proc_value);
} block_procs SEC(".maps");

/* Issue time of each request in flight, by its address. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u64);
} block_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SONDE_FILEIO_COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} fileio_counters SEC(".maps");

/* Per task, the call in flight. Internal to the kernel side: not part of the ABI. */
/*
 * The task's last fd per direction and what it was: (fd, struct file *, struct inode *)
 * -> dev (0: not a regular file). A task that keeps reading (or writing) the same fd,
 * the common hot loop, then pays two probe reads per call instead of five. Both pointers
 * must match: a closed file's struct can be reused at once for a new file on the same fd
 * (the file slab is SLAB_TYPESAFE_BY_RCU), so the file pointer alone would be wrong; an
 * inode cannot be freed while a file holds it, so matching inode pointers mean the same
 * inode, unless the old inode was evicted and its memory reused for a new inode of the
 * same slab cache, between two calls of this task, on a reused fd and a reused file
 * struct: a chance small enough to accept for one misclassified descriptor.
 */
struct fd_memo {
	__u64 fd;
	__u64 file;
	__u64 inode;
	__u32 dev;
	__u32 fs; /* the file system's number (fs_number), or NO_FS */
	__u32 gen; /* fileio_fs_gen when `fs` was looked up */
	__u32 _pad;
};

struct call {
	__u64 start_ns; /* 0: no regular-file call in flight */
	__u32 dev;
	__u32 fs;
	struct fd_memo memo[2]; /* by direction */
};

#define NO_FS 0xffffffff

/*
 * The call in flight on this CPU, a copy of what on_enter puts in the task's storage, so
 * that on_exit can skip the task-storage lookup (~50 ns on the test VM) when the task
 * never left the CPU in between: the same task, and the same count of context switches
 * (nvcsw + nivcsw move at every switch away from the task, and a task migrates only
 * while switched out). Then no other task ran here, so nothing else wrote this slot,
 * and the task made no other syscall, so the slot is this call's. Otherwise on_exit
 * reads the task's storage, which every on_enter writes.
 */
struct cpu_call {
	__u64 task;
	__u64 switches;
	__u64 start_ns; /* 0: not a regular-file call */
	__u32 dev;
	__u32 fs;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_call);
} fileio_cpu_call SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct call);
} fileio_calls SEC(".maps");

/* The initial value of new stats entries: too large for the 512-byte BPF stack. Never
 * written. */
static struct sonde_io_stats zero_stats;

static __always_inline void bump(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&fileio_counters, &slot);
	if (v)
		*v += 1; /* per-CPU slot: no other writer */
}

/*
 * The number of the file system `dev` (its place in fileio_totals and fileio_hists),
 * given on first sight: the lowest number no other file system has taken. Runs once per
 * (task, fd, file) at most (the fd memo keeps the answer), so the loop is off the hot path.
 * NO_FS once SONDE_FILEIO_FS_MAX file systems have numbers.
 */
static __always_inline __u32 fs_number(__u32 dev)
{
	__u32 *found = bpf_map_lookup_elem(&fileio_fs, &dev);
	__u32 i;

	if (found)
		return *found;
	for (i = 0; i < SONDE_FILEIO_FS_MAX; i++) {
		if (bpf_map_update_elem(&fileio_fs_taken, &i, &dev, BPF_NOEXIST))
			continue; /* another file system's */
		if (!bpf_map_update_elem(&fileio_fs, &dev, &i, BPF_NOEXIST))
			return i;
		/* Another CPU numbered this file system meanwhile: give ours back. */
		bpf_map_delete_elem(&fileio_fs_taken, &i);
		found = bpf_map_lookup_elem(&fileio_fs, &dev);
		return found ? *found : NO_FS;
	}
	return NO_FS;
}

static __always_inline int add_fs(__u32 fs, __u32 dir, __u64 bytes, __u64 ns)
{
	__u32 i = 2 * fs + (dir & 1);
	struct sonde_io_totals *t;
	struct sonde_io_hist *h;

	if (fs >= SONDE_FILEIO_FS_MAX)
		return -1;
	t = bpf_map_lookup_elem(&fileio_totals, &i);
	h = bpf_map_lookup_elem(&fileio_hists, &i);
	if (!t || !h)
		return -1; /* never: arrays hold every index */
	/* Per-CPU: no other writer. */
	t->ops += 1;
	t->bytes += bytes;
	t->time_ns += ns;
	__sync_fetch_and_add(&h->slots[sonde_hist_slot(ns)], 1); /* shared across CPUs */
	return 0;
}

/*
 * Bytes per process. The key names the process exactly: its thread group leader's start
 * time tells it from an earlier process that had the same pid, and its exec count gives
 * it a new entry at every exec, made with the new name, so bytes after an exec land under
 * the new executable (exec from any thread makes that thread the leader with the
 * leader's start time, and kills every other thread before the count moves). Userspace
 * deletes an entry only once nothing can add to it any more: its process is gone, or it
 * has an entry of a later exec. The cgroup is in the key too: a task moved into a
 * container's cgroup counts there from its next call on. It is read as
 * bpf_get_current_cgroup_id() does (the task's cgroup on the default hierarchy, its
 * kernfs id), with BTF loads instead of a helper call (`task` is the current task): a
 * helper call costs ~10 ns on kernels with return-thunk mitigations, per call.
 */
static __always_inline int add_proc(void *map, struct task_struct *task, __u32 dev, __u32 dir,
				    __u64 bytes)
{
	struct sonde_io_proc_key key = {
		.tgid = task->tgid,
		.dev = dev,
		.direction = dir,
		.exec_id = (__u32)task->self_exec_id,
		.start_ns = task->group_leader->start_boottime,
		.cgroup_id = task->cgroups->dfl_cgrp->kn->id,
	};
	struct sonde_io_proc_value *v = bpf_map_lookup_elem(map, &key);

	if (!v) {
		struct sonde_io_proc_value init = {};

		bpf_get_current_comm(init.comm, sizeof(init.comm));
		bpf_map_update_elem(map, &key, &init, BPF_NOEXIST);
		v = bpf_map_lookup_elem(map, &key);
		if (!v)
			return -1;
	}
	__sync_fetch_and_add(&v->bytes, bytes); /* shared across CPUs */
	__sync_fetch_and_add(&v->ops, 1);
	return 0;
}

static __always_inline int pseudo_fs(unsigned long magic)
{
	return magic == PROC_SUPER_MAGIC || magic == SYSFS_MAGIC || magic == CGROUP_SUPER_MAGIC ||
	       magic == CGROUP2_SUPER_MAGIC || magic == TRACEFS_MAGIC || magic == DEBUGFS_MAGIC;
}

/*
 * The dev_t of the file system holding `fd` if it is a regular file, else 0 (pipes,
 * sockets, ttys, directories, anonymous inodes, closed or out-of-range fds, and files on
 * pseudo file systems unless they are asked for). Devices with dev_t 0 do not exist: the
 * kernel hands out anonymous devices from minor 1.
 */
static __always_inline __u32 regular_file_dev(struct task_struct *task, __u64 fd,
					      struct fd_memo *memo)
{
	struct fdtable *fdt;
	struct file **fds;
	struct file *file = 0;
	struct inode *inode;
	umode_t mode;
	__u32 dev, zero = 0, g, *gen;

	/* Direct BTF loads: the verifier turns them into plain loads that cannot fault. */
	fdt = task->files->fdt;
	if (!fdt || fd >= fdt->max_fds)
		return 0;
	fds = fdt->fd;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	inode = BPF_CORE_READ(file, f_inode);
	if (!inode)
		return 0;
	/* Read before the number is looked up: userspace deletes a file system's entry
	 * before it moves the generation, so a memo made with this generation never holds a
	 * number taken back after it. */
	gen = bpf_map_lookup_elem(&fileio_fs_gen, &zero);
	g = gen ? *gen : 0;
	if (memo->fd == fd && memo->file == (__u64)file && memo->inode == (__u64)inode &&
	    (!memo->dev || memo->gen == g))
		return memo->dev;
	mode = BPF_CORE_READ(inode, i_mode);
	dev = 0;
	/* Decided once per (fd, file, inode): the memo keeps the answer, so a loop on one
	 * fd never reads the super block again. */
	if ((mode & S_IFMT) == S_IFREG &&
	    (sonde_fileio_pseudo_fs || !pseudo_fs(BPF_CORE_READ(inode, i_sb, s_magic))))
		dev = BPF_CORE_READ(inode, i_sb, s_dev);
	memo->fd = fd;
	memo->file = (__u64)file;
	memo->inode = (__u64)inode;
	memo->dev = dev;
	memo->fs = dev ? fs_number(dev) : NO_FS;
	memo->gen = g;
	return dev;
}

static __always_inline int on_enter(struct trace_event_raw_sys_enter *ctx, __u32 dir)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fd_memo *memo;
	struct cpu_call *here;
	struct call *c;
	__u32 zero = 0;
	__u32 dev;

	c = bpf_task_storage_get(&fileio_calls, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!c) {
		bump(SONDE_FILEIO_LOST_CALLS); /* no memory for the task's storage */
		return 0;
	}
	memo = &c->memo[dir & 1];
	dev = regular_file_dev(task, ctx->args[0], memo);
	if (!dev) {
		c->start_ns = 0;
	} else {
		c->dev = dev;
		c->fs = memo->fs;
		c->start_ns = bpf_ktime_get_ns();
	}
	/* Non-regular calls too: their exit then returns without the storage lookup. */
	here = bpf_map_lookup_elem(&fileio_cpu_call, &zero);
	if (here) {
		here->task = (__u64)task;
		here->switches = task->nvcsw + task->nivcsw;
		here->start_ns = c->start_ns;
		here->dev = c->dev;
		here->fs = c->fs;
	}
	return 0;
}

static __always_inline int on_exit(struct trace_event_raw_sys_exit *ctx, __u32 dir)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct cpu_call *here;
	struct call *c;
	__u64 start, ns, bytes;
	__u32 zero = 0, dev, fs;
	long ret;

	here = bpf_map_lookup_elem(&fileio_cpu_call, &zero);
	if (here && here->task == (__u64)task &&
	    here->switches == task->nvcsw + task->nivcsw) {
		start = here->start_ns;
		dev = here->dev;
		fs = here->fs;
		here->task = 0;
	} else {
		c = bpf_task_storage_get(&fileio_calls, task, 0, 0);
		if (!c)
			return 0;
		start = c->start_ns;
		dev = c->dev;
		fs = c->fs;
		c->start_ns = 0;
	}
	if (!start)
		return 0;
	ns = bpf_ktime_get_ns() - start;
	ret = ctx->ret;
	/* Failed calls (EAGAIN, EINTR, EBADF...) moved no data: not an operation. */
	if (ret < 0)
		return 0;
	bytes = (__u64)ret;
	if (add_fs(fs, dir, bytes, ns))
		bump(SONDE_FILEIO_LOST_STATS);
	if (add_proc(&fileio_procs, task, dev, dir, bytes))
		bump(SONDE_FILEIO_LOST_PROCS);
	return 0;
}

#define FILEIO_PAIR(sys, dir)                                                   \
	SEC("tracepoint/syscalls/sys_enter_" #sys)                              \
	int sonde_fileio_enter_##sys(struct trace_event_raw_sys_enter *ctx)     \
	{                                                                       \
		return on_enter(ctx, dir);                                      \
	}                                                                       \
	SEC("tracepoint/syscalls/sys_exit_" #sys)                               \
	int sonde_fileio_exit_##sys(struct trace_event_raw_sys_exit *ctx)       \
	{                                                                       \
		return on_exit(ctx, dir);                                       \
	}

FILEIO_PAIR(read, SONDE_IO_READ)
FILEIO_PAIR(write, SONDE_IO_WRITE)
FILEIO_PAIR(pread64, SONDE_IO_READ)
FILEIO_PAIR(pwrite64, SONDE_IO_WRITE)
FILEIO_PAIR(readv, SONDE_IO_READ)
FILEIO_PAIR(writev, SONDE_IO_WRITE)

/* ---- block I/O ----------------------------------------------------------------- */

/* Older kernels keep a request's disk in rq->rq_disk, newer ones only in
 * request_queue::disk: CO-RE picks whichever field the running kernel has. */
struct request___rq_disk {
	struct gendisk *rq_disk;
} __attribute__((preserve_access_index));

static __always_inline __u32 rq_dev(struct request *rq)
{
	struct block_device *part = BPF_CORE_READ(rq, part);
	struct gendisk *disk = 0;

	if (part)
		return BPF_CORE_READ(part, bd_dev);
	/* Requests without a partition (passthrough): the disk itself. */
	if (bpf_core_field_exists(struct request_queue, disk))
		disk = BPF_CORE_READ(rq, q, disk);
	else if (bpf_core_field_exists(struct request___rq_disk, rq_disk))
		disk = BPF_CORE_READ((struct request___rq_disk *)rq, rq_disk);
	if (!disk)
		return 0;
	return ((__u32)BPF_CORE_READ(disk, major) << MINORBITS) | (__u32)BPF_CORE_READ(disk, first_minor);
}

static __always_inline int rq_dir(struct request *rq)
{
	__u32 op = BPF_CORE_READ(rq, cmd_flags) & REQ_OP_MASK;

	if (op == REQ_OP_READ)
		return SONDE_IO_READ;
	if (op == REQ_OP_WRITE)
		return SONDE_IO_WRITE;
	return -1; /* flush, discard, zone ops...: no data direction, not counted */
}

/*
 * args: (struct request *rq).
 *
 * Attribution: this runs in the context of the task that dispatches the request to the
 * driver. For direct and synchronous I/O that is the process doing the I/O. Page-cache
 * writeback is issued by kernel flusher threads (kworker), long after and apart from the
 * write(2) that dirtied the pages; readahead and metadata I/O may be issued by kernel
 * threads too. Those bytes are counted for the device but attributed to no process, so
 * process.disk.io is a lower bound: the sum over processes can be below system.disk.io.
 */
SEC("raw_tracepoint/block_rq_issue")
int sonde_block_issue(__u64 *ctx)
{
	struct request *rq = (struct request *)ctx[0];
	struct task_struct *task;
	__u64 key = (__u64)rq;
	__u64 now = bpf_ktime_get_ns();
	int dir;

	if (bpf_map_update_elem(&block_start, &key, &now, BPF_ANY))
		bump(SONDE_BLOCK_LOST_START);

	dir = rq_dir(rq);
	if (dir < 0)
		return 0;
	task = bpf_get_current_task_btf();
	if (task->flags & PF_KTHREAD)
		return 0;
	if (add_proc(&block_procs, task, rq_dev(rq), dir, BPF_CORE_READ(rq, __data_len)))
		bump(SONDE_BLOCK_LOST_PROCS);
	return 0;
}

/*
 * args: (struct request *rq, blk_status_t error, unsigned int nr_bytes). A request may
 * complete in parts: bytes count per part, the operation and its latency once, at the
 * part that finishes it.
 */
SEC("raw_tracepoint/block_rq_complete")
int sonde_block_complete(__u64 *ctx)
{
	struct request *rq = (struct request *)ctx[0];
	__u32 nr_bytes = (__u32)ctx[2];
	__u64 key = (__u64)rq;
	__u64 *start, ns = 0;
	int timed = 0;
	struct sonde_io_key skey;
	struct sonde_io_stats *s;
	int dir = rq_dir(rq);
	int last;

	last = nr_bytes >= BPF_CORE_READ(rq, __data_len);
	if (last) {
		start = bpf_map_lookup_elem(&block_start, &key);
		if (start) {
			ns = bpf_ktime_get_ns() - *start;
			timed = 1;
			bpf_map_delete_elem(&block_start, &key);
		}
	}
	if (dir < 0)
		return 0;
	skey.dev = rq_dev(rq);
	skey.direction = dir;
	s = bpf_map_lookup_elem(&block_stats, &skey);
	if (!s) {
		bpf_map_update_elem(&block_stats, &skey, &zero_stats, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&block_stats, &skey);
		if (!s) {
			bump(SONDE_BLOCK_LOST_STATS);
			return 0;
		}
	}
	__sync_fetch_and_add(&s->bytes, nr_bytes); /* shared across CPUs */
	if (last)
		__sync_fetch_and_add(&s->ops, 1);
	/* Requests issued before the probe attached have no start: counted, not timed. */
	if (timed) {
		__sync_fetch_and_add(&s->time_ns, ns);
		__sync_fetch_and_add(&s->slots[sonde_hist_slot(ns)], 1);
	}
	return 0;
}

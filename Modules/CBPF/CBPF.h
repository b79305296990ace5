// libbpf 1.1 (objects, maps, tc clsact attach, BPF_PROG_TEST_RUN) and the BPF UAPI; statfs, which
// Glibc's Swift module leaves out, to recognise a mounted bpffs.
#include <sys/vfs.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#ifndef TABBY_SHIMS_H
#define TABBY_SHIMS_H

// Glibc declares setns/unshare and CLONE_NEWNET only under _GNU_SOURCE, which Swift's Glibc
// module does not define, so Swift cannot see them. These wrappers are the only way in.

/// setns(fd, CLONE_NEWNET): moves the calling thread (only) into the network namespace of fd.
int TB_setns_net(int fd);

/// unshare(CLONE_NEWNET): gives the calling thread (only) a new, empty network namespace.
int TB_unshare_net(void);

/// The CLONE_NEWNET flag, for callers that pass it to other syscalls.
int TB_clone_newnet(void);

#endif

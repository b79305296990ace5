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

/// posix_spawn_file_actions_addclosefrom_np(actions, from) (glibc 2.34+): the spawned process
/// gets no descriptor >= from. `actions` is a posix_spawn_file_actions_t *.
int TB_spawn_actions_closefrom(void *actions, int from);

#endif

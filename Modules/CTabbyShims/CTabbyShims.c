// See include/CTabbyShims.h: these exist because the declarations need _GNU_SOURCE.
#define _GNU_SOURCE
#include <sched.h>
#include <spawn.h>
#include "CTabbyShims.h"

// Why: setns is _GNU_SOURCE-only; the nstype pins the call to network namespaces.
int TB_setns_net(int fd) { return setns(fd, CLONE_NEWNET); }

// Why: unshare is _GNU_SOURCE-only.
int TB_unshare_net(void) { return unshare(CLONE_NEWNET); }

// Why: CLONE_NEWNET is a _GNU_SOURCE-only macro.
int TB_clone_newnet(void) { return CLONE_NEWNET; }

// Why: the _np spawn actions are declared only under _GNU_SOURCE.
int TB_spawn_actions_closefrom(void *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)actions, from);
}

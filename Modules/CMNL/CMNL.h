// libmnl and the rtnetlink UAPI, in an order the Swift importer accepts:
// <netinet/in.h> and <net/if.h> come first so the linux/ headers' libc-compat guards skip
// their own in_addr/ifreq definitions instead of clashing with glibc's.
#include <netinet/in.h>
#include <net/if.h>
#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/if_addr.h>
#include <linux/neighbour.h>
#include <linux/veth.h>

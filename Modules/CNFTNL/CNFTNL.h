// libnftnl and the nf_tables UAPI, in an order the Swift importer accepts:
// <netinet/in.h> comes first so the linux/ headers' libc-compat guards skip their own in_addr
// definitions instead of clashing with glibc's.
#include <netinet/in.h>
#include <libnftnl/table.h>
#include <libnftnl/chain.h>
#include <libnftnl/set.h>
#include <libnftnl/rule.h>
#include <libnftnl/expr.h>
#include <libnftnl/batch.h>
#include <libnftnl/gen.h>
#include <libnftnl/common.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

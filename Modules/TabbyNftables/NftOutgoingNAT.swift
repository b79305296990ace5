import Synchronization
import TabbyDataplane

/// `natOutgoing` on its own, for a dataplane that polices without nftables (eBPF): Tabby's table
/// `inet tabby` holding only the nat chain and the pool sets that `NftablesDataplane` would write.
/// Masquerading stays with netfilter's conntrack; the eBPF program sees a reply after its
/// destination was translated back, so its own flow entry matches.
///
/// The first `set` replaces the whole table, so what another backend left there (a node moved
/// from `--dataplane nftables`) goes with it; later calls send only the difference. With no pool
/// to masquerade the table is deleted.
public final class NftOutgoingNAT: OutgoingNATProgrammer {
    let committer: any NftCommitter
    private let state = Mutex<(plan: NftPlan?, started: Bool)>((nil, false))

    public init(committer: any NftCommitter) {
        self.committer = committer
    }

    public func set(_ nat: OutgoingNAT) throws(DataplaneError) {
        var plan = NftPlan()
        NftCompiler.addOutgoingNAT(nat, to: &plan)
        let (old, started) = state.withLock { ($0.plan, $0.started) }
        if plan.chains.isEmpty {
            if old != nil || !started { try committer.deleteTable() }
            state.withLock { $0 = (nil, true) }
            return
        }
        let changes = NftChange.between(started ? old : nil, plan)
        if !changes.isEmpty { try committer.commit(changes) }
        state.withLock { $0 = (plan, true) }
    }

    /// Deletes the table (what `set` wrote).
    public func remove() throws(DataplaneError) {
        try committer.deleteTable()
        state.withLock { $0 = (nil, true) }
    }
}

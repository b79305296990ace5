extension EBPFDataplane {
    /// Removes expired conntrack entries every `interval` (Calico's eBPF dataplane scans its
    /// conntrack map the same way): the program checks expiry on lookup, but the LRU map drops old
    /// entries only when it is full, so without a scan dead flows fill it and a busy node would
    /// evict live flows first. The live count goes to `status().trackedFlows`. Idempotent.
    public func startConntrackScanner(every interval: Duration = .seconds(10)) {
        state.withLock { state in
            guard state.scanner == nil else { return }
            state.scanner = Task.detached { [weak self] in
                while !Task.isCancelled {
                    self?.scanConntrack()
                    try? await Task.sleep(for: interval)
                }
            }
        }
    }

    public func stopConntrackScanner() {
        state.withLock { state in
            state.scanner?.cancel()
            state.scanner = nil
        }
    }

    /// One pass: removes expired entries; returns how many it removed.
    @discardableResult
    public func scanConntrack() -> Int {
        do {
            let (live, removed) = try program.removeExpiredConntrack()
            state.withLock { $0.trackedFlows = live }
            return removed
        } catch {
            state.withLock { $0.lastError = "scanning conntrack: \(error)" }
            return 0
        }
    }
}

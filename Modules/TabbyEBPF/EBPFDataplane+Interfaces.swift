import TabbyNetlink

extension EBPFDataplane {
    /// Attaches the program to every workload interface the moment netlink reports it (Calico's
    /// eBPF dataplane watches links the same way), and follows host interfaces and addresses for
    /// host endpoints (`hostInterfacesChanged`). Without the watch, an interface created between
    /// two applies (a pod's veth, made by the CNI plugin before its endpoint reaches the agent)
    /// would pass traffic unpoliced until the next apply; with it, the program is on the interface
    /// within milliseconds and drops everything until the endpoint's entry is written (fail
    /// closed). Idempotent: a second call keeps the running watch.
    public func watchInterfaces() throws {
        let prefix = configuration.workloadInterfacePrefix
        let namespacePath = namespacePath
        try state.withLock { state in
            guard state.monitor == nil else { return }
            state.monitor = try LinkMonitor(namespacePath: namespacePath, addresses: true) { [weak self] event in
                guard let self else { return }
                switch event {
                case .changed(let link) where link.name.hasPrefix(prefix):
                    self.attachAppeared([link])
                case .changed:
                    // A host interface: a `*` host endpoint may cover it now.
                    self.hostInterfacesChanged()
                case .removed(let link):
                    self.state.withLock { state in
                        if state.attached[link.index] == link.name { state.attached[link.index] = nil }
                    }
                    if !link.name.hasPrefix(prefix) { self.hostInterfacesChanged() }
                case .addressChanged:
                    self.hostInterfacesChanged()
                case .overrun:
                    // Events were lost: look at every interface instead.
                    if let links = try? Self.interfaces(in: namespacePath) {
                        self.attachAppeared(links.filter { $0.name.hasPrefix(prefix) })
                    }
                    self.hostInterfacesChanged()
                }
            }
        }
        // Interfaces made before the watch began: the next apply would attach them; do it now.
        attachAppeared(try Self.interfaces(in: namespacePath).filter { $0.name.hasPrefix(prefix) })
    }

    /// Ends the interface watch (tests; tabbyd's lasts as long as the process).
    public func stopWatchingInterfaces() {
        state.withLock { state in
            state.monitor?.stop()
            state.monitor = nil
        }
    }

    /// Attaches the program to those of `links` it is not on yet. A failure (the interface went
    /// away again) is kept as the dataplane's last error; the next apply attaches what is left.
    private func attachAppeared(_ links: [Link]) {
        state.withLock { state in
            for link in links where state.attached[link.index] != link.name {
                do {
                    for hook in TrafficControl.Hook.allCases {
                        try TrafficControl.attach(
                            hook == .ingress ? program.ingress : program.egress, to: link.name, hook: hook,
                            namespace: namespacePath)
                    }
                    state.attached[link.index] = link.name
                } catch {
                    state.lastError = "attaching the program to new interface \(link.name): \(error)"
                }
            }
        }
    }
}

import TabbyCore

// The names rtnetlink code reads best with, over TabbyCore's address types.
extension IPAddress {
    var isIPv4: Bool { family == .v4 }
}

extension CIDR {
    /// The network address (a route's destination).
    var address: IPAddress { network }

    init(address: IPAddress, prefixLength: Int) {
        self.init(network: address, prefixLength: prefixLength)
    }
}
